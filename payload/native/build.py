"""Compile a native KVM_RUN loop once into a cache dir and load it with ctypes.

Why compile at run time: the loop must be native for honest per-exit costs,
but the harness ships as source and runs both here and inside the test VM,
so it builds with whatever ``cc`` the machine has.  The shared object is
named after a hash of the source, kvm_loop.h, flags and compiler, so an
edit triggers a rebuild and an unchanged tree reuses the cached build.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import subprocess
import tempfile
from pathlib import Path

from payload.native.cache import cache_root

SOURCE = Path(__file__).with_name("vmexit_loop.c")
HEADER = Path(__file__).with_name("kvm_loop.h")
"""What every loop includes: its bytes are part of every library's hash."""
CFLAGS = ("-O2", "-Wall", "-Wextra", "-Werror", "-fPIC", "-shared")


def compiler() -> str:
    """``$CC`` if set, else the system ``cc``."""
    return os.environ.get("CC", "cc")


def cache_dir() -> Path:
    """``native`` in the cache :func:`payload.native.cache.cache_root` names
    (the host passes its resolved cache down as ``KVM_IOFD_CACHE``);
    :func:`build` falls back to a per-user temp dir if that is read-only."""
    return cache_root(os.environ) / "native"


def _digest(source: Path) -> str:
    h = hashlib.sha256()
    h.update(source.read_bytes())
    h.update(HEADER.read_bytes())
    h.update("\0".join((compiler(), *CFLAGS)).encode())
    return h.hexdigest()[:16]


def build(force: bool = False, out_dir: Path | None = None, source: Path | None = None) -> Path:
    """Return the path of the library compiled from *source* (by default the
    benchmark's loop; the device scenario builds its own), compiling it if needed.

    The compiler writes to a temporary name that is then renamed into place,
    so concurrent builders never load a half-written file.  A compile error
    raises :class:`RuntimeError` carrying the compiler's output.
    """
    source = source or SOURCE
    out_dir = out_dir or cache_dir()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        if not os.access(out_dir, os.W_OK):
            raise PermissionError(out_dir)
    except OSError:  # e.g. a read-only home inside the test VM
        out_dir = Path(tempfile.gettempdir()) / f"kvm-iofd-native-{os.getuid()}"
        out_dir.mkdir(mode=0o700, exist_ok=True)
    target = out_dir / f"{source.stem}-{_digest(source)}.so"
    if target.exists() and not force:
        return target
    fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=f".{source.stem}-", suffix=".so")
    os.close(fd)
    try:
        proc = subprocess.run(
            [compiler(), *CFLAGS, f"-I{HEADER.parent}", "-o", tmp, str(source)],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"compiling {source} failed:\n{proc.stderr}{proc.stdout}")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


# vmexit_loop()'s prototype: (vcpu_fd, struct kvm_run *, ring_fd, ring_cmd,
# done_port, timeout_ns, struct loop_result *).
VMEXIT_LOOP_ARGTYPES = (ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_ulong,
                        ctypes.c_int, ctypes.c_int64, ctypes.c_void_p)


@functools.cache
def load(source: Path = SOURCE, symbol: str = "vmexit_loop",
         argtypes: tuple = VMEXIT_LOOP_ARGTYPES) -> ctypes.CDLL:
    """The library built from *source*, loaded, with *symbol*'s prototype set
    (returning int); by default the benchmark's loop."""
    lib = ctypes.CDLL(str(build(source=source)))
    fn = getattr(lib, symbol)
    fn.argtypes = argtypes
    fn.restype = ctypes.c_int
    return lib
