"""Thin git wrapper: every call names the tree it runs in."""

import os
import subprocess
from pathlib import Path

from harness.errors import HarnessError

# A fixed identity and date make the pristine base commit reproducible.
IDENTITY = {
    "GIT_AUTHOR_NAME": "kvm-iofd",
    "GIT_AUTHOR_EMAIL": "kvm-iofd@localhost",
    "GIT_COMMITTER_NAME": "kvm-iofd",
    "GIT_COMMITTER_EMAIL": "kvm-iofd@localhost",
}


def git(tree: Path, *args: str, check: bool = True, env: dict[str, str] | None = None,
        ) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(
        ["git", "-C", str(tree), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **IDENTITY, **(env or {})},
        stdin=subprocess.DEVNULL,
    )
    if check and r.returncode != 0:
        lines = (r.stderr or r.stdout).strip().splitlines()
        raise HarnessError(f"git {' '.join(args[:2])} failed in {tree}",
                           lines[-1] if lines else "git printed nothing")
    return r


def out(tree: Path, *args: str) -> str:
    return git(tree, *args).stdout.strip()


def is_dirty(tree: Path) -> list[str]:
    """Tracked changes and untracked, not-ignored files, as porcelain lines."""
    return git(tree, "status", "--porcelain").stdout.splitlines()
