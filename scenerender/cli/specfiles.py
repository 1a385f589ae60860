"""The files a command names: the spec (read, located errors), the output it writes (checked
before anything is fetched: the folder, ``--force``, never over the spec or an input) and
the local inputs a spec names.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any

from scenerender.core.inputs import is_local_path, local_file
from scenerender.core.spec import ID_PATTERN, JobSpec, default_job_id, load_json, spec_errors
from scenerender.errors import ErrorDetail, InputUnreachableError, SceneRenderError, SpecError
from scenerender.settings import get_settings


def read_spec_file(path: Path, what: str = "SPEC") -> bytes:
    """The bytes of the spec file the command line names (exit 2, located, if there are none)."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        problem = f"no such file: {path}"
    except IsADirectoryError:
        problem = f"is a folder, not a spec file: {path}"
    except OSError as exc:
        problem = f"cannot read {path}: {exc.strerror}"
    raise SpecError.from_details([ErrorDetail(what, problem)])


def load_spec(path: Path) -> JobSpec:
    spec, problems, _ = read_spec(path)
    if spec is None:
        raise SpecError.from_details(problems)
    return spec


def read_spec(path: Path) -> tuple[JobSpec | None, list[ErrorDetail], Any]:
    """(the spec at ``path`` or None, every problem with it, its JSON); a file that is not
    JSON at all stops here."""
    data = load_json(read_spec_file(path), max_bytes=get_settings().max_spec_bytes)
    spec, problems = spec_errors(data)
    return spec, problems, data


def check_id(value: str, what: str) -> str:
    """A job or batch id given on the command line (exit 2 if it is not one)."""
    if not re.fullmatch(ID_PATTERN, value):
        raise SpecError.from_details(
            [ErrorDetail(what, f"{value!r} is not a valid id (letters, digits, `_`, `.`, `-`; at most 128)")]
        )
    return value


def output_name(spec: JobSpec, spec_path: Path) -> str:
    """The MP4's name when only a folder is given: the same as the pipeline's object
    (``output.filename``, else ``{job_id}.mp4``, the job id defaulting to the spec file's name)."""
    return spec.output.filename or f"{spec.job_id or default_job_id(spec_path.name)}.mp4"


def output_target(
    spec: JobSpec | None, spec_path: Path, given: str, *, force: bool, option: str = "--output"
) -> tuple[Path, list[ErrorDetail]]:
    """Where the MP4 goes, and every problem with it, found before anything is fetched.

    A folder (existing, or written with a trailing ``/``) gets the file named as in the
    pipeline; a file that exists is replaced only with ``--force``; the folder must exist
    and be writable; the spec and its local inputs are never overwritten.
    """
    path = Path(given)
    as_folder = given.endswith(("/", os.sep)) or path.is_dir()
    if as_folder:
        if not path.is_dir():
            return path, [ErrorDetail(option, f"folder does not exist: {given} (create it first, or name a file)")]
        if spec is None:
            return path, []
        path = path / output_name(spec, spec_path)
    problems: list[ErrorDetail] = []
    folder = path.parent
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        return path, [ErrorDetail(option, f"folder {what}: {folder}")]
    if path.is_dir():
        return path, [ErrorDetail(option, f"{path} is a folder")]
    if not _writable(folder):
        problems.append(ErrorDetail(option, f"cannot write in {folder} (permission denied or read-only)"))
    if not force:
        from scenerender.core.deliverables import SUFFIXES, sidecar_path

        # The sidecars go beside the MP4 under its stem: an earlier render's are not replaced silently either.
        existing = [p for p in (path, *(sidecar_path(path, kind) for kind in SUFFIXES)) if p.exists()]
        problems += [ErrorDetail(option, f"{p} exists; pass --force to replace it") for p in existing]
    if spec is not None:
        problems += output_clashes(spec, spec_path, path, option)
    return path, problems


def _writable(folder: Path) -> bool:
    # A real try, not os.access: root passes access() on folders it still cannot write (/proc, read-only mounts).
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".scenerender-write-test-"):
            return True
    except OSError:
        return False


def output_clashes(spec: JobSpec, spec_path: Path, output: Path, option: str = "--output") -> list[ErrorDetail]:
    """The spec or a local input the output would replace: refused before anything is rendered.

    Publishing the MP4 replaces whatever is at the output path, so ``-o media/seg-0.mp4``
    would destroy the very segment it was made from. Other names of the same file count too
    (a hard link, a path through a linked folder).
    """
    base = spec_path.resolve().parent
    named = [("SPEC", str(spec_path), spec_path)]
    named += [(where, url, local_file(url, base)) for where, url in spec.inputs() if is_local_path(url)]
    return [
        ErrorDetail(option, f"is {where} ({url}): the render would overwrite it")
        for where, url, path in named
        if _same_file(output, path)
    ]


def _same_file(a: Path, b: Path) -> bool:
    if os.path.abspath(a) == os.path.abspath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # either does not exist (yet): only the names could clash
        return False


def local_input_problems(spec: JobSpec, spec_path: Path, prefix: str = "") -> list[SceneRenderError]:
    """Inputs the spec names by a local path that has no file (exit 3, each named), found
    before anything is uploaded."""
    base = spec_path.resolve().parent
    return [
        InputUnreachableError(prefix + where, f"file not found: {local_file(url, base)}", url=url)
        for where, url in spec.inputs()
        if is_local_path(url) and not local_file(url, base).is_file()
    ]
