"""Quality gates on the series: checkpatch --strict and no new sparse warnings.

Both use the kernel's own tools.  The sparse gate compares warnings on the
KVM objects (virt/kvm/ is built as part of arch/x86/kvm/) between the
patched tree and the base; the base's warnings are computed once in a
worktree of their own and cached, since the base never changes.
"""

import hashlib
import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path

from harness import flavours, paths
from harness.errors import HarnessError
from harness.kernel import build, git, series, source
from harness.kernel.source import KernelTree
from harness.progress import phase, say
from harness.settings import Settings

SPARSE_DIRS = ["arch/x86/kvm/"]
_WARNING = re.compile(r"^(?P<file>[^:\s]+):\d+:\d+: (?P<kind>warning|error): (?P<msg>.*)$")


def _checkpatch(tree: Path, args: list[str]) -> list[str]:
    # tool_env: checkpatch runs scripts/spdxcheck.py, which needs the venv's ply and GitPython.
    r = subprocess.run(["perl", "scripts/checkpatch.pl", "--strict", "--terse", "--no-summary",
                        *args], cwd=tree, capture_output=True, text=True, env=paths.tool_env())
    found = [line for line in r.stdout.splitlines() if re.search(r"(ERROR|WARNING|CHECK):", line)]
    if r.returncode and not found:
        found = [f"checkpatch exited {r.returncode}: {r.stderr.strip()}"]
    if "Traceback" in r.stderr:
        found.append(f"a checkpatch helper crashed: {r.stderr.strip().splitlines()[-1]}")
    return found


def new_files(patch: Path) -> list[str]:
    """Files a patch creates."""
    return re.findall(r"^diff --git a/\S+ b/(\S+)\nnew file mode", patch.read_text(), re.M)


def unmaintained(tree: Path, files: list[str]) -> list[str]:
    """New files no MAINTAINERS section covers (get_maintainer.pl finds only "THE REST")."""
    lonely = []
    for f in files:
        r = subprocess.run(["perl", "scripts/get_maintainer.pl", "--no-git", "--no-rolestats",
                            "--sections", "-f", f], cwd=tree, capture_output=True, text=True)
        # --sections prints each section's title, then its "X:\t..." lines.
        sections = [line for line in r.stdout.splitlines()
                    if line.strip() and not re.match(r"^[A-Z]:\s", line)]
        if not [s for s in sections if s != "THE REST"]:
            lonely.append(f)
    return lonely


def _answer_maintainers_question(tree: Path, patch: Path, found: list[str]) -> list[str]:
    """Drop checkpatch's FILE_PATH_CHANGES reminder when MAINTAINERS already covers the files.

    checkpatch asks "does MAINTAINERS need updating?" for every new file
    unless the patch edits MAINTAINERS.  get_maintainer.pl answers it: when
    every new file already falls in a maintained section, the answer is no.
    """
    question = [x for x in found if "does MAINTAINERS need updating" in x]
    if not question:
        return found
    lonely = unmaintained(tree, new_files(patch))
    if lonely:
        return found
    say(f"checkpatch asks whether MAINTAINERS needs updating for {patch.name}: no, "
        "get_maintainer.pl already maps every new file to a maintained section")
    return [x for x in found if x not in question]


_UNKNOWN_COMMIT = re.compile(r"Unknown commit id '([0-9a-f]{12,40})'")
_FIXES = re.compile(r"^Fixes: ([0-9a-f]{12,40}) \(\"[^\n]+\"\)$", re.M)


def _answer_unknown_fixes(tree: Path, patch: Path, found: list[str]) -> list[str]:
    """Drop "Unknown commit id" for a well-formed Fixes: tag when the tree has no history.

    A tree made from a source package is one commit without parents, so
    checkpatch cannot look any commit up.  The warning then says nothing
    about the tag; in a tree with upstream history it stays and fails.
    """
    unknown = [(x, m.group(1)) for x in found if (m := _UNKNOWN_COMMIT.search(x))]
    if not unknown:
        return found
    fixes = set(_FIXES.findall(patch.read_text()))
    if int(git.out(tree, "rev-list", "--count", "HEAD")) > 50:
        return found    # real history: the warning is real
    answered = [x for x, sha in unknown if sha in fixes]
    for _, sha in unknown:
        if sha in fixes:
            say(f"checkpatch cannot look up Fixes: {sha} in {patch.name}: {tree} has no upstream "
                "history (a source package); point KERNEL_SRC at a kernel git tree to check it")
    return [x for x in found if x not in answered]


# Trailers the KVM and x86 maintainers take although checkpatch does not list them.
_ACCEPTED_TRAILERS = ("Originally-by:",)


