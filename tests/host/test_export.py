"""`make patches` on an unchanged tree reproduces kernel-patch/ (dates and base aside),
and the copy to send differs from it only in the identity."""

import os
import subprocess
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


def test_touched_files_and_their_w1_objects() -> None:
    patches = sorted(p for p in paths.KERNEL_PATCH_DIR.glob("*.patch") if "cover" not in p.name)
    touched = export.touched_files(patches)
    assert "virt/kvm/eventfd.c" in touched and "include/uapi/linux/kvm.h" in touched
    assert export.w1_objects(["virt/kvm/eventfd.c", "arch/x86/kvm/i8254.c"]) == \
        ["arch/x86/kvm/../../../virt/kvm/eventfd.o", "arch/x86/kvm/i8254.o"]


def test_a_planted_w1_warning_in_eventfd_c_fails_the_export(tree: KernelTree,
                                                              tmp_path: Path) -> None:
    """A real W=1 build of the real file, with a warning only W=1 enables
    (-Wunused-const-variable), must stop the export before kernel-patch/ is touched.
    The file is restored afterwards; its object was not built, so the next build
    compiles it again."""
    cfg = from_env().with_flavour("default")
    patches = sorted(paths.KERNEL_PATCH_DIR.glob("*.patch"))
    before = {p.name: p.read_bytes() for p in patches}
    src = tree.path / "virt/kvm/eventfd.c"
    original = src.read_bytes()
    try:
        src.write_bytes(original + b"\nstatic const int iofd_planted_w1 = 1;\n")
        with pytest.raises(HarnessError, match=r"W=1 warnings in files the series touches: "
                                               r"arch/x86/kvm/\.\./\.\./\.\./virt/kvm/eventfd\.c:\d+"):
            export.w1_check(cfg, tree, patches)
    finally:
        src.write_bytes(original)
    assert {p.name: p.read_bytes() for p in sorted(paths.KERNEL_PATCH_DIR.glob("*.patch"))} == before


def test_the_benchmark_section_is_the_last_bench_run(tmp_path: Path) -> None:
    body = ("Why.\n\nBenchmark\n---------\nold table\n\nTesting\n-------\nselftests\n\n"
            "Changes in v2\n-------------\n - things\n")
    md = tmp_path / "bench.md"
    assert export.with_benchmark(body, md) == body          # no run yet: kept as it is
    md.write_text("| mode | rtt |\n| iofd-pio | 1.0 |\n")
    new = export.with_benchmark(body, md)
    assert new == body.replace("old table\n", "| mode | rtt |\n| iofd-pio | 1.0 |\n")
    assert export.with_benchmark(new, md) == new            # idempotent across rerolls
    last = "Why.\n\nBenchmark\n---------\nold\n\nChanges in v3:\n - x\n"
    assert export.with_benchmark(last, md) == \
        "Why.\n\nBenchmark\n---------\n| mode | rtt |\n| iofd-pio | 1.0 |\n\nChanges in v3:\n - x\n"


def test_kernel_patch_applies_on_its_base_and_gives_the_branch(tree: KernelTree,
                                                                tmp_path: Path) -> None:
    """What a maintainer's ``git am`` does with kernel-patch/: apply each patch, without
    fuzz, to the tree recorded in BASE, in a scratch index (git am's own apply step,
    without checking out a second kernel tree).  The result must be the branch."""
    base = source.recorded_base_tree(paths.KERNEL_PATCH_DIR / "BASE")
    assert base, "kernel-patch/BASE records no base tree"
    env = {**os.environ, "GIT_INDEX_FILE": str(tmp_path / "index")}

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=tree.path, env=env, check=True,
                              capture_output=True, text=True).stdout.strip()

    git("read-tree", base)
    patches = sorted(p for p in paths.KERNEL_PATCH_DIR.glob("v*-*.patch") if "-0000-" not in p.name)
    for p in patches:
        git("apply", "--cached", "--whitespace=error-all", str(p))
    assert git("write-tree") == git("rev-parse", "HEAD^{tree}")


def test_the_cover_letter_takes_the_deciding_sections_of_bench_md(tmp_path: Path) -> None:
    md = tmp_path / "bench.md"
    md.write_text("# KVM_IOFD doorbell round trip\n\n## Environment\n\n- kernel: 7.3.4\n\n"
                  "## Results\n\n| wall |\n\n## Targets\n\n| target |\n\n"
                  "## Instructions per doorbell (icount)\n\n| mode | 1605 |\n\n"
                  "## Against the 2009 posting\n\n| seed |\n")
    new = export.with_benchmark("Benchmark\n---------\nold\n", md)
    assert "Environment:\n\n- kernel: 7.3.4" in new and "Targets:\n\n| target |" in new
    assert "| mode | 1605 |" in new and "| seed |" not in new and "| wall |" not in new
    assert " ".join(new.split()).endswith("make bench also writes, to results/bench.md: "
                                          "Results; Against the 2009 posting.")


def test_the_benchmark_prose_is_wrapped_for_mail_and_tables_are_not(tmp_path: Path) -> None:
    md = tmp_path / "bench.md"
    long_item = "- host load: " + "word " * 30
    row = "| " + " | ".join(["cell"] * 20) + " |"
    md.write_text(f"{long_item}\n{row}\n")
    new = export.with_benchmark("Benchmark\n---------\nold\n", md)
    lines = new.split("---------\n", 1)[1].splitlines()
    assert row in lines
    prose = [x for x in lines if x and x != row]
    assert len(prose) > 1 and all(len(x) <= 74 for x in prose)
    assert prose[0].startswith("- host load:") and all(x.startswith("  ") for x in prose[1:])
