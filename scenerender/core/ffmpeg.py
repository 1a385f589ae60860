"""The one place that runs ffmpeg: logs the command, streams progress, keeps the stderr tail."""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import shlex
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

from scenerender.errors import RenderError, RenderTimeoutError

log = logging.getLogger(__name__)

STDERR_TAIL_LINES = 40
CANCELLED = "stopped because another part of the render failed"
ProgressCallback = Callable[[float], None]


def find_binary(name: str) -> str:
    """``name`` as configured (env var FFMPEG/FFPROBE via settings), resolved on PATH."""
    found = shutil.which(name)
    if found is None:
        raise RenderError(f"{name} not found: install ffmpeg (apt-get install -y ffmpeg) or set FFMPEG/FFPROBE")
    return found


QUIET = ["-nostdin", "-hide_banner", "-nostats"]  # no banner, no stats line, never reads the terminal


def with_progress(cmd: list[str]) -> list[str]:
    """``cmd`` with machine-readable progress on stdout (``-progress pipe:1``)."""
    return [cmd[0], *QUIET, "-progress", "pipe:1", *cmd[1:]]


# An ffmpeg that writes no progress line for this long is stuck, not slow: progress comes
# every half second while it works (a 4K tone-mapped frame on a loaded core takes seconds),
# and nothing while it waits on an input that never comes (a FIFO nobody writes, a network
# mount gone) or in a filter that hangs (a zscale tone-map did, once). It is killed, and the
# render fails naming the command, instead of holding its job until the time limit.
STALL_S = 60.0
BACKGROUND_NICENESS = 10  # ``FFmpegRunner.lowered``: about a tenth of a core's share against the usual priority


class _Watchdog:
    """Kills ``proc`` when it makes no progress for ``stall_s`` or runs past ``deadline``."""

    def __init__(self, proc: subprocess.Popen[str], stall_s: float, deadline: float | None) -> None:
        self.proc, self.stall_s, self.deadline = proc, stall_s, deadline
        self.last = time.monotonic()
        self.stalled = self.timed_out = False
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def progressed(self) -> None:
        self.last = time.monotonic()

    def _watch(self) -> None:
        while not self._done.wait(min(1.0, self.stall_s / 4)):
            now = time.monotonic()
            if self.deadline is not None and now >= self.deadline:
                self.timed_out = True
            elif now - self.last >= self.stall_s:
                self.stalled = True
            else:
                continue
            self.proc.kill()
            return

    def stop(self) -> None:
        self._done.set()
        self._thread.join()


