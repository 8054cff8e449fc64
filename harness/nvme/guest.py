"""The L2 guest's initramfs: Debian's busybox-static, a static fio and ``l2-init``.

fio comes from Debian 12's ``fio`` source package (``apt-get source``
through the private apt configuration of :mod:`harness.apt`), built static
so the initramfs needs no libraries; its io_uring engine needs no
liburing.  busybox is the host's ``/bin/busybox`` from busybox-static
(which the harness installs for virtme-ng); ``l2-init`` links its applets
at boot.  The kernel is the test VM's own bzImage, which has the NVMe
driver and io_uring (Kconfig.fragment).  Both builds are skipped when
their inputs are unchanged: fio's recipe is recorded beside the binary,
and the initramfs is named by the hash of its archive.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import shutil
import struct
import subprocess
from pathlib import Path

from harness import buildlog
from harness.apt import BOOKWORM_SOURCES, PrivateApt
from harness.errors import HarnessError
from harness.progress import phase, say

FIO_VERSION = "3.33-3"
FIO_SPEC = f"fio={FIO_VERSION}"
"""Debian 12's fio, pinned so every machine builds the same binary."""
FIO_CONFIGURE = ("--build-static", "--disable-native", "--disable-numa", "--disable-rdma",
                 "--disable-rados", "--disable-rbd", "--disable-http", "--disable-gfapi",
                 "--disable-lex", "--disable-pmem", "--disable-xnvme", "--disable-tcmalloc",
                 "--disable-dfs", "--disable-libzbc", "--disable-libnfs")
"""Static, for any x86-64 CPU, and without the optional libraries that have
no static archive (or no use in the L2 guest)."""
INIT = Path(__file__).with_name("l2-init")
BUSYBOX = Path("/bin/busybox")

PT_INTERP = 3


def is_static(binary: Path) -> bool:
    """Whether *binary* is an x86-64 ELF executable with no program
    interpreter (``PT_INTERP``): statically linked, needing no libraries."""
    try:
        with open(binary, "rb") as f:
            head = f.read(64)
            if len(head) < 64 or head[:4] != b"\x7fELF" or head[4] != 2 or head[5] != 1:
                return False
            e_type, e_machine = struct.unpack_from("<HH", head, 16)
            (phoff,) = struct.unpack_from("<Q", head, 32)
            phentsize, phnum = struct.unpack_from("<HH", head, 54)
            if e_type not in (2, 3) or e_machine != 62 or not phnum:
                return False
            f.seek(phoff)
            table = f.read(phentsize * phnum)
    except OSError:
        return False
    types = [struct.unpack_from("<I", table, i * phentsize)[0] for i in range(phnum)]
    return PT_INTERP not in types


def _compiler() -> str:
    r = subprocess.run(["cc", "--version"], capture_output=True, text=True)
    return r.stdout.splitlines()[0] if r.returncode == 0 and r.stdout else "no cc"


def _recipe() -> str:
    return f"{FIO_SPEC}\n./configure {' '.join(FIO_CONFIGURE)}\nmake fio; strip\n{_compiler()}\n"


