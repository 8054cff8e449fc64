"""``make patches``: regenerate kernel-patch/ from the harness's working branch.

The developer edits and commits in the kernel tree (the branch the harness
applied the series to); this exports it with ``git format-patch``, keeping
the cover letter's subject and text across rerolls, adding a "Changes in
vN" section when the version goes up, checking every patch with checkpatch
--strict, and recording who to send it to (get_maintainer.pl).

The commits, and so the committed kernel-patch/, name no person: their
author and Signed-off-by are the project's placeholder identity, and
kernel-patch/send-to.txt says they are not for sending.  The copy to send
(``make patches SEND=1``, or ``OUT=DIR``) goes outside the repository,
from and signed off by the user's own git identity.
"""

import os
import re
import shutil
import subprocess
import tempfile
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness import paths
from harness.errors import HarnessError
from harness.kernel import build, gates, git, source
from harness.kernel.source import KernelTree
from harness.progress import say
from harness.settings import Settings

COVER_GLOB = "v*-0000-cover-letter.patch"
SEND_TO = "send-to.txt"
OUTGOING = paths.RESULTS / "outgoing"
_SUBJECT = re.compile(r"^Subject: \[PATCH(?: v\d+)? 0/\d+\] (.*)$", re.M)

PLACEHOLDER = "KVM_IOFD developers <kvm-iofd@lists.invalid>"
# The commits' author and Signed-off-by, and the harness's own committer (git.IDENTITY).
PLACEHOLDER_EMAILS = ("kvm-iofd@lists.invalid", git.IDENTITY["GIT_COMMITTER_EMAIL"])
_PLACEHOLDER_SOB = re.compile(
    r"^Signed-off-by: .*<(?:" + "|".join(map(re.escape, PLACEHOLDER_EMAILS)) + r")>$", re.M)
NOT_FOR_SENDING = ("# Not for sending: these patches carry the placeholder identity "
                   f"{PLACEHOLDER}.\n# 'make patches SEND=1' (or OUT=DIR) writes a copy "
                   "from and signed off by you, with its own send-to.txt.\n")
# get_maintainer.pl's role in a KVM section, e.g. "supporter:KERNEL VIRTUAL MACHINE (KVM)"
# or "open list:KERNEL VIRTUAL MACHINE FOR X86 (KVM/x86)"; reviewers are not among them.
_KVM_ROLE = re.compile(r"(?:^|,)(?!reviewer:)[a-z ]+:KERNEL VIRTUAL MACHINE\b")


@dataclass(frozen=True)
class Sender:
    """The person a sendable copy is from and signed off by."""

    name: str
    email: str

    def __str__(self) -> str:
        return f"{self.name} <{self.email}>"

    def env(self) -> dict[str, str]:
        """Author and committer for git: the copies' author, and the committer
        format-patch writes in the cover letter's From: and in --signoff."""
        return {"GIT_AUTHOR_NAME": self.name, "GIT_AUTHOR_EMAIL": self.email,
                "GIT_COMMITTER_NAME": self.name, "GIT_COMMITTER_EMAIL": self.email}


def sender(tree: Path) -> Sender:
    """The user's ``user.name`` and ``user.email`` as git reads them in *tree*:
    the repository's config, else the global one.  Not the environment: the
    git wrapper sets the harness's own identity there."""
    name, email = (git.git(tree, "config", "--get", f"user.{key}", check=False).stdout.strip()
                   for key in ("name", "email"))
    if not name or not email:
        raise HarnessError("a sendable series needs your git user.name and user.email",
                           "git config --global user.name 'Your Name'; "
                           "git config --global user.email you@example.org")
    return Sender(name, email)


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


_SECTION = re.compile(r"^(?P<title>\S.*)\n-{3,}\n", re.M)
BENCH_MD = paths.RESULTS / "bench.md"


COVER_SECTIONS = ("Environment", "Targets", "Instructions per doorbell (icount)")
"""The sections of bench.md a cover letter carries; the rest (the 2009
posting's rows, the scale table, the array, the device scenario, the
notes) stays in bench.md."""


