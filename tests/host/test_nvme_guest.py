"""The L2 guest's pieces on the host: static-binary check, initramfs archive,
and ``l2-init``'s parsing (its plan mode).

None of these boots anything: the archive is read back with the real
``cpio``, and ``l2-init`` runs under the host's ``sh`` with IOFD_INIT_PLAN=1.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.nvme import guest

BUSYBOX = Path("/bin/busybox")
needs_busybox = pytest.mark.skipif(not guest.is_static(BUSYBOX),
                                   reason="busybox-static is not installed (make deps installs it)")


def test_is_static_tells_static_from_dynamic(tmp_path: Path) -> None:
    dynamic = Path(shutil.which("ls") or "/bin/ls")
    assert not guest.is_static(dynamic), "ls is dynamically linked on Debian"
    text = tmp_path / "script"
    text.write_text("#!/bin/sh\n")
    assert not guest.is_static(text)
    assert not guest.is_static(tmp_path / "missing")


@needs_busybox
def test_is_static_accepts_busybox_static() -> None:
    assert guest.is_static(BUSYBOX)


def _listing(archive: bytes, tmp_path: Path) -> dict[str, str]:
    """``cpio -itv`` of *archive*: name -> its ls-style line."""
    if not shutil.which("cpio"):
        pytest.skip("cpio is not installed (make deps installs it)")
    names = subprocess.run(["cpio", "-it", "--quiet"], input=archive, capture_output=True,
                           check=True).stdout.decode().splitlines()
    long = subprocess.run(["cpio", "-itv", "--quiet"], input=archive, capture_output=True,
                          check=True).stdout.decode().splitlines()
    return dict(zip(names, long, strict=True))


def test_cpio_round_trips_through_real_cpio(tmp_path: Path) -> None:
    data = guest.cpio([("bin", guest.DIR, b"", (0, 0)),
                       ("bin/hello", guest.FILE, b"hello\n", (0, 0)),
                       ("bin/sh", guest.LINK, b"busybox", (0, 0)),
                       ("dev", guest.DIR, b"", (0, 0)),
                       ("dev/console", guest.CHR, b"", (5, 1))])
    listing = _listing(data, tmp_path)
    assert set(listing) == {"bin", "bin/hello", "bin/sh", "dev", "dev/console"}
    assert listing["bin/sh"].startswith("l") and listing["bin/sh"].endswith("-> busybox")
    assert listing["dev/console"].startswith("c") and "5," in listing["dev/console"]
    assert listing["bin/hello"].startswith("-rwxr-xr-x")
    # The same inputs give the same bytes (names, owners and times are fixed).
    assert data == guest.cpio([("bin", guest.DIR, b"", (0, 0)),
                               ("bin/hello", guest.FILE, b"hello\n", (0, 0)),
                               ("bin/sh", guest.LINK, b"busybox", (0, 0)),
                               ("dev", guest.DIR, b"", (0, 0)),
                               ("dev/console", guest.CHR, b"", (5, 1))])
    extract = tmp_path / "x"
    extract.mkdir()
    subprocess.run(["cpio", "-idm", "--quiet", "bin/hello"], input=data, cwd=extract,
                   check=True)
    assert (extract / "bin" / "hello").read_bytes() == b"hello\n"


@needs_busybox
def test_archive_holds_init_busybox_and_fio(tmp_path: Path) -> None:
    fio = tmp_path / "fio"
    shutil.copy(BUSYBOX, fio)  # any static binary stands in for fio here
    listing = _listing(guest.archive(fio), tmp_path)
    assert {"init", "bin/busybox", "bin/fio", "bin/sh", "dev/console", "proc", "sys"} <= set(
        listing)
    assert listing["init"].startswith("-rwx")


@needs_busybox
def test_archive_refuses_a_dynamic_fio(tmp_path: Path) -> None:
    with pytest.raises(HarnessError, match="not a static"):
        guest.archive(Path(shutil.which("ls") or "/bin/ls"))


def _plan(cmdline: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ["PATH"], "IOFD_INIT_PLAN": "1", "IOFD_INIT_CMDLINE": cmdline}
    return subprocess.run(["sh", str(guest.INIT)], env=env, capture_output=True, text=True,
                          timeout=30)


def test_init_plans_one_fio_job_per_queue_depth() -> None:
    r = _plan("console=ttyS0 iofd.mode=read iofd.qd=1,4,16 iofd.ios=300 quiet")
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "mode=read qds=1 4 16 ios=300 size=16M disk=/dev/nvme0n1"
    jobs = lines[1:]
    assert [j.split("--iodepth=")[1].split()[0] for j in jobs] == ["1", "4", "16"]
    for j in jobs:
        assert "--rw=randread" in j and "--number_ios=300" in j and "--direct=1" in j
        assert "--ioengine=io_uring" in j and "--filename=/dev/nvme0n1" in j


def test_init_plans_a_verify_job() -> None:
    r = _plan("iofd.mode=verify iofd.qd=16 iofd.size=4M")
    assert r.returncode == 0, r.stdout + r.stderr
    (job,) = r.stdout.splitlines()[1:]
    assert "--verify=crc32c" in job and "--do_verify=1" in job and "--size=4M" in job
    assert "--verify_fatal=1" in job and "--iodepth=16" in job


@pytest.mark.parametrize(("cmdline", "says"), [
    ("iofd.qd=1 iofd.ios=1", "no iofd.mode= on the kernel command line"),
    ("iofd.mode=write iofd.qd=1 iofd.ios=1", "unknown iofd.mode=write"),
    ("iofd.mode=read iofd.ios=1", "no iofd.qd= on the kernel command line"),
    ("iofd.mode=read iofd.qd=1,x iofd.ios=1", "iofd.qd=x is not a number"),
    ("iofd.mode=read iofd.qd=0 iofd.ios=1", "iofd.qd=0 is not positive"),
    ("iofd.mode=read iofd.qd=1", "iofd.ios= is not a number"),
    ("iofd.mode=verify iofd.qd=1 iofd.size=big", "iofd.size=big is not a size"),
])
def test_init_refuses_bad_parameters_with_an_error_marker(cmdline: str, says: str) -> None:
    r = _plan(cmdline)
    assert r.returncode == 1
    assert r.stdout.strip() == f"@@IOFD-ERROR {says}"


def test_init_refuses_to_run_outside_the_guest(tmp_path: Path) -> None:
    """Not PID 1 and not plan mode: it must stop before it touches /bin."""
    env = {"PATH": os.environ["PATH"]}
    r = subprocess.run(["sh", str(guest.INIT)], env=env, capture_output=True, text=True,
                       cwd=tmp_path, timeout=30)
    assert r.returncode == 2
    assert "not PID 1" in r.stderr
    assert r.stdout == ""
