"""Offline PlatformIO for tests and CI: real ``pio run`` on a generated project with no network.

Each package PlatformIO would download gets a local stand-in, installed the way PlatformIO
installs packages (facts: ../shared/deps/README.md):

- the platform: ``pio pkg install -g --skip-dependencies -p file://../shared/deps/platform-ststm32-19.6.0``;
- ``toolchain-gccarmnoneeabi`` 1.120301.0 (what platformio.ini pins, ``~1.120301.0``): a package
  folder whose ``bin/`` links to Debian's ``arm-none-eabi-*`` (GCC 12.2.1);
- ``tool-scons`` 4.41101.0 (PlatformIO 6.2's core requirement): the SCons 4.11.1 wheel from PyPI
  (``pip download``), unpacked, with a ``scons.py`` entry point;
- CMSIS-NN (``lib_deps`` git URL): a local bare repository made from ``$CMSIS_NN_PATH`` with a
  ``v7.0.0`` tag, reached through git's ``url.<repo>.insteadOf`` in a scratch ``GIT_CONFIG_GLOBAL``.

Core packages must carry owner ``platformio`` in their ``.piopm`` record. Everything lives in one
scratch folder (``$TINYGEN_PIO_CORE``, default ``~/.cache/tinygen-tests/pio-core``); the set-up is
idempotent. Needs: PlatformIO (the venv's ``pio``), pip, git, gcc-arm-none-eabi.

    python tests/pio_offline.py PROJECT      # set up, then pio run in PROJECT; prints the env
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLATFORM = ROOT.parent / "shared" / "deps" / "platform-ststm32-19.6.0"
CMSIS_NN_URL = "https://github.com/ARM-software/CMSIS-NN.git"
SCONS = ("4.11.1", "4.41101.0")
TOOLCHAIN_VERSION = "1.120301.0"
TOOLS = ("gcc", "g++", "cpp", "as", "ld", "ar", "nm", "objcopy", "objdump", "size", "ranlib", "strip",
         "readelf", "gdb", "gcc-ar", "gcc-nm", "gcc-ranlib")


class SetupError(RuntimeError):
    pass


def core_dir() -> Path:
    return Path(os.environ.get("TINYGEN_PIO_CORE", Path.home() / ".cache" / "tinygen-tests" / "pio-core"))


def pio_exe() -> str | None:
    here = Path(sys.executable).with_name("pio")
    return str(here) if here.exists() else shutil.which("pio")


def _run(cmd: list[str], env: dict | None = None, cwd: Path | None = None) -> str:
    r = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    if r.returncode != 0:
        raise SetupError(f"{' '.join(cmd)} failed ({r.returncode}):\n{(r.stdout + r.stderr)[-3000:]}")
    return r.stdout


def _piopm(folder: Path, kind: str, name: str, version: str) -> None:
    (folder / ".piopm").write_text(json.dumps({
        "type": kind, "name": name, "version": version,
        "spec": {"owner": "platformio", "id": None, "name": name, "requirements": None, "uri": None}}))


def environment(core: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "PLATFORMIO_CORE_DIR": str(core),
        "GIT_CONFIG_GLOBAL": str(core / "gitconfig"),
        "GIT_CONFIG_NOSYSTEM": "1",
        "PLATFORMIO_SETTING_ENABLE_TELEMETRY": "no",
        "PLATFORMIO_SETTING_CHECK_PLATFORMIO_INTERVAL": "3650",
        "PLATFORMIO_SETTING_CHECK_PRUNE_SYSTEM_THRESHOLD": "0",
        "PLATFORMIO_NO_ANSI": "true",
    })
    return env


def setup(cmsis_nn: Path | None = None, core: Path | None = None) -> dict[str, str]:
    """Makes the offline package set (once); returns the environment for ``pio run``."""
    core = core or core_dir()
    pio = pio_exe()
    if pio is None:
        raise SetupError("pio not found (pip install platformio)")
    for t in ("git", "arm-none-eabi-gcc"):
        if shutil.which(t) is None:
            raise SetupError(f"{t} not found (sudo apt-get install git gcc-arm-none-eabi libnewlib-arm-none-eabi)")
    core.mkdir(parents=True, exist_ok=True)
    env = environment(core)
    pkgs = core / "packages"
    pkgs.mkdir(exist_ok=True)

    if not (core / "platforms" / "ststm32" / "platform.json").exists():
        _run([pio, "pkg", "install", "-g", "--skip-dependencies", "-p", f"file://{PLATFORM}"], env)

    tc = pkgs / "toolchain-gccarmnoneeabi"
    if not (tc / ".piopm").exists():
        shutil.rmtree(tc, ignore_errors=True)
        (tc / "bin").mkdir(parents=True)
        for t in TOOLS:
            src = shutil.which(f"arm-none-eabi-{t}")
            if src:
                os.symlink(os.path.realpath(src), tc / "bin" / f"arm-none-eabi-{t}")
        (tc / "package.json").write_text(json.dumps({
            "name": "toolchain-gccarmnoneeabi", "version": TOOLCHAIN_VERSION, "system": ["linux_x86_64"],
            "description": "stand-in: Debian's arm-none-eabi GCC 12.2.1 (tinygen tests)"}))
        _piopm(tc, "tool", "toolchain-gccarmnoneeabi", TOOLCHAIN_VERSION)

    sc = pkgs / "tool-scons"
    if not (sc / ".piopm").exists():
        shutil.rmtree(sc, ignore_errors=True)
        wheels = core / "wheels"
        _run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
              f"scons=={SCONS[0]}", "-d", str(wheels)])
        whl = next(wheels.glob(f"scons-{SCONS[0]}-*.whl"))
        with zipfile.ZipFile(whl) as z:
            z.extractall(sc)
        (sc / "scons.py").write_text("import os, sys\nsys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))\n"
                                     "from SCons.Script import main\nif __name__ == '__main__':\n    main()\n")
        (sc / "package.json").write_text(json.dumps({"name": "tool-scons", "version": SCONS[1]}))
        _piopm(sc, "tool", "tool-scons", SCONS[1])

    bare = core / "CMSIS-NN.git"
    if not bare.exists():
        src = Path(cmsis_nn or os.environ.get("CMSIS_NN_PATH", ""))
        if not (src / "Include" / "arm_nnfunctions.h").is_file():
            raise SetupError("CMSIS_NN_PATH must point at CMSIS-NN v7.0.0 (the lib_deps stand-in is made from it)")
        work = core / "cmsis-nn-work"
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(src, work, symlinks=True)
        genv = {**env, "GIT_AUTHOR_NAME": "tinygen tests", "GIT_AUTHOR_EMAIL": "tests@tinygen.invalid",
                "GIT_COMMITTER_NAME": "tinygen tests", "GIT_COMMITTER_EMAIL": "tests@tinygen.invalid",
                "GIT_AUTHOR_DATE": "2024-01-01T00:00:00Z", "GIT_COMMITTER_DATE": "2024-01-01T00:00:00Z"}
        _run(["git", "init", "-q", "-b", "main", str(work)], genv)
        _run(["git", "-C", str(work), "add", "-A"], genv)
        _run(["git", "-C", str(work), "commit", "-q", "-m", "CMSIS-NN v7.0.0 (local stand-in)"], genv)
        _run(["git", "-C", str(work), "tag", "v7.0.0"], genv)
        _run(["git", "clone", "-q", "--bare", str(work), str(bare)], genv)
        shutil.rmtree(work)
    (core / "gitconfig").write_text(f'[url "{bare}"]\n\tinsteadOf = {CMSIS_NN_URL}\n'
                                    '[advice]\n\tdetachedHead = false\n')
    return env


def pio_run(project: Path, env: dict[str, str], timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([pio_exe() or "pio", "run", "-d", str(project)], env=env, capture_output=True, text=True,
                          timeout=timeout)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python tests/pio_offline.py PROJECT")
    e = setup()
    r = pio_run(Path(sys.argv[1]), e)
    print(r.stdout[-4000:] + r.stderr[-2000:])
    sys.exit(r.returncode)
