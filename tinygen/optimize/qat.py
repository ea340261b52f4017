"""Quantization-aware training with tensorflow-model-optimization 0.8.1.

tfmot only understands tf_keras (Keras 2) models: ``._tf`` sets ``TF_USE_LEGACY_KERAS=1``
before tensorflow is imported, and :mod:`.modelio` rebuilds Keras-3 models as tf_keras ones.
"""

from __future__ import annotations

from tinygen.errors import UnsupportedError

from ._tf import keras


def quantize_aware(model: keras.Model) -> keras.Model:
    """Wrap ``model`` with fake-quant nodes (default 8-bit scheme: per-channel weights,
    per-tensor activations, Conv+BN+ReLU folded) ready for fine-tuning."""
    import tensorflow_model_optimization as tfmot

    try:
        return tfmot.quantization.keras.quantize_model(model)
    except (RuntimeError, ValueError) as e:
        raise UnsupportedError(
            f"model {model.name!r}: quantization-aware training cannot wrap it ({e}); "
            "drop --qat to use post-training quantization instead"
        ) from e
