"""The base's source package comes through a private apt configuration.

harness.kernel.debian fetches linux-source-7.3 from trixie-backports with
apt options that move every apt directory under the cache, so the host's
own apt never learns about that suite.  Checked with apt itself:
``apt-config dump`` shows where the options point, and ``apt-cache
policy`` shows which configuration knows the package.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from harness import settings
from harness.apt import apt_options
from harness.kernel import debian

if shutil.which("apt-config") is None:
    pytest.skip("no apt on this host", allow_module_level=True)

PLACES = ("Dir::Etc::sourcelist/f", "Dir::Etc::sourceparts/d", "Dir::Etc::preferencesparts/d",
          "Dir::Etc::trusted/f", "Dir::Etc::trustedparts/d", "Dir::State::lists/d",
          "Dir::State::status/f", "Dir::Cache::archives/d")
"""Where apt reads sources, keys and preferences and writes lists, status and
debs, as ``apt-config shell`` resolves them (``/f`` file, ``/d`` directory)."""


def _resolved(options: list[str]) -> dict[str, str]:
    args = [x for i, key in enumerate(PLACES) for x in (f"V{i}", key)]
    out = subprocess.run(["apt-config", *options, "shell", *args], capture_output=True,
                         text=True, check=True).stdout
    values = dict(line.split("=", 1) for line in out.splitlines())
    return {key: values.get(f"V{i}", "").strip("'") for i, key in enumerate(PLACES)}


def _policy(options: list[str]) -> str:
    return subprocess.run(["apt-cache", *options, "policy", debian.PACKAGE],
                          capture_output=True, text=True).stdout


def test_every_apt_directory_is_moved_under_the_private_root(tmp_path: Path) -> None:
    private = _resolved(apt_options(tmp_path))
    host = _resolved([])
    for key in PLACES:
        assert private[key].startswith(f"{tmp_path}/"), (key, private[key])
        assert host[key].startswith(("/etc/apt/", "/var/")), (key, host[key])


def test_the_private_list_names_only_the_backports_suite() -> None:
    assert debian.source_line() == (f"deb [signed-by={debian.KEYRING}] {debian.MIRROR} "
                                    f"{debian.SUITE} main\n")


def test_the_host_apt_does_not_know_the_package_the_private_one_does() -> None:
    """After a fetch, the host's apt still has no candidate for linux-source-7.3;
    the private configuration has the pinned version.  A fetch that wrote the
    suite into the host's sources would fail the first half."""
    root = settings.from_env().cache / "apt"
    if not (root / "lists").is_dir() or not any((root / "lists").glob("*Packages*")):
        pytest.skip(f"no private apt lists at {root}: run 'make build' first")
    assert f"Candidate: {debian.VERSION}" not in _policy([])
    assert f"Candidate: {debian.VERSION}" in _policy(apt_options(root))
