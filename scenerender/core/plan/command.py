"""What every plan module builds on: one ffmpeg run (``Command``), the audio sample clock,
and how inputs are opened and times written."""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

from scenerender.core.probe import DEMUXER_WHITELIST, MediaInfo
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


def sound_pads(source: MediaInfo, n: int) -> str:
    """The start of a filter chain reading input ``n``'s sound (``track_pads``)."""
    return track_pads(n, source.audio.right_track if source.audio is not None else None)


def track_pads(n: int, right_track: int | None) -> str:
    """Input ``n``'s first audio stream, or, with ``right_track``, an MXF's first two mono
    tracks joined as left and right (``AudioInfo.right_track``)."""
    if right_track is None:
        return f"[{n}:a:0]"
    return f"[{n}:a:0][{n}:a:{right_track}]join=inputs=2:channel_layout=stereo:map=0.0-FL|1.0-FR,"


def adts_pipe_input(fd: int) -> list[str]:
    """Raw AAC frames (ADTS) read from ``pipe:fd``, and nothing else."""
    return ["-protocol_whitelist", "pipe", "-f", "aac", "-i", f"pipe:{fd}"]
