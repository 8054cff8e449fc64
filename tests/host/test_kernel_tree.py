"""Kernel trees and the series, on a tiny fake kernel repository (real git)."""

import subprocess
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.kernel import build, git, series, source


def sh(cwd: Path, *cmd: str) -> str:
    return subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, text=True,
                          env={**git.IDENTITY, "PATH": "/usr/bin:/bin", "HOME": str(cwd)}).stdout


@pytest.fixture
def fake_linux(tmp_path: Path) -> Path:
    src = tmp_path / "linux"
    (src / "virt" / "kvm").mkdir(parents=True)
    (src / "arch" / "x86").mkdir(parents=True)
    (src / "Makefile").write_text("VERSION = 6\n")
    (src / "arch" / "x86" / "Kconfig").write_text("config X86\n")
    (src / "virt" / "kvm" / "eventfd.c").write_text("".join(f"line {i}\n" for i in range(40)))
    sh(src, "git", "init", "-q", "-b", "master")
    sh(src, "git", "add", "-A")
    sh(src, "git", "commit", "-q", "-m", "base")
    return src


def make_patch(src: Path, out: Path, old: str, new: str) -> Path:
    """A one-hunk patch replacing *old* by *new*, made in a scratch clone."""
    scratch = out.parent / "scratch"
    sh(out.parent, "git", "clone", "-q", str(src), str(scratch))
    f = scratch / "virt" / "kvm" / "eventfd.c"
    f.write_text(f.read_text().replace(old, new))
    sh(scratch, "git", "commit", "-q", "-am", "KVM: change a line")
    out.mkdir(exist_ok=True)
    sh(scratch, "git", "format-patch", "-q", "-o", str(out), "HEAD~1")
    return next(out.glob("*.patch"))


def test_not_a_kernel_tree(tmp_path: Path) -> None:
    with pytest.raises(HarnessError, match="not a Linux kernel tree"):
        source.tree(tmp_path / "cache", tmp_path)


def test_dirty_tree_is_refused(tmp_path: Path, fake_linux: Path) -> None:
    (fake_linux / "Makefile").write_text("VERSION = 7\n")
    with pytest.raises(HarnessError, match="uncommitted changes"):
        source.tree(tmp_path / "cache", fake_linux)


def test_series_goes_on_a_new_branch_in_a_worktree(tmp_path: Path, fake_linux: Path) -> None:
    patches = tmp_path / "patches"
    make_patch(fake_linux, patches, "line 20\n", "line twenty\n")
    cache = tmp_path / "cache"
    tree = source.tree(cache, fake_linux)
    assert tree.path != fake_linux and tree.path.is_relative_to(cache)
    series.apply(cache, tree, series.load(patches))

    assert "line twenty" in (tree.path / "virt/kvm/eventfd.c").read_text()
    assert git.out(tree.path, "rev-parse", "--abbrev-ref", "HEAD") == "kvm-iofd"
    # The user's checkout is untouched: same branch, same content, clean.
    assert git.out(fake_linux, "rev-parse", "--abbrev-ref", "HEAD") == "master"
    assert "line twenty" not in (fake_linux / "virt/kvm/eventfd.c").read_text()
    assert git.is_dirty(fake_linux) == []

    # The debug flavour is a second worktree; the two never share files.
    debug = source.tree(cache, fake_linux, "-debug")
    assert debug.path != tree.path and debug.branch == "kvm-iofd-debug"


def test_unchanged_series_leaves_local_edits_alone(tmp_path: Path, fake_linux: Path) -> None:
    patches = tmp_path / "patches"
    make_patch(fake_linux, patches, "line 20\n", "line twenty\n")
    cache = tmp_path / "cache"
    tree = source.tree(cache, fake_linux)
    s = series.load(patches)
    series.apply(cache, tree, s)
    edited = tree.path / "virt/kvm/eventfd.c"
    edited.write_text(edited.read_text() + "a developer's edit\n")
    series.apply(cache, tree, s)
    assert "a developer's edit" in edited.read_text()


