"""Make a connected host ready to run the payload, or say why it cannot be.

Each check names what is missing on which host: a remote machine is
someone's own box, so nothing is installed there behind their back.  The
doorbell module is the one exception, since the benchmark cannot count
without it: one already loaded is used; otherwise it is loaded from the
host's modules (``modprobe``), from a ``doorbell.ko`` built here for the
same kernel release, or built there from the shipped source against the
host's ``/lib/modules/$(uname -r)/build``; a run that loaded it unloads it
when done, unless another run is using the host.

The :class:`~harness.remote.host.Host` that results is a
:class:`harness.machine.Machine`.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import tempfile
from pathlib import Path

from harness.machine import Result
from harness.progress import say
from harness.remote import bundle
from harness.remote.connection import Remote, RemoteError
from harness.remote.host import Host

MIN_PYTHON = (3, 11)
# Each set-up step takes seconds on real hardware; the limit only catches a
# hung host, and must allow a debug kernel under TCG, where starting python
# alone can take a minute.
STEP_TIMEOUT = 600.0
LOADED = "grep -q '^doorbell ' /proc/modules"
LOCK = "/tmp/kvm-iofd.lock"
PREREQS = (
    "uname -m; id -u; command -v cc >/dev/null && echo cc || echo no-cc; "
    "python3 -c 'import sys; print(\"%d.%d\" % sys.version_info[:2])' 2>/dev/null || echo none"
)


def prerequisites(remote: Remote) -> str:
    """Check architecture, compiler, Python and root; the sudo prefix to use."""
    label = remote.address.label
    lines = remote.run(PREREQS, STEP_TIMEOUT, "the prerequisite check").stdout.split()
    if len(lines) != 4:
        raise RemoteError(f"{label}: unexpected answer to the prerequisite check: {lines}")
    machine, uid, cc, py = lines
    if machine != "x86_64":
        raise RemoteError(f"{label}: the host is {machine}; the guest programs are x86 code")
    if py == "none" or tuple(int(x) for x in py.split(".")) < MIN_PYTHON:
        raise RemoteError(f"{label}: needs python3 >= {'.'.join(map(str, MIN_PYTHON))}, has {py}")
    if cc != "cc":
        raise RemoteError(f"{label}: no C compiler (cc) on the host",
                          "the KVM_RUN loop is compiled there; install gcc")
    if uid == "0":
        return ""
    if remote.run("sudo -n true", STEP_TIMEOUT, "sudo -n true").rc:
        raise RemoteError(f"{label}: {remote.address.user} is not root and has no passwordless sudo",
                          "KVM and the doorbell module need root; connect as root or allow sudo -n")
    return "sudo -n "


def _unpack(remote: Remote, with_pytest: bool) -> str:
    label = remote.address.label
    r = remote.run("mktemp -d /tmp/kvm-iofd.XXXXXXXX", STEP_TIMEOUT,
                   "creating the work directory")
    workdir = r.stdout.strip()
    if r.rc or not workdir.startswith("/tmp/kvm-iofd."):
        raise RemoteError(f"{label}: cannot create a work directory in /tmp", r.stderr.strip())
    with tempfile.TemporaryDirectory() as tmp:
        tarball = bundle.build(Path(tmp) / "payload.tar.gz", with_pytest)
        remote.put(tarball, f"{workdir}/payload.tar.gz")
    r = remote.run(f"cd {workdir} && tar -xzf payload.tar.gz && chmod -R a+rX .", STEP_TIMEOUT,
                   "unpacking the payload")
    if r.rc:
        raise RemoteError(f"{label}: unpacking the payload failed", r.stderr.strip())
    return workdir


def _require_iofd(host: Host) -> None:
    i = host.info
    if not i.get("kvm"):
        raise RemoteError(f"{host.label}: /dev/kvm is not usable on {i['hostname']}",
                          i.get("kvm_error") or "load kvm_intel or kvm_amd there")
    if not i.get("cap_iofd"):
        raise RemoteError(f"{host.label}: kernel {i['kernel']} has no KVM_CAP_IOFD",
                          "boot the host into a kernel with kernel-patch/ applied")


def _as_root(host: Host, cmd: str, what: str, timeout: float = STEP_TIMEOUT) -> Result:
    return host.remote.run(f"{host.sudo}sh -c {shlex.quote(cmd)}", timeout, what)


def _locked(cmd: str) -> str:
    """*cmd* under the host-wide lock that every run of this harness takes to
    load or unload the doorbell: two --host naming one host must not race."""
    return f"flock {LOCK} sh -c {shlex.quote(cmd)}"


def _doorbell(host: Host, local_kos: dict[str, Path]) -> None:
    """Find (and load if needed) a doorbell module matching the host's kernel."""
    r = _as_root(host, "modinfo -n doorbell 2>/dev/null", "modinfo doorbell")
    installed = r.stdout.strip() if r.rc == 0 else None
    release = host.info["kernel"]
    built_here = local_kos.get(release)
    if built_here is not None:
        host.remote.put(built_here, f"{host.workdir}/doorbell.ko")
    ko = installed or (f"{host.workdir}/doorbell.ko" if built_here else None)
    if ko is None:
        say(f"{host.label}: building the doorbell module against /lib/modules/{release}/build")
        r = _as_root(host, f"make -s -C {host.workdir}/doorbell-module", "building the doorbell")
        if r.rc == 0:
            ko = f"{host.workdir}/doorbell-module/doorbell.ko"
        elif not host.info["doorbell"]:
            raise RemoteError(
                f"{host.label}: no doorbell module for kernel {release}: not installed, "
                "none built here for that release, and building it there failed",
                "build doorbell-module/ against that kernel (make KDIR=...) and insmod it; "
                f"make said: {(r.stderr or r.stdout).strip()[-500:]}")
    host.doorbell_ko = ko
    if ko is None:
        return  # loaded by someone, from somewhere: the benchmark can use it
    load = "modprobe doorbell" if ko == installed else f"insmod {shlex.quote(ko)}"
    r = _as_root(host, _locked(f"if {LOADED}; then echo present; else {load} && echo loaded; fi"),
                 "loading the doorbell module")
    if r.rc:
        raise RemoteError(f"{host.label}: '{load}' failed on kernel {release}",
                          (r.stderr.strip() or "no message") + "; see that host's dmesg")
    host.loaded_doorbell = r.stdout.strip() == "loaded"


