"""``python -m harness build|boot|run|smoke|bench|test``.

Every failure the user can act on is a :class:`HarnessError`, printed as
one line of what is wrong and one of what to do, never only a traceback.
"""

import argparse
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from harness import hostdeps, kselftest, paths
from harness.errors import HarnessError
from harness.kernel import build, export, gates, series, source
from harness.kernel.prepare import Kernel, built, flavour_of, kernel_src, prepare, prepare_flavour
from harness.progress import say
from harness.vm import accel
from harness.vm.boot import BootOptions, options_for, vng_command
from harness.vm.session import LOAD_KVM, Session
from payload.bench import modes as bench_modes
from payload.errors import ActionableError

BENCH_ITERATIONS = bench_modes.DEFAULT_ITERATIONS
BENCH_TRIALS = bench_modes.DEFAULT_TRIALS


def boot_options(k: Kernel) -> BootOptions:
    paths.RESULTS.mkdir(exist_ok=True)
    return options_for(k.flavour, accel.detect(), [paths.RESULTS])


def _kernel(args: argparse.Namespace) -> Kernel:
    return built(args.debug) if args.no_build else prepare(args.debug)


def cmd_deps(args: argparse.Namespace) -> int:
    hostdeps.ensure()
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    hostdeps.ensure()
    k = prepare(args.debug)
    say(f"kernel {k.release} (series {k.series}) at {k.bzimage}")
    return 0


def cmd_shell(args: argparse.Namespace) -> int:
    k = _kernel(args)
    cmd = vng_command(Path(k.tree), boot_options(k))
    os.execvpe(cmd[0], cmd, paths.tool_env())


def cmd_run(args: argparse.Namespace) -> int:
    if not args.command:
        raise HarnessError("run needs a command", "python -m harness run -- uname -a")
    k = _kernel(args)
    with Session(Path(k.tree), boot_options(k)) as s:
        r = s.run(" ".join(args.command), timeout=args.timeout)
    sys.stdout.write(r.stdout)
    sys.stderr.write(r.stderr)
    return r.rc


def cmd_smoke(args: argparse.Namespace) -> int:
    """Boot, check the kernel and KVM, load the doorbell: the foundation works."""
    k = _kernel(args)
    checks = [
        ("kernel", "uname -r"),
        ("kvm", "ls -l /dev/kvm && cat /sys/module/kvm_amd/parameters/npt "
                "/sys/module/kvm_amd/parameters/nested 2>/dev/null || "
                "cat /sys/module/kvm_intel/parameters/ept"),
        ("doorbell", f"insmod {k.doorbell_ko} && ls -l /dev/doorbell && rmmod doorbell"),
    ]
    with Session(Path(k.tree), boot_options(k), setup=(LOAD_KVM,)) as s:
        for name, cmd in checks:
            r = s.run(cmd)
            status = "ok" if r.rc == 0 else f"FAILED (exit {r.rc})"
            say(f"smoke {name}: {status}: {(r.stdout + r.stderr).strip()}")
            if r.rc:
                return 1
    return 0


def cmd_gates(args: argparse.Namespace) -> int:
    """checkpatch --strict on the series and the doorbell module, and the sparse gate."""
    if not args.no_build:
        prepare(args.debug)
    cache = paths.cache_root()
    tree = source.tree(cache, kernel_src(), "default")
    problems = gates.run(cache, tree, list(series.load(paths.KERNEL_PATCH_DIR).patches),
                         sorted(paths.DOORBELL_SRC.glob("*.[ch]")), cache / "logs" / tree.name,
                         kernel_src())
    if problems:
        raise HarnessError("quality gates failed:\n  " + "\n  ".join(problems),
                           "fix the findings above")
    say("quality gates: all clean")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """The 2009 results table, measured: see :mod:`harness.bench`."""
    if args.hosts:
        from harness.remote import commands

        return commands.bench(args.hosts, args.ssh_config, args.iterations, args.trials,
                              args.strict, args.results)
    from harness.bench import host  # matplotlib loads only for this command

    k = _kernel(args)
    return host.run(k, boot_options(k), args.iterations, args.trials, strict=args.strict)


def cmd_patches(args: argparse.Namespace) -> int:
    """Export the working branch to kernel-patch/, checked and with its recipients."""
    cache = paths.cache_root()
    tree = source.tree(cache, kernel_src(), "default")
    made = export.export(tree, paths.KERNEL_PATCH_DIR, version=args.version)
    touched = export.touched_files(made)
    dirs = sorted({str(Path(f).parent) + "/" for f in touched if f.endswith(".c")
                   and not f.startswith("tools/")})
    log = cache / "logs" / tree.name / "w1.log"
    build.make(tree.path, ["arch/x86/kvm/"] if any(d.startswith("virt/kvm") for d in dirs)
               else dirs, log, "W=1 build of the touched directories", extra=["W=1"])
    new = export.warnings_in(log, touched)
    if new:
        raise HarnessError(f"W=1 warnings in files the series touches: {new[0]}",
                           f"{len(new)} in all; full log: {log}")
    say(f"W=1: no warnings in the {len(touched)} touched files")
    return 0