def cover_excerpt(markdown: str) -> str:
    """:data:`COVER_SECTIONS` of a bench.md, each under its title; a file
    without ``## `` sections as it is."""
    parts = re.split(r"(?m)^## (.+)\n", markdown)
    if len(parts) < 3:
        return markdown.strip()
    found = dict(zip(parts[1::2], parts[2::2], strict=True))
    kept = [f"{title}:\n\n{found[title].strip()}" for title in COVER_SECTIONS if title in found]
    rest = [t for t in found if t not in COVER_SECTIONS]
    return "\n\n".join([*kept, "make bench also writes, to results/bench.md: "
                         + "; ".join(rest) + "."] if rest else kept)


def with_section(body: str, title: str, text: str) -> str:
    """Replace the text of the cover letter's section *title* with *text*
    (wrapped for a mail); a body without that section as it is."""
    sections = list(_SECTION.finditer(body))
    here = next((i for i, m in enumerate(sections) if m.group("title") == title), None)
    if here is None:
        return body
    start = sections[here].end()
    end = sections[here + 1].start() if here + 1 < len(sections) else len(body)
    tail = body[end:]
    if here + 1 == len(sections):
        # The last section ends where a "Changes in vN:" list or the body ends.
        m = re.search(r"^Changes in v\d+:\n", body[start:], re.M)
        end, tail = (start + m.start(), body[start + m.start():]) if m else (len(body), "")
    return body[:start] + _wrapped(text) + "\n\n" + tail


def with_benchmark(body: str, bench_md: Path) -> str:
    """Replace the text of the cover letter's "Benchmark" section with
    :func:`cover_excerpt` of *bench_md*.

    The table a reviewer reads must be the one ``make bench`` wrote, not a
    copy edited by hand, so every export takes it from the last run.  A body
    without that section, or a missing file, leaves the body as it is.
    """
    if not bench_md.is_file():
        return body
    return with_section(body, "Benchmark", cover_excerpt(bench_md.read_text()))


NVME_MD = paths.RESULTS / "nvme.md"
NVME_SECTION = "A real user: QEMU's NVMe controller"


def nvme_excerpt(markdown: str) -> str:
    """results/nvme.md as a cover letter carries it: no title, the targets
    as a plain heading.  Both series' cover letters use this one form."""
    return re.sub(r"(?m)^# .*\n+", "", markdown).replace("## Targets", "Targets:").strip()


def with_nvme(body: str, nvme_md: Path) -> str:
    """The cover letter's :data:`NVME_SECTION` from the last ``make nvme``
    (results/nvme.md), after a pointer to the QEMU series; as it is
    without that file."""
    if not nvme_md.is_file():
        return body
    intro = ("The QEMU series in qemu-patch/ of this project (posted to qemu-devel beside "
             "this one) makes QEMU's NVMe controller serve its doorbells with one buffered "
             "iofd when the guest has no shadow doorbells (-device nvme,x-dbbuf=off,x-iofd=on). "
             "make nvme measured it with fio in an unmodified nested Linux guest:")
    return with_section(body, NVME_SECTION, intro + "\n\n" + nvme_excerpt(nvme_md.read_text()))


def _wrapped(markdown: str, width: int = 74) -> str:
    """Wrap prose and list items for a mail; table rows and code stay as they are."""
    out = []
    for line in markdown.splitlines():
        if len(line) <= width or line.lstrip().startswith(("|", "```")) or line.startswith("    "):
            out.append(line)
            continue
        bullet = re.match(r"^(\s*(?:[-*]|\d+\.)\s+)", line)
        indent = " " * len(bullet.group(1)) if bullet else ""
        out += textwrap.wrap(line, width, subsequent_indent=indent, break_on_hyphens=False,
                             break_long_words=False)
    return "\n".join(out)


