"""The payload is one package that needs only the standard library.

It runs inside the test VM and on bare remote hosts, which have neither the
host side (:mod:`harness`) nor its dependencies (paramiko, matplotlib,
pexpect).  Two checks: every import the payload's source names is the
standard library, the payload itself, or pytest in its tests; and every
payload module imports, with no site-packages at all, from the tarball
``harness.remote`` ships.

The other way round, the host may import the payload's pure modules (the
modes, the checks) but never a runner: a bench run's verdict is
:func:`payload.vmexit.checks.verify` on what the runners wrote, made once.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from harness import paths
from harness.remote import bundle

PAYLOAD = paths.REPO / "payload"
PAYLOAD_TESTS = paths.REPO / "tests" / "payload"


def imported_roots(source: Path) -> set[str]:
    """The top-level names of every absolute import in *source*."""
    roots = set()
    for node in ast.walk(ast.parse(source.read_text(), str(source))):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def foreign_imports(files: list[Path], allowed: set[str]) -> dict[str, set[str]]:
    allowed = allowed | set(sys.stdlib_module_names) | {"__future__"}
    bad = {}
    for f in files:
        extra = imported_roots(f) - allowed
        if extra:
            bad[str(f.relative_to(paths.REPO))] = extra
    return bad


def test_the_checker_sees_a_host_import(tmp_path: Path) -> None:
    f = tmp_path / "m.py"
    f.write_text("import os\nfrom harness.vm import session\nif x:\n    import paramiko\n")
    assert imported_roots(f) == {"os", "harness", "paramiko"}


def test_payload_source_imports_only_the_standard_library() -> None:
    assert foreign_imports(sorted(PAYLOAD.rglob("*.py")), {"payload"}) == {}


def test_payload_tests_import_only_the_payload_and_pytest() -> None:
    assert foreign_imports(sorted(PAYLOAD_TESTS.rglob("*.py")), {"payload", "pytest"}) == {}


def test_every_payload_module_imports_from_the_shipped_bundle(tmp_path: Path) -> None:
    with tarfile.open(bundle.build(tmp_path / "b.tgz", with_pytest=False)) as tar:
        tar.extractall(tmp_path / "host", filter="data")
    modules = sorted(".".join(p.relative_to(tmp_path / "host").with_suffix("").parts)
                     for p in (tmp_path / "host" / "payload").rglob("*.py")
                     if p.name != "__main__.py")
    modules = [m.removesuffix(".__init__") for m in modules]
    assert "payload.vmexit.runner" in modules and "payload.fuzz" in modules
    # -E: no PYTHONPATH; -s: no user site; -S: no site-packages, not even the venv's.
    code = ("import importlib, sys\n"
            "for m in sys.argv[1:]:\n"
            "    importlib.import_module(m)\n"
            "bad = sorted(n for n in sys.modules if n.split('.')[0] in "
            "('harness', 'paramiko', 'matplotlib', 'pexpect'))\n"
            "assert not bad, bad\n")
    r = subprocess.run([sys.executable, "-E", "-s", "-S", "-c", code, *modules],
                       cwd=tmp_path / "host", capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("module", ["payload.vmexit.runner", "payload.fuzz", "payload.hostinfo"])
def test_payload_entry_points_run_without_site_packages(tmp_path: Path, module: str) -> None:
    """``--help`` (or the probe itself) runs from the bundle alone."""
    with tarfile.open(bundle.build(tmp_path / "b.tgz", with_pytest=False)) as tar:
        tar.extractall(tmp_path / "host", filter="data")
    args = [] if module == "payload.hostinfo" else ["--help"]
    r = subprocess.run([sys.executable, "-E", "-s", "-S", "-m", module, *args],
                       cwd=tmp_path / "host", capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def payload_runners() -> set[str]:
    """The payload's runners: each module ``python -m`` runs (one with a
    top-level ``main()``, or a package's ``__main__``)."""
    found = set()
    for f in PAYLOAD.rglob("*.py"):
        tree = ast.parse(f.read_text(), str(f))
        if f.name == "__main__.py" or any(isinstance(n, ast.FunctionDef) and n.name == "main"
                                          for n in tree.body):
            found.add(".".join(f.relative_to(paths.REPO).with_suffix("").parts))
    return found


def test_a_bench_run_imports_no_payload_runner_on_the_host() -> None:
    """Every module of ``make bench``'s host side and of the remote bench,
    imported in a fresh interpreter: no payload runner comes with them, and
    the one verdict's modules do."""
    runners = payload_runners()
    assert {"payload.vmexit.runner", "payload.device.runner", "payload.device.__main__"} <= runners
    walk = [f"harness.bench.{p.stem}" for p in sorted((paths.REPO / "harness" / "bench").glob("*.py"))
            if p.stem != "__init__"] + ["harness.remote.jobs"]
    code = ("import importlib, sys\n"
            "for m in sys.argv[1:]:\n"
            "    importlib.import_module(m)\n"
            "print('\\n'.join(sorted(sys.modules)))\n")
    r = subprocess.run([sys.executable, "-c", code, *walk], cwd=paths.REPO, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    loaded = set(r.stdout.split())
    assert "harness.bench.host" in loaded and "harness.bench.summary" in loaded
    assert {"payload.vmexit.checks", "payload.device.checks"} <= loaded
    assert loaded & runners == set()

