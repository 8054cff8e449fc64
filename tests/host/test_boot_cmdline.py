"""The vng command line: one vCPU, TCG flag, shared dirs, panic handling."""

from pathlib import Path

from harness.vm.accel import Decision
from harness.vm.boot import BootOptions, options_for, vng_command


def test_tcg_one_vcpu() -> None:
    cmd = vng_command(Path("/k"), BootOptions(accel=Decision("tcg", "test"),
                                              rwdirs=[Path("/r")]))
    assert cmd[:3] == ["vng", "--run", "/k"]
    assert cmd[cmd.index("--cpus") + 1] == "1"
    assert "--disable-kvm" in cmd
    assert "--rwdir=/r" in cmd
    assert "panic=-1" in cmd


def test_kvm_and_exec() -> None:
    cmd = vng_command(Path("/k"), BootOptions(accel=Decision("kvm", "test")), exec_cmd="true")
    assert "--disable-kvm" not in cmd
    assert cmd[-2:] == ["--exec", "true"]


def test_debug_kernel_gets_longer_to_boot() -> None:
    tcg = Decision("tcg", "test")
    assert options_for("debug", tcg, []).boot_timeout > options_for("default", tcg, []).boot_timeout


def test_interactive_boot_keeps_the_users_shell() -> None:
    """Only the harness's session swaps the console shell (python -m harness shell doesn't)."""
    assert "--shell" not in vng_command(Path("/k"), BootOptions(accel=Decision("tcg", "test")))
    cmd = vng_command(Path("/k"), BootOptions(accel=Decision("tcg", "test"), shell=Path("/s")))
    assert cmd[cmd.index("--shell") + 1] == "/s"
