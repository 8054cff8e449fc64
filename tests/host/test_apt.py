"""The private apt configuration (harness.apt), with a fake apt-get on PATH
that records what it was asked: every directory apt uses stays under the
cache, and a failure is a clear error.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness.apt import PrivateApt, apt_options, source_dir
from harness.errors import HarnessError


def test_apt_options_keep_every_directory_under_the_root(tmp_path: Path) -> None:
    opts = apt_options(tmp_path)
    values = [o.split("=", 1)[1] for o in opts[1::2] if o.startswith("Dir")]
    assert len(values) == 8
    assert all(v.startswith(str(tmp_path)) for v in values)
    assert not any("/etc/apt" in o or "/var/lib/apt" in o for o in opts)


def test_source_dir_drops_epoch_and_revision(tmp_path: Path) -> None:
    dsc = tmp_path / "qemu.dsc"
    dsc.write_text("-----BEGIN PGP SIGNED MESSAGE-----\n\nFormat: 3.0 (quilt)\n"
                   "Source: qemu\nVersion: 1:7.2+dfsg-7+deb12u18\n")
    assert source_dir(dsc) == "qemu-7.2+dfsg"


FAKE_APT = """#!/bin/sh
# A fake apt-get: records its arguments, and for 'source' unpacks a tree.
echo "$*" >> "$FAKE_APT_LOG"
for a in "$@"; do last=$a; done
case " $* " in
*" source "*)
	printf 'Source: fio\\nVersion: 3.33-3\\n' > fio_3.33-3.dsc
	mkdir -p fio-3.33 && echo ok > fio-3.33/configure ;;
*" download "*) : > "${last%%=*}_1.0_amd64.deb" ;;
esac
"""


@pytest.fixture
def fake_apt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "apt-get").write_text(FAKE_APT)
    (bin_dir / "apt-get").chmod(0o755)
    for tool in ("dpkg-deb", "dpkg-source"):
        (bin_dir / tool).write_text("#!/bin/sh\n")
        (bin_dir / tool).chmod(0o755)
    log = tmp_path / "apt.log"
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_APT_LOG", str(log))
    return log


def test_private_apt_fetches_a_source_through_its_own_configuration(
        tmp_path: Path, fake_apt: Path) -> None:
    root = tmp_path / "apt"
    apt = PrivateApt(root, ["deb-src http://deb.example/debian bookworm main"])
    src = apt.source("fio=3.33-3", tmp_path / "src")
    assert src == tmp_path / "src" / "fio-3.33"
    assert (root / "etc" / "sources.list").read_text() == \
        "deb-src http://deb.example/debian bookworm main\n"
    calls = fake_apt.read_text().splitlines()
    assert [c.split()[-1] for c in calls] == ["-q", "fio=3.33-3"]  # update, then source
    for call in calls:
        assert f"Dir::Etc::sourcelist={root}/etc/sources.list" in call
        assert f"Dir::State::Lists={root}/lists" in call
    deb = apt.download("busybox-static", tmp_path / "debs")
    assert deb.name == "busybox-static_1.0_amd64.deb"
    assert len(fake_apt.read_text().splitlines()) == 3, "update runs once per instance"


def test_private_apt_failure_is_a_clear_error(tmp_path: Path, fake_apt: Path) -> None:
    (fake_apt.parent / "bin" / "apt-get").write_text(
        "#!/bin/sh\necho 'E: Unable to locate package nosuch' >&2\nexit 100\n")
    apt = PrivateApt(tmp_path / "apt", ["deb-src http://deb.example/debian bookworm main"])
    with pytest.raises(HarnessError, match=r"apt-get update of bookworm failed \(exit 100\)"):
        apt.source("nosuch", tmp_path / "src")
