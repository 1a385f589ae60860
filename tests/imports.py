"""Which of the package's modules an entry point can import, read from the source (ast).

Every ``import`` statement counts, wherever it is (a function's lazy import runs too, just
later), so the closure is what the entry point may need at run time. Used to hold the
functions' archive and the renderer image to what they use.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).parents[1]
PACKAGE = "scenerender"


def module_file(name: str) -> Path | None:
    """The file of a dotted module name inside the package, or None if it is not one."""
    parts = name.split(".")
    if parts[0] != PACKAGE:
        return None
    base = ROOT.joinpath(*parts)
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imported(path: Path) -> set[str]:
    """Dotted names a file imports (absolute, relative resolved), with ``from X import y`` as X and X.y."""
    tree = ast.parse(path.read_text(), str(path))
    here = module_name(path) if path.is_relative_to(ROOT / PACKAGE) else ""
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(p for p in [*base_parts, node.module or ""] if p)
            else:
                base = node.module or ""
            names.add(base)
            names |= {f"{base}.{alias.name}" for alias in node.names}
    return names


def closure(*entries: Path) -> set[Path]:
    """Every package file the entry files reach through imports, with the packages' __init__.py."""
    seen: set[Path] = set()
    todo = list(entries)
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in _imported(path):
            parts = name.split(".")
            # A module's parent packages run their __init__ first.
            for depth in range(1, len(parts) + 1):
                found = module_file(".".join(parts[:depth]))
                if found and found not in seen:
                    todo.append(found)
    return {p for p in seen if p.is_relative_to(ROOT / PACKAGE)}


def package_files() -> set[Path]:
    return {p for p in (ROOT / PACKAGE).rglob("*.py") if "__pycache__" not in p.parts}