def test_changed_series_over_local_edits_is_refused(tmp_path: Path, fake_linux: Path) -> None:
    patches = tmp_path / "patches"
    p = make_patch(fake_linux, patches, "line 20\n", "line twenty\n")
    cache = tmp_path / "cache"
    tree = source.tree(cache, fake_linux)
    series.apply(cache, tree, series.load(patches))
    (tree.path / "virt/kvm/eventfd.c").write_text("edited\n")
    p.write_text(p.read_text().replace("KVM: change a line", "KVM: change a line (v2)"))
    with pytest.raises(HarnessError, match="changes of its own"):
        series.apply(cache, tree, series.load(patches))


def test_patch_that_does_not_apply_names_patch_and_hunk(tmp_path: Path, fake_linux: Path) -> None:
    patches = tmp_path / "patches"
    p = make_patch(fake_linux, patches, "line 20\n", "line twenty\n")
    # Corrupt the context so the hunk no longer matches the base.
    p.write_text(p.read_text().replace(" line 19\n", " line nineteen\n"))
    cache = tmp_path / "cache"
    tree = source.tree(cache, fake_linux)
    with pytest.raises(HarnessError) as e:
        series.apply(cache, tree, series.load(patches))
    assert p.name in e.value.what
    assert "virt/kvm/eventfd.c:" in e.value.what
    # Nothing is left half-applied.
    assert git.out(tree.path, "status", "--porcelain") == ""


def test_checks_keep_the_release_of_the_last_build(tmp_path: Path) -> None:
    """W=1 and sparse runs pass the built release's LOCALVERSION back to make, so they do
    not turn 6.12.117-iofd-x into 6.12.117+ and make the next build relink every module."""
    (tmp_path / "Makefile").write_text("VERSION = 6\nPATCHLEVEL = 12\nSUBLEVEL = 117\n"
                                       "EXTRAVERSION =\nNAME = Baby Opossum Posse\n")
    assert build.same_release(tmp_path) == []                 # never configured
    (tmp_path / "include" / "config").mkdir(parents=True)
    release = tmp_path / "include" / "config" / "kernel.release"
    release.write_text("6.12.117-iofd-b0750e4e\n")
    assert build.same_release(tmp_path) == ["LOCALVERSION=-iofd-b0750e4e"]
    release.write_text("6.12.117+\n")
    assert build.same_release(tmp_path) == []                 # not ours to keep


# -- the record of the last build -------------------------------------------------

# What make_kernel wrote before Kernel's paths were Paths (and still writes).
OLD_RECORD = """{
 "flavour": "default",
 "tree": "/c/linux",
 "bzimage": "/c/linux/arch/x86/boot/bzImage",
 "release": "6.12.117-iofd-dc03ed75",
 "series": "dc03ed75",
 "doorbell_ko": "/c/build/linux/doorbell/doorbell.ko",
 "headers": "/c/linux/usr",
 "selftests": "/c/linux/tools/testing/selftests/kvm",
 "kselftests": "/c/kselftest/linux"
}"""


def test_a_record_written_before_is_read_with_paths_and_written_the_same() -> None:
    from harness.kernel.pipeline import Kernel

    k = Kernel.from_json(OLD_RECORD)
    assert k.tree == Path("/c/linux") and k.bzimage.name == "bzImage"
    assert isinstance(k.kselftests, Path) and isinstance(k.doorbell_ko, Path)
    assert isinstance(k.release, str) and k.series == "dc03ed75"
    assert k.to_json() == OLD_RECORD


def test_last_built_reads_the_record(tmp_path: Path) -> None:
    from harness import flavours
    from harness.kernel.pipeline import last_built
    from harness.settings import Settings

    cfg = Settings(cache=tmp_path, kernel_src=None, jobs=1, accel=None,
                   flavour=flavours.get("default"))
    with pytest.raises(HarnessError, match="no default kernel has been built yet"):
        last_built(cfg)
    (tmp_path / "state").mkdir()
    bz = tmp_path / "bzImage"
    (tmp_path / "state" / "kernel-default.json").write_text(
        OLD_RECORD.replace("/c/linux/arch/x86/boot/bzImage", str(bz)))
    with pytest.raises(HarnessError, match="is gone"):
        last_built(cfg)
    bz.write_text("")
    assert last_built(cfg).bzimage == bz
