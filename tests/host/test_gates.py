"""The quality gates: sparse comparison logic, and checkpatch on the real series."""

from collections import Counter
from pathlib import Path

import pytest

from harness import paths
from harness.errors import HarnessError
from harness.kernel import gates, series
from harness.kernel.pipeline import last_built
from harness.settings import from_env


def test_sparse_warnings_ignore_line_numbers() -> None:
    base = gates.sparse_warnings("virt/kvm/kvm_main.c:10:5: warning: context imbalance\n")
    patched = gates.sparse_warnings(
        "  CHECK   virt/kvm/kvm_main.c\n"
        "virt/kvm/kvm_main.c:12:5: warning: context imbalance\n"
        "virt/kvm/eventfd.c:900:17: warning: incorrect type in argument 1 (different address spaces)\n"
    )
    assert gates.new_warnings(base, patched) == [
        "virt/kvm/eventfd.c: incorrect type in argument 1 (different address spaces)"]


def test_a_second_identical_warning_is_new() -> None:
    one = Counter({("a.c", "w"): 1})
    assert gates.new_warnings(one, Counter({("a.c", "w"): 2})) == ["a.c: w"]


def test_new_files_of_the_selftest_patch() -> None:
    p = next(paths.KERNEL_PATCH_DIR.glob("*-KVM-selftests-Add-a-test-for-KVM_IOFD.patch"))
    assert gates.new_files(p) == ["tools/testing/selftests/kvm/x86/iofd_test.c"]


@pytest.fixture(scope="module")
def kernel_tree() -> Path:
    try:
        return last_built(from_env().with_flavour("default")).tree
    except HarnessError as e:
        pytest.skip(f"needs a built kernel tree for scripts/checkpatch.pl: {e}")


def test_checkpatch_strict_is_clean_on_every_patch(kernel_tree: Path) -> None:
    s = series.load(paths.KERNEL_PATCH_DIR)
    found = gates.checkpatch(kernel_tree, list(s.patches), [])
    assert found and all(v == [] for v in found.values()), found


def test_checkpatch_strict_is_clean_on_the_doorbell_module(kernel_tree: Path) -> None:
    files = sorted(paths.DOORBELL_SRC.glob("*.[ch]"))
    found = gates.checkpatch(kernel_tree, [], files)
    assert len(found) >= 2 and all(v == [] for v in found.values()), found


def test_checkpatch_finds_a_real_problem(kernel_tree: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.c"
    bad.write_text("// SPDX-License-Identifier: GPL-2.0\nint f(int a){return a;}\n")
    assert gates.checkpatch(kernel_tree, [], [bad])["bad.c"]


def test_unmaintained_new_file_keeps_the_question(kernel_tree: Path) -> None:
    assert gates.unmaintained(kernel_tree, ["tools/testing/selftests/kvm/x86/iofd_test.c",
                                            "nowhere/new.c"]) == ["nowhere/new.c"]


def _with_trailers(tmp_path: Path, *trailers: str) -> Path:
    """The series' first patch with its trailers replaced by *trailers*."""
    first = sorted(paths.KERNEL_PATCH_DIR.glob("v*-0001-*.patch"))[0]
    text = first.read_text()
    head, rest = text.split("\nSigned-off-by: ", 1)
    head = "\n".join(x for x in head.splitlines() if not x.startswith(("Fixes:", "Cc: stable")))
    out = tmp_path / first.name
    out.write_text(head + "\n" + "".join(t + "\n" for t in trailers) + "Signed-off-by: " + rest)
    return out


def test_unknown_fixes_commit_is_answered_only_without_history(kernel_tree: Path,
                                                                tmp_path: Path) -> None:
    """The tree is a source package: checkpatch cannot look a Fixes: id up, so that one
    warning is answered; an unknown id cited anywhere else still fails."""
    fixes = _with_trailers(tmp_path, 'Fixes: 743eeb0b01d2 ("KVM: Intelligent device lookup on I/O bus")')
    assert gates.checkpatch(kernel_tree, [fixes], [])[fixes.name] == []
    cited = "\nCommit 0123456789ab (\"KVM: none\") is cited here.\n\nFixes: "
    body = fixes.read_text().replace("\nFixes: ", cited, 1)
    fixes.write_text(body)
    found = gates.checkpatch(kernel_tree, [fixes], [])[fixes.name]
    assert any("0123456789ab" in x for x in found), found


def test_only_originally_by_is_taken_among_non_standard_trailers(kernel_tree: Path,
                                                                  tmp_path: Path) -> None:
    ok = _with_trailers(tmp_path, "Originally-by: Gregory Haskins <ghaskins@novell.com>")
    assert gates.checkpatch(kernel_tree, [ok], [])[ok.name] == []
    odd = _with_trailers(tmp_path, "Inspired-by: Gregory Haskins <ghaskins@novell.com>")
    found = gates.checkpatch(kernel_tree, [odd], [])[odd.name]
    assert any("Non-standard signature: Inspired-by:" in x for x in found), found
