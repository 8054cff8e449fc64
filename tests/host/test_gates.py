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
    p = next(paths.KERNEL_PATCH_DIR.glob("*-KVM-selftests-*.patch"))
    assert gates.new_files(p) == ["tools/testing/selftests/kvm/x86_64/iofd_test.c"]


@pytest.fixture(scope="module")
def kernel_tree() -> Path:
    try:
        return Path(last_built(from_env().with_flavour("default")).tree)
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
    assert gates.unmaintained(kernel_tree, ["tools/testing/selftests/kvm/x86_64/iofd_test.c",
                                            "nowhere/new.c"]) == ["nowhere/new.c"]
