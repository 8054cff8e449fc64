"""``python -m harness COMMAND``: parsing and dispatch only.

Each command resolves the settings once (:mod:`harness.settings`), then
hands over to the module that owns the job.  Every failure the user can
act on is an :class:`~payload.errors.ActionableError`, printed as one line
of what is wrong and one of what to do, never only a traceback.
"""

import argparse
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from harness import flavours, hostdeps, paths, settings
from harness.errors import HarnessError
from harness.kernel import export, gates, pipeline
from harness.kselftest import run as kselftest
from harness.progress import say
from harness.settings import Settings
from harness.vm import boot, session, smoke
from payload.errors import ActionableError
from payload.vmexit import modes as bench_modes

BENCH_ITERATIONS = bench_modes.DEFAULT_ITERATIONS
BENCH_TRIALS = bench_modes.DEFAULT_TRIALS


def _kernel(args: argparse.Namespace, cfg: Settings) -> pipeline.Kernel:
    return pipeline.last_built(cfg) if args.no_build else pipeline.make_kernel(cfg)


def cmd_deps(args: argparse.Namespace, cfg: Settings) -> int:
    hostdeps.ensure()
    return 0


def cmd_build(args: argparse.Namespace, cfg: Settings) -> int:
    hostdeps.ensure()
    k = pipeline.make_kernel(cfg)
    say(f"kernel {k.release} (series {k.series}) at {k.bzimage}")
    return 0


def cmd_shell(args: argparse.Namespace, cfg: Settings) -> int:
    k = _kernel(args, cfg)
    cmd = boot.vng_command(k.tree, boot.options(cfg))
    os.execvpe(cmd[0], cmd, paths.tool_env())


def cmd_run(args: argparse.Namespace, cfg: Settings) -> int:
    if not args.command:
        raise HarnessError("run needs a command", "python -m harness run -- uname -a")
    k = _kernel(args, cfg)
    how = boot.counting(boot.options(cfg)) if args.icount else cfg
    with session.boot(how, k, kvm=False) as vm:
        r = vm.run(" ".join(args.command), timeout=args.timeout)
    sys.stdout.write(r.stdout)
    sys.stderr.write(r.stderr)
    return r.rc


def cmd_smoke(args: argparse.Namespace, cfg: Settings) -> int:
    return smoke.run(_kernel(args, cfg), boot.options(cfg))


def cmd_gates(args: argparse.Namespace, cfg: Settings) -> int:
    if not args.no_build:
        pipeline.make_kernel(cfg)
    gates.check(cfg)
    return 0


def cmd_bench(args: argparse.Namespace, cfg: Settings) -> int:
    """The 2009 results table, measured: see :mod:`harness.bench`."""
    if args.hosts:
        from harness.remote import commands

        return commands.bench(cfg, args.hosts, args.ssh_config, args.iterations, args.trials,
                              args.strict, args.results)
    from harness.bench import host  # matplotlib loads only for this command

    k = _kernel(args, cfg)
    if args.record_icount:
        opts = boot.options(cfg)
        return host.record_icount(k, opts, args.why or "", cfg.flavour.name)
    return host.run(k, boot.options(cfg), args.iterations, args.trials, strict=args.strict)


def cmd_nvme(args: argparse.Namespace, cfg: Settings) -> int:
    """QEMU's NVMe controller on KVM_IOFD: see :mod:`harness.nvme.host`."""
    from harness.nvme import host as nvme  # matplotlib loads only for this command

    size = nvme.Size(ios=args.ios, rounds=args.rounds)
    return nvme.main(cfg, _kernel(args, cfg), size, args.build_only)


def cmd_patches(args: argparse.Namespace, cfg: Settings) -> int:
    from harness.qemu import export as qemu_export

    out = args.out or (export.OUTGOING if args.send else None)
    export.export_series(cfg, args.version, out)
    qemu_export.export_series(cfg.cache, cfg.qemu_src, out, export.NVME_MD)
    return 0


def cmd_kselftests(args: argparse.Namespace, cfg: Settings) -> int:
    """Run the upstream KVM selftests against this environment's baseline
    (recorded on the base first when there is none); with --baseline, record
    it again on the base: see :mod:`harness.kselftest.run`."""
    budget = int(args.timeout)
    if args.baseline:
        _, path = kselftest.record_on_base(cfg, budget=budget,
                                           build=lambda base: _kernel(args, base))
        say(f"baseline written to {path}")
        return 0
    k = _kernel(args, cfg)
    with session.boot(cfg, k) as vm:
        verdict = kselftest.judge(vm, cfg, k, budget, record_budget=budget)
    say(verdict.summary(k.release))
    error = verdict.error()
    if error is not None:
        raise error
    return 0


