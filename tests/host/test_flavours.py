"""A flavour is one entry in harness.flavours.FLAVOURS, and everything follows it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from harness import flavours, paths, settings
from harness.flavours import Flavour
from harness.vm.accel import Decision
from harness.vm.boot import options_for


@pytest.fixture
def extra_flavour(monkeypatch: pytest.MonkeyPatch) -> Flavour:
    """A flavour that exists only in this test: one registry entry, nothing else."""
    f = Flavour("trace", ("Kconfig.fragment",), patched=True, localversion="-iofd-{series}-trace",
                memory="3G", boot_timeout=900.0, append=("trace_buf_size=1M",),
                limit_multiplier=2, kmemleak=False)
    monkeypatch.setitem(flavours.FLAVOURS, f.name, f)
    return f


def test_a_new_entry_is_selectable_and_drives_the_boot(extra_flavour: Flavour) -> None:
    cfg = settings.from_env({"KVM_IOFD_FLAVOUR": "trace", "KVM_IOFD_CACHE": "/c"})
    assert cfg.flavour is extra_flavour
    opts = options_for(cfg, Decision("tcg", "test"), [])
    assert (opts.memory, opts.boot_timeout, opts.append) == ("3G", 900.0, ["trace_buf_size=1M"])
    assert extra_flavour.tree_suffix == "-trace"
    assert extra_flavour.local_version("abc") == "-iofd-abc-trace"
    assert extra_flavour.fragment_paths() == [paths.REPO / "Kconfig.fragment"] * 2


def test_every_registered_flavour_is_complete() -> None:
    assert set(flavours.FLAVOURS) == {"default", "debug", "base"}
    for f in flavours.FLAVOURS.values():
        for frag in f.fragment_paths():
            assert frag.is_file(), frag
        assert "{series}" in f.localversion or not f.patched
    assert flavours.get("default").tree_suffix == ""


def test_make_passes_the_flavour_through() -> None:
    """FLAVOUR=name reaches the harness (DEBUG=1 is short for debug)."""
    def dry(*args: str) -> str:
        return subprocess.run(["make", "-n", "-C", str(paths.REPO), *args],
                              capture_output=True, text=True, timeout=60).stdout
    assert "--flavour trace" in dry("smoke", "FLAVOUR=trace")
    assert "--flavour debug" in dry("smoke", "DEBUG=1")
    assert "--flavour default" in dry("smoke")
    assert "gates" not in dry("test", "FLAVOUR=debug").split("pytest")[0].split("harness build")[1]


def test_only_flavours_py_names_the_debug_flavour() -> None:
    """No module compares flavour names of its own (the strings used to be
    checked in eight places); picking "base" for a baseline by name is fine."""
    hits = []
    for f in sorted((paths.REPO / "harness").rglob("*.py")):
        if f.name == "flavours.py":
            continue
        hits += [f"{f.relative_to(paths.REPO)}:{n}" for n, line in
                 enumerate(Path(f).read_text().splitlines(), 1) if '"debug"' in line]
    assert hits == []
