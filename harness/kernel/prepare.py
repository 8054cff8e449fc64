"""From nothing to a bootable patched kernel, doing only what changed.

``prepare()`` runs every step (source, series, config, kernel, headers, the
doorbell module, the selftest); each step is a no-op or an incremental make
when its inputs are unchanged.  The result is recorded so that later steps
(booting, tests) can find the kernel without running make again.
"""

import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from harness import paths
from harness.errors import HarnessError
from harness.kernel import build, config, git, series, source


@dataclass(frozen=True)
class Kernel:
    """A built kernel and what was built with it."""

    flavour: str
    tree: str
    bzimage: str
    release: str
    series: str
    doorbell_ko: str
    headers: str        # make headers output: <headers>/include/linux/kvm.h
    selftests: str      # tools/testing/selftests/kvm in the tree
    kselftests: str     # the KVM selftests installed with run_kselftest.sh


def flavour_of(debug: bool) -> str:
    return "debug" if debug else "default"


def kernel_src() -> Path | None:
    """The user's tree from KERNEL_SRC, or None for Debian's source."""
    src = os.environ.get("KERNEL_SRC")
    return Path(src) if src else None


def _record(cache: Path, flavour: str) -> Path:
    return cache / "state" / f"kernel-{flavour}.json"


def prepare(debug: bool = False) -> Kernel:
    return prepare_flavour(flavour_of(debug))


def prepare_flavour(flavour: str) -> Kernel:
    """Build *flavour*: "default", "debug" (plus Kconfig.debug.fragment), or
    "base", the unpatched base with the default config (for baselines)."""
    cache = paths.cache_root()
    debug = flavour == "debug"
    tree = source.tree(cache, kernel_src(), flavour)
    if kernel_src() is None:
        source.check_debian_base(tree.repo, paths.KERNEL_PATCH_DIR / "BASE")
    if flavour == "base":
        git.git(tree.path, "checkout", "-q", "--detach", tree.base)
        series_id = "base"
    else:
        s = series.load(paths.KERNEL_PATCH_DIR)
        series.apply(cache, tree, s)
        series_id = s.id

    logs = cache / "logs" / tree.name
    logs.mkdir(parents=True, exist_ok=True)
    state = cache / "state"
    fragments = [paths.FRAGMENT] + ([paths.DEBUG_FRAGMENT] if debug else [])
    config.configure(tree.path, fragments, logs / "config.log", state / f"{tree.name}.config")

    first = not (tree.path / "vmlinux").exists()
    build.check_disk(tree.path, first)
    steps_file = state / "full-build-steps"
    expected = int(steps_file.read_text()) if steps_file.exists() else build.FULL_BUILD_STEPS
    localversion = "-base" if flavour == "base" else f"-iofd-{series_id}" + ("-debug" if debug else "")
    steps = build.make(tree.path, ["bzImage", "modules"], logs / "build.log",
                       f"building the kernel ({flavour})",
                       extra=[f"LOCALVERSION={localversion}"],
                       expected_steps=expected if first else None)
    if first:
        steps_file.write_text(str(steps))
    build.make(tree.path, ["headers"], logs / "headers.log", "exporting uAPI headers")

    module_dir = cache / "build" / tree.name / "doorbell"
    shutil.rmtree(module_dir, ignore_errors=True)
    shutil.copytree(paths.DOORBELL_SRC, module_dir)
    build.make(tree.path, ["modules"], logs / "doorbell.log", "building the doorbell module",
               extra=[f"M={module_dir}", "W=1", f"LOCALVERSION={localversion}"],
               warnings_are_errors=True)

    kvm_tests = tree.path / "tools" / "testing" / "selftests" / "kvm"
    kselftests = cache / "kselftest" / tree.name
    build.make(tree.path / "tools" / "testing" / "selftests", ["install"],
               logs / "selftests.log", "building the KVM selftests",
               extra=["TARGETS=kvm", f"INSTALL_PATH={kselftests}"])

    k = Kernel(
        flavour=flavour,
        tree=str(tree.path),
        bzimage=str(tree.path / "arch" / "x86" / "boot" / "bzImage"),
        release=(tree.path / "include" / "config" / "kernel.release").read_text().strip(),
        series=series_id,
        doorbell_ko=str(module_dir / "doorbell.ko"),
        headers=str(tree.path / "usr"),
        selftests=str(kvm_tests),
        kselftests=str(kselftests),
    )
    rec = _record(cache, flavour)
    rec.write_text(json.dumps(asdict(k), indent=1))
    return k


def built(debug: bool = False, flavour: str | None = None) -> Kernel:
    """The kernel the last ``prepare()`` built, without running make."""
    flavour = flavour or flavour_of(debug)
    rec = _record(paths.cache_root(), flavour)
    if not rec.exists():
        raise HarnessError(f"no {flavour} kernel has been built yet",
                           "run 'make build'" + (" DEBUG=1" if debug else ""))
    k = Kernel(**json.loads(rec.read_text()))
    if not Path(k.bzimage).exists():
        raise HarnessError(f"{k.bzimage} is gone", "run 'make build' again")
    return k
