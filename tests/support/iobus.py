"""A kernel tree's KVM I/O bus code, compiled in userspace and driven with ctypes.

The precedence property of patch 1 ("every access a device accepted before
goes to the same device") is a statement about two versions of one C file.
Rather than trust a Python model of either, this extracts the io bus
functions from each tree's ``virt/kvm/kvm_main.c`` and the bus structs from
its ``include/linux/kvm_host.h``, compiles them with ``iobus/iobus.c``
(stubs for SRCU, RCU and allocation, and test devices), and loads the result.
The old code is the unpatched base's own text, not a model of it.
"""

from __future__ import annotations

import ctypes
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent / "iobus"

CODE_START = "static void kvm_iodevice_destructor(struct kvm_io_device *dev)"
CODE_END = re.compile(r"^EXPORT_SYMBOL\w*\(kvm_io_bus_get_dev\);$", re.M)

RANGE = 0
"""A device that accepts any access inside its range (a PIC, a coalesced zone)."""
IOEVENTFD = 1
"""A device that accepts writes at its address, of its length unless that is 0,
and of its datamatch if it has one, as ioeventfd_in_range() does."""


class ExtractError(Exception):
    """The tree's text does not have the shape the extraction expects."""


def extract_code(kvm_main: str) -> str:
    """The io bus functions of kvm_main.c, from the device destructor helper
    to kvm_io_bus_get_dev()'s export."""
    start = kvm_main.find(CODE_START)
    end = CODE_END.search(kvm_main, start if start >= 0 else 0)
    if start < 0 or end is None:
        raise ExtractError("kvm_main.c has no io bus section from "
                           f"{CODE_START!r} to kvm_io_bus_get_dev's export")
    return kvm_main[start:end.end()] + "\n"


def extract_structs(kvm_host: str) -> str:
    """struct kvm_io_range, struct kvm_io_bus, enum kvm_bus and NR_IOBUS_DEVS
    of kvm_host.h."""
    limit = re.search(r"^#define NR_IOBUS_DEVS .*$", kvm_host, re.M)
    if not limit:
        raise ExtractError("kvm_host.h has no NR_IOBUS_DEVS")
    out = [limit.group(0)]
    for head in ("struct kvm_io_range {", "struct kvm_io_bus {", "enum kvm_bus {"):
        m = re.search(r"^" + re.escape(head) + r".*?^};$", kvm_host, re.M | re.S)
        if not m:
            raise ExtractError(f"kvm_host.h has no {head}")
        out.append(m.group(0))
    return "\n\n".join(out) + "\n"


def build(kvm_main: str, kvm_host: str, iodev_dir: Path, out: Path) -> Path:
    """Compile a shared library from the texts; *iodev_dir* holds kvm/iodev.h
    and linux/bsearch.h (a tree's include/)."""
    out.mkdir(parents=True, exist_ok=True)
    code = extract_code(kvm_main)
    (out / "code.c").write_text(code)
    (out / "structs.h").write_text(extract_structs(kvm_host))
    lib = out / "iobus.so"
    cmd = ["cc", "-O1", "-g", "-shared", "-fPIC", "-w",
           f"-I{HERE / 'shim'}", f"-I{iodev_dir}",
           f"-DIOBUS_STRUCTS=\"{out / 'structs.h'}\"", f"-DIOBUS_CODE=\"{out / 'code.c'}\"",
           "-o", str(lib), str(HERE / "iobus.c")]
    if "kvm_io_bus_register_exclusive_dev" in code:
        cmd.insert(1, "-DIOBUS_HAVE_EXCLUSIVE")
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        raise ExtractError(f"compiling the extracted io bus code failed:\n{r.stderr[-3000:]}")
    return lib


@dataclass(frozen=True)
class Device:
    id: int
    addr: int
    len: int
    kind: int
    datamatch: int | None = None
    exclusive: bool = False


class Bus:
    """One PIO bus of one compiled tree."""

    def __init__(self, lib: Path) -> None:
        self._lib = ctypes.CDLL(str(lib))
        u64, i = ctypes.c_uint64, ctypes.c_int
        self._lib.iobus_new.restype = ctypes.c_void_p
        self._lib.iobus_register.argtypes = [ctypes.c_void_p, u64, i, i, i, i, u64, i]
        self._lib.iobus_unregister.argtypes = [ctypes.c_void_p, i]
        self._lib.iobus_write.argtypes = [ctypes.c_void_p, u64, i, u64]
        self._lib.iobus_read.argtypes = [ctypes.c_void_p, u64, i]
        self._lib.iobus_get_dev.argtypes = [ctypes.c_void_p, u64]
        self._lib.iobus_count.argtypes = [ctypes.c_void_p]
        self._kvm = self._lib.iobus_new()

    def register(self, d: Device) -> int:
        """0 or the negative errno of kvm_io_bus_register_dev()."""
        return self._lib.iobus_register(self._kvm, d.addr, d.len, d.id, d.kind,
                                        d.datamatch is not None, d.datamatch or 0,
                                        d.exclusive)

    def unregister(self, dev_id: int) -> int:
        return self._lib.iobus_unregister(self._kvm, dev_id)

    def write(self, addr: int, length: int, val: int) -> int:
        """The id of the device that accepted the write, or -1 (an exit)."""
        return self._lib.iobus_write(self._kvm, addr, length, val)

    def read(self, addr: int, length: int) -> int:
        return self._lib.iobus_read(self._kvm, addr, length)

    def get_dev(self, addr: int) -> int:
        return self._lib.iobus_get_dev(self._kvm, addr)

    def count(self) -> int:
        return self._lib.iobus_count(self._kvm)
