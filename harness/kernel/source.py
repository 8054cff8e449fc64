"""Kernel source trees the harness builds in.

By default that is Debian's ``linux-source-7.3`` (:mod:`harness.kernel.debian`
fetches it), unpacked into the cache
and turned into a git repository whose first commit is the pristine base.
With ``KERNEL_SRC`` it is the user's own git tree instead; the harness then
works in a ``git worktree`` of it inside the cache, on a branch of its own,
so the user's checkout and uncommitted work are never touched.

Each flavour (the normal kernel, the debug kernel) gets its own worktree,
so neither build ever invalidates the other.
"""

import hashlib
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from harness.errors import HarnessError
from harness.kernel import debian, git
from harness.progress import phase

BASE_BRANCH = "base"
BASE_MESSAGE = f"Debian {debian.PACKAGE} {debian.VERSION}"
BASE_DATE = {"GIT_AUTHOR_DATE": "2000-01-01T00:00:00Z", "GIT_COMMITTER_DATE": "2000-01-01T00:00:00Z"}


@dataclass(frozen=True)
class KernelTree:
    """A worktree the harness owns: the series is applied and built here."""

    path: Path          # where make runs
    repo: Path          # the repository the worktree belongs to
    base: str           # commit the series is applied on
    branch: str         # the harness's working branch
    name: str           # short name for state files and messages


def _debian_repo(cache: Path) -> Path:
    repo = cache / debian.TREE
    if (repo / ".git").exists() and git.git(repo, "rev-parse", "--verify", "-q", BASE_BRANCH,
                                            check=False).returncode == 0:
        return repo
    cache.mkdir(parents=True, exist_ok=True)
    tarball = debian.tarball(cache)
    with phase(f"unpacking {tarball.name}"), tempfile.TemporaryDirectory(dir=cache) as tmp:
        with tarfile.open(tarball) as tf:
            tf.extractall(tmp, filter="tar")
        (top,) = Path(tmp).iterdir()
        _drop_debian_ignore_rule(top / ".gitignore")
        # -b keeps the base on a branch the harness never moves.
        git.git(top, "init", "-q", "-b", BASE_BRANCH)
        git.git(top, "add", "-f", "-A")  # the tarball exactly, ignored or not
        git.git(top, "commit", "-q", "-m", BASE_MESSAGE, env=BASE_DATE)
        shutil.rmtree(repo, ignore_errors=True)
        top.rename(repo)
    return repo


def _drop_debian_ignore_rule(gitignore: Path) -> None:
    """Cut Debian's packaging rule from the top-level .gitignore.

    It ends the file with '/*', which ignores every top-level entry: files a
    developer adds to the tree (a new selftest, say) would silently stay out
    of their commits, and out of the series.  Upstream has no such rule.
    """
    text = gitignore.read_text()
    cut = text.find("#\n# Debian packaging:")
    if cut >= 0:
        gitignore.write_text(text[:cut])


def _check_user_tree(src: Path) -> None:
    if not (src / "Makefile").is_file() or not (src / "virt" / "kvm").is_dir() \
            or not (src / "arch" / "x86" / "Kconfig").is_file():
        raise HarnessError(f"KERNEL_SRC={src} is not a Linux kernel tree",
                           "point it at a checkout with Makefile, virt/kvm and arch/x86")
    if git.git(src, "rev-parse", "--git-dir", check=False).returncode != 0:
        raise HarnessError(f"KERNEL_SRC={src} is not a git repository",
                           "the series is applied with git am on a branch; use a git checkout")
    dirty = git.is_dirty(src)
    if dirty:
        raise HarnessError(
            f"KERNEL_SRC={src} has uncommitted changes ({len(dirty)} paths, e.g. "
            f"{dirty[0].strip()})",
            "commit or stash them first; the harness never builds on top of uncommitted work",
        )


def _worktree(repo: Path, path: Path, base: str) -> None:
    if (path / ".git").exists():
        return
    git.git(repo, "worktree", "prune")
    git.git(repo, "worktree", "add", "-q", "--detach", str(path), base)


def recorded_base_tree(base_file: Path) -> str | None:
    """The git tree id kernel-patch/BASE records for the Debian base, if any."""
    for line in base_file.read_text().splitlines():
        if line.startswith("tree:"):
            return line.split(":", 1)[1].strip()
    return None


def check_debian_base(repo: Path, base_file: Path) -> None:
    want = recorded_base_tree(base_file)
    got = git.out(repo, "rev-parse", f"{BASE_BRANCH}^{{tree}}")
    if want and got != want:
        raise HarnessError(
            f"the cached Debian tree {repo} (tree {got[:12]}) is not the base in {base_file} "
            f"(tree {want[:12]})",
            f"delete {repo} so {debian.PACKAGE} {debian.VERSION} is unpacked again",
        )


def tree(cache: Path, kernel_src: Path | None, suffix: str = "") -> KernelTree:
    """The worktree whose name ends in *suffix* (a flavour's
    :attr:`~harness.flavours.Flavour.tree_suffix`), created if needed."""
    if kernel_src is None:
        repo = _debian_repo(cache)
        base = git.out(repo, "rev-parse", BASE_BRANCH)
        path = repo if not suffix else cache / f"{debian.TREE}{suffix}"
        name = f"debian{suffix}"
    else:
        repo = kernel_src.resolve()
        _check_user_tree(repo)
        base = git.out(repo, "rev-parse", "HEAD")
        tag = hashlib.sha256(str(repo).encode()).hexdigest()[:10]
        path = cache / f"user-{tag}{suffix}"
        name = f"user-{tag}{suffix}"
    if path != repo:
        _worktree(repo, path, base)
    return KernelTree(path=path, repo=repo, base=base, branch=f"kvm-iofd{suffix}", name=name)
