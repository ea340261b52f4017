"""TensorFlow / tf_keras import point for ``tinygen.optimize``.

tensorflow-model-optimization 0.8.1 only works on Keras 2 (the ``tf_keras`` package), so
``TF_USE_LEGACY_KERAS=1`` must be in the environment *before* tensorflow is first imported;
this module sets it (unless the user set it) and every other module of the package imports
``tf`` and ``keras`` from here. If tensorflow was already imported with Keras 3 as
``tf.keras`` we still work, because we use the ``tf_keras`` package directly and tfmot
falls back to it too.
"""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

__all__ = ["tf", "keras", "seed_everything"]


def seed_everything(seed: int) -> None:
    """Make training and data generation deterministic for ``seed``."""
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
