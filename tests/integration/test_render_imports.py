"""A render loads only what it uses: no Google client library in `scenerender render`.

The render's Python process sits beside its ffmpeg encodes at the render's peak, so what it
imports is memory every render pays: google-cloud-storage (with grpc, requests, cryptography,
protobuf) took a local render's Python from 35 to 64 MB PSS and pushed two benchmark cases
over 400 MB (docs/performance.md). gs:// inputs load it when one is met
(``scenerender.cloud.gs_inputs``); these tests hold the render path to that, on a real render
(every module a lazy import loads during the render counts, not only the entry's imports).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.mediagen import make_tone_burst, make_video

pytestmark = pytest.mark.integration

# Loaded by the pipeline's doors and gs:// inputs, never by a render of local files. (``google``
# and ``google.cloud`` themselves are empty namespace packages a .pth file of functions-framework
# makes at every start: what counts is any module under them.)
NOT_IN_A_LOCAL_RENDER = (
    "grpc",
    "google.cloud.",
    "google.api_core",
    "google.auth",
    "google.protobuf",
    "firebase_admin",
    "requests",
    "cryptography",
    "PIL",  # only an animated WebP segment needs its decoder (core.webp)
    "scenerender.cloud.storage",
    "scenerender.pipeline",
    "scenerender.messages",  # the pipeline's models
    "scenerender.dev.devstack",  # the local cloud's machinery (the CLI's help names its functions only)
)

# Runs the console script's own entry and writes the modules loaded when the process ends.
HOOK = """
import atexit, json, sys
dump = sys.argv[1]
atexit.register(lambda: open(dump, "w").write(json.dumps(sorted(sys.modules))))
sys.argv = ["scenerender", *sys.argv[2:]]
from scenerender.cli.entry import main
main()
"""


def loaded(module: str, modules: list[str]) -> list[str]:
    """``module`` and its submodules among ``modules``; ``"a.b."``: only its submodules."""
    if module.endswith("."):
        return [m for m in modules if m.startswith(module)]
    return [m for m in modules if m == module or m.startswith(f"{module}.")]


def test_a_local_render_loads_no_cloud_client_library(tmp_path: Path) -> None:
    # Normalised (640x360 25 fps into 1080p30), with a clip, and every sidecar: the whole local path.
    for name in ("a", "b"):
        make_video(tmp_path / f"{name}.mp4", width=640, height=360, fps=25, duration=1.0)
    make_tone_burst(tmp_path / "line.wav", freq=1000, duration=0.4, lead_silence=0.0)
    spec = {
        "version": 1,
        "project_id": "p",
        "scene_id": "s",
        "output": {"resolution": "1080p", "fps": 30},
        "segments": [{"id": "a", "url": "a.mp4"}, {"id": "b", "url": "b.mp4"}],
        "audio": {"clips": [{"type": "narration", "url": "line.wav", "start": 0.2}]},
    }
    (tmp_path / "job_spec.json").write_text(json.dumps(spec))
    dump = tmp_path / "modules.json"
    env = {**os.environ, "SCENERENDER_SEGMENT_CACHE": "false", "SCENERENDER_DELIVERABLES": "true"}
    done = subprocess.run(
        [
            sys.executable,
            "-P",
            "-c",
            HOOK,
            str(dump),
            "render",
            str(tmp_path / "job_spec.json"),
            "-o",
            str(tmp_path / "out.mp4"),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["duration_s"] == pytest.approx(2.0, abs=0.05)
    modules = json.loads(dump.read_text())
    # The dump is the render's own: the render core and the sidecars ran in this process.
    assert "scenerender.core.render" in modules and "scenerender.core.deliverables.maker" in modules
    found = {heavy: loaded(heavy, modules) for heavy in NOT_IN_A_LOCAL_RENDER}
    assert {heavy: names[:5] for heavy, names in found.items() if names} == {}
