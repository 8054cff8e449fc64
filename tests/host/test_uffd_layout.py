"""payload.kvm.uffd against what a C compiler sees in <linux/userfaultfd.h>.

The userfaultfd ABI is older than anything the payload runs on and does
not change with the series, so the system headers are the reference.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from payload.kvm import uffd


def _probe(tmp_path: Path, layout: dict[str, int]) -> dict[str, int]:
    cc = os.environ.get("CC", "cc")
    if shutil.which(cc) is None:
        pytest.skip(f"no C compiler ({cc}) to build the layout probe")
    lines = ["#include <stddef.h>", "#include <stdio.h>", "#include <sys/ioctl.h>",
             "#include <sys/syscall.h>", "#include <linux/userfaultfd.h>", "int main(void)", "{",
             *(f'\tprintf("%s=%llu\\n", "{k}", (unsigned long long)({k}));' for k in layout),
             "\treturn 0;", "}"]
    src, exe = tmp_path / "probe.c", tmp_path / "probe"
    src.write_text("\n".join(lines) + "\n")
    built = subprocess.run([cc, "-Wall", "-Werror", "-o", str(exe), str(src)],
                           capture_output=True, text=True)
    if built.returncode:
        pytest.fail(f"the userfaultfd probe does not compile:\n{built.stderr}")
    out = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout
    return {k: int(v) for k, _, v in (line.rpartition("=") for line in out.splitlines())}


def test_uffd_layout_matches_the_headers(tmp_path: Path) -> None:
    seen = _probe(tmp_path, uffd.LAYOUT)
    wrong = {k: (v, seen[k]) for k, v in uffd.LAYOUT.items() if seen[k] != v}
    assert not wrong, f"Python vs C: {wrong}"


def test_the_probe_catches_a_wrong_number(tmp_path: Path) -> None:
    """The comparison can fail: a copy request with the wrong size differs."""
    layout = {"UFFDIO_COPY": uffd.UFFDIO_COPY}
    seen = _probe(tmp_path, layout)
    assert seen["UFFDIO_COPY"] == uffd.UFFDIO_COPY
    assert seen["UFFDIO_COPY"] != uffd.IOWR(uffd.UFFDIO, 0x03, 32)
