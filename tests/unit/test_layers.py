"""Imports only go down the layers (docs/architecture.md draws them).

    cli, dev            the doors and the local cloud: may import anything below
    pipeline            the serverless steps: may import core and cloud
    core    cloud       the render, the Google adapters: neither knows the other
    errors, settings, logs, messages, ports (the package root): import only each other

Every import statement counts, a function's lazy import and a TYPE_CHECKING one included:
a lazy import only hides the dependency from a reader, it does not remove it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.imports import PACKAGE, ROOT, module_file, module_name, package_files

BASE = "base"
MAY_IMPORT: dict[str, set[str]] = {
    BASE: set(),
    "core": {BASE},
    "cloud": {BASE},
    "pipeline": {BASE, "core", "cloud"},
    "dev": {BASE, "core", "cloud", "pipeline"},
    "cli": {BASE, "core", "cloud", "pipeline", "dev"},
}
# The package root's modules that are doors, not the shared bottom.
ROOT_DOORS = {f"{PACKAGE}.__main__": "cli"}


def layer_of(module: str) -> str:
    """The layer of a dotted module name inside the package."""
    if module in ROOT_DOORS:
        return ROOT_DOORS[module]
    parts = module.split(".")
    if len(parts) > 2 and parts[1] in MAY_IMPORT:
        return parts[1]
    if len(parts) == 2 and parts[1] in MAY_IMPORT:  # a layer's own __init__
        return parts[1]
    return BASE


def imported_modules(path: Path) -> set[str]:
    """The package modules a file imports: ``from a.b import c`` counts as a.b, or a.b.c if c is one."""
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join([*package.split(".")[: len(package.split(".")) - node.level + 1], node.module or ""])
            else:
                base = node.module or ""
            base = base.strip(".")
            names = [base]
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                if module_file(sub) is not None:
                    names.append(sub)
        else:
            continue
        found |= {n for n in names if n == PACKAGE or n.startswith(f"{PACKAGE}.")}
    return found


def upward_imports() -> set[tuple[str, str]]:
    found = set()
    for path in package_files():
        importer = module_name(path)
        for imported in imported_modules(path):
            if imported == PACKAGE:  # the root package itself: its __init__ is the bottom
                continue
            mine, theirs = layer_of(importer), layer_of(imported)
            if theirs != mine and theirs not in MAY_IMPORT[mine]:
                found.add((importer, imported))
    return found


def test_imports_only_go_down_the_layers() -> None:
    upward = sorted(upward_imports())
    assert not upward, f"imports from a higher or sideways layer (see docs/architecture.md): {upward}"


def test_every_module_sits_in_a_layer() -> None:
    """A new folder under the package is a new layer: it must be placed in MAY_IMPORT."""
    loose = sorted(
        p.relative_to(ROOT).as_posix()
        for p in package_files()
        if len(p.relative_to(ROOT / PACKAGE).parts) > 1 and p.relative_to(ROOT / PACKAGE).parts[0] not in MAY_IMPORT
    )
    assert not loose, f"modules outside every layer: {loose}"


@pytest.mark.parametrize(
    ("importer", "imported", "allowed"),
    [
        ("scenerender.core.render", "scenerender.errors", True),
        ("scenerender.pipeline.steps", "scenerender.core.render", True),
        ("scenerender.pipeline.steps", "scenerender.cloud.jobs", True),
        ("scenerender.core.render", "scenerender.cloud.storage", False),
        ("scenerender.cloud.jobs", "scenerender.core.spec", False),
        ("scenerender.core.plan", "scenerender.pipeline.steps", False),
        ("scenerender.errors", "scenerender.core.spec", False),
        ("scenerender.__main__", "scenerender.cli.entry", True),
    ],
)
def test_the_rule_itself(importer: str, imported: str, allowed: bool) -> None:
    mine, theirs = layer_of(importer), layer_of(imported)
    assert (theirs == mine or theirs in MAY_IMPORT[mine]) is allowed
