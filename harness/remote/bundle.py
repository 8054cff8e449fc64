"""What a remote host gets, packed into one tarball for SFTP.

It holds exactly the :mod:`payload` package (the KVM bindings, the VMM,
the guest programs, the native loop's C source, the runner), its tests
(``tests/payload``), the doorbell module's source (for hosts that must
build it), ``pyproject.toml`` (pytest's configuration) and, for the tests,
pytest with its pure-Python dependencies taken from this interpreter's
environment: the remote host needs only ``python3`` and a C compiler.
"""

from __future__ import annotations

import importlib.metadata as md
import io
import tarfile
from collections.abc import Iterator
from pathlib import Path

from packaging.requirements import Requirement

from harness import paths

SOURCES = ("payload", "tests/payload", "doorbell-module")
SOURCE_SUFFIXES = {".py", ".c", ".h", ""}  # "" is Kbuild and Makefile
LIB = "lib"  # where the bundled distributions go, put on PYTHONPATH


def _source_files() -> Iterator[Path]:
    for top in SOURCES:
        for f in sorted((paths.REPO / top).rglob("*")):
            if (f.is_file() and f.suffix in SOURCE_SUFFIXES and "__pycache__" not in f.parts
                    and not f.name.startswith(".")):
                yield f


def closure(name: str) -> list[md.Distribution]:
    """*name* and every distribution it requires here, markers applied."""
    seen: dict[str, md.Distribution] = {}
    todo = [name]
    while todo:
        dist = md.distribution(todo.pop())
        key = dist.metadata["Name"].lower()
        if key in seen:
            continue
        seen[key] = dist
        for spec in dist.requires or []:
            req = Requirement(spec)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return list(seen.values())


def _dist_files(dist: md.Distribution) -> Iterator[tuple[Path, str]]:
    for f in dist.files or []:
        if f.suffix == ".pyc" or "__pycache__" in f.parts or str(f).startswith(".."):
            continue
        local = Path(str(dist.locate_file(f)))
        if local.is_file():
            yield local, f"{LIB}/{f}"


def build(out: Path, with_pytest: bool) -> Path:
    """Write the tarball to *out*; deterministic for the same inputs."""
    members: list[tuple[Path, str]] = [(f, str(f.relative_to(paths.REPO))) for f in _source_files()]
    members.append((paths.REPO / "pyproject.toml", "pyproject.toml"))
    if with_pytest:
        for dist in closure("pytest"):
            members += _dist_files(dist)
    with tarfile.open(out, "w:gz") as tar:
        for local, name in sorted(members, key=lambda m: m[1]):
            data = local.read_bytes()
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    return out
