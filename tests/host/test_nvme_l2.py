"""The L1 runner's side of the L2 console protocol, against a fake QEMU.

The fake is a Python script that speaks as harness/nvme/l2-init does (its
markers, then waiting for each answer), so what is tested is exactly what
payload.nvme.l2 relies on: the counting window opens and closes while the
guest waits, the fio JSON lands on its job, and every failure of the guest
(an error marker, silence, an early exit, a missing queue depth) is an
L2Error that carries the console's tail.
"""

from __future__ import annotations

import json
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, ClassVar

import pytest

from payload.nvme import configs, l2, runner

FIO = {"jobs": [{"error": 0, "read": {"total_ios": 100, "iops": 50.0,
                                      "clat_ns": {"percentile": {"50.000000": 1000,
                                                                 "99.000000": 9000}}},
                 "write": {"total_ios": 0, "iops": 0.0}}]}


def fake_qemu(tmp_path: Path, body: str) -> Path:
    """An executable that ignores QEMU's arguments and runs *body* (Python,
    with say() printing a console line and wait() reading an answer)."""
    script = tmp_path / "qemu"
    script.write_text(f"#!{sys.executable}\n" + textwrap.dedent("""\
        import json, sys, time
        def say(s):
            sys.stdout.write(s + "\\r\\n"); sys.stdout.flush()
        def wait():
            line = sys.stdin.readline()
            assert line == "go\\n", line
            with open(sys.argv[0] + ".acks", "a") as f:
                f.write(str(time.monotonic_ns()) + "\\n")
        """) + textwrap.dedent(body))
    script.chmod(0o755)
    Path(f"{script}.fio").write_text(json.dumps(FIO))
    return script


GOOD = """\
    FIO_JSON = json.loads(open(sys.argv[0] + ".fio").read())
    say("[    0.1] booting")
    for qd in sys.argv[sys.argv.index("-append") + 1].split("iofd.qd=")[1].split()[0].split(","):
        say(f"@@IOFD-START qd={qd}")
        wait()
        say("fio runs")
        say(f"@@IOFD-END qd={qd} rc=0")
        wait()
        say("@@IOFD-JSON-BEGIN")
        say(json.dumps(FIO_JSON, indent=1))
        say("@@IOFD-JSON-END")
    say("@@IOFD-DONE")
"""


class FakeWindow:
    opened: ClassVar[list[str]] = []
    times: ClassVar[list[int]] = []

    def start(self) -> None:
        FakeWindow.opened.append("start")
        FakeWindow.times.append(time.monotonic_ns())

    def stop(self) -> dict[str, Any]:
        FakeWindow.opened.append("stop")
        FakeWindow.times.append(time.monotonic_ns())
        return {"stats": {"exits": 7}, "userspace_exits": 3}


def _run(tmp_path: Path, body: str, qds: list[int], timeout: float = 20.0) -> list[l2.Job]:
    FakeWindow.opened, FakeWindow.times = [], []
    boot = l2.Boot(fake_qemu(tmp_path, body), tmp_path / "bz", tmp_path / "initrd", "null")
    return l2.run(boot, configs.BY_NAME["P1"], "read", qds, 100, "16M", FakeWindow,
                  tmp_path / "console.log", timeout)


def test_each_queue_depth_gets_a_window_and_its_fio_output(tmp_path: Path) -> None:
    jobs = _run(tmp_path, GOOD, [1, 4, 16])
    assert [j.qd for j in jobs] == [1, 4, 16]
    assert FakeWindow.opened == ["start", "stop"] * 3
    assert all(j.rc == 0 and j.counts["stats"]["exits"] == 7 for j in jobs)
    assert all(runner.fio_summary(j.fio)["ios"] == 100 for j in jobs)
    assert runner.fio_summary(jobs[0].fio)["clat_ns"] == {"p50": 1000, "p99": 9000}
    # Two answers per job, each sent only after the window opened or closed:
    # the guest stood still while the counters were read.
    acks = [int(t) for t in (tmp_path / "qemu.acks").read_text().split()]
    assert len(acks) == 6
    assert all(w < a for w, a in zip(FakeWindow.times, acks, strict=True))
    assert all(a < w for a, w in zip(acks, FakeWindow.times[1:], strict=False))
    assert "@@IOFD-DONE" in (tmp_path / "console.log").read_text()


def test_the_command_line_names_the_device_options_and_firmware(tmp_path: Path) -> None:
    boot = l2.Boot(Path("/q"), Path("/bz"), Path("/i"), "/dev/shm/img")
    cmd = boot.command(configs.BY_NAME["P1"], "verify", [16], 10, "4M")
    assert "nvme,serial=iofd0,drive=d0,x-dbbuf=off,x-iofd=on" in cmd
    assert "file=/dev/shm/img,format=raw,if=none,id=d0" in cmd
    assert "iofd.mode=verify iofd.qd=16 iofd.ios=10 iofd.size=4M" in cmd[cmd.index("-append") + 1]
    s0 = l2.Boot(Path("/q"), Path("/bz"), Path("/i"), "null").command(
        configs.BY_NAME["S0"], "read", [1], 10, "4M")
    assert "nvme,serial=iofd0,drive=d0" in s0 and "driver=null-co,size=1G,if=none,id=d0" in s0


@pytest.mark.parametrize("body, message", [
    ('say("@@IOFD-ERROR no /dev/nvme0n1")\nsys.stdin.readline()', "no /dev/nvme0n1"),
    ('say("hello")\nsys.exit(3)', "QEMU exited with status 3"),
    ('say("hello")\ntime.sleep(30)', "said nothing for too long"),
    ('say("@@IOFD-DONE")', "ran queue depths [], not [1]"),
    ('say("@@IOFD-START qd=1")\nwait()\nsay("@@IOFD-ERROR fio crashed")\ntime.sleep(5)',
     "fio crashed"),
])
def test_a_failing_guest_is_an_error_with_the_console_tail(tmp_path: Path, body: str,
                                                           message: str) -> None:
    with pytest.raises(l2.L2Error) as e:
        _run(tmp_path, body, [1], timeout=3.0)
    assert message in str(e.value)
    assert "last console lines" in str(e.value)


def test_unknown_configuration_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown NVMe configuration 'P9'"):
        configs.lookup("P1,P9")
    assert [c.name for c in configs.lookup(" S0 , P1 ")] == ["S0", "P1"]


def test_fio_summary_of_nothing_is_empty() -> None:
    assert runner.fio_summary(None)["ios"] == 0
    assert json.loads(json.dumps(runner.fio_summary(FIO)))["iops"] == 50.0
