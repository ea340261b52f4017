"""A real PlatformIO build, offline: ``pio run`` on a generated nucleo-u575 KWS project (cmsis-nn)
with platform-ststm32 19.6.0 from ../shared/deps and local stand-ins for what it downloads
(tests/pio_offline.py). Its objects' code equals the generated Makefile's, object by object, and
the linked images have the same sections and symbols.

Slow. Skips without pio, git, arm-none-eabi-gcc, CMSIS_NN_PATH or ../shared/deps
(TINYGEN_REQUIRE_PIO=1 forces); the SCons wheel comes from PyPI on the first run.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pio_offline as PO
import pytest
from conftest import shared_model

_MISSING = [t for t in ("git", "arm-none-eabi-gcc", "make") if shutil.which(t) is None]
if PO.pio_exe() is None:
    _MISSING.append("pio")
if not os.environ.get("CMSIS_NN_PATH"):
    _MISSING.append("CMSIS_NN_PATH")
if not PO.PLATFORM.is_dir():
    _MISSING.append(str(PO.PLATFORM))
if _MISSING and os.environ.get("TINYGEN_REQUIRE_PIO") != "1":
    pytest.skip(f"offline PlatformIO build needs {', '.join(_MISSING)}", allow_module_level=True)

from tinygen.cli import main  # noqa: E402

pytestmark = pytest.mark.slow
CODE = re.compile(r"^\.(text|rodata|data|bss)")


def sections(obj: Path) -> dict[str, str]:
    """Code/data sections of an object (hex dumps) and their relocations: what the code is."""
    out = subprocess.run(["arm-none-eabi-readelf", "-SW", str(obj)], capture_output=True, text=True, check=True).stdout
    names = [m.group(1) for m in re.finditer(r"\]\s+(\S+)\s+(?:PROGBITS|NOBITS)", out) if CODE.match(m.group(1))]
    got = {}
    for n in names:
        dump = subprocess.run(["arm-none-eabi-readelf", "-x", n, str(obj)], capture_output=True, text=True).stdout
        got[n] = "\n".join(ln for ln in dump.splitlines() if ln.startswith("  0x"))
    rel = subprocess.run(["arm-none-eabi-readelf", "-rW", str(obj)], capture_output=True, text=True, check=True).stdout
    section = None
    for ln in rel.splitlines():
        m = re.match(r"Relocation section '\.rela?(\S+)'", ln)
        if m:
            section = m.group(1) if CODE.match(m.group(1)) else None
            got.setdefault(f"rel{section}", "") if section else None
        elif section and re.match(r"[0-9a-f]{8} ", ln):
            f = ln.split()  # offset, info (symbol index: file-specific), type, value, name
            got[f"rel{section}"] += f"{f[0]} {f[2]} {' '.join(f[4:])}\n"
    return got


def linked(elf: Path) -> tuple[list[str], list[str]]:
    h = subprocess.run(["arm-none-eabi-objdump", "-h", str(elf)], capture_output=True, text=True, check=True).stdout
    secs = sorted(" ".join(ln.split()[1:4]) for ln in h.splitlines() if re.match(r"\s+\d+ \.(?!debug|comment)", ln))
    nm = subprocess.run(["arm-none-eabi-nm", "-S", "--defined-only", str(elf)], capture_output=True, text=True,
                        check=True).stdout
    syms = sorted(" ".join((p[-1], p[1], p[2])) for p in (ln.split() for ln in nm.splitlines()) if len(p) == 4)
    return secs, syms


def test_pio_run_offline_equals_makefile(tmp_path):
    try:
        env = PO.setup()
    except PO.SetupError as e:
        if os.environ.get("TINYGEN_REQUIRE_PIO") == "1":
            raise
        pytest.skip(f"offline PlatformIO set-up failed: {e}")
    proj = tmp_path / "proj"
    assert main(["build", str(shared_model("kws_ref_model.tflite")), "--board", "nucleo-u575", "--backend",
                 "cmsis-nn", "-o", str(proj), "--no-compile"]) == 0
    # the generated Makefile, as a user runs it (CMSIS-NN compiled from its sources, no cached library)
    m = subprocess.run(["make", "-C", str(proj), f"-j{os.cpu_count() or 1}"], capture_output=True, text=True)
    assert m.returncode == 0, m.stdout[-2000:] + m.stderr[-2000:]
    ini = (proj / "platformio.ini").read_text()
    assert "platform = ststm32@19.6.0" in ini and "toolchain-gccarmnoneeabi@~1.120301.0" in ini
    r = PO.pio_run(proj, env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "toolchain-gccarmnoneeabi @ 1.120301.0" in r.stdout and "PLATFORM: ST STM32 (19.6.0)" in r.stdout
    pio = proj / ".pio" / "build" / "nucleo-u575"
    make = proj / "build" / "obj-cmsis-nn"
    pairs = [(o, pio / "src" / o.name) for o in sorted((make / "src").glob("*.o"))]
    lib = next(pio.glob("lib*/CMSIS-NN"))
    pairs += [(o, lib / o.relative_to(make / "cmsis-nn")) for o in sorted((make / "cmsis-nn").rglob("*.o"))]
    assert len(pairs) > 60
    for a, b in pairs:
        assert b.exists(), f"PlatformIO built no {b.relative_to(proj)}"
        assert sections(a) == sections(b), f"{a.relative_to(proj)} and {b.relative_to(proj)} differ"
    assert linked(proj / "build" / "firmware.elf") == linked(pio / "firmware.elf")
