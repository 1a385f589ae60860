"""The README is for users: short, its example spec valid, its links inside the repository."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.cli_run import run

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
MAX_LINES = 150


def test_the_readme_stays_short() -> None:
    assert len(README.splitlines()) <= MAX_LINES, "the README is for users: put the rest in docs/"


def test_the_two_commands_are_there_and_exist() -> None:
    for script in ("scripts/demo.sh", "scripts/test.sh"):
        assert f"\n{script}\n" in README, script
        assert (ROOT / script).is_file(), script


def test_the_example_spec_passes_scenerender_validate(tmp_path: Path) -> None:
    section = README.split("## A spec to copy", 1)[1]
    block = re.search(r"```json\n(.*?)\n```", section, re.S)
    assert block is not None, "no example spec under 'A spec to copy'"
    spec = tmp_path / "job_spec.json"
    spec.write_text(block[1])
    checked = run("validate", spec, "--json")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert json.loads(checked.stdout) == {"valid": True}
    # Complete: every kind of clip and the audio options a user would copy.
    data = json.loads(block[1])
    assert {c["type"] for c in data["audio"]["clips"]} == {"narration", "dialogue", "music", "sfx"}
    assert {"ducking", "loudness"} <= set(data["audio"])


def test_every_link_inside_the_repository_resolves() -> None:
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", README)
    local = [t for t in targets if not re.match(r"[a-z]+://", t)]
    assert local, "the README links nothing in the repository"
    missing = [t for t in local if not (ROOT / t).exists()]
    assert not missing, f"README links to files that are not there: {missing}"
    outside = [t for t in targets if re.match(r"[a-z]+://", t)]
    assert not outside, f"links outside the repository (the contract and docs are in docs/): {outside}"
