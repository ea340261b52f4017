"""The calibration front door (issue 13): --calib as .npz / .npy / a folder of images (PNG/JPEG via
Pillow, PPM/PGM without it; resized, scaled by --calib-range or by the model's Rescaling layer),
synthetic calibration from the model's declared input range (Rescaling / Normalization) or a loudly
stated assumption, --synthetic-range honoured by build, and every flag that cannot apply reported.
Each path checks the quantized model's input range (what calibration decides), each refusal its message."""

import numpy as np
import pytest

from tinygen import cli, frontend, imgread, reference
from tinygen.errors import InputError

SHAPE = (12, 10, 3)


def _h5(tmp_path, first=None, shape=SHAPE, name="m.h5"):
    import tf_keras as K

    K.utils.set_random_seed(0)
    x = K.Input(shape)
    h = first(x) if first is not None else x
    y = K.layers.Conv2D(4, 3, padding="same")(h)
    p = tmp_path / name
    K.Model(x, K.layers.GlobalAveragePooling2D()(y)).save(p)
    return p


def _input_range(buf) -> tuple[float, float]:
    tf = reference._tf()
    it = tf.lite.Interpreter(model_content=bytes(buf))
    s, z = it.get_input_details()[0]["quantization"]
    return (-128 - z) * s, (127 - z) * s


