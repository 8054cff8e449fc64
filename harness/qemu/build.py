"""Configure and build ``qemu-system-x86_64`` from the patched tree.

Only the x86_64 target with KVM and what the runs use (no TCG, tools,
docs, user networking or GUI): about 1400 ninja steps, 150 s on 2 cores
from scratch.  ninja rebuilds what changed; when the tree's commit and the
configure line are those of the last build and the binary is there, the
build is skipped without starting ninja.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from harness import buildlog
from harness.kernel import git
from harness.kernel.source import KernelTree
from harness.progress import phase, say

CONFIGURE = ("--target-list=x86_64-softmmu", "--without-default-features", "--enable-kvm",
             "--disable-tcg", "--disable-docs", "--disable-werror", "--disable-tools",
             "--disable-slirp", "--enable-linux-aio",
             # The tree is a git repository with no submodules: do not fetch any.
             "--with-git-submodules=ignore")
BINARY = "qemu-system-x86_64"


def build(cache: Path, tree: KernelTree, jobs: int) -> Path:
    """The built binary; its build time is reported as a phase."""
    out = cache / "build" / tree.name
    binary = out / BINARY
    stamp = out / "kvm-iofd-build.json"
    want = {"head": git.out(tree.path, "rev-parse", "HEAD"), "configure": list(CONFIGURE),
            "dirty": bool(git.is_dirty(tree.path))}
    if (binary.exists() and not want["dirty"] and stamp.exists()
            and json.loads(stamp.read_text()) == want):
        say(f"QEMU {tree.name} at {want['head'][:12]}: built already ({binary})")
        return binary
    logs = cache / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"qemu-build-{tree.name}.log"
    log.write_text("")
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    configured = (out / "build.ninja").exists() and stamp.exists() and \
        json.loads(stamp.read_text()).get("configure") == list(CONFIGURE)
    if not configured:
        with phase(f"configuring QEMU ({tree.name})"):
            buildlog.run([str(tree.path / "configure"), *CONFIGURE], out, log, "QEMU's configure")
    with phase(f"building {BINARY} ({tree.name}, ninja -j{jobs})"):
        buildlog.run(["ninja", "-j", str(jobs), BINARY], out, log, f"building {BINARY}")
    stamp.write_text(json.dumps(want))
    say(f"QEMU built in {time.monotonic() - t0:.0f} s: {binary} (log {log})")
    return binary
