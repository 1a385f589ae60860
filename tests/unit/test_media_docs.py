"""docs/media.md's "How each case is proven" names tests that exist: every ``alias::test``
and ``tests/...py::test`` there is collected by pytest, with each parametrization it lists,
so a renamed test or a dropped case cannot leave a claim of #21 pointing nowhere."""

from __future__ import annotations

import re
import subprocess
import sys
from functools import cache
from pathlib import Path

ROOT = Path(__file__).parents[2]
PAGE = (ROOT / "docs" / "media.md").read_text(encoding="utf-8")
SECTION = PAGE.split("## How each case is proven", 1)[1].split("\n## ", 1)[0]
ALIASES = {
    "real_media": "tests/integration/test_real_media.py",
    "formats": "tests/integration/test_formats.py",
    "placement": "tests/integration/test_placement.py",
}
NAMED = re.compile(r"`((?:real_media|formats|placement)|tests/[\w/]+\.py)::(test_\w+)(?:\[([^\]`]*)\])?`")


def references() -> list[tuple[str, str, list[str]]]:
    """(file, test, parametrizations listed) for every test the section names."""
    found = []
    for file, name, params in NAMED.findall(SECTION):
        listed = [] if params in ("", "...") else [p.strip() for p in params.split(",")]
        found.append((ALIASES.get(file, file), name, listed))
    return found


@cache
def collected(files: tuple[str, ...]) -> frozenset[str]:
    """``file::test[id]`` of every test pytest collects in ``files`` (nothing is run)."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *files],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return frozenset(line.strip() for line in done.stdout.splitlines() if "::" in line)


def test_every_test_and_case_the_proof_map_names_is_collected() -> None:
    refs = references()
    assert len(refs) > 40, refs  # the map is there and read
    files = tuple(sorted({file for file, _, _ in refs}))
    ids = collected(files)
    missing = []
    for file, name, params in refs:
        mine = [i.split("::", 1)[1] for i in ids if i.startswith(f"{file}::{name}[") or i == f"{file}::{name}"]
        if not mine:
            missing.append(f"{file}::{name}")
        for param in params:
            if not any(param in i[len(name) :] for i in mine):
                missing.append(f"{file}::{name}[{param}]")
    assert not missing, f"docs/media.md names tests or cases that are not collected: {missing}"


def test_the_map_names_files_that_exist() -> None:
    for path in set(re.findall(r"`(tests/[\w/]+\.py)`", SECTION)) | set(ALIASES.values()):
        assert (ROOT / path).is_file(), path
