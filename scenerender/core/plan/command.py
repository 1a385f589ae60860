"""What every plan module builds on: one ffmpeg run (``Command``), the audio sample clock,
and how inputs are opened and times written."""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

from scenerender.core.probe import DEMUXER_WHITELIST
from scenerender.core.timeline import Timeline

SAMPLE_RATE = 48000


@dataclass(frozen=True)
class Command:
    """One ffmpeg run: its arguments, what it writes, how long its output is (for progress)."""

    argv: list[str]
    output: Path
    duration_s: float
    files: dict[Path, str] = field(default_factory=dict)  # written before the run (lists, filter scripts)


def secs(value: float | Fraction) -> str:
    """Seconds as ffmpeg reads them: plain decimal, enough digits for sample accuracy."""
    return f"{float(value):.6f}".rstrip("0").rstrip(".") or "0"


def to_samples(seconds: float | Fraction) -> int:
    return round(float(seconds) * SAMPLE_RATE)


def total_samples(timeline: Timeline) -> int:
    """The output's audio length in samples: the timeline's duration, exactly."""
    return to_samples(timeline.duration)


def input_args(path: Path, *pre: str) -> list[str]:
    # Each input is opened with only the file protocol and the media demuxers: no URL,
    # playlist or nested reference is followed.
    return [*pre, "-protocol_whitelist", "file", "-format_whitelist", DEMUXER_WHITELIST, "-i", str(path)]


def track_timescale(fps: Fraction) -> int:
    """One MP4 time base for every video piece, so copy-concat joins them without rounding."""
    return 90000 if (90000 * fps.denominator) % fps.numerator == 0 else fps.numerator * 1000


def micros(us: int) -> str:
    return f"{us // 1_000_000}.{us % 1_000_000:06d}"
