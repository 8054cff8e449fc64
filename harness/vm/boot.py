"""The virtme-ng command line for booting a built kernel.

Under TCG the VM gets exactly one vCPU: with two, the guest oopsed the
first time KVM ran a VM (cross-CPU code patching of a static key).
"""

from dataclasses import dataclass, field
from pathlib import Path

from harness.vm.accel import Decision


@dataclass
class BootOptions:
    accel: Decision
    memory: str = "2G"
    rwdirs: list[Path] = field(default_factory=list)
    append: list[str] = field(default_factory=list)
    ssh_port: int | None = None
    shell: Path | None = None  # the guest's console shell; None: the user's own
    boot_timeout: float = 300.0  # a limit for a hung boot, not an expectation


# The debug kernel turns the first WARN into a panic, which the session reports.
DEBUG_APPEND = ["panic_on_warn=1", "kasan.fault=panic"]


def options_for(flavour: str, accel: Decision, rwdirs: list[Path]) -> BootOptions:
    """Boot options for a kernel flavour: the debug kernel needs more memory
    (KASAN) and time.  It reached the prompt in 196-202 s under TCG with a
    second VM beside it (udev's coldplug is most of that), but on a host
    with a quarter of its CPU stolen it once had no prompt after 24 min:
    the limit is for a hung boot, not an expectation."""
    if flavour == "debug":
        return BootOptions(accel=accel, memory="4G", rwdirs=rwdirs, append=list(DEBUG_APPEND),
                           boot_timeout=1800.0)
    return BootOptions(accel=accel, rwdirs=rwdirs)


def vng_command(tree: Path, opts: BootOptions, exec_cmd: str | None = None) -> list[str]:
    cmd = ["vng", "--run", str(tree), "--cpus", "1", "--memory", opts.memory,
           "--qemu-opts=-no-reboot"]
    if opts.accel.accel == "tcg":
        cmd.append("--disable-kvm")
    for d in opts.rwdirs:
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