def _answer_trailers(patch: Path, found: list[str]) -> list[str]:
    """Keep checkpatch's "Non-standard signature" for any trailer but the accepted ones."""
    kept = []
    for x in found:
        t = next((t for t in _ACCEPTED_TRAILERS if f"Non-standard signature: {t}" in x), None)
        if t is None:
            kept.append(x)
        else:
            say(f"checkpatch calls {t} non-standard in {patch.name}: it credits the 2009 "
                "author and is used in mainline's history, so it stays")
    return kept


def _patch_findings(tree: Path, patch: Path) -> list[str]:
    found = _checkpatch(tree, [str(patch)])
    found = _answer_maintainers_question(tree, patch, found)
    found = _answer_unknown_fixes(tree, patch, found)
    return _answer_trailers(patch, found)


def checkpatch(tree: Path, patches: list[Path], files: list[Path]) -> dict[str, list[str]]:
    """``checkpatch.pl --strict`` findings per patch and per source file (--file)."""
    found = {p.name: _patch_findings(tree, p) for p in patches}
    found.update({f.name: _checkpatch(tree, ["--no-tree", "--file", str(f)]) for f in files})
    return found


def sparse_warnings(log_text: str) -> Counter[tuple[str, str]]:
    """(file, message) of each sparse warning; line numbers move with patches."""
    found: Counter[tuple[str, str]] = Counter()
    for line in log_text.splitlines():
        if m := _WARNING.match(line.strip()):
            found[(m.group("file"), m.group("msg"))] += 1
    return found


def new_warnings(base: Counter[tuple[str, str]], patched: Counter[tuple[str, str]]) -> list[str]:
    return [f"{f}: {msg}" for (f, msg), n in (patched - base).items() for _ in range(n)]


def _sparse(tree: Path, log: Path, label: str, jobs: int) -> Counter[tuple[str, str]]:
    if not shutil.which("sparse"):
        raise HarnessError("sparse is not installed", "run 'make deps' (apt-get install sparse)")
    build.make(tree, SPARSE_DIRS, log, label, jobs, extra=["C=2", *build.same_release(tree)])
    return sparse_warnings(log.read_text(errors="replace"))


def _base_sparse(settings: Settings, tree: KernelTree) -> Counter[tuple[str, str]]:
    cache = settings.cache
    config = (tree.path / ".config").read_bytes()
    key = hashlib.sha256(tree.base.encode() + config).hexdigest()[:16]
    saved = cache / "state" / f"sparse-base-{key}.log"
    if not saved.exists():
        work = source.tree(cache, settings.kernel_src, flavours.get("base").tree_suffix).path
        git.git(work, "checkout", "-q", "--detach", tree.base)
        (work / ".config").write_bytes(config)
        build.make(work, ["olddefconfig", "modules_prepare"], saved.with_suffix(".prep"),
                   "preparing the base tree for sparse", settings.jobs)
        _sparse(work, saved.with_suffix(".tmp"), "sparse on the base (once)", settings.jobs)
        saved.with_suffix(".tmp").rename(saved)
    return sparse_warnings(saved.read_text(errors="replace"))


def sparse_gate(settings: Settings, tree: KernelTree, logs: Path) -> list[str]:
    """Sparse warnings the series adds over its base (empty when none)."""
    with phase("sparse gate (make C=2 " + " ".join(SPARSE_DIRS) + ")"):
        base = _base_sparse(settings, tree)
        patched = _sparse(tree.path, logs / "sparse.log", "sparse on the patched tree", settings.jobs)
        added = new_warnings(base, patched)
    say(f"sparse: {sum(base.values())} warnings on the base, {sum(patched.values())} patched, "
        f"{len(added)} new")
    return added


def run(settings: Settings, tree: KernelTree, patches: list[Path], files: list[Path],
        logs: Path) -> list[str]:
    """Every gate; returns the problems found (empty when all pass)."""
    problems = []
    for name, found in checkpatch(tree.path, patches, files).items():
        say(f"checkpatch --strict {name}: {'clean' if not found else f'{len(found)} findings'}")
        problems += [f"{name}: {x}" for x in found]
    problems += [f"sparse: {w}" for w in sparse_gate(settings, tree, logs)]
    return problems


def check(settings: Settings) -> None:
    """``make gates``: every gate on kernel-patch/ and the doorbell module, on
    the default flavour's tree; raise listing the findings."""
    tree = source.tree(settings.cache, settings.kernel_src)
    problems = run(settings, tree, list(series.load(paths.KERNEL_PATCH_DIR).patches),
                   sorted(paths.DOORBELL_SRC.glob("*.[ch]")), settings.cache / "logs" / tree.name)
    if problems:
        raise HarnessError("quality gates failed:\n  " + "\n  ".join(problems),
                           "fix the findings above")
    say("quality gates: all clean")
