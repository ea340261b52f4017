"""TFLite Micro's arena for a model, read from tflite_micro.runtime's allocation report (fd 2)."""

from __future__ import annotations

import os
import re
import tempfile


def tflm_arena(model_bytes: bytes) -> dict:
    """{'total', 'head', 'tail'} bytes of TFLM's arena for the model (RecordingMicroAllocator)."""
    from tflite_micro.python.tflite_micro import runtime

    it = runtime.Interpreter.from_bytes(bytes(model_bytes))
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            it.print_allocations()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        tmp.seek(0)
        text = tmp.read().decode(errors="replace")
    out = {}
    for key in ("total", "head", "tail"):
        m = re.search(rf"Arena allocation {key} (\d+) bytes", text)
        if not m:
            raise RuntimeError(f"could not read TFLM's arena {key} from:\n{text}")
        out[key] = int(m.group(1))
    return out