def export(tree: KernelTree, directory: Path, version: int | None = None,
           out: Path | None = None, by: Sender | None = None,
           bench_md: Path | None = None,
           check: Callable[[list[Path]], None] | None = None) -> list[Path]:
    """Write the series for base..HEAD of *tree* into *out* (default: *directory*,
    which holds the cover letter and version to keep): as committed, with the
    placeholder identity, or when *by* is given, from and signed off by *by*.
    *check* runs on the new files before anything in *out* is replaced, so a
    failed check leaves the previous export as it was."""
    out = out or directory
    if by and out.resolve() == directory.resolve():
        raise HarnessError(f"{directory} is committed and keeps the placeholder identity",
                           "write the sendable copy elsewhere: make patches SEND=1, or OUT=DIR")
    old_version = current_version(directory)
    version = version or old_version
    covers = sorted(directory.glob(COVER_GLOB))
    subject, body = cover_text(covers[-1]) if covers else ("*** SUBJECT HERE ***", "")
    body = _with_changelog(body, version, old_version)
    if bench_md is not None:
        body = with_benchmark(body, bench_md)
        body = with_nvme(body, bench_md.with_name(NVME_MD.name))
    if git.is_dirty(tree.path):
        raise HarnessError(f"{tree.path} has uncommitted changes",
                           "commit them on the working branch first; only commits are exported")
    with tempfile.TemporaryDirectory() as tmp:
        made = _format_patch(tree, version, Path(tmp), by)
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
        if by:
            refuse_placeholder(made)
        if check:
            check(made)
        _clear(out, directory)
        out.mkdir(parents=True, exist_ok=True)
        for p in made:
            shutil.copy(p, out / p.name)
    result = sorted(out.glob("*.patch"))
    to_cc = recipients(tree.path, [p for p in result if "cover" not in p.name])
    (out / SEND_TO).write_text(to_cc if by else NOT_FOR_SENDING + to_cc)
    say(f"exported v{version}: {len(result)} files in {out}" + (f", from {by}" if by else ""))
    return result


def _format_patch(tree: KernelTree, version: int, tmp: Path, by: Sender | None) -> list[Path]:
    """``git format-patch`` of the series into *tmp*: as committed, or signed by *by*.

    For *by* it formats copies of the commits that name *by* where they name
    the placeholder (author, Signed-off-by), so that git itself writes every
    header as for any commit of the user's: From: (RFC 2047-encoded when the
    name is not ASCII), the MIME charset the Signed-off-by may need, and the
    cover letter's From: and shortlog.  Editing the exported files instead
    would have to redo each of these.  --signoff adds *by*'s Signed-off-by
    to a commit someone else wrote, as sending it requires; where it is
    already the last trailer, git adds nothing.
    """
    out = tmp / "patches"
    args = ["format-patch", "-q", "--cover-letter", f"-v{version}", f"--base={tree.base}",
            "-o", str(out)]
    if by is None:
        git.git(tree.path, *args, f"{tree.base}..HEAD")
    else:
        env = {**scratch_objects(tree.path, tmp / "objects"), **by.env()}
        tip = copies_by(tree, by, env, tmp / "message")
        git.git(tree.path, *args, "--signoff", f"{tree.base}..{tip}", env=env)
    return sorted(out.glob("*.patch"))


def scratch_objects(tree: Path, objects: Path) -> dict[str, str]:
    """Environment in which git writes new objects to *objects* while reading
    the tree's own: the copies never enter the kernel repository."""
    objects.mkdir()
    own = git.out(tree, "rev-parse", "--path-format=absolute", "--git-path", "objects")
    return {"GIT_OBJECT_DIRECTORY": str(objects), "GIT_ALTERNATE_OBJECT_DIRECTORIES": own}


