"""`make patches` on an unchanged tree reproduces kernel-patch/ (dates and base aside),
and the copy to send differs from it only in the identity."""

from pathlib import Path

import pytest

from harness import paths
from harness.errors import HarnessError
from harness.kernel import export, source
from harness.kernel.pipeline import last_built
from harness.kernel.source import KernelTree
from harness.settings import from_env


@pytest.fixture(scope="module")
def tree() -> KernelTree:
    cfg = from_env().with_flavour("default")
    try:
        last_built(cfg)
    except HarnessError as e:
        pytest.skip(f"needs the harness's kernel tree: {e}")
    return source.tree(cfg.cache, cfg.kernel_src)


def test_export_reproduces_kernel_patch(tree: KernelTree, tmp_path: Path) -> None:
    made = export.export(tree, paths.KERNEL_PATCH_DIR, out=tmp_path)
    mine = sorted(paths.KERNEL_PATCH_DIR.glob("*.patch"))
    assert [p.name for p in made] == [p.name for p in mine]
    for new, old in zip(made, mine, strict=True):
        assert export.normalized(new) == export.normalized(old), new.name
    assert (tmp_path / export.SEND_TO).read_text() == \
        (paths.KERNEL_PATCH_DIR / export.SEND_TO).read_text()


def test_the_copy_to_send_is_kernel_patch_from_the_user(tree: KernelTree, tmp_path: Path) -> None:
    """Only the identity differs, and checkpatch --strict (run by the export) passes on it."""
    me = export.Sender("Ada Lovelace", "ada@example.org")
    made = export.export(tree, paths.KERNEL_PATCH_DIR, out=tmp_path, by=me)
    mine = sorted(paths.KERNEL_PATCH_DIR.glob("*.patch"))
    assert [p.name for p in made] == [p.name for p in mine]
    for new, old in zip(made, mine, strict=True):
        want = export.normalized(old).replace(export.PLACEHOLDER, str(me)).replace(
            "kvm-iofd <kvm-iofd@localhost>", str(me)).replace("KVM_IOFD developers (", "Ada Lovelace (")
        assert export.normalized(new) == want, new.name
    assert (tmp_path / export.SEND_TO).read_text() == \
        (paths.KERNEL_PATCH_DIR / export.SEND_TO).read_text().removeprefix(export.NOT_FOR_SENDING)


def test_reroll_adds_a_changelog(tmp_path: Path) -> None:
    cover = tmp_path / "v1-0000-cover-letter.patch"
    cover.write_text("From x\nSubject: [PATCH v1 0/2] KVM: a thing\n\nWhy and what.\n\n"
                     "A Developer (2):\n  KVM: one\n")
    subject, body = export.cover_text(cover)
    assert subject == "KVM: a thing"
    assert body == "Why and what.\n"
    assert "Changes in v2:" in export._with_changelog(body, 2, 1)
    assert export._with_changelog(body, 1, 1) == body


def test_touched_files_and_their_warnings(tmp_path: Path) -> None:
    patches = sorted(p for p in paths.KERNEL_PATCH_DIR.glob("*.patch") if "cover" not in p.name)
    touched = export.touched_files(patches)
    assert "virt/kvm/eventfd.c" in touched and "include/uapi/linux/kvm.h" in touched
    log = tmp_path / "w1.log"
    log.write_text("virt/kvm/eventfd.c:5:1: warning: no previous prototype\n"
                   "arch/x86/kvm/x86.c:9:1: warning: unrelated\n")
    assert export.warnings_in(log, touched) == ["virt/kvm/eventfd.c:5:1: warning: no previous prototype"]
