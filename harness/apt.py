"""A private apt configuration: Debian packages and sources fetched without touching the host's apt.

Everything apt reads or writes lives under one root directory: its own
source list, ``sources.list.d``, preferences, package lists, archives and an
empty dpkg status.  Nothing is installed, nothing under ``/etc/apt`` or
``/var/lib/apt`` changes, and the host's own ``apt-get update`` never sees
these sources.  Downloads are checked against the suites' signed indexes
(Debian 12's ``debian-archive-keyring`` holds the keys of every suite used).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from harness.errors import HarnessError

KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
MIRROR = "http://deb.debian.org/debian"
"""The mirror of the host's own Debian sources."""
SECURITY = "http://deb.debian.org/debian-security"
BOOKWORM_SOURCES = [
    f"deb-src [signed-by={KEYRING}] {MIRROR} bookworm main",
    f"deb-src [signed-by={KEYRING}] {MIRROR} bookworm-updates main",
    f"deb-src [signed-by={KEYRING}] {SECURITY} bookworm-security main",
]
"""Debian 12's source packages, point releases and security updates: the
sources of what the host runs (its QEMU, its fio)."""


def apt_options(root: Path) -> list[str]:
    """``-o`` options that point every apt directory at *root*.

    ``Dir::Etc`` moves the source list, ``sources.list.d``, preferences and
    ``trusted.gpg.d``; the lists, archives and dpkg status follow.  The
    sandbox user is root because ``_apt`` cannot write into a root-owned
    cache; downloads are still checked against the signed index.
    """
    return [
        "-o", f"Dir::Etc={root / 'etc'}",
        "-o", f"Dir::Etc::sourcelist={root / 'etc' / 'sources.list'}",
        "-o", f"Dir::Etc::sourceparts={root / 'etc' / 'sources.list.d'}",
        "-o", f"Dir::Etc::preferencesparts={root / 'etc' / 'preferences.d'}",
        "-o", f"Dir::State={root / 'state'}",
        "-o", f"Dir::State::Lists={root / 'lists'}",
        "-o", f"Dir::State::status={root / 'dpkg-status'}",
        "-o", f"Dir::Cache={root / 'cache'}",
        "-o", "Debug::NoLocking=1",
        "-o", "APT::Sandbox::User=root",
    ]


def _suites(sources: list[str]) -> str:
    """The suites *sources* name (``bookworm, bookworm-updates``), for messages."""
    names = []
    for line in sources:
        words = re.sub(r"\[[^]]*\]", "", line).split()
        if len(words) >= 3 and words[2] not in names:
            names.append(words[2])
    return ", ".join(names) or "no suite"


def _dsc_fields(dsc: Path) -> dict[str, str]:
    """The single-line fields of a .dsc (clear-signed or not)."""
    fields: dict[str, str] = {}
    for line in dsc.read_text(errors="replace").splitlines():
        if m := re.match(r"^([A-Za-z-]+):\s*(\S.*)$", line):
            fields.setdefault(m.group(1), m.group(2).strip())
    return fields


def source_dir(dsc: Path) -> str:
    """The directory ``dpkg-source -x`` unpacks *dsc* into: ``<source>-<upstream version>``
    (the version without its epoch and Debian revision)."""
    f = _dsc_fields(dsc)
    version = re.sub(r"^\d+:", "", f.get("Version", ""))
    if "-" in version:
        version = version.rsplit("-", 1)[0]
    return f"{f.get('Source', '')}-{version}"


def _checked(cmd: list[str], cwd: Path, what: str, hint: str) -> None:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive", LC_ALL="C")
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env,
                       stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        tail = (r.stderr or r.stdout).strip().splitlines()[-3:]
        raise HarnessError(f"{what} failed (exit {r.returncode}): {' / '.join(tail)}", hint)


def extract(deb: Path, into: Path) -> None:
    """``dpkg-deb -x`` of *deb* into *into* (nothing is installed)."""
    _checked(["dpkg-deb", "-x", str(deb), str(into)], deb.parent, f"dpkg-deb -x {deb.name}",
             f"{deb} may be damaged: delete it and run again")


class PrivateApt:
    """apt with every directory under *root* and *sources* (whole
    ``sources.list`` lines) as its only source list."""

    def __init__(self, root: Path, sources: list[str]) -> None:
        self.root = root
        self.sources = list(sources)
        self._updated = False

    @property
    def options(self) -> list[str]:
        return apt_options(self.root)

    def _prepare(self) -> None:
        for d in ("etc/sources.list.d", "etc/preferences.d", "state", "lists/partial",
                  "cache/archives/partial"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        (self.root / "etc" / "sources.list").write_text("".join(s + "\n" for s in self.sources))
        (self.root / "dpkg-status").touch()

    def _checked(self, args: list[str], cwd: Path, what: str) -> None:
        _checked(["apt-get", *self.options, *args], cwd, what,
                 f"the private apt configuration is {self.root}; "
                 "check that deb.debian.org is reachable")

    def update(self) -> None:
        """``apt-get update`` of these sources, once per instance."""
        if self._updated:
            return
        for tool in ("apt-get", "dpkg-deb"):
            if not shutil.which(tool):
                raise HarnessError(f"{tool} not found", "the harness expects Debian 12")
        if any(f"signed-by={KEYRING}" in s for s in self.sources) and not KEYRING.exists():
            raise HarnessError(f"{KEYRING} not found", "install debian-archive-keyring")
        self._prepare()
        self._checked(["update", "-q"], self.root, f"apt-get update of {_suites(self.sources)}")
        self._updated = True

    def download(self, spec: str, into: Path) -> Path:
        """``apt-get download spec`` (``pkg`` or ``pkg=version``) into *into*; the .deb."""
        self.update()
        into.mkdir(parents=True, exist_ok=True)
        name = spec.split("=")[0]
        for old in into.glob(f"{name}_*.deb"):
            old.unlink()
        self._checked(["download", spec], into, f"apt-get download {spec}")
        debs = sorted(into.glob(f"{name}_*.deb"))
        if len(debs) != 1:
            raise HarnessError(f"apt-get download {spec} left {len(debs)} packages in {into}",
                               f"empty {into} and try again")
        return debs[0]

    def source(self, spec: str, into: Path) -> Path:
        """``apt-get source spec`` (``pkg`` or ``pkg=version``, a source or
        binary package name) unpacked in *into*, Debian's patches applied;
        the source directory."""
        if not shutil.which("dpkg-source"):
            raise HarnessError("dpkg-source not found", "install dpkg-dev (make deps does)")
        self.update()
        into.mkdir(parents=True, exist_ok=True)
        before = {p.name: p.stat().st_mtime_ns for p in into.glob("*.dsc")}
        self._checked(["source", "-q", spec], into, f"apt-get source {spec}")
        # The .dsc apt-get fetched (or found already there, unchanged) names the directory.
        dscs = [p for p in into.glob("*.dsc") if before.get(p.name) != p.stat().st_mtime_ns]
        dscs = dscs or list(into.glob("*.dsc"))
        version = spec.split("=", 1)[1] if "=" in spec else None
        if version:
            dscs = [p for p in dscs if _dsc_fields(p).get("Version") == version]
        dirs = sorted({into / source_dir(p) for p in dscs})
        if len(dirs) != 1 or not dirs[0].is_dir():
            raise HarnessError(f"apt-get source {spec} left no single source directory in {into} "
                               f"(found {', '.join(p.name for p in dirs) or 'none'})",
                               f"empty {into} and try again")
        return dirs[0]
