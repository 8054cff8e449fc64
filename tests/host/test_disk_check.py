"""The build refuses to start on a nearly full disk, and says how much it needs."""

import shutil
from pathlib import Path
from typing import NamedTuple

import pytest

from harness import buildlog
from harness.errors import HarnessError
from harness.kernel import build


class Usage(NamedTuple):
    total: int
    used: int
    free: int


def test_low_disk_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(shutil, "disk_usage", lambda p: Usage(1 << 40, 0, 300 << 20))
    with pytest.raises(HarnessError, match="only 300 MiB free") as e:
        build.check_disk(tmp_path, first_build=True)
    assert "KVM_IOFD_CACHE" in (e.value.hint or "")


def test_incremental_needs_less(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(shutil, "disk_usage", lambda p: Usage(1 << 40, 0, 2 << 30))
    build.check_disk(tmp_path, first_build=False)
    with pytest.raises(HarnessError):
        build.check_disk(tmp_path, first_build=True)


def test_first_error_is_the_compiler_error(tmp_path: Path) -> None:
    log = tmp_path / "build.log"
    log.write_text("  CC virt/kvm/eventfd.o\nvirt/kvm/eventfd.c:12:3: error: expected ';'\n"
                   "make[4]: *** [scripts/Makefile.build:229: virt/kvm/eventfd.o] Error 1\n")
    assert buildlog.first_error(log) == "virt/kvm/eventfd.c:12:3: error: expected ';'"
