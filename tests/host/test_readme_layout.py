"""The README's layout table names what is in the tree, and nothing that is not."""

from __future__ import annotations

import re
import subprocess

from harness import paths


def layout_rows() -> dict[str, str]:
    """First column -> the rest, for the README's first table."""
    rows: dict[str, str] = {}
    for line in (paths.REPO / "README.md").read_text().splitlines():
        if line.startswith("| `"):
            first, rest = line.split("|")[1], "|".join(line.split("|")[2:])
            for name in re.findall(r"`([^`]+)`", first):
                rows[name.rstrip("/")] = rest
        elif rows and not line.startswith("|"):
            break
    return rows


def tracked_top_level() -> set[str]:
    out = subprocess.run(["git", "ls-files"], cwd=paths.REPO, capture_output=True, text=True,
                         check=True).stdout
    return {f.split("/")[0] for f in out.splitlines() if "/" in f and not f.startswith(".")}


def named_in(text: str) -> set[str]:
    return {n.rstrip("/") for n in re.findall(r"`([^`]+)`", text)}


def parts(pkg: str) -> set[str]:
    """The subpackages and modules of *pkg* a reader looks for."""
    root = paths.REPO / pkg
    subs = {p.name for p in root.iterdir() if (p / "__init__.py").is_file()}
    mods = {p.stem for p in root.glob("*.py") if p.stem not in ("__init__", "__main__")}
    return subs | mods


def test_every_top_level_directory_has_a_row() -> None:
    rows = layout_rows()
    missing = {d for d in tracked_top_level() if not any(k.split("/")[0] == d for k in rows)}
    assert missing == set()


def test_the_packages_rows_name_each_of_their_parts() -> None:
    rows = layout_rows()
    for pkg in ("harness", "payload"):
        named = named_in(rows[pkg])
        assert parts(pkg) - named == set(), pkg
        assert named - parts(pkg) == set(), f"{pkg}: the README names what is not there"


def test_the_tests_row_names_each_test_directory() -> None:
    rows = layout_rows()
    test_dirs = {f"tests/{p.name}" for p in (paths.REPO / "tests").iterdir() if p.is_dir()
                 and not p.name.startswith((".", "__"))}
    assert test_dirs <= set(rows) | {n for row in rows.values() for n in named_in(row)}
