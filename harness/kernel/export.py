"""``make patches``: regenerate kernel-patch/ from the harness's working branch.

The developer edits and commits in the kernel tree (the branch the harness
applied the series to); this exports it with ``git format-patch``, keeping
the cover letter's subject and text across rerolls, adding a "Changes in
vN" section when the version goes up, checking every patch with checkpatch
--strict, and recording who to send it to (get_maintainer.pl).
"""

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from harness import paths
from harness.errors import HarnessError
from harness.kernel import build, gates, git, source
from harness.kernel.source import KernelTree
from harness.progress import say
from harness.settings import Settings

COVER_GLOB = "v*-0000-cover-letter.patch"
SEND_TO = "send-to.txt"
_SUBJECT = re.compile(r"^Subject: \[PATCH(?: v\d+)? 0/\d+\] (.*)$", re.M)


def current_version(directory: Path) -> int:
    covers = sorted(directory.glob(COVER_GLOB))
    if not covers:
        return 1
    return int(re.match(r"v(\d+)-", covers[-1].name).group(1))  # type: ignore[union-attr]


def cover_text(cover: Path) -> tuple[str, str]:
    """The subject and the body (up to the shortlog) of an existing cover letter."""
    text = cover.read_text()
    m = _SUBJECT.search(text)
    if not m:
        raise HarnessError(f"{cover} has no '[PATCH 0/N]' subject", "fix the cover letter by hand")
    body = text.split("\n\n", 1)[1]
    # format-patch puts the shortlog after the blurb: "Author (N):" then commits.
    short = re.search(r"^\S.* \(\d+\):\n", body, re.M)
    return m.group(1), (body[:short.start()] if short else body).rstrip() + "\n"


def _with_changelog(body: str, version: int, old_version: int) -> str:
    if version == old_version or f"Changes in v{version}" in body:
        return body
    entry = (f"Changes in v{version}:\n - (describe what changed since v{old_version})\n"
             f"v{old_version}: (link to the posting)\n")
    return body.rstrip() + "\n\n" + entry


def export(tree: KernelTree, directory: Path, version: int | None = None,
           out: Path | None = None) -> list[Path]:
    """Write the series for base..HEAD of *tree* into *out* (default: *directory*)."""
    out = out or directory
    old_version = current_version(directory)
    version = version or old_version
    covers = sorted(directory.glob(COVER_GLOB))
    subject, body = cover_text(covers[-1]) if covers else ("*** SUBJECT HERE ***", "")
    body = _with_changelog(body, version, old_version)
    if git.is_dirty(tree.path):
        raise HarnessError(f"{tree.path} has uncommitted changes",
                           "commit them on the working branch first; only commits are exported")
    with tempfile.TemporaryDirectory() as tmp:
        git.git(tree.path, "format-patch", "-q", "--cover-letter", f"-v{version}",
                f"--base={tree.base}", "-o", tmp, f"{tree.base}..HEAD")
        made = sorted(Path(tmp).glob("*.patch"))
        cover = next(p for p in made if "cover-letter" in p.name)
        text = cover.read_text().replace("*** SUBJECT HERE ***", subject)
        if body:
            text = text.replace("*** BLURB HERE ***\n", body)
        cover.write_text(text)
        findings = gates.checkpatch(tree.path, [p for p in made if p != cover], [])
        bad = [f"{n}: {x}" for n, f in findings.items() for x in f]
        if bad:
            raise HarnessError("checkpatch --strict found problems:\n  " + "\n  ".join(bad),
                               f"fix them in {tree.path} and run 'make patches' again")
        if out == directory:
            for old in directory.glob("*.patch"):
                old.unlink()
        out.mkdir(parents=True, exist_ok=True)
        for p in made:
            shutil.copy(p, out / p.name)
    result = sorted(out.glob("*.patch"))
    (out / SEND_TO).write_text(recipients(tree.path, [p for p in result if "cover" not in p.name]))
    say(f"exported v{version}: {len(result)} files in {out}")
    return result


def recipients(tree: Path, patches: list[Path]) -> str:
    """To: and Cc: lines from get_maintainer.pl, for git send-email or b4."""
    def run(*flags: str) -> list[str]:
        r = subprocess.run(["perl", "scripts/get_maintainer.pl", "--no-rolestats", "--no-git",
                            "--no-git-fallback", *flags, *map(str, patches)],
                           cwd=tree, capture_output=True, text=True, check=True)
        return [line.strip() for line in r.stdout.splitlines() if line.strip()]
    to = run("--m", "--no-r", "--no-l")
    cc = [x for x in run("--no-m", "--r", "--l") if x not in to]
    return "".join(f"To: {x}\n" for x in to) + "".join(f"Cc: {x}\n" for x in cc)


def normalized(patch: Path) -> str:
    """Patch text without what legitimately changes between exports."""
    text = patch.read_text()
    text = re.sub(r"^Date: .*$", "Date: -", text, flags=re.M)
    text = re.sub(r"^From [0-9a-f]{40} ", "From - ", text, flags=re.M)
    return re.sub(r"^base-commit: .*$", "base-commit: -", text, flags=re.M)


def touched_files(patches: list[Path]) -> list[str]:
    """Every file the patches modify or create."""
    files: list[str] = []
    for p in patches:
        files += [f for f in re.findall(r"^\+\+\+ b/(\S+)$", p.read_text(), re.M)
                  if f not in files]
    return files


def warnings_in(log: Path, files: list[str]) -> list[str]:
    """Compiler warnings in *log* that point into *files*."""
    return [line.strip() for line in log.read_text(errors="replace").splitlines()
            if "warning:" in line and any(line.lstrip().startswith(f + ":") for f in files)]


def export_series(settings: Settings, version: int | None) -> None:
    """``make patches``: export the working branch of the default flavour's
    tree to kernel-patch/, then build what it touches with W=1 and fail on
    any warning in those files."""
    tree = source.tree(settings.cache, settings.kernel_src)
    made = export(tree, paths.KERNEL_PATCH_DIR, version=version)
    touched = touched_files(made)
    dirs = sorted({str(Path(f).parent) + "/" for f in touched if f.endswith(".c")
                   and not f.startswith("tools/")})
    log = settings.cache / "logs" / tree.name / "w1.log"
    build.make(tree.path, ["arch/x86/kvm/"] if any(d.startswith("virt/kvm") for d in dirs)
               else dirs, log, "W=1 build of the touched directories", settings.jobs,
               extra=["W=1"])
    new = warnings_in(log, touched)
    if new:
        raise HarnessError(f"W=1 warnings in files the series touches: {new[0]}",
                           f"{len(new)} in all; full log: {log}")
    say(f"W=1: no warnings in the {len(touched)} touched files")
