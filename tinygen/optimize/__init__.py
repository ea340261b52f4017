"""``tinygen optimize``: depthwise-separable rewrite, structured channel pruning and
quantization-aware training, each fine-tuned with knowledge distillation.

Importing this package sets ``TF_USE_LEGACY_KERAS=1`` (needed by
tensorflow-model-optimization) before tensorflow is imported; see docs/optimize.md.
"""

from ._tf import keras, tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS first)
from .data import Data, load_data
from .metrics import StepRow, format_table
from .pipeline import OptimizeResult, optimize

__all__ = ["optimize", "load_data", "format_table", "OptimizeResult", "StepRow", "Data"]
