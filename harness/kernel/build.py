"""Running the kernel's own make: the kernel, headers, out-of-tree modules.

Builds are incremental (make decides); a progress line estimates how far a
build is from the number of objects the last full build compiled.  The full
output goes to a log file; on failure the first compiler error is shown
with the log's path.
"""

import re
import shutil
import subprocess
from pathlib import Path

from harness.buildlog import first_error
from harness.errors import HarnessError
from harness.progress import Meter, phase

# Objects compiled by a from-scratch build of vng's config plus the fragment
# (measured); only used to scale the progress bar until a build has run.
FULL_BUILD_STEPS = 3325
_STEP = re.compile(r"^\s+(CC|CC \[M\]|AS|AR|LD|LD \[M\]|HOSTCC|OBJCOPY)\s")

# A full build of this config takes ~3 GiB; an incremental one far less.
FULL_BUILD_BYTES = 6 << 30
INCREMENTAL_BYTES = 1 << 30


def same_release(tree: Path) -> list[str]:
    """``LOCALVERSION=`` that keeps the tree's current kernel.release.

    A make run without it (a W=1 or sparse check) would change the release
    (setlocalversion then appends "+"), which rewrites utsrelease.h and
    makes the next real build relink every module.
    """
    release_file = tree / "include" / "config" / "kernel.release"
    if not release_file.exists():
        return []
    release = release_file.read_text().strip()
    head = (tree / "Makefile").read_text(errors="replace")[:2000]
    fields = dict(re.findall(r"^(VERSION|PATCHLEVEL|SUBLEVEL|EXTRAVERSION) = ?(.*)$", head, re.M))
    version = "{VERSION}.{PATCHLEVEL}.{SUBLEVEL}{EXTRAVERSION}".format_map(
        {k: fields.get(k, "").strip() for k in ("VERSION", "PATCHLEVEL", "SUBLEVEL", "EXTRAVERSION")})
    if not release.startswith(version) or release.endswith("+"):
        return []
    return [f"LOCALVERSION={release[len(version):]}"]


def check_disk(where: Path, first_build: bool) -> None:
    need = FULL_BUILD_BYTES if first_build else INCREMENTAL_BYTES
    free = shutil.disk_usage(where).free
    if free < need:
        raise HarnessError(
            f"only {free >> 20} MiB free under {where}, a {'full' if first_build else 'incremental'}"
            f" kernel build needs about {need >> 20} MiB",
            "free some space or point KVM_IOFD_CACHE at a bigger disk",
        )


def make(tree: Path, targets: list[str], log: Path, label: str, jobs: int,
         extra: list[str] | None = None, expected_steps: int | None = None,
         warnings_are_errors: bool = False) -> int:
    """Run make -j*jobs* in *tree*, logging to *log*; return the number of build steps."""
    cmd = ["make", "-C", str(tree), f"-j{jobs}", *(extra or []), *targets]
    meter = Meter(label, expected_steps)
    steps = 0
    with phase(label), log.open("w") as fh:
        fh.write("$ " + " ".join(cmd) + "\n")
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, errors="replace", stdin=subprocess.DEVNULL)
        assert proc.stdout is not None
        for line in proc.stdout:
            fh.write(line)
            if _STEP.match(line):
                steps += 1
                meter.update(steps)
        rc = proc.wait()
        meter.close()
    if rc != 0:
        raise HarnessError(f"{label} failed: {first_error(log)}", f"full log: {log}")
    if warnings_are_errors:
        warnings = [line.strip() for line in log.read_text(errors="replace").splitlines()
                    if "warning:" in line]
        if warnings:
            raise HarnessError(f"{label}: {len(warnings)} compiler warnings, e.g. {warnings[0]}",
                               f"full log: {log}")
    return steps
