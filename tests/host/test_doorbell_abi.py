"""The Python doorbell binding must match the C uAPI header bit for bit.

Compiles a small C program against doorbell-module/doorbell.h that prints
every ioctl number and the argument struct's layout, and compares the output
with payload.doorbell.ABI.  Runs on the host; no module or VM needed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from payload import doorbell

REPO = Path(__file__).resolve().parents[2]
HEADER = REPO / "doorbell-module" / "doorbell.h"

# Every `#define DOORBELL_X _IO...(...)` in the header is an ioctl.
_IOCTL_DEFINE = re.compile(r"^#define\s+(DOORBELL_\w+)\s+_IO[RW]{0,2}\(", re.M)

_LAYOUT = (
    "DOORBELL_IOCTL_TYPE",
    "sizeof(struct doorbell_eventfd)",
    "offsetof(struct doorbell_eventfd, fd)",
    "offsetof(struct doorbell_eventfd, flags)",
)


def _header_ioctls() -> list[str]:
    return _IOCTL_DEFINE.findall(HEADER.read_text())


def _c_program(names: list[str]) -> str:
    lines = [
        "#include <stddef.h>",
        "#include <stdio.h>",
        '#include "doorbell.h"',
        "",
        "int main(void)",
        "{",
    ]
    for name in names:
        lines.append(f'\tprintf("%s=0x%lx\\n", "{name}", (unsigned long)({name}));')
    lines += ["\treturn 0;", "}", ""]
    return "\n".join(lines)


@pytest.fixture(scope="module")
def c_abi(tmp_path_factory: pytest.TempPathFactory) -> dict[str, int]:
    """The ABI as the C compiler sees it, from the header itself."""
    cc = shutil.which(os.environ.get("CC", "cc"))
    if cc is None:
        pytest.skip("no C compiler (cc or $CC) to compile doorbell.h")
    tmp = tmp_path_factory.mktemp("doorbell_abi")
    src = tmp / "abi.c"
    exe = tmp / "abi"
    src.write_text(_c_program(_header_ioctls() + list(_LAYOUT)))
    # Strict flags: the header must be clean, self-contained userspace C.
    subprocess.run(
        [
            cc,
            "-std=c99",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-pedantic",
            f"-I{HEADER.parent}",
            "-o",
            str(exe),
            str(src),
        ],
        check=True,
    )
    out = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout
    return {key: int(value, 16) for key, value in (line.split("=", 1) for line in out.splitlines())}


def test_header_declares_ioctls() -> None:
    """Guard the regex: if it finds nothing, the comparison proves nothing."""
    assert len(_header_ioctls()) >= 5


def test_python_knows_every_header_ioctl() -> None:
    header = set(_header_ioctls())
    python = {k for k in doorbell.ABI if k not in _LAYOUT}
    assert header == python


def test_numbers_and_layout_match(c_abi: dict[str, int]) -> None:
    mismatched = {
        name: (hex(c_abi.get(name, -1)), hex(doorbell.ABI.get(name, -1)))
        for name in set(c_abi) | set(doorbell.ABI)
        if c_abi.get(name) != doorbell.ABI.get(name)
    }
    assert not mismatched, f"C header vs payload.doorbell: {mismatched}"


def test_module_constants_agree_with_abi_table() -> None:
    """The ABI table must describe the constants the binding really uses."""
    for name, value in doorbell.ABI.items():
        if name.startswith("DOORBELL_"):
            assert getattr(doorbell, name) == value, name
