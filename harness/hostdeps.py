"""Debian packages the harness needs on the host, installed when missing.

``udev`` is on the list for a reason that is easy to miss: without it the
virtme-ng guest finds no virtio-serial ports, its output is lost and vng
exits 255.
"""

import os
import shutil
import subprocess

from harness.errors import HarnessError
from harness.progress import phase, say

# The kernel source is not on this list: Debian 12 has no 7.3, so
# harness.kernel.debian fetches it from trixie-backports through a private
# apt configuration that the host's apt never sees.
PACKAGES: dict[str, str] = {
    "qemu-system-x86": "QEMU, which virtme-ng boots the kernel in",
    "udev": "virtio-serial ports in the guest (vng's output and exit code)",
    "build-essential": "gcc and make for the kernel",
    "flex": "the kernel build",
    "bison": "the kernel build",
    "bc": "the kernel build",
    "libelf-dev": "the kernel build (objtool)",
    "libssl-dev": "the kernel build (certs)",
    "cpio": "the kernel build",
    "kmod": "depmod for module installs",
    "xz-utils": "unpacking linux-source",
    "sparse": "the sparse gate on virt/kvm",
    "busybox-static": "virtme-ng's initramfs",
    "rsync": "kselftest install",
    "openssh-server": "sshd in the test VM (vng --ssh), the remote-target tests' SSH host",
    "openssh-client": "ssh-keygen, which vng --ssh runs for the VM's host keys",
    "git-email": "git send-email, for sending the series (the host tests dry-run it)",
    # git-email only recommends these, and installs skip recommends: without
    # Mail::Address, git send-email dies before it reads a patch.
    "libmailtools-perl": "Mail::Address, which git send-email loads at start",
    "libauthen-sasl-perl": "SMTP authentication for git send-email",
    "libio-socket-ssl-perl": "SMTP over TLS for git send-email",
    # make nvme: QEMU and fio from Debian's sources.
    "dpkg-dev": "dpkg-source, which apt-get source unpacks QEMU's and fio's sources with",
    "meson": "QEMU's build",
    "ninja-build": "QEMU's build",
    "pkg-config": "QEMU's build",
    "libglib2.0-dev": "QEMU's build",
    "libpixman-1-dev": "QEMU's build",
    "libfdt-dev": "QEMU's build",
    "libaio-dev": "QEMU's build (linux-aio)",
}


def missing(packages: list[str]) -> list[str]:
    """Packages from *packages* that dpkg does not list as installed."""
    out = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Package} ${db:Status-Status}\n", *packages],
        capture_output=True,
        text=True,
    ).stdout
    installed = {line.split()[0] for line in out.splitlines() if line.endswith(" installed")}
    return [p for p in packages if p not in installed]


def _apt(args: list[str]) -> subprocess.CompletedProcess[str]:
    prefix = [] if os.geteuid() == 0 else ["sudo", "-n"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    return subprocess.run(
        [*prefix, "apt-get", *args], capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL
    )


def ensure() -> None:
    """Install whatever is missing, or say which package could not be had."""
    if not shutil.which("dpkg-query"):
        raise HarnessError("this host has no dpkg", "the harness expects Debian 12; install "
                           + ", ".join(PACKAGES) + " by hand")
    need = missing(list(PACKAGES))
    if not need:
        return
    with phase(f"installing {' '.join(need)}"):
        _apt(["update", "-q"])
        r = _apt(["install", "-y", "-q", "--no-install-recommends", *need])
        if r.returncode != 0:
            # Try one at a time so the message can name the culprit.
            for pkg in need:
                if _apt(["install", "-y", "-q", "--no-install-recommends", pkg]).returncode:
                    raise HarnessError(
                        f"{pkg} is missing and could not be installed ({PACKAGES[pkg]})",
                        f"run 'apt-get install {pkg}' as root and read its error",
                    )
    still = missing(need)
    if still:
        raise HarnessError(f"still missing after apt-get: {' '.join(still)}",
                           "install them by hand")
    say("host packages: all present")
