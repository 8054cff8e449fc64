"""Debian's ``linux-source-7.3``, fetched without touching the host's apt.

Debian 12 ships no 7.3 kernel; trixie-backports does.  Adding that suite
to the host's sources would let a user's next ``apt-get upgrade`` pull in
trixie packages, so instead the package is fetched through a private apt
configuration under the cache: its own source list, package lists and
archives, and an empty dpkg status.  ``apt-get download`` verifies the
package against the suite's signed index (the trixie keys are already in
Debian 12's ``debian-archive-keyring``), and ``dpkg-deb -x`` unpacks it
into the cache.  Nothing is installed and nothing under ``/etc/apt`` or
``/var/lib/apt`` changes (:class:`harness.apt.PrivateApt`).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from harness.apt import KEYRING, MIRROR, PrivateApt, extract
from harness.errors import HarnessError
from harness.progress import phase

PACKAGE = "linux-source-7.3"
VERSION = "7.3.4-1~bpo13+1"
"""Pinned so the series' recorded base (kernel-patch/BASE) is what gets built."""
SUITE = "trixie-backports"
TARBALL_NAME = "linux-source-7.3.tar.xz"
TREE = "linux-7.3"
"""The unpacked tree's directory in the cache: a new base gets a new name, so
a cache that holds an older base is never mistaken for this one."""


def source_line() -> str:
    return f"deb [signed-by={KEYRING}] {MIRROR} {SUITE} main\n"


def tarball(cache: Path) -> Path:
    """The unpacked ``linux-source-7.3.tar.xz``, fetched on first use."""
    root = cache / "apt"
    out = cache / "debian-source" / VERSION
    tar = out / "usr" / "src" / TARBALL_NAME
    if tar.exists():
        return tar
    for tool in ("apt-get", "dpkg-deb"):
        if not shutil.which(tool):
            raise HarnessError(f"{tool} not found", "the harness expects Debian 12, or set "
                               "KERNEL_SRC=/path/to/linux")
    if not KEYRING.exists():
        raise HarnessError(f"{KEYRING} not found", "install debian-archive-keyring")
    apt = PrivateApt(root, [source_line().rstrip("\n")])
    debs = root / "debs"
    with phase(f"fetching {PACKAGE} {VERSION} from {SUITE} (private apt configuration)"):
        deb = apt.download(f"{PACKAGE}={VERSION}", debs)
        tmp = out.with_name(out.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.parent.mkdir(parents=True, exist_ok=True)
        extract(deb, tmp)
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)
        deb.unlink()
    if not tar.exists():
        raise HarnessError(f"{deb.name} holds no {TARBALL_NAME}", "the package layout changed")
    return tar
