"""Only scenerender/settings.py reads (or writes) the process environment.

Every variable is a ``Settings`` field, so its name is declared once and Terraform and the
tests read it from there; everything else takes a ``Settings`` (or clients made from one)
as an argument, and a child process gets its environment as a dict (``settings.child_env``).
Changing ``os.environ`` to steer a library, or another part of this process, is what this
test keeps out.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.imports import PACKAGE, ROOT

# Files that may touch the environment, each with the reason.
ALLOWED: dict[str, str] = {
    f"{PACKAGE}/settings.py": "the one reader: Settings, and child_env for a child process's environment",
}
ENV_FUNCTIONS = {"getenv", "putenv", "unsetenv", "getenvb", "environ", "environb"}


def environment_uses(path: Path) -> list[str]:
    """``line: what`` for each read or write of the process environment in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if node.value.id == "os" and node.attr in ENV_FUNCTIONS:
                found.append(f"{node.lineno}: os.{node.attr}")
        elif isinstance(node, ast.ImportFrom) and node.module == "os":
            found += [f"{node.lineno}: from os import {a.name}" for a in node.names if a.name in ENV_FUNCTIONS]
    return sorted(found, key=lambda item: (int(item.split(":")[0]), item))


def sources() -> list[Path]:
    return sorted([*(ROOT / PACKAGE).rglob("*.py"), *(ROOT / "functions").rglob("*.py")])


def test_no_module_but_settings_touches_the_environment() -> None:
    offenders = {
        path.relative_to(ROOT).as_posix(): uses
        for path in sources()
        if path.relative_to(ROOT).as_posix() not in ALLOWED and (uses := environment_uses(path))
    }
    assert not offenders, f"read the environment through Settings (scenerender/settings.py): {offenders}"


def test_the_allow_list_is_current() -> None:
    stale = [name for name in ALLOWED if not environment_uses(ROOT / name)]
    assert not stale, f"no longer touch the environment: take them off ALLOWED: {stale}"


MUTATORS = {"update", "clear", "pop", "popitem", "setdefault", "__setitem__", "__delitem__"}


def _is_environ(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Attribute)
        and node.attr == "environ"
        and isinstance(node.value, ast.Name)
        and node.value.id == "os"
    )


def environment_changes(path: Path) -> list[str]:
    """``line: what`` for each change ``path`` makes to this process's environment by hand."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if _is_environ(node.func.value) and node.func.attr in MUTATORS:
                found.append(f"{node.lineno}: os.environ.{node.func.attr}")
            elif (
                isinstance(node.func.value, ast.Name)
                and node.func.value.id == "os"
                and node.func.attr in ("putenv", "unsetenv")
            ):
                found.append(f"{node.lineno}: os.{node.func.attr}")
        targets: list[ast.expr] = []
        if isinstance(node, (ast.Assign, ast.Delete)):
            targets = node.targets
        elif isinstance(node, ast.AugAssign):
            targets = [node.target]
        found += [
            f"{t.lineno}: os.environ[...]" for t in targets if isinstance(t, ast.Subscript) and _is_environ(t.value)
        ]
    return sorted(found, key=lambda item: int(item.split(":")[0]))


def test_no_test_changes_the_environment_by_hand() -> None:
    """A test's local cloud, settings and clients are handed to what it calls, never swapped in
    through the environment (tests/integration/conftest.py). A unit test that must set a variable
    for a door that reads its configuration at start (a Cloud Function) uses pytest's
    ``monkeypatch.setenv``, which puts it back."""
    offenders = {
        path.relative_to(ROOT).as_posix(): changes
        for path in sorted((ROOT / "tests").rglob("*.py"))
        if (changes := environment_changes(path))
    }
    assert not offenders, offenders


def test_the_change_scan_finds_each_form(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import os\nos.environ.update({})\nos.environ['A'] = '1'\ndel os.environ['A']\nos.environ.clear()\n"
        "os.putenv('B', '2')\nos.environ.get('C')\nenv = {**os.environ}\n"
    )
    assert environment_changes(probe) == [
        "2: os.environ.update",
        "3: os.environ[...]",
        "4: os.environ[...]",
        "5: os.environ.clear",
        "6: os.putenv",
    ]


def test_the_scan_finds_each_form(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import os\nfrom os import environ, getenv\n"
        "a = os.environ.get('X')\nb = os.getenv('Y')\nos.environ['Z'] = '1'\nos.environ.update({})\n"
    )
    assert environment_uses(probe) == [
        "2: from os import environ",
        "2: from os import getenv",
        "3: os.environ",
        "4: os.getenv",
        "5: os.environ",
        "6: os.environ",
    ]
