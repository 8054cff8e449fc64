"""Kernel flavours: every way the harness builds and boots a kernel, in one table.

A flavour is what differs between the normal kernel, the debug kernel and
the unpatched base (for the selftest baseline and the sparse gate): its
config fragments, its local version, how the VM boots it, how much slower
it runs, and whether the suite ends with a kmemleak scan.  Adding one is
one entry in :data:`FLAVOURS` (and its fragment, if it has one).
"""

from __future__ import annotations

from dataclasses import dataclass

from harness import paths
from harness.errors import HarnessError


@dataclass(frozen=True)
class Flavour:
    name: str
    fragments: tuple[str, ...]
    """Config fragments beyond the default config, relative to the checkout."""
    patched: bool
    """Whether kernel-patch/ is applied (the base flavour is not)."""
    localversion: str
    """``LOCALVERSION``; ``{series}`` stands for the series id."""
    memory: str = "2G"
    boot_timeout: float = 300.0
    """A limit for a hung boot, not an expectation."""
    append: tuple[str, ...] = ()
    """Kernel command-line additions."""
    limit_multiplier: int = 1
    """How many times slower than the default kernel it runs: test limits grow with it."""
    kmemleak: bool = False
    """The VM suite ends with a kmemleak scan."""

    @property
    def tree_suffix(self) -> str:
        """Each flavour builds in its own worktree, so none invalidates another."""
        return "" if self.name == DEFAULT else f"-{self.name}"

    def fragment_paths(self) -> list:
        return [paths.REPO / f for f in ("Kconfig.fragment", *self.fragments)]

    def local_version(self, series: str) -> str:
        return self.localversion.format(series=series)


DEFAULT = "default"
DEBUG = "debug"  # what --debug, DEBUG=1 and KVM_IOFD_DEBUG=1 are short for

FLAVOURS: dict[str, Flavour] = {f.name: f for f in (
    Flavour(DEFAULT, (), patched=True, localversion="-iofd-{series}"),
    # KASAN needs the memory, and the boot limit allows for a loaded host
    # (the README has the measured boot time).  The first WARN becomes a
    # panic, which the session reports.
    Flavour(DEBUG, ("Kconfig.debug.fragment",), patched=True,
            localversion="-iofd-{series}-debug", memory="4G", boot_timeout=1800.0,
            append=("panic_on_warn=1", "kasan.fault=panic"), limit_multiplier=3, kmemleak=True),
    Flavour("base", (), patched=False, localversion="-base"),
)}


def get(name: str) -> Flavour:
    try:
        return FLAVOURS[name]
    except KeyError:
        raise HarnessError(f"unknown kernel flavour {name!r}",
                           f"flavours are {', '.join(FLAVOURS)}") from None
