"""Write a generated project folder safely.

The new project is rendered into a temporary sibling folder and swapped in
with renames, so an interrupted build leaves the previous project intact.
tinygen only replaces a folder it wrote itself (it lists its files in
``.tinygen-files``); a folder holding anything else is refused, never deleted:
without that marker every entry is the user's (``build/`` and ``.pio/`` too), with
it only ``build/`` and ``.pio/`` (the outputs of building the project) may be
discarded. Symlinks are never followed, system folders are refused up front, the
folder keeps its permissions, a lock makes a second concurrent build into the same
folder fail at once, and temporary folders left by an interrupted build are removed
by the next one.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import shutil
import stat
from pathlib import Path

from .errors import OutputError

MARKER = ".tinygen-files"
BUILD_DIRS = ("build", ".pio")  # outputs of building the project, safe to discard in a tinygen folder
# never an output folder, nor anything inside them
SYSTEM = ("/proc", "/sys", "/dev", "/boot", "/etc", "/bin", "/sbin", "/usr", "/lib", "/lib32", "/lib64", "/run")


def _owned(out: Path) -> set[str] | None:
    """The files tinygen wrote into ``out``, or None when it has no marker (not a tinygen folder)."""
    marker = out / MARKER
    if marker.is_symlink() or not marker.is_file():
        return None
    try:
        return set(marker.read_text(errors="replace").split("\n")) - {""}
    except OSError:
        return None


def _foreign(out: Path, limit: int = 6) -> list[str]:
    """Entries of ``out`` tinygen did not write (at most ``limit``), without following symlinks.
    Without a marker every file, symlink and empty folder is foreign, ``build/`` and ``.pio/`` too."""
    owned = _owned(out)
    marked = owned is not None
    owned = owned or set()
    parents = {p.as_posix() for f in owned for p in Path(f).parents} - {"."}
    found: list[str] = []

    def onerror(e: OSError) -> None:
        raise OutputError(f"cannot read {e.filename} in the output folder: {e.strerror or e}; "
                          "choose another output with -o") from None

    for root, dirs, files in os.walk(out, onerror=onerror, followlinks=False):
        rel_root = Path(root).relative_to(out)
        dirs.sort()
        for d in list(dirs):
            rel = (rel_root / d).as_posix()
            if (Path(root) / d).is_symlink():
                dirs.remove(d)
                found.append(rel + " (a symlink)")
            elif marked and rel in BUILD_DIRS:
                dirs.remove(d)  # build outputs of a tinygen project
        for f in sorted(files):
            rel = (rel_root / f).as_posix()
            if rel == MARKER and marked:
                continue
            if (Path(root) / f).is_symlink():
                found.append(rel + " (a symlink)")
            elif rel not in owned:
                found.append(rel)
        if not dirs and not files and rel_root != Path(".") and rel_root.as_posix() not in parents:
            found.append(rel_root.as_posix() + "/")
        if len(found) >= limit:
            break
    return found[:limit]


def _system_folder(out: Path) -> str | None:
    try:
        real = out.resolve()
    except (OSError, RuntimeError):
        return None
    if real == Path(real.anchor) or real == Path.home():
        return f"{real} is the {'root' if real == Path(real.anchor) else 'home'} folder"
    for s in SYSTEM:
        if real == Path(s) or Path(s) in real.parents:
            return f"{s} is a system folder"
    return None


def check_writable(out: Path) -> None:
    why = _system_folder(out)
    if why:
        raise OutputError(f"cannot write the project to {out}: {why}; choose a folder of your own with -o")
    if out.is_symlink():
        raise OutputError(f"{out} is a symlink; tinygen does not follow it: choose a real folder with -o")
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out} exists and is not a folder; choose another output with -o")
    if out.exists():
        foreign = _foreign(out)
        if foreign:
            raise OutputError(
                f"{out} holds files tinygen did not write ({', '.join(foreign[:5])}{' ...' if len(foreign) > 5 else ''}); "
                "tinygen never deletes them: move them away or choose another output folder with -o"
            )
    parent = out.parent if out.parent != Path("") else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create the folder {parent} for {out}: {e.strerror or e} "
                          "(is part of the path a file?); choose another output folder with -o") from None
    if not os.access(parent, os.W_OK) or (out.exists() and not os.access(out, os.W_OK)):
        raise OutputError(f"cannot write to {out}: permission denied; choose another output folder with -o")


class _Lock:
    """An exclusive flock on ``.<name>.lock`` beside ``out``, removed on release."""

    def __init__(self, out: Path) -> None:
        self.out, self.path = out, out.parent / f".{out.name}.lock"
        self.fd = -1

    def __enter__(self) -> _Lock:
        for _ in range(5):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o666)
            except OSError as e:
                raise OutputError(f"cannot write the project to {self.path.parent}: {e.strerror or e}; "
                                  "choose another output folder with -o") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                raise OutputError(f"another tinygen build is writing {self.out} "
                                  f"right now (lock {self.path}); wait for it, or build into another folder "
                                  "with -o") from None
            try:
                same = os.stat(self.path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino
            except OSError:
                same = False
            if same:
                self.fd = fd
                return self
            os.close(fd)  # the holder removed the file meanwhile: take the new one
        raise OutputError(f"cannot lock {self.path}: it keeps changing; build into another folder with -o")

    def __exit__(self, *exc) -> None:
        try:
            os.unlink(self.path)
        except OSError:
            pass
        os.close(self.fd)


def _clean_stale(out: Path) -> None:
    """Temporary folders of interrupted builds into ``out`` (we hold its lock: none is in use)."""
    prefixes = (f".{out.name}.new-", f".{out.name}.old-")
    try:
        entries = list(os.scandir(out.parent))
    except OSError:
        return
    for e in entries:
        if e.name.startswith(prefixes) and e.is_dir(follow_symlinks=False):
            shutil.rmtree(e.path, ignore_errors=True)


def _mkdir_sibling(out: Path, tag: str) -> Path:
    for _ in range(100):
        p = out.parent / f".{out.name}.{tag}-{secrets.token_hex(4)}"
        try:
            os.mkdir(p, 0o777)  # the umask applies, as for a folder the user makes
            return p
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {out}")


def write_files(root: Path, files: dict[str, str | bytes]) -> None:
    r"""Write ``files`` (relative path -> text or bytes) below the existing folder ``root``, making
    sub-folders as needed; no locking, marker or atomic swap (:func:`write` adds those).

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     write_files(Path(d), {"a/b.c": "int x;\n", "w.bin": b"\x01\x02"})
    ...     (Path(d) / "a" / "b.c").read_text(), (Path(d) / "w.bin").read_bytes()
    ('int x;\n', b'\x01\x02')
    """
    for rel, content in sorted(files.items()):
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            p.write_bytes(content)
        else:
            p.write_text(content)


def write(out: Path, files: dict[str, str | bytes]) -> None:
    """Atomically replace ``out`` with exactly ``files`` (relative path -> content)."""
    out = Path(out)
    check_writable(out)
    with _Lock(out):
        check_writable(out)  # again under the lock: another build may have finished meanwhile
        _clean_stale(out)
        _write_locked(out, files)


def _write_locked(out: Path, files: dict[str, str | bytes]) -> None:
    try:
        tmp = _mkdir_sibling(out, "new")
        if out.exists():
            os.chmod(tmp, stat.S_IMODE(os.stat(out).st_mode))  # the folder keeps its permissions
    except OSError as e:
        raise OutputError(f"cannot write the project to {out}: {e.strerror or e} in {out.parent}; "
                          "choose another output folder with -o") from None
    try:
        write_files(tmp, files)
        (tmp / MARKER).write_text("\n".join(sorted(files)) + "\n")
        if out.exists():
            old = _mkdir_sibling(out, "old")
            old.rmdir()
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise OutputError(f"cannot write the project to {out}: {e.strerror or e}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def link_of(project_dir, backend: str) -> str:
    """What a project's build compiles in ('cmsis-nn' or 'portable'): ``backend`` itself, or for the
    generated kernel set the manifest's ``link`` (CMSIS-NN only if a layer falls back to it)."""
    import json
    from pathlib import Path

    if backend != "generated":
        return backend
    try:
        return json.loads((Path(project_dir) / "manifest.json").read_text()).get("link", "portable")
    except (OSError, ValueError):
        return "portable"