def _images(folder, n=5, ppm=False):
    folder.mkdir()
    rng = np.random.default_rng(1)
    for i in range(n):
        h, w = 20 + 3 * i, 17 + i
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        img[: h // 2, : w // 2] = 0
        img[h // 2 :, w // 2 :] = 255  # the full pixel range in every image, after resizing too
        if ppm:
            (folder / f"im{i}.ppm").write_bytes(f"P6\n{w} {h}\n255\n".encode() + img.tobytes())
        else:
            from PIL import Image

            Image.fromarray(img).save(folder / f"im{i}.png")
    return folder


def _near(r, lo, hi, tol):
    assert abs(r[0] - lo) <= tol and abs(r[1] - hi) <= tol, (r, lo, hi)


def test_png_folder_scaled_by_the_models_rescaling_layer(tmp_path):
    import tf_keras as K

    m = _h5(tmp_path, lambda x: K.layers.Rescaling(1 / 255.0)(x))
    logs = []
    buf, _ = frontend.load(m, calib=str(_images(tmp_path / "imgs")), log=logs.append)
    assert any("5 image(s)" in s and "Rescaling" in s for s in logs), logs
    _near(_input_range(buf), 0, 255, 255 * 0.03)


def test_ppm_folder_without_pillow_and_calib_range(tmp_path, monkeypatch):
    monkeypatch.setattr(imgread, "_pillow", lambda: None)
    folder = _images(tmp_path / "imgs", ppm=True)
    x = frontend.load_calibration(str(folder), (1, *SHAPE), log=lambda m: None, calib_range=(-1, 1))
    assert x.shape == (5, *SHAPE) and x.dtype == np.float32 and x.min() >= -1 and x.max() <= 1
    buf, _ = frontend.load(_h5(tmp_path), calib=str(folder), calib_range=(-1.0, 1.0), log=lambda m: None)
    _near(_input_range(buf), -1, 1, 0.06)


def test_grey_input_from_rgb_images(tmp_path):
    x = frontend.load_calibration(str(_images(tmp_path / "imgs")), (1, 9, 8, 1), log=lambda m: None, calib_range=(0, 1))
    assert x.shape == (5, 9, 8, 1) and 0 <= x.min() and x.max() <= 1


def test_image_folder_refusals(tmp_path, monkeypatch, capsys):
    folder = _images(tmp_path / "imgs")
    code = cli.main(["build", str(_h5(tmp_path)), "--calib", str(folder), "--board", "host", "--no-compile",
                     "-o", str(tmp_path / "p")])
    err = capsys.readouterr().err
    assert code != 0 and "Traceback" not in err and "needs --calib-range LO HI" in err, err
    with pytest.raises(InputError, match="no images"):
        (tmp_path / "empty").mkdir()
        frontend.load_calibration(str(tmp_path / "empty"), (1, *SHAPE), calib_range=(0, 1), log=lambda m: None)
    with pytest.raises(InputError, match=r"image input \[H, W, 1 or 3\]"):
        frontend.load_calibration(str(folder), (1, 16), calib_range=(0, 1), log=lambda m: None)
    monkeypatch.setattr(imgread, "_pillow", lambda: None)
    with pytest.raises(InputError, match="needs Pillow"):
        frontend.load_calibration(str(folder), (1, *SHAPE), calib_range=(0, 1), log=lambda m: None)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "a.ppm").write_bytes(b"P3\n1 1\n255\n0 0 0\n")
    with pytest.raises(InputError, match="not a binary PGM/PPM"):
        frontend.load_calibration(str(tmp_path / "bad"), (1, *SHAPE), calib_range=(0, 1), log=lambda m: None)
    with pytest.raises(InputError, match="--calib-range 1 0: give two finite numbers LO < HI"):
        frontend.load_calibration(str(folder), (1, *SHAPE), calib_range=(1, 0), log=lambda m: None)


def test_synthetic_draws_from_the_declared_range(tmp_path):
    import tf_keras as K

    logs = []
    buf, _ = frontend.load(_h5(tmp_path, lambda x: K.layers.Rescaling(1 / 127.5, offset=-1)(x)), log=logs.append)
    assert any("uniform in [0, 255]" in s and "Rescaling layer" in s for s in logs), logs
    _near(_input_range(buf), 0, 255, 255 * 0.03)
    norm = K.layers.Normalization(mean=[10.0, 20.0, 30.0], variance=[4.0, 1.0, 9.0])
    logs = []
    buf, _ = frontend.load(_h5(tmp_path, norm, name="n.h5"), log=logs.append)
    assert any("Normalization layer" in s and "SYNTHETIC" in s for s in logs), logs
    lo, hi = _input_range(buf)
    assert -0.5 < lo < 10 and 30 < hi < 45, (lo, hi)  # (int8 ranges always hold 0)


def test_synthetic_without_a_declared_range_says_what_it_assumed(tmp_path):
    logs = []
    buf, _ = frontend.load(_h5(tmp_path), log=logs.append)
    assert any("ASSUMING the input is standard normal" in s and "--synthetic-range" in s for s in logs), logs
    lo, hi = _input_range(buf)
    assert -6 < lo < -2 and 2 < hi < 6


def test_build_honours_synthetic_range(tmp_path, capsys):
    m = _h5(tmp_path)
    code = cli.main(["build", str(m), "--synthetic-range", "0", "4", "--board", "host", "--no-compile",
                     "-o", str(tmp_path / "p")])
    out = capsys.readouterr().out
    assert code == 0 and "uniform in [0, 4], --synthetic-range" in out, out
    buf, _ = frontend.load(m, synthetic_range=(0.0, 4.0), log=lambda s: None)
    _near(_input_range(buf), 0, 4, 0.1)


def test_npy_and_npz_calibration(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.uniform(-2, 6, (16, *SHAPE)).astype(np.float32)
    np.save(tmp_path / "c.npy", x)
    buf, _ = frontend.load(_h5(tmp_path), calib=str(tmp_path / "c.npy"), log=lambda s: None)
    _near(_input_range(buf), -2, 6, 0.2)


def test_flags_without_effect_are_reported(tmp_path):
    tfl = tmp_path / "m.tflite"
    m = _h5(tmp_path)
    tfl.write_bytes(frontend.load(m, synthetic_range=(0.0, 1.0), log=lambda s: None)[0])
    logs = []
    frontend.load(tfl, calib="c.npz", calib_range=(0.0, 1.0), synthetic_range=(0.0, 1.0), log=logs.append)
    for flag in ("--calib c.npz", "--calib-range 0 1", "--synthetic-range 0 1"):
        assert any(s.startswith(f"warning: {flag} is ignored") and "already a quantized .tflite" in s for s in logs), \
            (flag, logs)
    np.savez(tmp_path / "c.npz", x=np.zeros((2, *SHAPE), np.float32))
    logs = []
    frontend.load_calibration(str(tmp_path / "c.npz"), (1, *SHAPE), log=logs.append, calib_range=(0, 1),
                              synthetic_range=(0, 2))
    assert any("--calib-range 0 1 has no effect on" in s for s in logs), logs
    assert any("--synthetic-range 0 2 has no effect" in s for s in logs), logs
    logs = []
    frontend.load_calibration(None, (1, *SHAPE), log=logs.append, calib_range=(0, 1))
    assert any("--calib-range 0 1 has no effect without --calib FOLDER" in s for s in logs), logs
