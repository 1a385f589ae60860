"""The finished MP4: the video parts copy-concatenated beside the audio, index first."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from scenerender.core.plan.audio_encode import adts_timestamps
from scenerender.core.plan.command import Command, adts_pipe_input, input_args, total_samples, track_timescale
from scenerender.core.plan.loudness import encoded_scan_output
from scenerender.core.plan.video import VideoPart, concat_list
from scenerender.core.timeline import Timeline


def assemble_command(
    timeline: Timeline,
    pieces: Sequence[VideoPart],
    list_path: Path,
    audio: Path | int,
    out: Path,
    *,
    audio_copy: Path | None = None,
    measure: tuple[Sequence[str], dict[Path, str]] = ((), {}),
) -> Command:
    """The finished MP4 in one copying pass: the video pieces joined, the encoded audio
    beside them, index first.

    ``audio`` is the encoded M4A, or the read end of a pipe of ADTS frames (the shared AAC
    encode's joined frames, ``make_audio``'s ``joined_into``), stamped here as one encoder
    stamps them and measured in the same process: the EBU R128 summary of
    ``encoded_scan_command`` ends its stderr; ``audio_copy`` then receives the audio alone
    as an M4A too (what the audio cache keeps), and ``measure`` (options and the files they
    read: the sync certificate's decode of the output's sound, ``sync.packet_decode``) is
    put after the outputs.
    """
    if isinstance(audio, Path):
        audio_input, stamps, copy, scan = input_args(audio), [], [], []
    else:
        audio_input = adts_pipe_input(audio)
        stamps = ["-bsf:a", adts_timestamps(total_samples(timeline))]
        copy = [] if audio_copy is None else ["-map", "1:a:0", "-c", "copy", *stamps, "-f", "mp4", str(audio_copy)]
        scan = encoded_scan_output(1)
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
        *audio_input,
        # Timestamps go through as they are: otherwise ffmpeg would delay the picture by the
        # audio's encoder delay (21 ms), which the MP4 edit list already accounts for.
        "-copyts",
        "-map",
        "0:v:0",
        "-map",
        "1:a:0",
        "-c",
        "copy",
        *stamps,
        "-map_metadata",
        "-1",
        "-video_track_timescale",
        str(track_timescale(timeline.fps)),
        "-movflags",
        "+faststart",
        "-f",
        "mp4",
        str(out),
        *copy,
        *scan,
        *measure[0],
    ]
    files = {list_path: concat_list(pieces), **measure[1]}
    return Command(argv=argv, output=out, duration_s=float(timeline.duration), files=files)