def cmd_kselftests(args: argparse.Namespace) -> int:
    """Run the upstream KVM selftests; with --baseline, on the base, recording the result."""
    flavour = "base" if args.baseline else flavour_of(args.debug)
    k = built(flavour=flavour) if args.no_build else prepare_flavour(flavour)
    opts = boot_options(k)
    slowdown = kselftest.SLOWDOWN.get(k.flavour, 1)
    budget = int(args.timeout) * slowdown
    base = {} if args.baseline else kselftest.load()
    with Session(Path(k.tree), opts, setup=(LOAD_KVM,)) as s:
        # The baseline decides what the planned runs go easy on: it runs all
        # tests with the runner's own limits.
        run = (kselftest.run(s, k.kselftests, budget=budget) if args.baseline else
               kselftest.run_planned(s, k.kselftests, base, budget, slowdown))
        broken = kselftest.confirm(s, k.kselftests, kselftest.regressions(base, run.results),
                                   slowdown)
    c = kselftest.counts(run.results)
    say(f"KVM selftests on {k.release}: {c['pass']} pass, {c['fail']} fail, {c['skip']} skip "
        f"in {sum(run.took.values())} s; slowest: {kselftest.slowest(run.took)}")
    if run.overran:
        raise HarnessError(run.overran, "raise --timeout, or run on a quieter host")
    if args.baseline:
        header = (f"# KVM selftests on the unpatched base {k.release}, one vCPU, "
                  f"{opts.accel.accel}; written by 'python -m harness kselftests "
                  "--baseline'\n")
        kselftest.BASELINE.write_text(header + kselftest.dump(run.results))
        say(f"baseline written to {kselftest.BASELINE}")
        return 0
    if broken:
        raise HarnessError(f"passed on the base, not with the series (also alone, with twice "
                           f"the time): {' '.join(broken)}",
                           f"rerun one with 'python -m harness run -- {k.kselftests}/"
                           "run_kselftest.sh -t kvm:NAME'")
    return 0


def cmd_test(args: argparse.Namespace) -> int:
    """The suite here; with --host, the payload tests on remote hosts."""
    if args.hosts:
        from harness.remote import commands

        return commands.test(args.hosts, args.ssh_config, args.pytest_args, args.results)
    return subprocess.call([sys.executable, "-m", "pytest", *args.pytest_args], cwd=paths.REPO)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m harness", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)

    def add(name: str, fn: Callable[[argparse.Namespace], int], help: str,
            kernel: bool = True) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help)
        sp.set_defaults(fn=fn)
        if kernel:
            sp.add_argument("--debug", action="store_true",
                            help="the debug kernel (KASAN, lockdep, kmemleak)")
            sp.add_argument("--no-build", action="store_true",
                            help="use the last built kernel without running make")
        return sp

    add("deps", cmd_deps, "install missing host packages", kernel=False)
    add("build", cmd_build, "apply kernel-patch/ and build kernel, module and selftest")
    add("shell", cmd_shell, "boot the kernel with an interactive shell")
    r = add("run", cmd_run, "boot, run one command, print its output, exit with its code")
    r.add_argument("--timeout", type=float, default=600.0)
    r.add_argument("command", nargs=argparse.REMAINDER)
    add("smoke", cmd_smoke, "boot and check kernel, KVM and doorbell")
    b = add("bench", cmd_bench, "boot and measure every doorbell path; write results/bench.*")
    b.add_argument("--iterations", "-n", type=int, default=BENCH_ITERATIONS,
                   help=f"guest writes per trial (default {BENCH_ITERATIONS})")
    b.add_argument("--trials", "-t", type=int, default=BENCH_TRIALS,
                   help=f"trials per mode, interleaved (default {BENCH_TRIALS})")
    b.add_argument("--strict", action="store_true",
                   help="exit 1 when a performance target is missed (count errors always fail)")
    add("gates", cmd_gates, "checkpatch --strict and the sparse gate")
    ks = add("kselftests", cmd_kselftests, "run the upstream KVM selftests against the baseline")
    ks.add_argument("--baseline", action="store_true",
                    help="build and run the unpatched base, and record the baseline")
    ks.add_argument("--timeout", type=float, default=3600.0,
                    help="seconds for the whole run, inside the guest (default 3600; "
                         "times 3 for the debug kernel, as is each test's limit)")
    pp = add("patches", cmd_patches, "export the working branch to kernel-patch/", kernel=False)
    pp.add_argument("--version", type=int, help="reroll as vN (default: keep the version)")
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
        return args.fn(args)
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
