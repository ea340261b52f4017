"""TFLite Micro's arena for a model (see tinygen.analyze.tflm_arena)."""

from tinygen.analyze import tflm_arena  # noqa: F401