def copies_by(tree: KernelTree, by: Sender, env: dict[str, str], message: Path) -> str:
    """Copy base..HEAD commit by commit (same trees, no checkout) with *by* as
    the author of what the placeholder wrote and in its Signed-off-by; the copy's tip."""
    tip = tree.base
    for commit in git.out(tree.path, "rev-list", "--reverse", f"{tree.base}..HEAD").split():
        tree_id, date, email, name = git.out(tree.path, "show", "-s", "--date=raw",
                                             "--format=%T%n%ad%n%ae%n%an", commit).split("\n", 3)
        raw = git.git(tree.path, "cat-file", "commit", commit).stdout
        message.write_text(resigned(raw.split("\n\n", 1)[1], by))
        author = {} if email in PLACEHOLDER_EMAILS else {"GIT_AUTHOR_NAME": name,
                                                         "GIT_AUTHOR_EMAIL": email}
        tip = git.git(tree.path, "commit-tree", "--no-gpg-sign", tree_id, "-p", tip, "-F",
                      str(message), env={**env, **author, "GIT_AUTHOR_DATE": date}).stdout.strip()
    return tip


def resigned(message: str, by: Sender) -> str:
    """*message* with *by*'s Signed-off-by in place of the placeholder's."""
    return _PLACEHOLDER_SOB.sub(lambda _: f"Signed-off-by: {by}", message)


def refuse_placeholder(made: list[Path]) -> None:
    """No placeholder identity may be posted, whichever line names it."""
    for p in made:
        for line in p.read_text().splitlines():
            if any(e in line for e in PLACEHOLDER_EMAILS):
                raise HarnessError(f"{p.name} still names the placeholder identity: {line.strip()}",
                                   "replace it in that commit on the working branch")


def _clear(out: Path, directory: Path) -> None:
    """Remove the previous export's patches from *out*, but never patches
    'make patches' did not write there (it always writes send-to.txt too)."""
    old = sorted(out.glob("*.patch"))
    if old and out != directory and not (out / SEND_TO).exists():
        raise HarnessError(f"{out} holds patches 'make patches' did not write ({old[0].name})",
                           "choose an empty or new directory for OUT")
    for p in old:
        p.unlink()


BUS_CALLERS = r"kvm_io_bus_(register_dev|read|write)\("
"""What the arch code calls into the io bus with.  The series changes what
kvm_io_bus_register_dev() may return (-EEXIST) and what a bus access may do
(sleep in a user access), so the maintainers of every arch file that calls
them review it too, although the patches do not touch those files."""


def bus_callers(tree: Path) -> list[str]:
    """The arch files that call the io bus (see BUS_CALLERS)."""
    r = subprocess.run(["git", "grep", "-l", "-E", BUS_CALLERS, "--", "arch"],
                       cwd=tree, capture_output=True, text=True)
    return r.stdout.split()


def recipients(tree: Path, patches: list[Path]) -> str:
    """To: and Cc: lines from get_maintainer.pl, for git send-email or b4:
    for the patches, and for the arch files whose behaviour they change."""
    def get_maintainer(*args: str) -> list[str]:
        r = subprocess.run(["perl", "scripts/get_maintainer.pl", "--rolestats", "--no-git",
                            "--no-git-fallback", *args],
                           cwd=tree, capture_output=True, text=True, check=True)
        return r.stdout.splitlines()

    # One run per patch: given several, get_maintainer.pl reports each person's
    # role for the first patch only.  It takes either patches or, with -f, files.
    lines = [x for p in patches for x in get_maintainer(str(p))]
    callers = bus_callers(tree)
    return addressed("\n".join(lines), "\n".join(get_maintainer("-f", *callers)) if callers else "")


