"""Every ffmpeg a render starts, logged with when it began and ended: how it shared the cores."""

from __future__ import annotations

from pathlib import Path

# Logs when each ffmpeg the render starts begins and ends (nanoseconds), and its arguments.
LOGGING_FFMPEG = """#!/bin/sh
echo "start $$ $(date +%s%N) $*" >> "$FFMPEG_LOG"
ffmpeg "$@"
code=$?
echo "end $$ $(date +%s%N)" >> "$FFMPEG_LOG"
exit $code
"""

Run = tuple[int, int, str]  # (began, ended, arguments)


def logging_ffmpeg(folder: Path) -> tuple[dict[str, str], Path]:
    """The environment that makes a render start ffmpeg through the logger, and its log."""
    wrapper = folder / "logging-ffmpeg"
    wrapper.write_text(LOGGING_FFMPEG)
    wrapper.chmod(0o755)
    log = folder / "ffmpeg.log"
    return {"FFMPEG": str(wrapper), "FFMPEG_LOG": str(log)}, log


def read_runs(log: Path) -> list[Run]:
    """Every ffmpeg run of the log; each one that started has ended."""
    starts: dict[str, tuple[int, str]] = {}
    runs = []
    for line in log.read_text().splitlines():
        event, pid, stamp, *rest = [*line.split(" ", 3), ""]
        if event == "start":
            starts[pid] = (int(stamp), rest[0])
        else:
            began, argv = starts.pop(pid)
            runs.append((began, int(stamp), argv))
    assert not starts, f"ffmpeg runs that never ended: {starts}"
    return runs


def busy_at(runs: list[Run], moment: int) -> tuple[int, int]:
    """(segment encodes, other ffmpeg runs) going on at ``moment``."""
    live = [argv for began, ended, argv in runs if began <= moment < ended]
    encodes = sum("libx264" in argv for argv in live)
    return encodes, len(live) - encodes