def fio_binary(cache: Path, jobs: int) -> Path:
    """The static fio (stripped), fetched and built on first use and again
    only when the recipe (version, options, compiler) changes."""
    root = cache / "fio" / FIO_VERSION
    binary = root / "fio"
    stamp = root / "recipe"
    want = _recipe()
    if binary.exists() and stamp.exists() and stamp.read_text() == want and is_static(binary):
        return binary
    for tool in ("cc", "make", "strip"):
        if not shutil.which(tool):
            raise HarnessError(f"{tool} not found", "install build-essential (make deps does)")
    stamp.unlink(missing_ok=True)
    src_parent = root / "src"
    shutil.rmtree(src_parent, ignore_errors=True)
    with phase(f"fetching Debian's {FIO_SPEC} source (private apt configuration)"):
        src = PrivateApt(cache / "apt-bookworm", BOOKWORM_SOURCES).source(FIO_SPEC, src_parent)
    log = cache / "logs" / "fio-build.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("")
    with phase(f"building a static fio {FIO_VERSION} (log: {log})"):
        buildlog.run(["./configure", *FIO_CONFIGURE], src, log, "fio's configure")
        buildlog.run(["make", f"-j{jobs}", "fio"], src, log, "building fio")
    if not is_static(src / "fio"):
        raise HarnessError(f"{src / 'fio'} is not statically linked",
                           f"the L2 initramfs has no libraries; see {log}")
    tmp = binary.with_name("fio.partial")
    r = subprocess.run(["strip", "-o", str(tmp), str(src / "fio")], capture_output=True, text=True)
    if r.returncode:
        raise HarnessError(f"strip {src / 'fio'} failed: {r.stderr.strip()}", f"see {log}")
    tmp.rename(binary)
    stamp.write_text(want)
    shutil.rmtree(src_parent, ignore_errors=True)
    say(f"fio: {binary} ({binary.stat().st_size / 1e6:.1f} MB, static)")
    return binary


DIR, FILE, LINK, CHR = 0o040755, 0o100755, 0o120777, 0o020600


def cpio(entries: list[tuple[str, int, bytes, tuple[int, int]]]) -> bytes:
    """A newc archive of (name, mode, data, (rdev major, minor)); directories,
    symlinks (data is the target) and device nodes by mode.  Owner root,
    time 0: the same inputs give the same bytes."""
    out = io.BytesIO()

    def pad(n: int) -> None:
        out.write(b"\0" * (-n % 4))

    trailer = ("TRAILER!!!", 0, b"", (0, 0))
    for ino, (name, mode, data, (major, minor)) in enumerate([*entries, trailer], start=1):
        raw = name.encode() + b"\0"
        nlink = 2 if mode & 0o170000 == 0o040000 else 1
        header = "070701" + "".join(f"{v:08x}" for v in (
            ino, mode, 0, 0, nlink, 0, len(data), 0, 0, major, minor, len(raw), 0))
        out.write(header.encode() + raw)
        pad(110 + len(raw))
        out.write(data)
        pad(len(data))
    return out.getvalue()


def archive(fio: Path, busybox: Path | None = None, init: Path | None = None) -> bytes:
    """The initramfs's uncompressed newc archive (busybox and init default
    to :data:`BUSYBOX` and :data:`INIT`)."""
    busybox = busybox or BUSYBOX
    init = init or INIT
    if not is_static(busybox):
        raise HarnessError(f"{busybox} is missing or not a static x86-64 binary",
                           "install busybox-static (make deps does)")
    if not is_static(fio):
        raise HarnessError(f"{fio} is not a static x86-64 binary", f"delete {fio.parent}")
    none = (0, 0)
    entries = [(n, DIR, b"", none) for n in ("bin", "dev", "proc", "sys", "tmp")]
    entries += [("dev/console", CHR, b"", (5, 1)),
                ("init", FILE, init.read_bytes(), none),
                ("bin/busybox", FILE, busybox.read_bytes(), none),
                ("bin/sh", LINK, b"busybox", none),
                ("bin/fio", FILE, fio.read_bytes(), none)]
    return cpio(entries)


def initramfs(cache: Path, jobs: int) -> Path:
    """The gzipped newc initramfs (``/init``, ``/bin/busybox``, ``/bin/fio``),
    named by its archive's hash: rebuilt only when busybox, fio, the init
    or the layout changed.  *jobs* is fio's ``make -j``."""
    data = archive(fio_binary(cache, jobs))
    digest = hashlib.sha256(data).hexdigest()[:12]
    out = cache / "nvme-guest" / f"initramfs-{digest}.cpio.gz"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".partial")
    tmp.write_bytes(gzip.compress(data, compresslevel=6, mtime=0))
    for old in out.parent.glob("initramfs-*.cpio.gz"):
        old.unlink()
    tmp.rename(out)
    say(f"L2 initramfs: {out} ({out.stat().st_size / 1e6:.1f} MB)")
    return out
