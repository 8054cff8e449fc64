"""The GitHub workflow's set-up, run here as far as this machine can run it.

``make lint`` checks the workflow's syntax, expressions and shell with
actionlint; these tests run its shell steps that need no runner (the paths,
the CPU check, the udev rule, the baselines kept between runs) with bash
against a scratch directory, and work out its cache keys and artifact
paths as the runner would.  Where a step touches the system (the udev
rules directory, /dev, /proc/cpuinfo) it runs in a private mount namespace
over scratch files, so this machine is left as it was.

What cannot run here: the docker steps (make test and make bench need the
runner's nested KVM, the debian image and a full build), the actions
themselves (checkout, the cache service, artifact storage), a udev daemon
to reload and trigger (the step's udevadm control is recorded, its trigger
is run with --dry-run, and the rule is applied by ``udevadm test`` to a
scratch /dev/kvm), and GitHub's expression engine, emulated below only for
what the workflow uses.
"""

import fnmatch
import grp
import hashlib
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from harness import paths, settings
from harness.kselftest import baseline

WORKFLOW = paths.REPO / ".github" / "workflows" / "test.yml"
BASELINE_GLOB = "harness/kselftest/kvm-selftests-baseline-*.txt"


def workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


def steps() -> list[dict]:
    [job] = workflow()["jobs"].values()
    return job["steps"]


def step(name: str) -> dict:
    [found] = [s for s in steps() if s.get("name") == name]
    return found


def script(name: str) -> str:
    return step(name)["run"]


