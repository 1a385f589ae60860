"""Every ffmpeg runs under a watchdog: one that makes no progress (an input that never comes,
a filter that hangs) is killed and the render fails naming it, instead of holding its job
until the render's time limit (or forever, without one)."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from scenerender.core.ffmpeg import FFmpegRunner
from scenerender.errors import RenderError, RenderTimeoutError

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("how", ["run", "capture_stderr"])
def test_an_ffmpeg_that_makes_no_progress_is_stopped_naming_its_command(tmp_path: Path, how: str) -> None:
    fifo = tmp_path / "never-written.wav"
    os.mkfifo(fifo)  # ffmpeg waits to open it: no progress line ever comes
    runner = FFmpegRunner(stall_s=2)
    began = time.monotonic()
    with pytest.raises(RenderError) as caught:
        getattr(runner, how)(["ffmpeg", "-y", "-i", str(fifo), "-f", "wav", str(tmp_path / "out.wav")])
    took = time.monotonic() - began
    assert 2 <= took < 15, took
    error = caught.value
    assert not isinstance(error, RenderTimeoutError) and error.code == "RENDER_FAILED"
    assert "reading never-written.wav into out.wav made no progress for 2 s" in str(error), str(error)
    assert str(fifo) in error.command


def test_a_slow_ffmpeg_that_makes_progress_is_not_stopped(tmp_path: Path) -> None:
    # Read at its own pace (-re): 4 s of work, a progress line every half second, each under
    # the 3 s the watchdog waits.
    runner = FFmpegRunner(stall_s=3)
    out = tmp_path / "slow.wav"
    fractions: list[float] = []
    runner.run(
        ["ffmpeg", "-y", "-re", "-f", "lavfi", "-i", "sine=d=4", str(out)], duration_s=4, on_progress=fractions.append
    )
    assert out.stat().st_size > 4 * 44100 and fractions[-1] == 1.0


def test_the_render_time_limit_still_applies(tmp_path: Path) -> None:
    runner = FFmpegRunner(timeout_s=1.5)
    with pytest.raises(RenderTimeoutError):
        runner.run(["ffmpeg", "-y", "-re", "-f", "lavfi", "-i", "sine=d=20", str(tmp_path / "x.wav")])


def test_a_lowered_runner_runs_its_ffmpeg_at_a_lower_priority_and_stops_with_the_render(tmp_path: Path) -> None:
    """The sidecars' work beside the audio (docs/deliverables.md) takes the CPU the audio leaves."""
    runner = FFmpegRunner()
    background = runner.lowered()
    seen: list[int] = []

    def watch() -> None:
        # Its one process, once it runs: niceness 10 more than this test's.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not background._live:
            time.sleep(0.02)
        for proc in list(background._live):
            seen.append(os.getpriority(os.PRIO_PROCESS, proc.pid))
            background.restore_priority()  # what it ran beside is done: the usual priority again
            seen.append(os.getpriority(os.PRIO_PROCESS, proc.pid))
        runner.cancel()  # the render failed elsewhere: the lowered runner's work stops too

    watcher = threading.Thread(target=watch)
    watcher.start()
    began = time.monotonic()
    with pytest.raises(RenderError) as caught:
        background.run(["ffmpeg", "-y", "-re", "-f", "lavfi", "-i", "sine=d=20", str(tmp_path / "x.wav")])
    watcher.join()
    usual = os.getpriority(os.PRIO_PROCESS, 0)
    assert seen == [usual + 10, usual]
    assert time.monotonic() - began < 10 and "stopped because another part of the render failed" in str(caught.value)
