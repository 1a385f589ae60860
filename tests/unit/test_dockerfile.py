"""The renderer image as a reviewer would check it: no Docker engine here, so the Dockerfile is read."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
DOCKERFILE = ROOT / "renderer_image" / "Dockerfile"
CLOUDBUILD = ROOT / "renderer_image" / "cloudbuild.yaml"
WORKER = ROOT / "scenerender" / "pipeline" / "worker.py"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, args = (pending + stripped).partition(" ")
        out.append((keyword.upper(), " ".join(args.split())))
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    return out


def args_of(keyword: str) -> list[str]:
    return [args for kw, args in instructions() if kw == keyword]


def test_base_is_a_slim_python_pinned_to_an_exact_version() -> None:
    bases = args_of("FROM")
    assert len(bases) == 1, bases
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm@sha256:[0-9a-f]{64}", bases[0]), bases[0]
    assert "latest" not in bases[0]
    # The same minor version the functions run on.
    functions_tf = (ROOT / "terraform" / "functions.tf").read_text()
    assert set(re.findall(r'runtime\s*=\s*"(\w+)"', functions_tf)) == {"python311"}


def apt_pins() -> dict[str, str]:
    """Package → exact version of the one ``apt-get install`` line."""
    apt = [r for r in args_of("RUN") if "apt-get install" in r]
    assert len(apt) == 1, apt
    words = [w.strip('"') for w in apt[0].split("apt-get install", 1)[1].split("&&", 1)[0].split()]
    assert words[:2] == ["-y", "--no-install-recommends"], words
    pins: dict[str, str] = {}
    for word in words[2:]:
        name, sep, version = word.partition("=")
        assert sep and version and not set(version) & set("*?[]"), f"{word}: not pinned to one exact version"
        pins[name] = version
    return pins


def installed_version(package: str) -> str | None:
    done = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True, check=False)
    return done.stdout.strip() if done.returncode == 0 and done.stdout.strip() else None


def test_installs_debian_ffmpeg_pinned_exactly_without_extras_and_cleans_the_lists() -> None:
    runs = args_of("RUN")
    (apt,) = [r for r in runs if "apt-get install" in r]
    assert apt.startswith("apt-get update &&") and apt.endswith("&& rm -rf /var/lib/apt/lists/*"), apt
    pins = apt_pins()
    # Every binary of Debian's ffmpeg source package, at one version: ffmpeg alone would
    # accept any libavcodec59 >= 7:5.0.
    ffmpeg_binaries = {
        "ffmpeg", "libavcodec59", "libavdevice59", "libavfilter8", "libavformat59",
        "libavutil57", "libpostproc56", "libswresample4", "libswscale6",
    }  # fmt: skip
    assert ffmpeg_binaries <= set(pins), ffmpeg_binaries - set(pins)
    assert len({pins[name] for name in ffmpeg_binaries}) == 1, {name: pins[name] for name in ffmpeg_binaries}
    assert pins["ffmpeg"].startswith("7:5.1."), "bookworm's ffmpeg 5.1 line, as the base image is bookworm"


@pytest.mark.skipif(shutil.which("dpkg-query") is None, reason="not a Debian machine: no dpkg to compare with")
def test_the_image_pins_the_debian_versions_the_tests_run_with() -> None:
    """The image renders with the ffmpeg (and libass, zimg, fonts) the media tests verified."""
    wrong = {name: (version, installed_version(name)) for name, version in apt_pins().items()}
    wrong = {name: pair for name, pair in wrong.items() if pair[0] != pair[1]}
    assert not wrong, (
        "renderer_image/Dockerfile pins (Dockerfile, installed here): "
        f"{wrong}; move the pins to what apt-cache policy shows (or upgrade this machine)"
    )


def test_installs_the_pinned_requirements_and_copies_only_the_package() -> None:
    assert any(re.search(r"pip install .*--no-deps -r requirements\.lock && pip check$", r) for r in args_of("RUN"))
    copies = args_of("COPY")
    sources = {c.split()[0] for c in copies}
    assert sources == {"requirements.lock", "scenerender/"}, copies
    for source in sources:  # the build context is the repository root
        assert (ROOT / source).exists(), source
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    ignored = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert "scenerender" not in ignored and "requirements.lock" not in ignored


def test_runs_as_a_non_root_user_set_before_the_entry_point() -> None:
    order = [kw for kw, _ in instructions()]
    users = args_of("USER")
    assert users, "no USER: the image would run as root"
    assert users[-1] not in ("root", "0") and not users[-1].startswith(("root:", "0:")), users
    assert max(i for i, kw in enumerate(order) if kw == "USER") < order.index("ENTRYPOINT")
    assert args_of("HEALTHCHECK") == ["NONE"]  # a batch job: nothing listens, nothing to probe


def test_entry_point_is_the_worker_module_in_exec_form() -> None:
    (entry,) = args_of("ENTRYPOINT")
    assert json.loads(entry) == ["python", "-m", "scenerender.pipeline.worker"]
    assert not args_of("CMD")


@pytest.mark.xfail(not WORKER.is_file(), reason="worker not written yet", strict=True)
def test_the_entry_point_module_exists() -> None:
    assert WORKER.is_file()
    assert 'if __name__ == "__main__":' in WORKER.read_text()


def test_cloud_build_builds_from_the_repository_root_and_pushes() -> None:
    text = CLOUDBUILD.read_text()
    assert '"-f", "renderer_image/Dockerfile"' in text
    assert re.search(r'args: \["build", .*"\."\]', text), "the build context must be the repository root"
    assert re.search(r'^images:\n  - "\$\{_IMAGE\}"$', text, re.M)
