"""Issue #24 on the local cloud: `watch` on a real terminal (tmux) with its live bar and the
NOT_FOUND exit, Ctrl-C on `submit --wait`, and batch errors in the user's own paths, each
through the installed `scenerender` as a subprocess."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cli_run import SCENERENDER, run
from tests.integration.conftest import LocalCloud
from tests.mediagen import make_not_media, make_video

pytestmark = [pytest.mark.integration, pytest.mark.emulators]


@pytest.fixture
def shell(local: LocalCloud) -> dict[str, str]:
    """The shell of a user who ran `eval "$(scenerender dev up)"` (the session's stack)."""
    return local.env(SCENERENDER_SEGMENT_CACHE="false")


def scene(folder: Path, job_id: str, *, segments: int = 1, seconds: float = 1.0) -> dict[str, Any]:
    for index in range(segments):
        path = folder / f"seg-{index}.mp4"
        if not path.exists():
            make_video(path, width=640, height=360, fps=30, duration=seconds, pattern="testsrc2", grain=index)
    return {
        "version": 1,
        "job_id": job_id,
        "project_id": "p",
        "scene_id": job_id,
        # No owner_uid: the API names the signed-in user (the CLI's default local user).
        # 720p from 360p sources: every segment is encoded, so the job runs long enough to be watched.
        "output": {"resolution": "720p"},
        "segments": [{"id": f"s{i}", "url": f"seg-{i}.mp4"} for i in range(segments)],
    }


class Terminal:
    """A tmux session on its own server: what a user's terminal shows, read as text."""

    def __init__(self, name: str, env: dict[str, str]) -> None:
        self.name = name
        self.socket = ""
        self.starts = 0
        self.env = env

    def tmux(self, *args: str) -> str:
        done = subprocess.run(
            ["tmux", "-L", self.socket, *args], capture_output=True, text=True, env=self.env, check=True
        )
        return done.stdout

    def start(self, command: str) -> None:
        # A server of its own for each start: `kill-server` returns before the old server has
        # gone, and a new session on its socket meanwhile fails (seen under load).
        self.starts += 1
        self.socket = f"scenerender-test-{self.name}-{os.getpid()}-{self.starts}"
        # The command's exit code is printed when it ends, and the pane stays for the test to read.
        self.tmux("new-session", "-d", "-x", "100", "-y", "12", f"{command}; echo EXIT=$?; sleep 600")

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p")

    def until(self, pattern: str, timeout_s: float) -> list[str]:
        """Every distinct screen seen until one matches ``pattern``."""
        screens: list[str] = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            screen = self.screen()
            if not screens or screens[-1] != screen:
                screens.append(screen)
            if re.search(pattern, screen):
                return screens
            time.sleep(0.1)
        raise AssertionError(f"{pattern!r} not seen within {timeout_s} s; last screen:\n{screens[-1]}")

    def close(self) -> None:
        if self.socket:
            subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True, env=self.env, check=False)


@pytest.fixture
def terminal(shell: dict[str, str]) -> Iterator[Terminal]:
    if shutil.which("tmux") is None:
        pytest.fail("tmux is not installed: run scripts/setup.sh")
    term = Terminal("watch", shell)
    try:
        yield term
    finally:
        term.close()


def test_watch_shows_the_live_bar_then_the_result_and_an_unknown_job_is_not_found(
    shell: dict[str, str], terminal: Terminal, tmp_path: Path
) -> None:
    spec = tmp_path / "watched.json"
    spec.write_text(json.dumps(scene(tmp_path, "cli-watched", segments=4, seconds=3.0)))
    submitted = run("submit", spec, env=shell)
    assert submitted.returncode == 0, submitted.stderr
    assert submitted.stdout.strip() == "cli-watched"
    terminal.start(f"{shlex.quote(SCENERENDER)} watch cli-watched")
    screens = terminal.until(r"EXIT=\d+", timeout_s=300)
    final = screens[-1]
    assert "job cli-watched COMPLETED" in final and "EXIT=0" in final, final
    # The live bar: a stage name, a bar and a percentage that moved between 0 and 100 on the way.
    percents = {int(p) for s in screens for p in re.findall(r"(\d+)%", s)}
    assert any(0 < p < 100 for p in percents), screens
    assert any(re.search(r"(fetch|video|audio|mux|measure|running)\s+\S*━", s) for s in screens), screens

    terminal.close()
    terminal.start(f"{shlex.quote(SCENERENDER)} watch no-such-job-24")
    started = time.monotonic()
    screen = terminal.until(r"EXIT=\d+", timeout_s=30)[-1]
    assert "[NOT_FOUND]" in screen and "no-such-job-24" in screen and "EXIT=2" in screen, screen
    assert time.monotonic() - started < 15  # neither job nor spec: at once, not after the grace
    batch = run("watch", "--batch", "no-such-batch-24", "--json", env=shell, timeout=60)
    assert batch.returncode == 2, batch.stderr
    assert json.loads(batch.stdout)["error"]["code"] == "NOT_FOUND"


def test_ctrl_c_on_submit_wait_says_the_job_goes_on(shell: dict[str, str], tmp_path: Path) -> None:
    spec = tmp_path / "interrupted.json"
    spec.write_text(json.dumps(scene(tmp_path, "cli-interrupted", segments=3, seconds=2.0)))
    proc = subprocess.Popen(
        [SCENERENDER, "submit", str(spec), "--wait"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=shell,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "cli-interrupted"  # printed once the spec is in the bucket
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "job cli-interrupted continues; watch it with `scenerender watch cli-interrupted`" in stderr, stderr
    watched = run("watch", "cli-interrupted", "--json", env=shell, timeout=300)
    assert watched.returncode == 0, watched.stderr
    assert json.loads(watched.stdout)["status"] == "COMPLETED"


def test_batch_errors_name_the_users_own_paths(shell: dict[str, str], tmp_path: Path) -> None:
    good = scene(tmp_path, "cli-batch-good")
    (tmp_path / "broken").mkdir()
    make_not_media(tmp_path / "broken" / "clip.mp4")
    bad = {**scene(tmp_path, "cli-batch-bad"), "segments": [{"id": "s0", "url": "broken/clip.mp4"}]}
    batch = tmp_path / "batch.json"
    batch.write_text(json.dumps({"version": 1, "batch_id": "cli-batch", "scenes": [good, bad]}))
    done = run("submit", batch, "--wait", "--json", env=shell, timeout=300)
    assert done.returncode == 3, done.stderr
    error = json.loads(done.stdout)["error"]
    assert error["code"].startswith("INPUT_") and error["message"] == "1 of 2 scenes failed"
    [detail] = error["details"]
    assert detail["path"] == "cli-batch-bad"
    assert "segments[0].url (broken/clip.mp4)" in detail["problem"], detail
    assert "uploads/" not in done.stdout + done.stderr
