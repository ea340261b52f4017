"""Write a generated project folder safely.

The new project is rendered into a temporary sibling folder and swapped in
with renames, so an interrupted build leaves the previous project intact.
tinygen only replaces a folder it wrote itself (it lists its files in
``.tinygen-files``); a folder holding anything else is refused, never deleted.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from .errors import OutputError

MARKER = ".tinygen-files"
BUILD_DIRS = ("build", ".pio")  # outputs of building the project, safe to discard


def _owned(out: Path) -> set[str]:
    marker = out / MARKER
    if not marker.exists():
        return set()
    return set(marker.read_text().split("\n")) - {""}


def check_writable(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out} exists and is not a folder; choose another output with -o")
    if out.exists():
        owned = _owned(out)
        foreign = []
        for p in sorted(out.rglob("*")):
            rel = p.relative_to(out).as_posix()
            if p.is_dir() or rel == MARKER or rel.split("/")[0] in BUILD_DIRS:
                continue
            if rel not in owned:
                foreign.append(rel)
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


def write(out: Path, files: dict[str, str | bytes]) -> None:
    """Atomically replace ``out`` with exactly ``files`` (relative path -> content)."""
    out = Path(out)
    check_writable(out)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.new-", dir=out.parent))
    except OSError as e:
        raise OutputError(f"cannot write the project to {out}: {e.strerror or e} in {out.parent}; "
                          "choose another output folder with -o") from None
    try:
        for rel, content in sorted(files.items()):
            p = tmp / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                p.write_bytes(content)
            else:
                p.write_text(content)
        (tmp / MARKER).write_text("\n".join(sorted(files)) + "\n")
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
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