def run_step(name: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The step's script as the runner runs a bash step (``bash -e``)."""
    slug = re.sub(r"\W+", "-", name)
    path = cwd / f"step-{slug}.sh"
    path.write_text(script(name))
    return subprocess.run(["bash", "-e", str(path)], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=60)


def read_env_file(path: Path) -> dict[str, str]:
    """GITHUB_ENV / GITHUB_OUTPUT: NAME=VALUE lines."""
    return dict(line.split("=", 1) for line in path.read_text().splitlines())


# -- GitHub's expressions, for what the workflow uses ----------------------------

def hash_files(root: Path, *patterns: str) -> str:
    """The runner's hashFiles(): SHA-256 over the SHA-256 of each matched
    file; empty when nothing matches.  (The runner's order is its glob's
    walk; sorted here, so only the key's properties are checked.)"""
    files = sorted({p for pattern in patterns for p in root.glob(pattern) if p.is_file()})
    if not files:
        return ""
    return hashlib.sha256(b"".join(hashlib.sha256(f.read_bytes()).digest()
                                   for f in files)).hexdigest()


def evaluate(text: str, root: Path, env: dict[str, str], outputs: dict[str, dict[str, str]]) -> str:
    """*text* with each ``${{ ... }}`` replaced: hashFiles(...), env.NAME and
    steps.ID.outputs.NAME; anything else is an error, so a new expression
    cannot slip past these tests."""
    def one(m: re.Match[str]) -> str:
        expr = m.group(1).strip()
        if call := re.fullmatch(r"hashFiles\((.*)\)", expr):
            return hash_files(root, *re.findall(r"'([^']*)'", call.group(1)))
        if ref := re.fullmatch(r"env\.(\w+)", expr):
            return env[ref.group(1)]
        if ref := re.fullmatch(r"steps\.([\w-]+)\.outputs\.([\w-]+)", expr):
            return outputs[ref.group(1)][ref.group(2)]
        raise AssertionError(f"no emulation for ${{{{ {expr} }}}}")
    return re.sub(r"\$\{\{(.*?)\}\}", one, text)


def glob_rejects(pattern: str) -> bool:
    """@actions/glob's rule, which actions/cache and upload-artifact apply to
    every path: no '.' segment but the first, and no '..' segment."""
    segments = [s for s in pattern.split("/") if s]
    return any(s == ".." or (s == "." and i > 0) for i, s in enumerate(segments))


@pytest.fixture
def runner(tmp_path: Path) -> dict[str, str]:
    """The runner's directories, in scratch: RUNNER_TEMP and the step files."""
    temp = tmp_path / "work" / "_temp"
    temp.mkdir(parents=True)
    for f in ("env", "output", "summary"):
        (temp / f).touch()
    return {"RUNNER_TEMP": str(temp), "GITHUB_ENV": str(temp / "env"),
            "GITHUB_OUTPUT": str(temp / "output"), "GITHUB_STEP_SUMMARY": str(temp / "summary")}


def directories(runner: dict[str, str], workspace: Path) -> dict[str, str]:
    """Run the step that sets CACHE_DIR and BASELINE_DIR; what it set."""
    r = run_step("Where the kernel cache and the recorded baselines live", workspace, runner)
    assert r.returncode == 0, r.stderr
    return read_env_file(Path(runner["GITHUB_ENV"]))


def test_every_shell_step_takes_its_inputs_from_the_environment() -> None:
    """No ``${{ }}`` in a script: nothing is pasted into the shell (no
    injection), and what these tests run is what the runner runs."""
    scripts = [s["run"] for s in steps() if "run" in s]
    assert len(scripts) >= 7 and not [s for s in scripts if "${{" in s]


# -- paths ---------------------------------------------------------------------

def test_the_cache_and_artifact_paths_are_ones_the_actions_accept(runner: dict[str, str],
                                                                  tmp_path: Path) -> None:
    workspace = tmp_path / "work" / "kvm-iofd"
    workspace.mkdir()
    env = directories(runner, workspace)
    assert set(env) == {"CACHE_DIR", "BASELINE_DIR"}
    for value in env.values():
        assert Path(value).is_absolute() and Path(value).parent == Path(runner["RUNNER_TEMP"])
        assert workspace not in Path(value).parents  # not in the checkout make test sees
    checked = 0
    for s in steps():
        if s.get("uses", "").split("@")[0] in ("actions/cache", "actions/cache/restore",
                                               "actions/cache/save", "actions/upload-artifact"):
            for line in evaluate(s["with"]["path"], workspace, env, {}).splitlines():
                assert not glob_rejects(line.strip()), f"{s['name']}: {line}"
                checked += 1
    assert checked == 6
    # The rule is the one the workflow used to break: its cache lived at workspace/..
    assert glob_rejects(f"{workspace}/../kvm-iofd-cache")


def test_the_artifact_holds_what_the_harness_writes(runner: dict[str, str],
                                                    tmp_path: Path) -> None:
    """results/ is the harness's results directory; the container's cache is
    CACHE_DIR, where the harness keeps its logs; the baselines kept are the
    files the harness records."""
    upload = [p.strip() for p in step("Upload results and logs")["with"]["path"].splitlines()]
    assert upload == ["results/", "${{ env.CACHE_DIR }}/logs/", "${{ env.BASELINE_DIR }}/"]
    assert paths.REPO / upload[0].rstrip("/") == paths.RESULTS
    make_test = script("make test")
    assert '-v "$CACHE_DIR:/cache"' in make_test and "-e KVM_IOFD_CACHE=/cache" in make_test
    assert '-v "$PWD:/src"' in make_test and "-w /src" in make_test
    assert settings.from_env({"KVM_IOFD_CACHE": "/cache"}).cache == Path("/cache")
    assert "cache / \"logs\"" in (paths.REPO / "harness" / "kernel" / "pipeline.py").read_text()
    env = baseline.Environment("kvm", "vmx", "default")
    recorded = baseline.path(env).relative_to(paths.REPO)
    assert fnmatch.fnmatch(str(recorded), BASELINE_GLOB)
    assert BASELINE_GLOB in script("Keep the baselines this run recorded")
    assert "results/bench.md" in script("make bench")


# -- the CPU check -------------------------------------------------------------

def in_namespace(setup: str, commands: str, cwd: Path, env: dict[str, str]) -> (
        subprocess.CompletedProcess[str]):
    """*commands* in a private mount namespace after *setup* (mounts over
    scratch files): the machine's own mounts are not touched."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare for a private mount namespace")
    return subprocess.run(["unshare", "-m", "bash", "-ec",
                           f"mount --make-rprivate /\n{setup}\n{commands}"],
                          cwd=cwd, capture_output=True, text=True, env={**os.environ, **env},
                          timeout=120)


@pytest.mark.parametrize(("flags", "vendor"), [("fpu vme vmx sse", "vmx"), ("fpu svm npt", "svm"),
                                                ("fpu vme sse", None)])
def test_the_cpu_check_finds_the_vendor_or_stops(flags: str, vendor: str | None,
                                                 runner: dict[str, str], tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {flags}\n\nprocessor\t: 1\nflags\t\t: {flags}\n")
    (tmp_path / "step.sh").write_text(script("Check that the runner can nest KVM"))
    r = in_namespace(f"mount --bind {cpuinfo} /proc/cpuinfo", "bash -e step.sh", tmp_path, runner)
    outputs = read_env_file(Path(runner["GITHUB_OUTPUT"]))
    if vendor:
        assert r.returncode == 0 and outputs == {"vendor": vendor}, r.stderr
    else:
        assert r.returncode == 1 and outputs == {}
        assert "::error::the runner's CPU has neither vmx nor svm" in r.stdout


# -- the udev rule -------------------------------------------------------------

UDEVADM_SHIM = """#!/bin/bash
# No udev daemon here: record 'control', run 'trigger' without writing a uevent.
case "$1" in
  control) echo "udevadm $*" >> "$SHIM_LOG" ;;
  trigger) shift; exec /usr/bin/udevadm trigger --dry-run --verbose "$@" ;;
  *) exec /usr/bin/udevadm "$@" ;;
