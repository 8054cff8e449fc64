"""qemu-patch/: QEMU's checkpatch, the cover letter's results, the copy to send.

These need the QEMU tree that ``make nvme-build`` (a step of ``make test``)
makes in the cache; run alone before it, they say so and skip.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from harness import settings as harness_settings
from harness.kernel import export
from harness.kernel.source import KernelTree
from harness.qemu import export as qemu_export
from harness.qemu import source

PATCHES = sorted(p for p in source.SERIES_DIR.glob("0*.patch") if "cover" not in p.name)


@pytest.fixture(scope="module")
def tree() -> KernelTree:
    cfg = harness_settings.from_env()
    repo = cfg.cache / source.TREE
    if not (repo / ".git").exists():
        pytest.skip(f"no QEMU tree in {repo}: run 'make nvme-build' first")
    return source.tree(cfg.cache, cfg.qemu_src)


def test_qemu_checkpatch_is_clean_on_every_patch(tree: KernelTree) -> None:
    assert PATCHES
    for p in PATCHES:
        r = subprocess.run(["perl", "scripts/checkpatch.pl", str(p)], cwd=tree.path,
                           capture_output=True, text=True)
        assert r.returncode == 0 and "0 errors, 0 warnings" in r.stdout, (p.name, r.stdout[-800:])


def test_checkpatch_would_catch_a_bad_line(tree: KernelTree, tmp_path: Path) -> None:
    bad = tmp_path / "bad.patch"
    text = PATCHES[-1].read_text()
    bad.write_text(text.replace("+    nvme_iofd_scan(n);", "+    nvme_iofd_scan(n);    ", 1))
    r = subprocess.run(["perl", "scripts/checkpatch.pl", str(bad)], cwd=tree.path,
                       capture_output=True, text=True)
    assert r.returncode != 0


def test_the_linux_headers_patch_says_it_is_a_placeholder() -> None:
    headers = next(p for p in PATCHES if "linux-headers" in p.name)
    assert "placeholder" in headers.read_text().split("---", 1)[0]


def test_results_come_from_the_last_nvme_run(tmp_path: Path) -> None:
    cover = "Intro\n\nResults\n-------\n@@NVME-TABLE@@\n\nBase\n----\nDebian\n"
    assert qemu_export.with_results(cover, tmp_path / "none.md") == cover
    md = tmp_path / "nvme.md"
    md.write_text("# QEMU NVMe on KVM_IOFD (make nvme)\n\n| config | QD |\n\n## Targets\n\n- met: x\n")
    got = qemu_export.with_results(cover, md)
    assert "@@NVME-TABLE@@" not in got and "| config | QD |" in got and "Targets:" in got
    assert got.endswith("Base\n----\nDebian\n") and "# QEMU" not in got
    assert "Results\n-------\n" in got, "the heading stays"
    assert qemu_export.with_results(got, md) == got, "a second refresh changes nothing"


def test_the_copy_to_send_is_yours(tree: KernelTree, tmp_path: Path) -> None:
    by = export.Sender("Ada Lovelace", "ada@example.org")
    made = qemu_export.write_copy(tree, tmp_path / "qemu", by, tmp_path / "none.md")
    assert len(made) == len(PATCHES) + 1
    text = "".join(p.read_text() for p in made)
    assert export.PLACEHOLDER not in text
    assert text.count("Signed-off-by: Ada Lovelace <ada@example.org>") == len(PATCHES)
    cover = next(p for p in made if "cover" in p.name).read_text()
    assert "[PATCH RFC 0/5] hw/nvme:" in cover and "*** BLURB HERE ***" not in cover
    to = (tmp_path / "qemu" / export.SEND_TO).read_text()
    assert "Cc: qemu-devel@nongnu.org" in to and "To: Keith Busch <kbusch@kernel.org>" in to
