"""bench_render --before: each side renders with its own tree's package, from any folder."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_render  # noqa: E402

# A package that says where it was imported from, with or without the --force option.
FAKE_MAIN = """
import sys
if sys.argv[1:2] == ["render"] and "--help" in sys.argv:
    print("render SPEC -o OUT --json" + (" --force" if {force!r} else ""))
else:
    print(__file__)
"""


def fake_tree(folder: Path, *, force: bool) -> Path:
    package = folder / "scenerender"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text(FAKE_MAIN.format(force=force))
    return folder


def test_the_before_side_imports_its_tree_when_run_from_a_checkout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run from this checkout's root (which holds a scenerender package), `python -m` put the
    root ahead of PYTHONPATH, and the before side rendered with the after code."""
    tree = fake_tree(tmp_path / "before", force=True)
    monkeypatch.chdir(ROOT)
    argv = bench_render.render_in(tree, tmp_path / "spec.json", tmp_path / "out.mp4", ["X=1"])
    assert argv[-1] == "--force"
    imported = subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip()
    assert Path(imported).resolve() == (tree / "scenerender" / "__main__.py").resolve()


def test_an_older_tree_without_force_is_run_without_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tree = fake_tree(tmp_path / "old", force=False)
    monkeypatch.chdir(ROOT)
    argv = bench_render.render_in(tree, tmp_path / "spec.json", tmp_path / "out.mp4", [])
    assert "--force" not in argv
    assert argv[-5:] == ["render", str(tmp_path / "spec.json"), "-o", str(tmp_path / "out.mp4"), "--json"]


def test_a_tree_without_the_package_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its side would fall back to the installed (editable) package: refused, not timed."""
    (tmp_path / "empty").mkdir()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit, match="not from the tree"):
        bench_render.render_in(tmp_path / "empty", tmp_path / "spec.json", tmp_path / "out.mp4", [])
