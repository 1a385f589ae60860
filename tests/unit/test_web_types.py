"""The web client's checks that need no browser: generated types, type-checking, its node tests.

The spec types are generated from the schema the pipeline validates with.

web/src/spec.ts is `scenerender schema` through json-schema-to-typescript (web/gen-types.mjs):
a spec field added or changed in scenerender/spec.py without regenerating it fails here, and
the typed client (web/src/client.ts, which a TypeScript backend imports) must type-check.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from scenerender.core.spec import json_schema

WEB = Path(__file__).resolve().parents[2] / "web"
REGENERATE = ".venv/bin/scenerender schema | node web/gen-types.mjs > web/src/spec.ts"


def node_tools() -> None:
    # setup.sh installs them (npm ci in web/); without them this check cannot be made, which is a failure.
    if shutil.which("node") is None or not (WEB / "node_modules" / "json-schema-to-typescript").is_dir():
        pytest.fail("web/node_modules is missing: run scripts/setup.sh (npm ci in web/)")


def generate(schema: dict[str, object]) -> str:
    done = subprocess.run(
        ["node", str(WEB / "gen-types.mjs")],
        input=json.dumps(schema),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_generated_spec_types_are_current() -> None:
    node_tools()
    assert (WEB / "src" / "spec.ts").read_text() == generate(json_schema()), f"stale: regenerate with {REGENERATE}"


def test_a_schema_change_changes_the_types() -> None:
    # The comparison above can fail: a field added to the schema shows in the generated types.
    node_tools()
    schema = json_schema()
    schema["properties"]["priority"] = {"type": "integer", "title": "Priority"}
    assert "priority?: Priority" in generate(schema)
    assert "priority" not in (WEB / "src" / "spec.ts").read_text()


def test_client_type_checks() -> None:
    node_tools()
    done = subprocess.run(
        [str(WEB / "node_modules" / ".bin" / "tsc"), "--noEmit", "-p", str(WEB)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_spec_reading_in_the_page() -> None:
    """web/test/*.test.mjs under node's test runner: located JSON errors, segment and track summaries."""
    node_tools()
    done = subprocess.run(
        ["node", "--test", "test/"], cwd=WEB, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "# fail 0" in done.stdout and "# pass 0" not in done.stdout


def test_the_page_is_on_the_pinned_firebase_sdk() -> None:
    """firebase@12.19.0 exactly (13.x wants a newer Node than these machines have), in the lock too."""
    package = json.loads((WEB / "package.json").read_text())
    lock = json.loads((WEB / "package-lock.json").read_text())
    assert package["dependencies"]["firebase"] == "12.19.0"
    assert lock["packages"]["node_modules/firebase"]["version"] == "12.19.0"


def test_the_readme_shows_a_screenshot_the_browser_tests_take() -> None:
    """The README's picture of the web client is a file in the repository that
    tests/integration/test_web.py writes, so every run of the browser tests makes it current."""
    root = WEB.parent
    shown = set(re.findall(r"\((docs/img/web-[\w-]+\.png)\)", (root / "README.md").read_text()))
    assert shown, "the README shows no screenshot of the web client"
    listed = subprocess.run(
        ["git", "ls-files", "--error-unmatch", *sorted(shown)], cwd=root, capture_output=True, text=True, check=False
    )
    assert listed.returncode == 0, listed.stderr  # committed, not only on this machine
    source = (root / "tests" / "integration" / "test_web.py").read_text()
    taken = {f"docs/img/web-{name}.png" for name in re.findall(r'(?:screenshot\(\w+, |shot=)"([\w-]+)"', source)}
    assert shown <= taken, shown - taken


def test_the_browser_tests_leave_the_committed_screenshots_alone_unless_asked(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Every run of tests/integration/test_web.py used to rewrite docs/img/ (a dirty tree after
    each run, and a screenshot nobody meant to change committed with the next commit)."""
    from tests.integration import test_web

    class Config:
        def __init__(self, update: bool) -> None:
            self.update = update

        def getoption(self, name: str, default: object = None) -> object:
            assert name == "update_screenshots"
            return self.update

    shots = test_web.shots_dir(Config(False), tmp_path_factory)  # type: ignore[arg-type]
    assert test_web.DOCS_IMG not in (shots, *shots.parents)
    assert test_web.shots_dir(Config(True), tmp_path_factory) == test_web.DOCS_IMG  # type: ignore[arg-type]
