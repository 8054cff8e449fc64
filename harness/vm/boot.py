"""The virtme-ng command line for booting a built kernel.

Under TCG the VM gets one vCPU unless it also runs under QEMU's icount:
with two vCPUs on multi-threaded TCG the guest oopsed the first time KVM
ran a VM (cross-CPU code patching of a static key).  ``icount`` (see
:data:`ICOUNT`) makes TCG single-threaded, round-robin over the vCPUs, and
guest time count instructions: two vCPUs run KVM fine that way, and a
benchmark's per-doorbell times become instruction counts that repeat to
0.1 % (against 14-26 % noise without it).

The guest sees the host's root file system, so the checkout and the cache
are at the same paths inside it, except where virtme-ng's guest init
mounts an empty tmpfs (:data:`HIDDEN`).  It mounts the ``--rwdir`` shares
after those, so a checkout or cache beneath one is shared explicitly and
shows through.
"""

import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from harness import paths
from harness.errors import HarnessError
from harness.settings import Settings
from harness.vm import accel
from harness.vm.accel import Decision

# What virtme-ng 1.42's guest init (virtme-init's mount_sys_filesystems,
# virtme-ng-init's SYSTEM_MOUNTS) covers with a fresh, empty file system.
HIDDEN = tuple(Path(p) for p in (
    "/var/log", "/var/tmp", "/var/spool/rsyslog", "/var/lib/portables", "/var/lib/machines",
    "/var/lib/private", "/var/cache", "/var/lib/apt", "/var/lib/snapd/cookie", "/var/lib/sudo",
    "/run"))
ICOUNT = "-icount shift=0,sleep=off"
"""One guest instruction per virtual nanosecond, and no sleeping to keep
virtual time near real time: every guest clock counts instructions."""
# vng passes each --rwdir to a shell unquoted, and virtme-run accepts only these.
_SHAREABLE = re.compile(r"[A-Za-z0-9_+/.-]+")


@dataclass
class BootOptions:
    accel: Decision
    cache: Path  # where console logs and the command transfer directory go
    memory: str = "2G"
    rwdirs: list[Path] = field(default_factory=list)
    visible: list[Path] = field(default_factory=list)
    """Host directories the guest must see at the same path (the checkout,
    the cache): shared explicitly when the guest init would hide them."""
    append: list[str] = field(default_factory=list)
    ssh_port: int | None = None
    shell: Path | None = None  # the guest's console shell; None: the user's own
    boot_timeout: float = 300.0  # a limit for a hung boot, not an expectation
    cpus: int = 1
    icount: bool = False
    """Run under QEMU's icount (:data:`ICOUNT`); TCG only."""

    def check(self) -> None:
        """Refuse what QEMU would refuse later and less clearly."""
        if self.icount and self.accel.accel != "tcg":
            raise HarnessError("icount needs TCG: QEMU counts instructions only when it "
                               "translates them", "leave KVM_IOFD_ACCEL unset or set it to tcg")
        if self.cpus < 1 or (self.cpus > 1 and self.accel.accel == "tcg" and not self.icount):
            raise HarnessError(f"{self.cpus} vCPUs under multi-threaded TCG: with more than one the "
                               "guest oopses when KVM runs", "boot with icount, or one vCPU")


def counting(opts: BootOptions) -> BootOptions:
    """*opts* under icount: the same VM, its clocks counting guest
    instructions (the benchmark's deterministic run)."""
    return replace(opts, icount=True)


def options_for(settings: Settings, accel: Decision, rwdirs: list[Path]) -> BootOptions:
    """Boot options for ``settings.flavour``: its memory, boot limit and
    command line; the guest sees the checkout and the cache."""
    f = settings.flavour
    return BootOptions(accel=accel, cache=settings.cache, memory=f.memory, rwdirs=rwdirs,
                       visible=[paths.REPO, settings.cache], append=list(f.append),
                       boot_timeout=f.boot_timeout)


def options(settings: Settings) -> BootOptions:
    """How the CLI and the VM suite boot: the accelerator decided (or forced),
    ``results/`` shared read-write."""
    paths.RESULTS.mkdir(exist_ok=True)
    return options_for(settings, accel.detect(settings.accel), [paths.RESULTS])


def hidden_by(path: Path) -> Path | None:
    """The directory the guest init hides *path* under, if any."""
    path = Path(path).absolute()
    return next((h for h in HIDDEN if path == h or h in path.parents), None)


def shares(opts: BootOptions) -> list[Path]:
    """The read-write shares, in mount order: each visible directory the
    guest would not see, then every rwdir not already inside one of those
    (a share mounted inside another would be covered by it otherwise)."""
    hidden = [Path(v).absolute() for v in opts.visible if hidden_by(v)]
    rest = [d for d in opts.rwdirs
            if not any(d == h or h in Path(d).absolute().parents for h in hidden)]
    out = hidden + rest
    for d in out:
        if not _SHAREABLE.fullmatch(str(d)):
            why = (f"it is under {hidden_by(d)}, which the VM's init hides, and " if hidden_by(d)
                   else "")
            raise HarnessError(f"cannot share {d} with the VM: {why}virtme-ng shares only paths "
                               "of letters, digits and ._+-/",
                               "move the checkout or KVM_IOFD_CACHE to such a path")
    return out


def vng_command(tree: Path, opts: BootOptions, exec_cmd: str | None = None) -> list[str]:
    opts.check()
    qemu = "-no-reboot" + (f" {ICOUNT}" if opts.icount else "")
    cmd = ["vng", "--run", str(tree), "--cpus", str(opts.cpus), "--memory", opts.memory,
           f"--qemu-opts={qemu}"]
    if opts.accel.accel == "tcg":
        cmd.append("--disable-kvm")
    for d in shares(opts):
        cmd.append(f"--rwdir={d}")
    # Reboot on panic; with -no-reboot QEMU then exits instead of hanging.
    for a in ["panic=-1", *opts.append]:
        cmd += ["--append", a]
    if opts.ssh_port is not None:
        cmd += ["--ssh", str(opts.ssh_port), "--ssh-tcp"]
    if opts.shell is not None:
        cmd += ["--shell", str(opts.shell)]
    if exec_cmd is not None:
        cmd += ["--exec", exec_cmd]
    return cmd
