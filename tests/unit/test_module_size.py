"""No module is over MAX_LINES lines without saying why in its docstring.

A long module is fine when it is one concern a reader takes in whole; its docstring then has
a line starting with ``Size:`` that says so. Otherwise it is split by concern.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.imports import PACKAGE, ROOT

MAX_LINES = 400
MARKER = "Size:"
# Modules owed a split or a reason (the list only shrinks; a module that is split or gives
# its reason is taken off).
OWED: dict[str, str] = {}


def sources() -> list[Path]:
    return sorted([*(ROOT / PACKAGE).rglob("*.py"), *(ROOT / "functions").rglob("*.py")])


def gives_a_reason(path: Path) -> bool:
    doc = ast.get_docstring(ast.parse(path.read_text(), str(path))) or ""
    return any(line.strip().startswith(MARKER) for line in doc.splitlines())


def too_long(path: Path) -> bool:
    return len(path.read_text().splitlines()) > MAX_LINES and not gives_a_reason(path)


def test_every_long_module_says_why() -> None:
    long = [p.relative_to(ROOT).as_posix() for p in sources() if too_long(p)]
    unexplained = sorted(set(long) - set(OWED))
    assert not unexplained, f"over {MAX_LINES} lines: split by concern, or give a '{MARKER}' line: {unexplained}"


def test_owed_modules_are_still_owed() -> None:
    paid = sorted(name for name in OWED if not (ROOT / name).is_file() or not too_long(ROOT / name))
    assert not paid, f"split or explained now: take them off OWED: {paid}"


def test_the_marker_is_read_from_the_docstring_only(tmp_path: Path) -> None:
    body = "x = 1\n" * (MAX_LINES + 1)
    (tmp_path / "explained.py").write_text(f'"""A module.\n\n{MARKER} one concern.\n"""\n{body}')
    (tmp_path / "comment.py").write_text(f'"""A module."""\n# {MARKER} not in the docstring\n{body}')
    (tmp_path / "short.py").write_text('"""A module."""\nx = 1\n')
    assert [too_long(tmp_path / n) for n in ("explained.py", "comment.py", "short.py")] == [False, True, False]
