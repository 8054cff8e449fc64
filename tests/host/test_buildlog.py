"""harness.buildlog: a failed build command is shown by its first error line."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import buildlog
from harness.errors import HarnessError


def test_a_failure_quotes_the_first_error_and_names_the_log(tmp_path: Path) -> None:
    log = tmp_path / "build.log"
    log.write_text("")
    script = ("echo 'Found ninja-1.11.1'; echo 'meson.build:1: ERROR: Dependency glib-2.0 not found'"
              "; exit 1")
    with pytest.raises(HarnessError, match=r"QEMU's configure failed \(exit 1\): "
                                           r"meson.build:1: ERROR: Dependency glib-2.0") as e:
        buildlog.run(["sh", "-c", script], tmp_path, log, "QEMU's configure")
    assert str(log) in e.value.hint


def test_commands_append_to_the_log(tmp_path: Path) -> None:
    log = tmp_path / "build.log"
    log.write_text("")
    buildlog.run(["echo", "one"], tmp_path, log, "first")
    buildlog.run(["echo", "two"], tmp_path, log, "second")
    assert log.read_text() == "$ echo one\none\n$ echo two\ntwo\n"