def open_host(remote: Remote, local_kos: dict[str, Path], with_pytest: bool) -> Host:
    """Check, unpack, probe: a Host that can run the runner (and the tests).
    A host found unfit is left as it was found: its work directory goes."""
    sudo = prerequisites(remote)
    host = Host(remote, _unpack(remote, with_pytest), sudo)
    try:
        _probe(host)
        _require_iofd(host)
        _doorbell(host, local_kos)
    except RemoteError:
        if remote.alive():
            with contextlib.suppress(RemoteError):  # the first error is the one to show
                close_host(host)
        raise
    return host


def _probe(host: Host) -> None:
    r = host.check(host.remote.run(host.python("payload.hostinfo"), STEP_TIMEOUT,
                                    "the KVM probe"),
                   "the KVM probe")
    try:
        host.info = json.loads(r.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise RemoteError(f"{host.label}: the KVM probe printed no JSON", r.stdout[-500:]) from None


def close_host(host: Host) -> None:
    """Undo what open_host did there: the work directory, and the doorbell
    module if this run loaded it and no other run is using the host."""
    cleanup = f"rm -rf {shlex.quote(host.workdir)}"
    if host.loaded_doorbell:
        # Not while another run (another --host naming the same host) is there.
        cleanup += "; " + _locked("ls -d /tmp/kvm-iofd.*/ >/dev/null 2>&1 || rmmod doorbell")
    _as_root(host, cleanup, "cleaning up")
