"""The finished MP4: the video parts copy-concatenated beside the audio, index first."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from scenerender.core.plan.command import Command, input_args, track_timescale
from scenerender.core.plan.video import VideoPart, concat_list
from scenerender.core.timeline import Timeline


def assemble_command(
    timeline: Timeline, pieces: Sequence[VideoPart], list_path: Path, audio: Path, out: Path
) -> Command:
    """The finished MP4 in one copying pass: the video pieces joined, the encoded audio
    (an M4A) beside them, index first."""
    argv = [
        "ffmpeg",
        "-y",
        "-f",
        "concat",
        "-safe",
        "0",
        "-protocol_whitelist",
        "file",
        "-i",
        str(list_path),
        *input_args(audio),
        # Timestamps go through as they are: otherwise ffmpeg would delay the picture by the
        # audio's encoder delay (21 ms), which the MP4 edit list already accounts for.
        "-copyts",
        "-map",
        "0:v:0",
        "-map",
        "1:a:0",
        "-c",
        "copy",
        "-map_metadata",
        "-1",
        "-video_track_timescale",
        str(track_timescale(timeline.fps)),
        "-movflags",
        "+faststart",
        "-f",
        "mp4",
        str(out),
    ]
    return Command(argv=argv, output=out, duration_s=float(timeline.duration), files={list_path: concat_list(pieces)})
