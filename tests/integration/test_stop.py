"""Ctrl-C, SIGTERM and SIGHUP stop a render at once and leave nothing behind.

The signal goes to the CLI's process alone (as ``kill PID``, a supervisor or a closed
terminal sends it), not to its process group: its ffmpeg processes hear of it only through
the CLI. After the signal no new ffmpeg starts, every one that ran is gone, the private
dir is removed and no output (nor a partial one) appears.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import pytest

from tests.mediagen import make_music, make_video

pytestmark = pytest.mark.integration


ENCODERS = 2  # segment encodes at once (SCENERENDER_CPUS)


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for task in tasks:
        try:
            found.update(int(c) for c in Path(f"/proc/{pid}/task/{task}/children").read_text().split())
        except OSError:
            continue
    return found


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _running(pid: int, cmdline: str) -> bool:
    """``pid`` still runs the same command (not a zombie, not a reused pid)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z" and _cmdline(pid) == cmdline


def _start(spec: Path, out: Path, tmp: Path) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "TMPDIR": str(tmp),
        "SCENERENDER_WORK_DIR": "",
        "SCENERENDER_SEGMENT_CACHE": "false",
        "SCENERENDER_CPUS": str(ENCODERS),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "scenerender", "render", str(spec), "-o", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        # As from a terminal, whatever the test runner inherited (a background job ignores SIGINT).
        preexec_fn=_default_signals,
    )


def _default_signals() -> None:
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)


class Stop(NamedTuple):
    code: int  # the CLI's exit code
    before: dict[int, str]  # the CLI's processes seen before the signal (pid: command line)
    after: dict[int, str]  # those it started after it
    stderr: str
    seconds: float  # from the signal to the CLI's exit


def _stop_when(proc: subprocess.Popen[str], started: Callable[[str], bool], signum: int) -> Stop:
    """Signal ``proc`` (alone, not its group) once a child whose command line ``started`` shows."""
    before: dict[int, str] = {}
    deadline = time.monotonic() + 120
    while not any(started(cmd) for cmd in before.values()):
        assert proc.poll() is None, f"the render ended before the moment to stop it:\n{proc.communicate()[1]}"
        assert time.monotonic() < deadline, "the render never reached the moment to stop it"
        before.update((pid, _cmdline(pid)) for pid in _children(proc.pid) - before.keys())
        time.sleep(0.01)
    os.kill(proc.pid, signum)
    signalled = time.monotonic()
    after: dict[int, str] = {}
    deadline = time.monotonic() + 30
    while proc.poll() is None:
        assert time.monotonic() < deadline, "the render did not stop"
        after.update((pid, _cmdline(pid)) for pid in _children(proc.pid) - before.keys() - after.keys())
        time.sleep(0.005)
    seconds = time.monotonic() - signalled
    _, stderr = proc.communicate()
    return Stop(proc.returncode, before, after, stderr, seconds)


def _render_and_stop(spec: Path, folder: Path, started: Callable[[str], bool], signum: int) -> Stop:
    """Render ``spec`` to ``folder``/out with ``folder``/tmp as TMPDIR; signal it once ``started``."""
    (folder / "tmp").mkdir()
    (folder / "out").mkdir()
    return _stop_when(_start(spec, folder / "out" / "scene.mp4", folder / "tmp"), started, signum)


def _assert_nothing_left(stop: Stop, folder: Path) -> None:
    left = [cmd for pid, cmd in {**stop.before, **stop.after}.items() if cmd and _running(pid, cmd)]
    assert not left, f"still running after the CLI exited: {left}"
    assert list((folder / "tmp").iterdir()) == [], "the private dir was left behind"
    assert list((folder / "out").iterdir()) == [], "an output or partial output was left"


def _assert_no_more_encodes(stop: Stop) -> None:
    """The queue of encodes ended with the signal (at least six of the eight were still to come).

    One per encoder may have started after the signal was sent and before the CLI had it (an
    encode that ended in that moment hands its worker the next): those were stopped with the
    rest, which ``_assert_nothing_left`` checks.
    """
    started = [cmd for cmd in stop.after.values() if "libx264" in cmd]
    assert len(started) <= ENCODERS, started


@pytest.fixture(scope="module")
def normalising_scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Eight different 320x180@25 segments into a 720p30 scene: every segment is encoded."""
    folder = tmp_path_factory.mktemp("normalising")
    segments = []
    for i in range(8):
        make_video(folder / f"s{i}.mp4", width=320, height=180, fps=25, duration=4.0, tone=300.0 + 50 * i)
        segments.append({"id": f"s{i}", "url": f"s{i}.mp4"})
    spec = {"version": 1, "project_id": "p", "scene_id": "stop", "output": {"resolution": "720p", "fps": 30}}
    spec["segments"] = segments
    path = folder / "job_spec.json"
    path.write_text(json.dumps(spec))
    return path


@pytest.mark.parametrize(
    ("signum", "code", "said"),
    [
        (signal.SIGTERM, 143, "stopped by SIGTERM"),
        (signal.SIGHUP, 129, "stopped by SIGHUP"),
        (signal.SIGINT, 130, "interrupted"),  # Ctrl-C, as `kill -INT` sends it: to the CLI alone
    ],
)
def test_a_signal_stops_the_encodes_at_once(
    normalising_scene: Path, tmp_path: Path, signum: int, code: int, said: str
) -> None:
    stop = _render_and_stop(normalising_scene, tmp_path, lambda cmd: "libx264" in cmd, signum)

    assert stop.code == code, stop.stderr
    assert said in stop.stderr and "Traceback" not in stop.stderr, stop.stderr
    _assert_no_more_encodes(stop)
    _assert_nothing_left(stop, tmp_path)


def test_sigterm_during_the_shared_audio_encode_and_mux(tmp_path: Path) -> None:
    """The fast path: segments copied, a ten-minute mix encoded in chunks straight into the final mux."""
    media = tmp_path / "media"
    media.mkdir()
    make_video(media / "seg.mp4", width=640, height=360, fps=30, duration=10.0)
    make_music(media / "music.wav", duration=7.0)
    spec = {
        "version": 1,
        "project_id": "p",
        "scene_id": "stop-audio",
        "output": {"resolution": "360p", "fps": 30},
        "segments": [{"id": f"s{i}", "url": "media/seg.mp4"} for i in range(60)],
        "audio": {"clips": [{"type": "music", "url": "media/music.wav", "loop": True}]},
    }
    spec_path = tmp_path / "job_spec.json"
    spec_path.write_text(json.dumps(spec))
    stop = _render_and_stop(spec_path, tmp_path, lambda cmd: " aac " in cmd, signal.SIGTERM)

    assert stop.code == 143, stop.stderr
    assert "stopped by SIGTERM" in stop.stderr and "Traceback" not in stop.stderr, stop.stderr
    _assert_nothing_left(stop, tmp_path)
    # Ten minutes of AAC are over 20 s of one core's work: stopping did not wait for the
    # encoders to finish (the signal found them just started).
    assert stop.seconds < 5.0, stop.seconds
