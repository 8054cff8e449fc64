"""payload.kvm.uapi against what a C compiler sees in <linux/kvm.h>.

The Python bindings hard-code ioctl numbers, struct sizes and offsets; a
mistake there sends the kernel a wrongly sized struct and shows up as a
baffling EINVAL or EFAULT.  So a C probe prints every entry of
``uapi.LAYOUT`` (whose keys are C expressions) and each is compared.

Which headers: ``$KVM_HEADERS`` (a ``make headers_install`` output dir, i.e.
one holding ``include/linux/kvm.h``) when set, else those of the kernel the
harness built (``make test`` always has one); that must be the patched
kernel's, so the KVM_IOFD entries are compared too.  Unset, the probe uses
the system headers, which predate KVM_IOFD: those entries are skipped, not
passed, because nothing has checked them.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness import paths
from harness.errors import HarnessError
from harness.kernel.pipeline import last_built
from harness.settings import from_env
from payload.kvm import ioctl, uapi

HEADERS_ENV = "KVM_HEADERS"
HAS_IOFD_MARKER = "__probe_has_kvm_iofd"

MAINLINE_KEYS = sorted(k for k in uapi.LAYOUT if k not in uapi.IOFD_LAYOUT_KEYS)
IOFD_KEYS = sorted(uapi.IOFD_LAYOUT_KEYS)


@dataclass(frozen=True)
class Probe:
    values: dict[str, int]
    has_iofd: bool
    headers: str  # for messages: where the probe's <linux/kvm.h> came from
    explicit: bool  # KVM_HEADERS was given


def _printf(key: str) -> str:
    return f'\tprintf("%s=%llu\\n", "{key}", (unsigned long long)({key}));'


def _probe_source() -> str:
    lines = [
        "#include <stddef.h>",
        "#include <stdio.h>",
        "#include <linux/kvm.h>",
        "",
        "int main(void)",
        "{",
        *(_printf(k) for k in MAINLINE_KEYS),
        "#ifdef KVM_IOFD",
        f'\tprintf("{HAS_IOFD_MARKER}=1\\n");',
        *(_printf(k) for k in IOFD_KEYS),
        "#endif",
        "\treturn 0;",
        "}",
    ]
    return "\n".join(lines) + "\n"


def _harness_headers() -> Path | None:
    """The headers of the kernel the harness built, when there is one."""
    try:
        return last_built(from_env().with_flavour("default")).headers
    except HarnessError:
        return None


def _include_args() -> tuple[list[str], str, bool]:
    root = os.environ.get(HEADERS_ENV) or _harness_headers()
    if not root:
        return [], "the system headers", False
    include = Path(root) / "include"
    if not (include / "linux" / "kvm.h").is_file():
        pytest.fail(
            f"{HEADERS_ENV}={root} has no include/linux/kvm.h; point it at the "
            "INSTALL_HDR_PATH of `make headers_install` for the patched kernel"
        )
    return [f"-I{include}"], f"{HEADERS_ENV}={root}", True


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> Probe:
    cc = os.environ.get("CC", "cc")
    if shutil.which(cc) is None:
        pytest.skip(f"no C compiler ({cc}) to build the layout probe")
    includes, headers, explicit = _include_args()
    work = tmp_path_factory.mktemp("uapi_probe")
    src, exe = work / "probe.c", work / "probe"
    src.write_text(_probe_source())
    build = subprocess.run(
        [cc, "-Wall", "-Werror", *includes, "-o", str(exe), str(src)],
        capture_output=True,
        text=True,
    )
    if build.returncode != 0:
        pytest.fail(f"layout probe does not compile against {headers}:\n{build.stderr}")
    run = subprocess.run([str(exe)], capture_output=True, text=True, check=True)
    values = {}
    for line in run.stdout.splitlines():
        key, _, value = line.rpartition("=")
        values[key] = int(value)
    has_iofd = values.pop(HAS_IOFD_MARKER, 0) == 1
    return Probe(values, has_iofd, headers, explicit)


def _show(value: int) -> str:
    return f"{value} ({value:#x})"


@pytest.mark.parametrize("key", MAINLINE_KEYS)
def test_mainline_layout_matches_headers(probe: Probe, key: str) -> None:
    assert probe.values[key] == uapi.LAYOUT[key], (
        f"{key}: Python says {_show(uapi.LAYOUT[key])}, "
        f"C with {probe.headers} says {_show(probe.values[key])}"
    )


@pytest.mark.parametrize("key", IOFD_KEYS)
def test_iofd_layout_matches_patched_headers(probe: Probe, key: str) -> None:
    if not probe.has_iofd:
        if probe.explicit:
            pytest.fail(f"{probe.headers} does not define KVM_IOFD: not the patched headers")
        pytest.skip(
            f"requires the patched headers: {probe.headers} lack KVM_IOFD; set "
            f"{HEADERS_ENV} to the patched kernel's `make headers_install` dir"
        )
    assert probe.values[key] == uapi.LAYOUT[key], (
        f"{key}: Python says {_show(uapi.LAYOUT[key])}, "
        f"C with {probe.headers} says {_show(probe.values[key])}"
    )


def test_probe_printed_every_key(probe: Probe) -> None:
    expected = set(MAINLINE_KEYS) | (set(IOFD_KEYS) if probe.has_iofd else set())
    assert set(probe.values) == expected


# --- checks against the patch's stated ABI, no headers needed ---------------------
def _patch_uapi_lines() -> list[str]:
    """The lines the series adds to include/uapi/linux/kvm.h, from kernel-patch/ itself."""
    added: list[str] = []
    for patch in sorted(paths.KERNEL_PATCH_DIR.glob("v*-*.patch")):
        in_uapi = False
        for line in patch.read_text().splitlines():
            if line.startswith("diff --git "):
                in_uapi = line.endswith(" b/include/uapi/linux/kvm.h")
            elif in_uapi and line.startswith("+") and not line.startswith("+++"):
                added.append(line[1:])
    return added


_C_TYPES = {"__u8": 1, "__u16": 2, "__u32": 4, "__s32": 4, "__u64": 8}


def test_kvm_iofd_struct_matches_the_patch() -> None:
    """Every KVM_IOFD number and every member of struct kvm_iofd as the patch text
    declares them (laid out by C's rules here) against the Python bindings, so the
    two cannot drift apart even where no patched header has been built."""
    lines = _patch_uapi_lines()
    assert lines, "no patch in kernel-patch/ adds to include/uapi/linux/kvm.h"
    text = "\n".join(lines)
    defines = dict(re.findall(r"^#define (KVM_\w*IOFD\w*)\s+(.+?)\s*$", text, re.M))
    assert int(defines.pop("KVM_CAP_IOFD")) == uapi.KVM_CAP_IOFD
    ioctl = re.fullmatch(r"_IOW\(KVMIO, (0x[0-9a-f]+), struct kvm_iofd\)", defines.pop("KVM_IOFD"))
    assert ioctl and int(ioctl.group(1), 16) == uapi.KVM_IOFD_NR
    for name, value in defines.items():
        shift = re.fullmatch(r"\(1 << (\d+)\)", value)
        assert shift, f"{name} {value}"
        assert getattr(uapi, name) == 1 << int(shift.group(1)), name
    body = re.search(r"^struct kvm_iofd \{\n(.*?)^\};", text, re.M | re.S)
    assert body, "the patch declares no struct kvm_iofd"
    offset = 0
    for ctype, member, count in re.findall(r"^\s*(__[us]\d+)\s+(\w+)(?:\[(\d+)\])?;", body.group(1), re.M):
        size = _C_TYPES[ctype]
        offset = -(-offset // size) * size              # natural alignment
        assert uapi.LAYOUT[f"offsetof(struct kvm_iofd, {member})"] == offset, member
        offset += size * int(count or 1)
    assert uapi.LAYOUT["sizeof(struct kvm_iofd)"] == offset == 32


def test_structs_the_kernel_reads_have_their_documented_sizes() -> None:
    """Worked out by hand from the mainline header, so a wrong struct is
    caught even where the C probe cannot run."""
    assert uapi.LAYOUT["sizeof(struct kvm_coalesced_mmio_zone)"] == 16
    assert uapi.LAYOUT["sizeof(struct kvm_coalesced_mmio)"] == 24
    assert uapi.LAYOUT["sizeof(struct kvm_pit_config)"] == 64
    assert uapi.KVM_CREATE_PIT2 == 0x4040AE77
    assert uapi.KVM_REGISTER_COALESCED_MMIO == 0x4010AE67


def test_kvm_run_exit_union_is_256_bytes() -> None:
    start = uapi.LAYOUT["offsetof(struct kvm_run, io)"]
    end = uapi.LAYOUT["offsetof(struct kvm_run, kvm_valid_regs)"]
    assert end - start == 256


# --- ioctl number encoding --------------------------------------------------------
@pytest.mark.parametrize(
    ("number", "expected"),
    [
        (ioctl.IO(0xAE, 0x80), 0xAE80),  # KVM_RUN
        (ioctl.IOW(0xAE, 0x46, 32), 0x4020AE46),  # KVM_SET_USER_MEMORY_REGION
        (ioctl.IOR(0xAE, 0x81, 144), 0x8090AE81),  # KVM_GET_REGS
        (ioctl.IOWR(0xAE, 0x05, 8), 0xC008AE05),  # KVM_GET_SUPPORTED_CPUID
    ],
)
def test_ioctl_encoding(number: int, expected: int) -> None:
    assert number == expected


def test_ioctl_takes_ctypes_types() -> None:
    assert ioctl.IOW(0xAE, 0xDB, uapi.KvmIofd) == ioctl.IOW(0xAE, 0xDB, 32)


@pytest.mark.parametrize(
    ("args", "field"),
    [((4, 0xAE, 0), "dir"), ((0, 0x100, 0), "type"), ((0, 0xAE, 0x100), "nr")],
)
def test_ioctl_rejects_fields_that_do_not_fit(args: tuple[int, int, int], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        ioctl._IOC(*args, 0)


def test_ioctl_rejects_oversized_argument() -> None:
    with pytest.raises(ValueError, match="size"):
        ioctl.IOW(0xAE, 0, 1 << 14)