# ---- finding the project a command works on ---------------------------------------------------

DEFAULT_PROJECT = "tinygen_project"
MANIFEST = "manifest.json"


def is_project(folder: Path) -> bool:
    """True when ``folder`` holds a manifest.json written by tinygen (it names the tinygen version)."""
    import json

    man = Path(folder) / MANIFEST
    if not man.is_file():
        return False
    try:
        return "tinygen_version" in json.loads(man.read_text())
    except (ValueError, UnicodeDecodeError, OSError):
        return False


def resolve(arg: str | os.PathLike | None, cwd: Path | None = None) -> Path:
    """The project folder a command works on: the explicit path; else the current folder when it
    holds a tinygen manifest (PlatformIO users ``cd`` into the project); else ``./tinygen_project``.
    Raises OutputError listing where it looked."""
    if arg is not None:
        p = Path(arg)
        if not is_project(p):
            why = "does not exist" if not p.exists() else f"has no tinygen {MANIFEST}"
            raise OutputError(f"{p} is not a tinygen project ({why}); give a folder written by tinygen build, "
                              "or run tinygen build first")
        return p
    here = Path(cwd) if cwd is not None else Path.cwd()
    if is_project(here):
        return here
    default = here / DEFAULT_PROJECT
    if is_project(default):
        return default if cwd is not None else Path(DEFAULT_PROJECT)
    raise OutputError(f"no tinygen project found: looked in the current folder {here} (no tinygen {MANIFEST}) "
                      f"and in ./{DEFAULT_PROJECT} ({'no tinygen ' + MANIFEST if default.exists() else 'missing'}); "
                      "give the project folder, cd into it, or run tinygen build first")
