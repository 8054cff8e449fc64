"""The QEMU tree ``qemu-patch/`` is applied to.

By default Debian 12's ``qemu`` source package, the source of the
installed ``qemu-system-x86`` (so the patched build and Debian's binary
differ by the series alone), fetched with ``apt-get source`` through a
private apt configuration (:mod:`harness.apt`) and made a git repository
whose first commit is the pristine source with Debian's patches applied.
With ``QEMU_SRC`` it is your own clean git checkout instead, used through a
``git worktree`` in the cache as ``KERNEL_SRC`` is.  Either way the series
goes on a branch ``kvm-iofd`` with ``git am`` (:func:`harness.kernel.series.apply`).
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from harness import paths
from harness.apt import BOOKWORM_SOURCES, PrivateApt
from harness.errors import HarnessError
from harness.kernel import git, series
from harness.kernel.source import KernelTree
from harness.progress import phase

PACKAGE = "qemu"
VERSION = "1:7.2+dfsg-7+deb12u18"
"""The source of Debian 12's ``qemu-system-x86`` 1:7.2+dfsg-7+deb12u18+b3."""
TREE = "qemu-7.2"
BASE_BRANCH = "base"
BASE_DATE = {"GIT_AUTHOR_DATE": "2000-01-01T00:00:00Z", "GIT_COMMITTER_DATE": "2000-01-01T00:00:00Z"}
SERIES_DIR = paths.REPO / "qemu-patch"


def _debian_repo(cache: Path) -> Path:
    repo = cache / TREE
    if (repo / ".git").exists() and git.git(repo, "rev-parse", "--verify", "-q", BASE_BRANCH,
                                            check=False).returncode == 0:
        return repo
    apt = PrivateApt(cache / "apt-bookworm", BOOKWORM_SOURCES)
    scratch = cache / "qemu-source"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    with phase(f"fetching Debian's {PACKAGE} {VERSION} source (private apt configuration)"):
        top = apt.source(f"{PACKAGE}={VERSION}", scratch)
    with phase(f"making {top.name} a git repository"):
        git.git(top, "init", "-q", "-b", BASE_BRANCH)
        git.git(top, "add", "-f", "-A")
        git.git(top, "commit", "-q", "-m", f"Debian {PACKAGE} {VERSION}", env=BASE_DATE)
        shutil.rmtree(repo, ignore_errors=True)
        top.rename(repo)
    shutil.rmtree(scratch, ignore_errors=True)
    return repo


def _user_repo(src: Path) -> Path:
    repo = src.resolve()
    if not (repo / ".git").exists():
        raise HarnessError(f"QEMU_SRC={src} is not a git checkout",
                           "point QEMU_SRC at a clone of QEMU that qemu-patch/ applies to")
    dirty = git.is_dirty(repo)
    if dirty:
        raise HarnessError(f"QEMU_SRC={src} has uncommitted changes ({dirty[0].strip()}, ...)",
                           "commit or stash them first; the harness never builds on top of them")
    return repo


def tree(cache: Path, qemu_src: Path | None) -> KernelTree:
    """The worktree the series is applied and built in (created if needed)."""
    if qemu_src is None:
        repo = _debian_repo(cache)
        base = git.out(repo, "rev-parse", BASE_BRANCH)
        path, name = repo, "qemu-debian"
    else:
        repo = _user_repo(qemu_src)
        base = git.out(repo, "rev-parse", "HEAD")
        tag = hashlib.sha256(str(repo).encode()).hexdigest()[:10]
        path, name = cache / f"qemu-user-{tag}", f"qemu-user-{tag}"
        if not (path / ".git").exists():
            git.git(repo, "worktree", "prune")
            git.git(repo, "worktree", "add", "-q", "--detach", str(path), base)
    return KernelTree(path=path, repo=repo, base=base, branch="kvm-iofd", name=name)


def prepared(cache: Path, qemu_src: Path | None) -> tuple[KernelTree, series.Series]:
    """The tree with ``qemu-patch/`` applied, and the series."""
    s = series.load(SERIES_DIR)
    t = tree(cache, qemu_src)
    series.apply(cache, t, s)
    return t, s
