"""TensorFlow's own log noise kept off the terminal, unless ``--verbose``.

TensorFlow, absl, the TFLite converter and tf_keras print start-up banners, C++ log lines
and Python warnings that are not tinygen's and that the user cannot act on (oneDNN and CUDA
probes, "fully_quantize: 0, ...", HDF5-is-legacy, ...). :func:`setup` (called by the CLI
before any command runs) sets the log-level environment variables before TensorFlow is
imported, ignores warnings raised inside TensorFlow's packages, lowers absl's Python
logging, and installs an import hook that runs ``import tensorflow`` with the C-level
stderr captured (absl prints its banner there before any log level applies). Code that
calls into TensorFlow's C++ (the converter) wraps it in :func:`native_stderr`. Captured
text is never thrown away blindly: every line that is not known noise is written back.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import os
import re
import sys
import tempfile
import warnings

TF_PACKAGES = r"(tensorflow|tf_keras|keras|absl|tensorflow_model_optimization|tflite_micro|h5py|ml_dtypes)(\.|$)"

# Lines of TensorFlow/absl/converter chatter (never tinygen's, never an error).
NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|[IW]\d{4} [\d:]+\.\d+\s+\d+ \S+:\d+\] "          # absl/glog INFO and WARNING lines
    r"|To enable the following instructions: "                 # cpu_feature_guard's second line
    r"|fully_quantize: \d+, inference_type: "                  # the TFLite converter's quantizer
    r"|(INFO|WARNING):absl:"                                   # absl Python logging
    r"|WARNING:tensorflow:)")
_PY_WARNING = re.compile(r"^\S*[/\\](tensorflow|tf_keras|keras|absl|tensorflow_model_optimization)[/\\]\S+\.py:\d+: "
                         r"\w*Warning: ")

_verbose = False


def is_verbose() -> bool:
    return _verbose


def filter_noise(text: str) -> str:
    """``text`` without TensorFlow's noise lines (a Python warning's source line goes with it).

    >>> filter_noise("I0000 00:00:17.5   11434 port.cc:153] oneDNN custom operations are on.\\nreal error\\n")
    'real error\\n'
    >>> filter_noise("/x/site-packages/tensorflow/lite/python/convert.py:846: UserWarning: Statistics\\n  warnings.warn(\\nok\\n")
    'ok\\n'
    """
    out, skip_source = [], False
    for line in text.splitlines(keepends=True):
        if skip_source and line.startswith("  "):
            skip_source = False
            continue
        skip_source = False
        if _PY_WARNING.match(line):
            skip_source = True
            continue
        if NOISE.match(line):
            continue
        out.append(line)
    return "".join(out)


@contextlib.contextmanager
def native_stderr():
    """Capture file descriptor 2 (C++ logging of TensorFlow) for the block; write back what is not noise.
    A no-op with ``--verbose``."""
    if _verbose:
        yield
        return
    try:
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            try:
                sys.stderr.flush()
            except (OSError, ValueError):
                pass
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            rest = filter_noise(tmp.read().decode("utf-8", "replace"))
            if rest:
                sys.stderr.write(rest)
                sys.stderr.flush()


class _QuietLoader(importlib.abc.Loader):
    def __init__(self, inner) -> None:
        self.inner = inner

    def create_module(self, spec):
        return self.inner.create_module(spec)

    def exec_module(self, module) -> None:
        with native_stderr():
            self.inner.exec_module(module)
        _quiet_loggers()


class _QuietTensorFlowImport(importlib.abc.MetaPathFinder):
    """Runs the first ``import tensorflow`` under :func:`native_stderr`."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _QuietTensorFlowImport)]
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        spec.loader = _QuietLoader(spec.loader)
        return spec


def _quiet_loggers() -> None:
    import logging

    for name in ("tensorflow", "absl", "h5py"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        from absl import logging as absl_logging

        absl_logging.set_verbosity(absl_logging.ERROR)
    except ImportError:
        pass


def setup(verbose: bool = False) -> None:
    """Before any command runs: TensorFlow quiet (default) or as chatty as it likes (``verbose``)."""
    global _verbose
    _verbose = verbose
    if verbose:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("GLOG_minloglevel", "3")
    os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "3")
    warnings.filterwarnings("ignore", module=TF_PACKAGES)
    warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated.*")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    if "tensorflow" in sys.modules:
        _quiet_loggers()
    elif not any(isinstance(f, _QuietTensorFlowImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietTensorFlowImport())