class FFmpegRunner:
    """Runs ffmpeg commands built elsewhere (see ``scenerender.core.plan``)."""

    def __init__(self, ffmpeg: str = "ffmpeg", *, timeout_s: float | None = None, stall_s: float = STALL_S) -> None:
        self.ffmpeg = ffmpeg
        self.timeout_s = timeout_s
        self.stall_s = stall_s
        self._deadline = time.monotonic() + timeout_s if timeout_s else None
        self._live: set[subprocess.Popen[str]] = set()
        self._lock = threading.Lock()
        self._cancelled = False
        self.niceness = 0
        self._lowered: list[FFmpegRunner] = []

    def lowered(self, niceness: int = BACKGROUND_NICENESS) -> FFmpegRunner:
        """A runner for work beside the render's longest part: its processes run ``niceness``
        lower, so they take the CPU the others leave idle rather than slow them. It keeps
        this runner's time limit, and cancelling this runner cancels it."""
        child = FFmpegRunner(self.ffmpeg, timeout_s=self.timeout_s, stall_s=self.stall_s)
        child._deadline, child.niceness = self._deadline, niceness
        with self._lock:
            self._lowered.append(child)
            cancelled = self._cancelled
        if cancelled:
            child.cancel()
        return child

    def restore_priority(self) -> None:
        """Run this (lowered) runner's processes, those running and those to come, at the usual
        priority again: what they were beside is done, and the render now waits for them.
        Where raising a priority is not allowed (no CAP_SYS_NICE), they stay lowered."""
        with self._lock:
            self.niceness = 0
            live = list(self._live)
        for proc in live:
            with contextlib.suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, proc.pid, 0)

    def cancel(self) -> None:
        """Stop every command still running (one part of the render failed: the rest is moot)."""
        with self._lock:
            self._cancelled = True
            for proc in self._live:
                proc.kill()
            lowered = list(self._lowered)
        for child in lowered:
            child.cancel()

    def iter_progress(
        self, cmd: list[str], *, duration_s: float | None, handover_fds: tuple[int, ...] = ()
    ) -> Generator[float, None, str]:
        """Run ``cmd`` (argv[0] is replaced by the configured binary), yielding fractions done.

        Returns the stderr tail (where filters such as ebur128 print their summary).
        ``handover_fds`` are passed to the process (``pipe:N`` in ``cmd``) and closed here.
        """
        lines = yield from self._execute(cmd, duration_s, handover_fds, STDERR_TAIL_LINES)
        return "\n".join(lines)

    def run(
        self,
        cmd: list[str],
        *,
        duration_s: float | None = None,
        on_progress: ProgressCallback | None = None,
        handover_fds: tuple[int, ...] = (),
    ) -> str:
        """Run ``cmd`` to completion, reporting fractions to ``on_progress``; returns the stderr tail."""
        progress = self.iter_progress(cmd, duration_s=duration_s, handover_fds=handover_fds)
        while True:
            try:
                fraction = next(progress)
            except StopIteration as done:
                return str(done.value)
            if on_progress is not None:
                on_progress(fraction)

    def capture_stderr(self, cmd: list[str], *, handover_fds: tuple[int, ...] = ()) -> str:
        """Run ``cmd`` and return its whole stderr (for filters that report there, e.g. loudnorm).

        ``handover_fds`` are passed to the process (``pipe:N`` in ``cmd``) and closed here.
        """
        run = self._execute(cmd, None, handover_fds, None)
        while True:
            try:
                next(run)
            except StopIteration as done:
                return "\n".join(done.value) + "\n"

    def _execute(
        self, cmd: list[str], duration_s: float | None, handover_fds: tuple[int, ...], keep: int | None
    ) -> Generator[float, None, list[str]]:
        """Run ``cmd`` under the watchdog, yielding fractions done; returns stderr's last
        ``keep`` lines (all of them for None). Raises ``RenderError`` naming the command."""
        argv, proc = self._start(cmd, handover_fds, stdout=subprocess.PIPE, bufsize=1)
        tail: collections.deque[str] = collections.deque(maxlen=keep)
        assert proc.stdout is not None and proc.stderr is not None
        stderr = proc.stderr
        reader = threading.Thread(target=lambda: tail.extend(line.rstrip("\n") for line in stderr), daemon=True)
        reader.start()
        watchdog = _Watchdog(proc, self.stall_s, self._deadline)
        try:
            for line in proc.stdout:
                watchdog.progressed()
                key, _, value = line.strip().partition("=")
                if key == "out_time_us" and duration_s and value.lstrip("-").isdigit():
                    yield min(1.0, max(0.0, int(value) / 1e6 / duration_s))
                elif key == "progress" and value == "end":
                    yield 1.0
            code = proc.wait()
        finally:
            watchdog.stop()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            reader.join(timeout=5)
            proc.stdout.close()
            stderr.close()
            self._forget(proc)
        command = shlex.join(argv)
        if self._cancelled and code != 0:
            raise RenderError(CANCELLED, command=command)
        if watchdog.timed_out or (self._deadline is not None and time.monotonic() >= self._deadline):
            raise RenderTimeoutError(f"render exceeded its time limit of {self.timeout_s:.0f} s", command=command)
        lines = list(tail)
        if watchdog.stalled:
            log.error("ffmpeg made no progress for %g s, killed: %s", self.stall_s, command)
            raise RenderError(
                f"ffmpeg {describe(argv)} made no progress for {self.stall_s:g} s and was stopped (waiting on an "
                "input that never came, or a filter that hung)",
                stderr_tail="\n".join(lines[-STDERR_TAIL_LINES:]),
                command=command,
            )
        if code != 0:
            raise RenderError(
                f"ffmpeg failed with exit code {code}",
                stderr_tail="\n".join(lines[-STDERR_TAIL_LINES:]),
                command=command,
            )
        return lines

    def _start(
        self, cmd: list[str], handover_fds: tuple[int, ...], **popen: Any
    ) -> tuple[list[str], subprocess.Popen[str]]:
        """Start ``cmd`` (argv[0] replaced by the configured binary; stderr piped, text) as one of
        this render's processes, which ``cancel`` stops; nothing starts once the render is
        cancelled. ``handover_fds`` are closed here, whatever happens. Returns the argv run."""
        try:
            binary = find_binary(self.ffmpeg)
            argv = with_progress([binary, *cmd[1:]])
            if self._cancelled:
                raise RenderError(CANCELLED, command=shlex.join(argv))
            log.info("ffmpeg: %s", shlex.join(argv))
            try:
                proc = subprocess.Popen(
                    argv,
                    stderr=subprocess.PIPE,
                    text=True,
                    pass_fds=handover_fds,
                    **popen,
                )
            except OSError as exc:
                raise RenderError(f"could not start ffmpeg: {exc}", command=shlex.join(argv)) from exc
        finally:
            _close_all(handover_fds)
        if self.niceness:
            # Right after it starts (Popen has no priority of its own, and a preexec_fn is
            # unsafe beside threads): the first milliseconds at the usual priority cost nothing.
            with contextlib.suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, proc.pid, self.niceness)
        with self._lock:
            if self._cancelled:  # cancelled while it started
                proc.kill()
            self._live.add(proc)
        return argv, proc

    def _forget(self, proc: subprocess.Popen[str]) -> None:
        with self._lock:
            self._live.discard(proc)


def describe(argv: list[str]) -> str:
    """A command as a message can name it: its inputs and its output, by file name."""
    inputs = [Path(argv[k + 1]).name for k, arg in enumerate(argv[:-1]) if arg == "-i"]
    output = Path(argv[-1]).name if len(argv) > 1 else "?"
    return f"reading {', '.join(inputs) or 'nothing'} into {output}"


def _close_all(fds: tuple[int, ...]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


def publish_file(tmp: Path, final: Path) -> None:
    """Move a finished file into place atomically, so a reader never sees half of it."""
    os.replace(tmp, final)


def write_files(files: dict[Path, str]) -> None:
    """The lists and filter scripts a command reads, written before it runs."""
    for path, text in files.items():
        path.write_text(text, encoding="utf-8")
