"""`scenerender dev up --executions`: the local cloud renders as the cloud does (issue #22).

Without the flag, always-on workers drain the queue and the sweeper, called on schedule, has
nothing to launch. With it there is no worker until something launches one: the spec function
and the sweeper start executions of worker processes that exit when idle, as they start Cloud
Run executions in the cloud. A folder's stack keeps the mode it was started in: `dev up` in the
other mode is refused until `dev down`. Through the installed `scenerender`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scenerender.dev.functions import FUNCTIONS
from scenerender.dev.procs import free_port, free_run
from tests.cli_run import bare_env, run
from tests.mediagen import make_video

pytestmark = [pytest.mark.integration, pytest.mark.emulators]


@pytest.fixture
def folder(tmp_path: Path) -> Iterator[Path]:
    try:
        yield tmp_path
    finally:
        run("dev", "down", cwd=tmp_path, timeout=120)  # whatever a failed assertion left running


def status(folder: Path) -> dict[str, Any]:
    done = run("dev", "status", cwd=folder, timeout=60)
    found: dict[str, Any] = json.loads(done.stdout)
    return found


def own_ports() -> list[str]:
    """Free ports of our own for the servers `dev up` lets us choose: the defaults (4443, 8085...)
    are what every other engineer's stack on this machine reaches for first."""
    taken: set[int] = set()
    chosen = []
    for option in ("--pubsub-port", "--firestore-port", "--gcs-port"):
        port = free_port()
        while port in taken:
            port = free_port()
        taken.add(port)
        chosen += [option, str(port)]
    return [*chosen, "--functions-port", str(free_run(len(FUNCTIONS), avoid=taken))]


def test_dev_up_with_executions_launches_renderers_and_keeps_its_mode(folder: Path) -> None:
    done = run("dev", "up", "--executions", "--json", *own_ports(), cwd=folder, timeout=300)
    assert done.returncode == 0, done.stderr
    env: dict[str, str] = json.loads(done.stdout)["env"]
    assert env.get("SCENERENDER_LOCAL_EXECUTIONS_DIR"), env
    assert "renderer: executions" in done.stderr, done.stderr
    processes = status(folder)["processes"]
    assert "scheduler" in processes, processes  # Cloud Scheduler's part: the sweeps
    assert not [name for name in processes if name.startswith("worker")], processes

    make_video(folder / "seg.mp4", width=320, height=180, fps=25, duration=0.5)
    spec = folder / "exec-job.json"
    spec.write_text(
        json.dumps(
            {
                "version": 1,
                "job_id": "exec-job",
                "project_id": "p",
                "scene_id": "s",
                "segments": [{"id": "a", "url": "seg.mp4"}],
            }
        )
    )
    rendered = run("submit", spec, "--wait", "--json", cwd=folder, env=bare_env(**env), timeout=300)
    assert rendered.returncode == 0, rendered.stderr
    job = json.loads(rendered.stdout)
    assert job["status"] == "COMPLETED", job
    # Rendered by a launched execution's task, which the local launcher recorded.
    assert any((Path(env["SCENERENDER_LOCAL_EXECUTIONS_DIR"])).iterdir())

    # The running stack keeps its mode: asked for the other one, `dev up` says what to do.
    other = run("dev", "up", "--json", cwd=folder, timeout=120)
    assert other.returncode != 0
    assert "--executions" in other.stderr and "dev down" in other.stderr, other.stderr
    assert "Traceback" not in other.stderr
    again = run("dev", "up", "--executions", "--json", cwd=folder, timeout=120)
    assert again.returncode == 0 and json.loads(again.stdout)["started"] is False, again.stderr