def cmd_test(args: argparse.Namespace, cfg: Settings) -> int:
    """The suite here; with --host, the payload tests on remote hosts."""
    if args.hosts:
        from harness.remote import commands

        return commands.test(cfg, args.hosts, args.ssh_config, args.pytest_args, args.results)
    return subprocess.call([sys.executable, "-m", "pytest", *args.pytest_args], cwd=paths.REPO)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m harness", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)

    def add(name: str, fn: Callable[[argparse.Namespace, Settings], int], help: str,
            kernel: bool = True) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help)
        sp.set_defaults(fn=fn)
        if kernel:
            sp.add_argument("--flavour", choices=sorted(flavours.FLAVOURS),
                            help="the kernel flavour (default: $KVM_IOFD_FLAVOUR, or default)")
            sp.add_argument("--debug", action="store_const", dest="flavour", const=flavours.DEBUG,
                            help="short for --flavour debug (KASAN, lockdep, kmemleak)")
            sp.add_argument("--no-build", action="store_true",
                            help="use the last built kernel without running make")
        return sp

    add("deps", cmd_deps, "install missing host packages", kernel=False)
    add("build", cmd_build, "apply kernel-patch/ and build kernel, module and selftest")
    add("shell", cmd_shell, "boot the kernel with an interactive shell")
    r = add("run", cmd_run, "boot, run one command, print its output, exit with its code")
    r.add_argument("--timeout", type=float, default=600.0)
    r.add_argument("--icount", action="store_true",
                   help="boot under QEMU's icount: guest clocks count instructions (TCG only)")
    r.add_argument("command", nargs=argparse.REMAINDER)
    add("smoke", cmd_smoke, "boot and check kernel, KVM and doorbell")
    b = add("bench", cmd_bench, "boot and measure every doorbell path; write results/bench.*")
    b.add_argument("--iterations", "-n", type=int, default=BENCH_ITERATIONS,
                   help=f"guest writes per trial (default {BENCH_ITERATIONS})")
    b.add_argument("--trials", "-t", type=int, default=BENCH_TRIALS,
                   help=f"trials per mode, interleaved (default {BENCH_TRIALS})")
    b.add_argument("--strict", action="store_true",
                   help="exit 1 when a performance target is missed (count errors always fail)")
    b.add_argument("--record-icount", action="store_true",
                   help="measure instructions per doorbell as make test's gate does, and rewrite "
                        "its record (harness/bench/icount-record.json); needs --why")
    b.add_argument("--why", help="with --record-icount: why the record changes (kept in it)")
    nv = add("nvme", cmd_nvme, "build the patched QEMU and the L2 guest, then measure QEMU's "
             "NVMe device on KVM_IOFD with fio; write results/nvme.*")
    nv.add_argument("--ios", type=int, default=2000, help="fio I/Os per job (default 2000)")
    nv.add_argument("--rounds", type=int, default=2,
                    help="wall-clock rounds, interleaved (default 2; the icount run has one)")
    nv.add_argument("--build-only", action="store_true",
                    help="only build (or find up to date) QEMU and the L2 guest")
    add("gates", cmd_gates, "checkpatch --strict and the sparse gate")
    ks = add("kselftests", cmd_kselftests, "run the upstream KVM selftests against the baseline")
    ks.add_argument("--baseline", action="store_true",
                    help="build and run the unpatched base, and record the baseline")
    ks.add_argument("--timeout", type=float, default=3600.0,
                    help="seconds for the whole run, inside the guest (default 3600; "
                         "times 3 for the debug kernel, as is each test's limit)")
    pp = add("patches", cmd_patches, "export the working branch to kernel-patch/", kernel=False)
    pp.add_argument("--version", type=int, help="reroll as vN (default: keep the version)")
    pp.add_argument("--send", action="store_true",
                    help="write the copy to send, from and signed off by your git user.name and "
                         "user.email, to results/outgoing/ instead")
    pp.add_argument("--out", type=Path, metavar="DIR", help="like --send, to DIR")
    t = add("test", cmd_test, "run the test suite (pytest arguments follow; with --host, "
            "tests/payload on those hosts)", kernel=False)
    t.add_argument("pytest_args", nargs=argparse.REMAINDER)
    for sp in (b, t):
        # --target was this option's first name; it still works.
        sp.add_argument("--host", "--target", action="append", dest="hosts",
                        metavar="ssh://[USER@]HOST[:PORT]",
                        help="run on this host over SSH instead of in the VM (repeat for "
                             "several hosts, run in parallel); it must run the patched kernel")
        sp.add_argument("--ssh-config", type=Path, metavar="FILE",
                        help="SSH client config to read (default ~/.ssh/config)")
        sp.add_argument("--results", type=Path, default=paths.RESULTS / "remote", metavar="DIR",
                        help="where --host runs write (default results/remote)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if getattr(args, "command", None) and args.command[0] == "--":
        args.command = args.command[1:]
    try:
        cfg = settings.from_env()
        if getattr(args, "flavour", None):
            cfg = cfg.with_flavour(args.flavour)
        return args.fn(args, cfg)
    except ActionableError as e:
        print(f"error: {e.what}", file=sys.stderr)
        if e.hint:
            print(f"       {e.hint}", file=sys.stderr)
        return 2
    except FileNotFoundError as e:
        name = str(e.filename or e)
        print(f"error: {name} not found", file=sys.stderr)
        hint = ("is the checkout complete?" if "/" in name else
                "run 'make deps' (or 'make venv') to install the tools")
        print(f"       {hint}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