def addressed(get_maintainer_output: str, cc_only: str = "") -> str:
    """To: the KVM maintainers and kvm@vger.kernel.org, who take the series;
    Cc: everyone else get_maintainer.pl names (the documentation and selftest
    maintainers, reviewers, the other lists), who review their files in it,
    and everyone in *cc_only* (get_maintainer.pl's output for files the
    series affects without touching them).  Each address appears once."""
    to: list[str] = []
    cc: list[str] = []
    lines = [(x, False) for x in get_maintainer_output.splitlines()]
    lines += [(x, True) for x in cc_only.splitlines()]
    for line, only_cc in lines:
        line = line.strip()
        if not line:
            continue
        # "Name <addr> (role:SECTION,role:SECTION)" or "list@addr (open list:SECTION)"
        m = re.fullmatch(r"(.*?>|\S+) \((.*)\)", line)
        who, roles = m.groups() if m else (line, "")
        if _KVM_ROLE.search(roles) and not only_cc:
            if who in cc:
                cc.remove(who)
            if who not in to:
                to.append(who)
        elif who not in to and who not in cc:
            cc.append(who)
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


_DIAGNOSTIC = re.compile(r"^\s*(?P<path>[^\s:]+):\d+(?::\d+)?: (?:warning|error):")


def warnings_in(log: Path, files: list[str]) -> list[str]:
    """Compiler warnings in *log* that point into *files*.

    kbuild names a file as the compiler was given it: virt/kvm/ is built
    from arch/x86/kvm/, so its warnings read ``arch/x86/kvm/../../../virt/kvm/
    eventfd.c:``, and headers read ``./include/...``.  Paths are normalised
    before they are compared.
    """
    wanted = set(files)
    found = []
    for line in log.read_text(errors="replace").splitlines():
        m = _DIAGNOSTIC.match(line)
        if m and os.path.normpath(m.group("path")) in wanted:
            found.append(line.strip())
    return found


def export_series(settings: Settings, version: int | None, out: Path | None = None) -> None:
    """``make patches``: export the working branch of the default flavour's
    tree to kernel-patch/, or with *out* the copy to send there, from and
    signed off by the user; then build what it touches with W=1 and fail on
    any warning in those files."""
    tree = source.tree(settings.cache, settings.kernel_src)
    by = sender(tree.path) if out else None
    if BENCH_MD.is_file():
        say(f"the cover letter's Benchmark section is {BENCH_MD} (make bench)")
    else:
        say(f"no {BENCH_MD}: the cover letter keeps its Benchmark section; run 'make bench' first")
    if not NVME_MD.is_file():
        say(f"no {NVME_MD}: the cover letter keeps its NVMe section; run 'make nvme' first")
    export(tree, paths.KERNEL_PATCH_DIR, version=version, out=out, by=by, bench_md=BENCH_MD,
           check=lambda made: w1_check(settings, tree, made))


def w1_objects(sources: list[str]) -> list[str]:
    """kbuild's single-object targets for *sources*.  virt/kvm/ is built from
    arch/x86/kvm/'s Makefile, so its objects are named from there."""
    return [("arch/x86/kvm/../../../" if f.startswith("virt/kvm/") else "") + f[:-2] + ".o"
            for f in sources]


def w1_check(settings: Settings, tree: KernelTree, made: list[Path]) -> None:
    """Compile the C files the series touches with W=1 and fail on any diagnostic in them.

    Each file is touched and built as its own object, so it is compiled in
    this run even if an earlier W=1 run built it, and no module is relinked
    under a VM that may be using the tree.
    """
    touched = touched_files(made)
    sources = [f for f in touched if f.endswith(".c") and not f.startswith("tools/")]
    for f in sources:
        (tree.path / f).touch()
    log = settings.cache / "logs" / tree.name / "w1.log"
    failed: HarnessError | None = None
    try:
        build.make(tree.path, w1_objects(sources), log, "W=1 build of the touched files",
                   settings.jobs, extra=["W=1", *build.same_release(tree.path)])
    except HarnessError as e:
        failed = e      # KVM builds with -Werror (CONFIG_KVM_WERROR): a warning stops it
    new = warnings_in(log, touched)
    if new:
        raise HarnessError(f"W=1 warnings in files the series touches: {new[0]}",
                           f"{len(new)} in all; full log: {log}; kernel-patch/ was left as it was")
    if failed:
        raise failed
    say(f"W=1: no warnings in the {len(touched)} touched files ({len(sources)} compiled)")
