"""The KVM_IOFD patch series in ``kernel-patch/`` and applying it.

The series is applied with ``git am`` (no fuzz, exact context) on the
harness's branch.  It is re-applied only when ``kernel-patch/`` or the base
changed; otherwise the tree is left alone, so edits a developer makes in the
working branch are built as they are.
"""

import hashlib
import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from harness.errors import HarnessError
from harness.kernel import git
from harness.kernel.source import KernelTree
from harness.progress import phase, say


@dataclass(frozen=True)
class Series:
    patches: tuple[Path, ...]
    cover: Path | None
    id: str     # content hash of the patches, taken at load: names the series in versions


def _content_id(patches: list[Path]) -> str:
    h = hashlib.sha256()
    for p in patches:
        h.update(p.name.encode() + b"\0" + p.read_bytes())
    return h.hexdigest()[:8]


def load(directory: Path) -> Series:
    """The series as it is now; later edits to kernel-patch/ need a new load()."""
    patches = sorted(p for p in directory.glob("*.patch") if "cover-letter" not in p.name)
    if not patches:
        raise HarnessError(f"no patches in {directory}", f"the series lives in {directory.name}/*.patch")
    covers = sorted(directory.glob("*cover-letter.patch"))
    return Series(patches=tuple(patches), cover=covers[0] if covers else None,
                  id=_content_id(patches))


def _failure(output: str, patches: tuple[Path, ...]) -> str:
    """Name the patch and hunk from git am's output."""
    m = re.search(r"Patch failed at (\d+) (.*)", output)
    which = m.group(2).strip() if m else "a patch"
    if m:
        n = int(m.group(1))
        if 0 < n <= len(patches):
            which = patches[n - 1].name
    hunks = re.findall(r"error: patch failed: (\S+)", output) or \
        re.findall(r"error: (\S+): (?:does not exist in index|already exists)", output)
    where = f"hunk at {hunks[0]}" if hunks else output.strip().splitlines()[-1]
    return f"{which} does not apply: {where}"


def _state_file(cache: Path, tree: KernelTree) -> Path:
    return cache / "state" / f"{tree.name}.series.json"


def apply(cache: Path, tree: KernelTree, series: Series) -> None:
    """Make the working branch hold *series* on top of the tree's base."""
    state_file = _state_file(cache, tree)
    want = {"base": tree.base, "series": series.id}
    state = json.loads(state_file.read_text()) if state_file.exists() else {}
    if {k: state.get(k) for k in want} == want:
        return
    head = git.out(tree.path, "rev-parse", "HEAD")
    if not git.is_dirty(tree.path) and _branch_holds(tree, series):
        # The branch already is the series, e.g. a developer committed in the
        # tree and exported with 'make patches': nothing to apply.
        _save(state_file, {**want, "head": head})
        return
    if state and (head != state.get("head") or git.is_dirty(tree.path)):
        raise HarnessError(
            f"{series.patches[0].parent.name}/ changed, but the working branch in {tree.path} has "
            "changes of its own",
            "commit them and run 'make patches' to export them, or discard them with "
            f"'git -C {tree.path} reset --hard {state.get('head', tree.base)[:12]}'",
        )
    with phase(f"applying {len(series.patches)} patches to {tree.name} ({tree.base[:12]})"):
        git.git(tree.path, "am", "--abort", check=False)
        git.git(tree.path, "checkout", "-q", "-B", tree.branch, tree.base)
        r = git.git(tree.path, "am", "-q", *map(str, series.patches), check=False)
        if r.returncode != 0:
            msg = _failure(r.stdout + r.stderr, series.patches)
            git.git(tree.path, "am", "--abort", check=False)
            state_file.unlink(missing_ok=True)
            raise HarnessError(msg, f"rebase the series onto {tree.base[:12]} or fix the patch")
    _save(state_file, {**want, "head": git.out(tree.path, "rev-parse", "HEAD")})
    say(f"series {series.id} applied on branch {tree.branch}")


def _save(state_file: Path, state: dict[str, str]) -> None:
    state_file.parent.mkdir(parents=True, exist_ok=True)
    state_file.write_text(json.dumps(state))


def _patch_ids(tree: KernelTree, patch_text: str) -> list[str]:
    r = subprocess.run(["git", "-C", str(tree.path), "patch-id", "--stable"], input=patch_text,
                       capture_output=True, text=True, check=True)
    return [line.split()[0] for line in r.stdout.splitlines()]


def _branch_holds(tree: KernelTree, series: Series) -> bool:
    """Does base..HEAD hold exactly the series' changes, patch for patch?"""
    log = git.out(tree.path, "log", "--reverse", "-p", "--format=commit %H", f"{tree.base}..HEAD")
    if not log:
        return False
    want = [pid for p in series.patches for pid in _patch_ids(tree, p.read_text())]
    return _patch_ids(tree, log + "\n") == want