esac
"""


def scratch_udev(tmp_path: Path) -> tuple[str, dict[str, str]]:
    """Mounts putting a scratch rules directory, /dev (with a kvm node as the
    kernel creates it, 0600 root) and /run in place; shims for sudo (we are
    root) and udevadm."""
    if not Path("/sys/class/misc/kvm").exists() or not shutil.which("udevadm"):
        pytest.skip("needs udevadm and the kvm misc device (the kvm module loaded)")
    rules = tmp_path / "rules.d"
    rules.mkdir()
    shims = tmp_path / "bin"
    shims.mkdir()
    (shims / "sudo").write_text('#!/bin/sh\nexec "$@"\n')
    (shims / "udevadm").write_text(UDEVADM_SHIM)
    for shim in shims.iterdir():
        shim.chmod(0o755)
    setup = (f"mount --bind {rules} /etc/udev/rules.d\n"
             "mount -t tmpfs scratch-dev /dev\n"
             "mknod -m 0600 /dev/kvm c 10 232; mknod -m 0666 /dev/null c 1 3\n"
             "mount -t tmpfs scratch-run /run")
    return setup, {"PATH": f"{shims}:{os.environ['PATH']}", "SHIM_LOG": str(tmp_path / "shim.log")}


APPLY = ("udevadm test --action=add /sys/class/misc/kvm >/dev/null 2>&1\n"
         "stat -c '%a %g' /dev/kvm")


def test_the_udev_rule_opens_dev_kvm_to_everyone(tmp_path: Path) -> None:
    """The step's own script writes the rule and triggers the kvm device; the
    real rule parser then applies it to a scratch /dev/kvm: mode 0666, group
    kvm.  Without it, the distribution's rules leave it 0660 (group kvm)."""
    try:
        kvm_gid = grp.getgrnam("kvm").gr_gid
    except KeyError:
        pytest.skip("no kvm group here")
    setup, env = scratch_udev(tmp_path)
    real = Path("/dev/kvm")
    before = real.stat() if real.exists() else None
    without = in_namespace(setup, APPLY, tmp_path, env)  # the rules directory is empty
    assert without.returncode == 0 and without.stdout.split() == ["660", str(kvm_gid)], without.stderr
    (tmp_path / "step.sh").write_text(script("Enable /dev/kvm for everyone (the usual udev rule)"))
    r = in_namespace(setup, f"bash -e step.sh\n{APPLY}", tmp_path, env)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "rules.d" / "99-kvm4all.rules").read_text() == (
        'KERNEL=="kvm", GROUP="kvm", MODE="0666", OPTIONS+="static_node=kvm"\n')
    assert "/sys/devices/virtual/misc/kvm" in r.stdout  # what trigger --name-match=kvm names
    assert (tmp_path / "shim.log").read_text() == "udevadm control --reload-rules\n"
    assert r.stdout.splitlines()[-1] == f"666 {kvm_gid}"
    after = real.stat() if real.exists() else None
    assert (before and (before.st_mode, before.st_gid)) == (after and (after.st_mode, after.st_gid))


# -- cache keys ----------------------------------------------------------------

