"""Arena of a MobileNetV1-0.25 96x96 class net (random weights), whole tensors vs overlapping buffers.

    python benchmarks/arena_mobilenet.py

The net is ``tf_keras.applications.MobileNet(alpha=0.25, input_shape=(96, 96, 3), weights=None,
include_top=False, pooling="avg")`` + Dense(10), converted to full int8 on random calibration data
(its Keras head uses a dynamic reshape tinygen does not run, hence the Dense head). Compiled with
both kernel sets; prints the arena planned with whole tensors and with access-contract overlaps.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from tinygen import driver, plan  # noqa: E402


def mobilenet_025_96() -> bytes:
    return keras_app_int8("MobileNet", alpha=0.25)


def keras_app_int8(app: str, **kwargs) -> bytes:
    """``tf_keras.applications.<app>`` at 96x96x3 (random weights, seed 0, average-pooled) + Dense(10),
    full int8 (:func:`int8_convert`); benchmarks/patches.py builds its MobileNetV2 with it too."""
    from opnets import _keras

    K = _keras()
    K.utils.set_random_seed(0)
    base = getattr(K.applications, app)(input_shape=(96, 96, 3), weights=None, include_top=False, pooling="avg",
                                        **kwargs)
    return int8_convert(K.Model(base.input, K.layers.Dense(10)(base.output)), (96, 96, 3))


def int8_convert(model, shape: tuple, samples: int = 8) -> bytes:
    """Full-int8 conversion (int8 in and out) calibrated on ``samples`` uniform [-1, 1) inputs of
    ``shape`` drawn from seed 0; benchmarks/patches.py converts its other nets through it too."""
    from opnets import _tf

    tf = _tf()
    rng = np.random.default_rng(0)

    def representative():
        for _ in range(samples):
            yield [rng.uniform(-1, 1, (1,) + tuple(shape)).astype(np.float32)]

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = conv.inference_output_type = tf.int8
    return bytes(conv.convert())


def main() -> int:
    buf = mobilenet_025_96()
    print(f"{'kernel set':<12}{'whole':>10}{'overlap':>10}  plan")
    for kset, arch in (("portable", "none"), ("cmsis-nn", "dsp")):
        c = driver.compile_model(buf, "mobilenet_025_96", kset, arch, stop_after="plan")
        whole = plan.plan(c.graph, c.calls, overlap=False).arena_size
        print(f"{kset:<12}{whole:>10,}{c.plan.arena_size:>10,}  {c.plan.strategy}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
