"""``qemu-patch/``: its cover letter's results, and the copy to send.

The QEMU series goes to qemu-devel beside the kernel series, under the
same rule: the committed files carry the placeholder identity, and
``make patches SEND=1`` (or ``OUT=DIR``) writes a copy from and signed off
by your git identity, made by git from copies of the commits
(:func:`harness.kernel.export.copies_by`), into ``qemu/`` of the
outgoing directory, with its own ``send-to.txt`` from QEMU's
``scripts/get_maintainer.pl``.  The cover letter's "Results" section is
the table of the last ``make nvme`` (``results/nvme.md``), never a copy
edited by hand.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from harness.kernel import export, git
from harness.kernel.source import KernelTree
from harness.progress import say
from harness.qemu import source

COVER = source.SERIES_DIR / "0000-cover-letter.patch"
SUBJECT_PREFIX = "PATCH RFC"
_SUBJECT = re.compile(r"^Subject: \[PATCH RFC 0/\d+\] (.*)$", re.M)


def with_results(cover: str, nvme_md: Path) -> str:
    """*cover* with its Results section replaced by *nvme_md*'s table and
    targets; as it is without that file or section."""
    if not nvme_md.is_file():
        return cover
    return export.with_section(cover, "Results", export.nvme_excerpt(nvme_md.read_text()))


def refresh_cover(nvme_md: Path) -> None:
    """Write the last ``make nvme`` into the committed cover letter."""
    if COVER.is_file():
        COVER.write_text(with_results(COVER.read_text(), nvme_md))


def recipients(tree: Path, patches: list[Path]) -> str:
    """To: the maintainers and supporters QEMU's get_maintainer.pl names for
    the patches; Cc: reviewers and lists (qemu-devel among them)."""
    to: list[str] = []
    cc: list[str] = []
    for p in patches:
        r = subprocess.run(["perl", "scripts/get_maintainer.pl", "--no-git",
                            "--no-git-fallback", str(p)], cwd=tree, capture_output=True,
                           text=True, check=True)
        for line in r.stdout.splitlines():
            who = re.sub(r"\s*\(.*\)$", "", line).strip()
            role = line[len(who):]
            into = to if ("(maintainer:" in role or "(supporter:" in role) else cc
            if who and who not in to and who not in cc:
                into.append(who)
    return "".join(f"To: {w}\n" for w in to) + "".join(f"Cc: {w}\n" for w in cc)


def write_copy(tree: KernelTree, out: Path, by: export.Sender, nvme_md: Path) -> list[Path]:
    """The series from *tree*'s working branch, from and signed off by *by*, in *out*."""
    subject_body = COVER.read_text() if COVER.is_file() else ""
    m = _SUBJECT.search(subject_body)
    with tempfile.TemporaryDirectory() as tmp:
        env = {**export.scratch_objects(tree.path, Path(tmp) / "objects"), **by.env()}
        tip = export.copies_by(tree, by, env, Path(tmp) / "message")
        made_dir = Path(tmp) / "patches"
        git.git(tree.path, "format-patch", "-q", "--cover-letter", "--signoff",
                f"--subject-prefix={SUBJECT_PREFIX}", f"--base={tree.base}", "-o",
                str(made_dir), f"{tree.base}..{tip}", env=env)
        made = sorted(made_dir.glob("*.patch"))
        cover = next(p for p in made if "cover-letter" in p.name)
        if m:
            blurb = with_results(subject_body.split("\n\n", 1)[1], nvme_md)
            short = re.search(r"^\S.* \(\d+\):\n", blurb, re.M)
            blurb = blurb[:short.start()] if short else blurb
            text = cover.read_text().replace("*** SUBJECT HERE ***", m.group(1))
            cover.write_text(text.replace("*** BLURB HERE ***\n", blurb))
        export.refuse_placeholder(made)
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        for p in made:
            shutil.copy(p, out / p.name)
    result = sorted(out.glob("*.patch"))
    (out / export.SEND_TO).write_text(
        recipients(tree.path, [p for p in result if "cover" not in p.name]))
    say(f"QEMU series: {len(result)} files in {out}, from {by}")
    return result


def export_series(cfg_cache: Path, qemu_src: Path | None, out: Path | None,
                  nvme_md: Path) -> None:
    """``make patches``' QEMU half: the committed cover letter's results,
    and with *out* the copy to send in *out*/qemu (the QEMU tree must
    have been made: ``make nvme-build``)."""
    refresh_cover(nvme_md)
    if out is None:
        return
    tree = source.tree(cfg_cache, qemu_src)
    write_copy(tree, out / "qemu", export.sender(tree.path), nvme_md)
