"""``tinygen optimize``: depthwise-separable rewrite, structured channel pruning and
quantization-aware training, each fine-tuned with knowledge distillation.

The heavy parts (TensorFlow, with ``TF_USE_LEGACY_KERAS=1`` set first, as
tensorflow-model-optimization needs; see docs/optimize.md) load on first use, so the
CLI starts fast.
"""

import importlib

_EXPORTS = {
    "optimize": ".pipeline", "OptimizeResult": ".pipeline",
    "load_data": ".data", "Data": ".data",
    "format_table": ".metrics", "StepRow": ".metrics",
    "keras": "._tf", "tf": "._tf",
}

__all__ = ["optimize", "load_data", "format_table", "OptimizeResult", "StepRow", "Data"]


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(name)
