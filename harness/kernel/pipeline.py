"""From nothing to a bootable kernel of one flavour, doing only what changed.

:func:`make_kernel` runs every step (source, series, config, kernel,
headers, the doorbell module, the selftests); each step is a no-op or an
incremental make when its inputs are unchanged.  The result is recorded so
that later steps (booting, tests) find the kernel with :func:`last_built`
without running make again.
"""

import json
import shutil
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from harness import flavours, paths
from harness.errors import HarnessError
from harness.kernel import build, config, git, series, source
from harness.settings import Settings


@dataclass(frozen=True)
class Kernel:
    """A built kernel and what was built with it."""

    flavour: str
    tree: Path
    bzimage: Path
    release: str
    series: str
    doorbell_ko: Path
    headers: Path       # make headers output: <headers>/include/linux/kvm.h
    selftests: Path     # tools/testing/selftests/kvm in the tree
    kselftests: Path    # the KVM selftests installed with run_kselftest.sh

    def to_json(self) -> str:
        """The record :func:`last_built` reads: every field a string."""
        return json.dumps({k: str(v) if isinstance(v, Path) else v
                           for k, v in asdict(self).items()}, indent=1)

    @classmethod
    def from_json(cls, text: str) -> "Kernel":
        """The inverse of :meth:`to_json` (records of any age store paths as strings)."""
        raw: dict[str, Any] = json.loads(text)
        path_fields = {f.name for f in fields(cls) if f.type is Path}
        return cls(**{k: Path(v) if k in path_fields else v for k, v in raw.items()})


def _record(cache: Path, flavour: str) -> Path:
    return cache / "state" / f"kernel-{flavour}.json"


def make_kernel(settings: Settings) -> Kernel:
    """Build the kernel of ``settings.flavour``, and what goes with it."""
    cache, flavour = settings.cache, settings.flavour
    tree = source.tree(cache, settings.kernel_src, flavour.tree_suffix)
    if settings.kernel_src is None:
        source.check_debian_base(tree.repo, paths.KERNEL_PATCH_DIR / "BASE")
    if flavour.patched:
        s = series.load(paths.KERNEL_PATCH_DIR)
        series.apply(cache, tree, s)
        series_id = s.id
    else:
        git.git(tree.path, "checkout", "-q", "--detach", tree.base)
        series_id = "base"

    logs = cache / "logs" / tree.name
    logs.mkdir(parents=True, exist_ok=True)
    state = cache / "state"
    config.configure(tree.path, flavour.fragment_paths(), logs / "config.log", state / f"{tree.name}.config")

    first = not (tree.path / "vmlinux").exists()
    build.check_disk(tree.path, first)
    steps_file = state / "full-build-steps"
    expected = int(steps_file.read_text()) if steps_file.exists() else build.FULL_BUILD_STEPS
    localversion = flavour.local_version(series_id)
    steps = build.make(tree.path, ["bzImage", "modules"], logs / "build.log",
                       f"building the kernel ({flavour.name})", settings.jobs,
                       extra=[f"LOCALVERSION={localversion}"],
                       expected_steps=expected if first else None)
    if first:
        steps_file.write_text(str(steps))
    build.make(tree.path, ["headers"], logs / "headers.log", "exporting uAPI headers",
               settings.jobs)

    module_dir = cache / "build" / tree.name / "doorbell"
    shutil.rmtree(module_dir, ignore_errors=True)
    shutil.copytree(paths.DOORBELL_SRC, module_dir)
    build.make(tree.path, ["modules"], logs / "doorbell.log", "building the doorbell module",
               settings.jobs,
               extra=[f"M={module_dir}", "W=1", f"LOCALVERSION={localversion}"],
               warnings_are_errors=True)

    kvm_tests = tree.path / "tools" / "testing" / "selftests" / "kvm"
    kselftests = cache / "kselftest" / tree.name
    build.make(tree.path / "tools" / "testing" / "selftests", ["install"],
               logs / "selftests.log", "building the KVM selftests", settings.jobs,
               extra=["TARGETS=kvm", f"INSTALL_PATH={kselftests}"])

    k = Kernel(
        flavour=flavour.name,
        tree=tree.path,
        bzimage=tree.path / "arch" / "x86" / "boot" / "bzImage",
        release=(tree.path / "include" / "config" / "kernel.release").read_text().strip(),
        series=series_id,
        doorbell_ko=module_dir / "doorbell.ko",
        headers=tree.path / "usr",
        selftests=kvm_tests,
        kselftests=kselftests,
    )
    rec = _record(cache, flavour.name)
    rec.write_text(k.to_json())
    return k


def last_built(settings: Settings) -> Kernel:
    """The kernel of ``settings.flavour`` that :func:`make_kernel` built last,
    without running make."""
    name = settings.flavour.name
    rec = _record(settings.cache, name)
    if not rec.exists():
        again = "" if name == flavours.DEFAULT else f" FLAVOUR={name}"
        raise HarnessError(f"no {name} kernel has been built yet", f"run 'make build{again}'")
    k = Kernel.from_json(rec.read_text())
    if not k.bzimage.exists():
        raise HarnessError(f"{k.bzimage} is gone", f"run 'make build' (flavour {name}) again")
    return k
