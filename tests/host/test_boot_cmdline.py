"""The vng command line: one vCPU, TCG flag, shared dirs, panic handling."""

from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.settings import from_env
from harness.vm.accel import Decision
from harness.vm.boot import ICOUNT, BootOptions, counting, options_for, vng_command

C = Path("/c")


def test_tcg_one_vcpu() -> None:
    cmd = vng_command(Path("/k"), BootOptions(accel=Decision("tcg", "test"), cache=C,
                                              rwdirs=[Path("/r")]))
    assert cmd[:3] == ["vng", "--run", "/k"]
    assert cmd[cmd.index("--cpus") + 1] == "1"
    assert "--disable-kvm" in cmd
    assert "--rwdir=/r" in cmd
    assert "panic=-1" in cmd


def test_icount_goes_to_qemu_and_allows_two_vcpus() -> None:
    tcg = BootOptions(accel=Decision("tcg", "test"), cache=C)
    plain = vng_command(Path("/k"), tcg)
    assert "--qemu-opts=-no-reboot" in plain and not any(ICOUNT in a for a in plain)
    cmd = vng_command(Path("/k"), counting(BootOptions(accel=Decision("tcg", "test"), cache=C,
                                                       cpus=2)))
    assert f"--qemu-opts=-no-reboot {ICOUNT}" in cmd
    assert cmd[cmd.index("--cpus") + 1] == "2"


@pytest.mark.parametrize(("accel", "cpus", "icount", "why"), [
    ("kvm", 1, True, "icount needs TCG"),
    ("tcg", 2, False, "multi-threaded TCG"),
    ("tcg", 0, True, "0 vCPUs"),
])
def test_what_qemu_cannot_run_is_refused(accel: str, cpus: int, icount: bool, why: str) -> None:
    with pytest.raises(HarnessError, match=why):
        vng_command(Path("/k"), BootOptions(accel=Decision(accel, "test"), cache=C, cpus=cpus,
                                            icount=icount))


def test_kvm_and_exec() -> None:
    cmd = vng_command(Path("/k"), BootOptions(accel=Decision("kvm", "test"), cache=C), exec_cmd="true")
    assert "--disable-kvm" not in cmd
    assert cmd[-2:] == ["--exec", "true"]


def test_options_follow_the_flavour() -> None:
    tcg = Decision("tcg", "test")
    cfg = from_env({"KVM_IOFD_CACHE": "/c"})
    normal, debug = options_for(cfg, tcg, []), options_for(cfg.with_flavour("debug"), tcg, [])
    assert debug.boot_timeout > normal.boot_timeout
    assert (debug.memory, normal.memory) == ("4G", "2G")
    assert "panic_on_warn=1" in debug.append and not normal.append
    assert normal.cache == Path("/c")


def test_interactive_boot_keeps_the_users_shell() -> None:
    """Only the harness's session swaps the console shell (python -m harness shell doesn't)."""
    assert "--shell" not in vng_command(Path("/k"), BootOptions(accel=Decision("tcg", "test"), cache=C))
    cmd = vng_command(Path("/k"), BootOptions(accel=Decision("tcg", "test"), cache=C, shell=Path("/s")))
    assert cmd[cmd.index("--shell") + 1] == "/s"


def test_a_checkout_and_cache_the_guest_init_hides_are_shared() -> None:
    """virtme-ng's init mounts tmpfs over /var/tmp and /var/cache, then the shares."""
    opts = BootOptions(accel=Decision("tcg", "test"), cache=Path("/var/cache/kvm-iofd"),
                       rwdirs=[Path("/var/tmp/clone/results"), Path("/var/cache/kvm-iofd/xfer/x"),
                               Path("/work/elsewhere")],
                       visible=[Path("/var/tmp/clone"), Path("/var/cache/kvm-iofd")])
    cmd = vng_command(Path("/k"), opts)
    shared = [a.removeprefix("--rwdir=") for a in cmd if a.startswith("--rwdir=")]
    # The hidden ones first; nothing mounted inside them again (it would be covered).
    assert shared == ["/var/tmp/clone", "/var/cache/kvm-iofd", "/work/elsewhere"]


def test_a_visible_checkout_is_not_shared_again() -> None:
    opts = BootOptions(accel=Decision("tcg", "test"), cache=Path("/root/.cache/kvm-iofd"),
                       rwdirs=[Path("/work/main/results")],
                       visible=[Path("/work/main"), Path("/root/.cache/kvm-iofd")])
    assert [a for a in vng_command(Path("/k"), opts) if a.startswith("--rwdir")] == \
        ["--rwdir=/work/main/results"]


def test_a_hidden_path_virtme_cannot_share_is_refused_naming_why() -> None:
    opts = BootOptions(accel=Decision("tcg", "test"), cache=C,
                       visible=[Path("/var/tmp/my clone")])
    with pytest.raises(HarnessError, match=r"/var/tmp/my clone.*under /var/tmp, which the VM's "
                                           r"init hides"):
        vng_command(Path("/k"), opts)
