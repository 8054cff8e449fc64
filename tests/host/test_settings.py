"""Environment variables are read once, in harness.settings, and checked there."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from harness import flavours, paths, settings
from harness.errors import HarnessError

HOME_CACHE = Path.home() / ".cache" / "kvm-iofd"


def test_defaults() -> None:
    s = settings.from_env({})
    assert s.cache == HOME_CACHE
    assert s.kernel_src is None and s.accel is None
    assert s.flavour is flavours.get("default")
    assert s.jobs >= 1


def test_cache_precedence() -> None:
    assert settings.from_env({"XDG_CACHE_HOME": "/x"}).cache == Path("/x/kvm-iofd")
    assert settings.from_env({"XDG_CACHE_HOME": "/x", "KVM_IOFD_CACHE": "/c"}).cache == Path("/c")


def test_values_are_taken() -> None:
    s = settings.from_env({"KERNEL_SRC": "/src/linux", "JOBS": "7", "KVM_IOFD_ACCEL": "kvm"})
    assert (s.kernel_src, s.jobs, s.accel) == (Path("/src/linux"), 7, "kvm")


def test_flavour_by_name_or_debug_switch() -> None:
    assert settings.from_env({"KVM_IOFD_DEBUG": "1"}).flavour.name == "debug"
    assert settings.from_env({"KVM_IOFD_FLAVOUR": "base"}).flavour.name == "base"
    assert settings.from_env({}).with_flavour("debug").flavour.limit_multiplier == 3


@pytest.mark.parametrize("env, what", [
    ({"JOBS": "two"}, "JOBS=two"),
    ({"JOBS": "0"}, "JOBS=0"),
    ({"KVM_IOFD_ACCEL": "hvf"}, "KVM_IOFD_ACCEL=hvf"),
    ({"KVM_IOFD_FLAVOUR": "fast"}, "unknown kernel flavour 'fast'"),
])
def test_bad_values_are_refused_with_what_was_wrong(env: dict[str, str], what: str) -> None:
    with pytest.raises(HarnessError, match=what):
        settings.from_env(env)


VARIABLES = {"KERNEL_SRC", "JOBS", "KVM_IOFD_ACCEL", "KVM_IOFD_DEBUG", "KVM_IOFD_FLAVOUR",
             "KVM_IOFD_CACHE", "XDG_CACHE_HOME"}


def _read(node: ast.AST) -> str | None:
    """The variable *node* reads: ``X.get("V")``, ``X.getenv("V")``, ``X["V"]``."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
            and node.func.attr in ("get", "getenv") and node.args:
        key = node.args[0]
    elif isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load):
        key = node.slice
    else:
        return None
    return key.value if isinstance(key, ast.Constant) and key.value in VARIABLES else None


def readers(root: Path) -> dict[str, set[str]]:
    """Modules under *root* that read one of the variables (setting one for
    a remote host's command is not reading it)."""
    found: dict[str, set[str]] = {}
    for f in root.rglob("*.py"):
        names = {v for n in ast.walk(ast.parse(f.read_text())) if (v := _read(n))}
        if names:
            found[str(f.relative_to(root.parent))] = names
    return found


def test_only_settings_reads_the_variables() -> None:
    """The cache's two through the rule settings shares with the payload."""
    cache = {"KVM_IOFD_CACHE", "XDG_CACHE_HOME"}
    assert readers(paths.REPO / "harness") == {"harness/settings.py": VARIABLES - cache}
    assert readers(paths.REPO / "payload")["payload/native/cache.py"] == cache


def test_the_check_sees_a_reader(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "m.py").write_text(
        "import os\nx = os.environ.get('JOBS', '2')\ny = os.environ['KERNEL_SRC']\n"
        "z = {'XDG_CACHE_HOME': '/w'}\n")
    assert readers(tmp_path / "pkg") == {"pkg/m.py": {"JOBS", "KERNEL_SRC"}}