def keys(root: Path, vendor: str = "vmx") -> tuple[str, list[str], str]:
    """The kernel cache's key and restore keys, and the baselines' key, for
    the checkout at *root*."""
    kernel = step("Restore the kernel build cache")["with"]
    outputs = {"cpu": {"vendor": vendor}}
    key = evaluate(kernel["key"], root, {}, outputs)
    restore = [evaluate(k.strip(), root, {}, outputs) for k in kernel["restore-keys"].splitlines()]
    base = evaluate(step("Restore the KVM selftest baselines earlier runs recorded")["with"]["key"],
                    root, {}, outputs)
    return key, restore, base


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """The files the keys hash, copied from the checkout."""
    root = tmp_path / "checkout"
    for pattern in ("kernel-patch/BASE", "kernel-patch/*.patch", "Kconfig.fragment"):
        for f in paths.REPO.glob(pattern):
            (root / f.relative_to(paths.REPO)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(f, root / f.relative_to(paths.REPO))
    return root


def test_every_pattern_the_keys_hash_matches_files() -> None:
    """A pattern that matches nothing hashes to '' and drops out of the key
    without a word."""
    calls = re.findall(r"hashFiles\(([^)]*)\)", WORKFLOW.read_text())
    hashed = {p for call in calls for p in re.findall(r"'([^']*)'", call)}
    assert hashed >= {"kernel-patch/BASE", "Kconfig.fragment", "kernel-patch/*.patch"}
    for pattern in hashed:
        assert list(paths.REPO.glob(pattern)), f"{pattern} matches nothing"


def change(path: Path) -> Callable[[], None]:
    def do() -> None:
        path.write_text(path.read_text() + "\n# changed\n")
    return do


def test_the_kernel_key_follows_base_config_and_series(checkout: Path) -> None:
    key, restore, base_key = keys(checkout)
    assert re.fullmatch(r"kernel-[0-9a-f]{64}-[0-9a-f]{64}", key)
    assert restore == [key[:len("kernel-") + 64 + 1], "kernel-"]
    assert all(key.startswith(r) for r in restore)  # a restore key is a prefix of a key
    patch = next(checkout.glob("kernel-patch/*.patch"))
    change(patch)()
    key2, restore2, base_key2 = keys(checkout)
    assert key2 != key and restore2 == restore  # the same base's build is restored
    assert base_key2 == base_key  # the base's baselines do not depend on the series
    change(checkout / "Kconfig.fragment")()
    key3, restore3, base_key3 = keys(checkout)
    assert key3 != key2 and restore3[0] != restore[0] and base_key3 != base_key


def test_the_baselines_key_names_the_cpu(checkout: Path) -> None:
    vmx, svm = keys(checkout, "vmx")[2], keys(checkout, "svm")[2]
    assert vmx.startswith("kselftest-baselines-vmx-") and svm.startswith("kselftest-baselines-svm-")
    assert vmx.removeprefix("kselftest-baselines-vmx-") == svm.removeprefix("kselftest-baselines-svm-")
    save = step("Save them for later runs")
    assert save["with"]["key"] == "${{ steps.baselines.outputs.cache-primary-key }}"
    assert "steps.recorded.outputs.count != '0'" in save["if"]  # never an empty cache


# -- the baselines kept between runs ----------------------------------------------

def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A checkout with one committed baseline."""
    ws = tmp_path / "work" / "kvm-iofd"
    (ws / "harness" / "kselftest").mkdir(parents=True)
    (ws / "harness" / "kselftest" / "kvm-selftests-baseline-tcg-svm-default.txt").write_text(
        "committed\n")
    git(ws, "init", "-q")
    git(ws, "add", ".")
    git(ws, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x")
    return ws


def test_restored_baselines_fill_in_but_never_replace(runner: dict[str, str],
                                                      workspace: Path) -> None:
    env = {**runner, **directories(runner, workspace)}
    kept = Path(env["BASELINE_DIR"])
    r = run_step("Use them where the checkout has none", workspace, env)  # nothing restored
    assert r.returncode == 0, r.stderr
    (kept / "kvm-selftests-baseline-tcg-svm-default.txt").write_text("older, from the cache\n")
    (kept / "kvm-selftests-baseline-kvm-vmx-default.txt").write_text("recorded earlier\n")
    r = run_step("Use them where the checkout has none", workspace, env)
    assert r.returncode == 0, r.stderr
    here = workspace / "harness" / "kselftest"
    assert (here / "kvm-selftests-baseline-tcg-svm-default.txt").read_text() == "committed\n"
    assert (here / "kvm-selftests-baseline-kvm-vmx-default.txt").read_text() == "recorded earlier\n"


def test_a_recorded_baseline_is_kept_and_announced(runner: dict[str, str],
                                                   workspace: Path) -> None:
    env = {**runner, **directories(runner, workspace)}
    r = run_step("Keep the baselines this run recorded", workspace, env)
    assert r.returncode == 0, r.stderr
    assert read_env_file(Path(runner["GITHUB_OUTPUT"])) == {"count": "0"}
    Path(runner["GITHUB_OUTPUT"]).write_text("")
    recorded = workspace / "harness" / "kselftest" / "kvm-selftests-baseline-kvm-svm-default.txt"
    recorded.write_text("# environment: kvm-svm-default\n")
    r = run_step("Keep the baselines this run recorded", workspace, env)
    assert r.returncode == 0, r.stderr
    assert read_env_file(Path(runner["GITHUB_OUTPUT"])) == {"count": "1"}
    assert sorted(p.name for p in Path(env["BASELINE_DIR"]).iterdir()) == [recorded.name]
    summary = Path(runner["GITHUB_STEP_SUMMARY"]).read_text()
    assert ("harness/kselftest/kvm-selftests-baseline-kvm-svm-default.txt is not committed"
            in summary)
