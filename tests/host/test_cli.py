"""Bad input gets one line of what is wrong and one of what to do, no traceback."""

import os
import subprocess
import sys
from pathlib import Path

from harness import paths


def harness(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=paths.REPO,
                          capture_output=True, text=True, env={**os.environ, **env},
                          stdin=subprocess.DEVNULL, timeout=120)


def assert_clear_error(r: subprocess.CompletedProcess[str], what: str) -> None:
    assert r.returncode == 2, r
    assert "Traceback" not in r.stderr, r.stderr
    assert r.stderr.startswith("error: "), r.stderr
    assert what in r.stderr


def test_no_kernel_built_yet(tmp_path: Path) -> None:
    r = harness("run", "--no-build", "--", "true", env={"KVM_IOFD_CACHE": str(tmp_path)})
    assert_clear_error(r, "no default kernel has been built yet")
    assert "make build" in r.stderr


def test_kernel_src_not_a_kernel_tree(tmp_path: Path) -> None:
    r = harness("gates", "--no-build", env={"KVM_IOFD_CACHE": str(tmp_path / "cache"),
                                            "KERNEL_SRC": str(tmp_path)})
    assert_clear_error(r, "is not a Linux kernel tree")


def test_unknown_accel_override(tmp_path: Path) -> None:
    r = harness("smoke", "--no-build", env={"KVM_IOFD_CACHE": str(tmp_path),
                                            "KVM_IOFD_ACCEL": "hvf"})
    # The missing kernel is found first; either way a one-line error.
    assert r.returncode == 2 and "Traceback" not in r.stderr


def test_no_copy_to_send_without_a_git_identity(tmp_path: Path) -> None:
    src = tmp_path / "linux"
    for f in ("Makefile", "virt/kvm/kvm_main.c", "arch/x86/Kconfig"):
        (src / f).parent.mkdir(parents=True, exist_ok=True)
        (src / f).write_text("\n")
    git = ["git", "-C", str(src), "-c", "user.name=x", "-c", "user.email=x@example.org"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "base"], check=True)
    (tmp_path / "gitconfig").write_text("")
    r = harness("patches", "--send", env={"KVM_IOFD_CACHE": str(tmp_path / "cache"),
                                          "KERNEL_SRC": str(src), "GIT_CONFIG_NOSYSTEM": "1",
                                          "GIT_CONFIG_GLOBAL": str(tmp_path / "gitconfig")})
    assert_clear_error(r, "a sendable series needs your git user.name and user.email")
    assert "git config --global user.name" in r.stderr
