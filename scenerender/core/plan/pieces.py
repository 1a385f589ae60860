"""Segments cut into pieces that encode apart (``segment_pieces``), and the command that
normalises one piece (``normalize_command``)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path

from scenerender.core.plan.command import Command, input_args, micros, secs, track_timescale
from scenerender.core.plan.video import (
    BT709_TAGS,
    COPY_FORMATS,
    EncodeSettings,
    gop,
    gop_frames,
    picture_filters,
    subtitles_filter,
)
from scenerender.core.timeline import PlacedSegment, Timeline

# A segment longer than this many GOPs may be encoded as pieces, each its own job: a scene
# of a few long segments then spreads over every core (one more long segment than cores
# would otherwise leave the last on one core), and over helpers in a split scene. Two GOPs
# (8 s) keep each piece's start-up (process, x264's lookahead) a few per cent of its encode.
# Where the cuts fall depends only on the source; whether a segment is cut depends on the
# machine's cores too (``plan_pieces``), and so do the cache addresses of what it encodes.
PIECE_MAX_GOPS = 2
# A piece's input is sought to a keyframe at least this many source frames before its first
# frame: the frames just before it must be decoded for the rate conversion to pick as the
# whole segment's encode would. Everything from that keyframe on is decoded, so no more.
PIECE_SEEK_MARGIN_FRAMES = 2


@dataclass(frozen=True)
class Piece:
    """Output frames ``[first_frame, first_frame + frames)`` of one segment, encoded on its own."""

    segment: PlacedSegment
    first_frame: int
    frames: int
    hold_frames: int = 0  # the last frame held (duration_policy longest): the scene's last piece only


def segment_pieces(
    timeline: Timeline, enc: EncodeSettings, keyframes: Mapping[int, Sequence[float]], *, reach: float = 0
) -> list[Piece]:
    """Every segment whose keyframes are known cut into about even pieces of at most
    ``PIECE_MAX_GOPS`` GOPs, in scene order; the others whole.

    A cut moves onto the nearest frame whose seek lands on a keyframe when one is within
    ``reach`` pieces of it (cuts that meet become one): only where the pieces start depends on
    the keyframes, not what they hold.
    """
    limit = piece_limit(enc, timeline.fps)
    pieces: list[Piece] = []
    for seg in timeline.segments:
        times = keyframes.get(seg.index)
        count = max(1, -(-seg.frames // limit)) if times is not None and _seeks_exactly(seg) else 1
        step = seg.frames / count
        even = [round(k * step) for k in range(1, count)]
        points = _cut_points(seg, timeline.fps, times or ())
        cuts = _snap(even, points, reach=round(reach * step), gap=step / 2, end=seg.frames)
        bounds = [0, *cuts, seg.frames]
        pieces += [Piece(seg, a, b - a) for a, b in itertools.pairwise(bounds)]
    if timeline.hold_frames:
        pieces[-1] = replace(pieces[-1], hold_frames=timeline.hold_frames)
    return pieces


def piece_limit(enc: EncodeSettings, fps: Fraction) -> int:
    """The most output frames a piece has: a segment longer than this is cut."""
    return PIECE_MAX_GOPS * gop(enc, fps)


def _cut_points(seg: PlacedSegment, fps: Fraction, keyframes: Sequence[float]) -> list[int]:
    """The first output frames whose seek (``PIECE_SEEK_MARGIN_FRAMES`` ahead) lands on a keyframe."""
    video = seg.source.video
    if video is None or video.fps <= 0:
        return []
    margin = _seek_margin(seg)
    points = {math.ceil((Fraction(k) - Fraction(seg.trim_start) + margin) * fps) for k in keyframes}
    return sorted(p for p in points if 0 < p < seg.frames)


def _snap(cuts: list[int], points: list[int], *, reach: int, gap: float, end: int) -> list[int]:
    """Each cut moved to the nearest point within ``reach`` frames, unless that leaves a piece
    shorter than ``gap`` (before it, or up to ``end``); a cut that leaves one where it is
    too is dropped: the cuts meet."""
    snapped: list[int] = []
    for cut in cuts:
        near = [p for p in points if abs(p - cut) <= reach]
        for place in [*sorted(near, key=lambda p: abs(p - cut)), cut]:
            if place - (snapped[-1] if snapped else 0) >= gap and end - place >= gap:
                snapped.append(place)
                break
    return snapped


def _seeks_exactly(seg: PlacedSegment) -> bool:
    """Whether a piece can start mid-segment: an MP4/MOV sample table seeks to the keyframe
    at or before any time, where another container's index may land after it (frames lost
    at the piece's start, made up by repeating its last)."""
    video = seg.source.video
    return bool(set(seg.source.format_name.split(",")) & COPY_FORMATS) and video is not None and video.fps > 0


def demuxer_seeks(seg: PlacedSegment) -> bool:
    """Whether ``-ss`` may seek the source's demuxer exactly (else the trim is made in the filter).

    Not AVI: with B-frames (MPEG-4 Part 2 as Xvid/DivX and ffmpeg write it) ffmpeg 5.1 seeks
    3/23 s before the target, and an AVI seek to before its start lands on a non-keyframe:
    every frame up to the next keyframe decoded from missing references (a grey, smeared
    first GOP, even at ``-ss 0``). An AVI segment is one piece (``_seeks_exactly``) whose
    trim is made in the filter, on the file's clock; one trimmed far into its file is read
    from a keyframe ahead of the trim (``AVI_SEEK_FROM_S``), not from its start.
    """
    return "avi" not in seg.source.format_name.split(",")


# An AVI trimmed this far into its file is read from its index's keyframe at or before
# AVI_SEEK_LEAD_S ahead of the trim (``-noaccurate_seek``: nothing dropped at the seek), with
# ``-itsoffset`` giving the seek back, so every frame keeps the time a read from the start
# gives it and the filter's trim keeps the same frames (compared frame by frame, losslessly,
# on a 10-minute B-frame AVI trimmed at 540 s: the same 125 frames, 1.2 s instead of 79 s).
# The lead keeps the seek clear of the file's start, where an AVI seek lands on a
# non-keyframe, and the frames an open GOP's B-frames spoil (shown before their keyframe)
# before the trim.
AVI_SEEK_FROM_S = 5.0
AVI_SEEK_LEAD_S = 2.0


def _read_from(seg: PlacedSegment) -> float:
    """Where on ffmpeg's decode clock of the file (time 0 its start) the segment's first frame is."""
    assert seg.source.video is not None
    return seg.trim_start + seg.source.video_lead + seg.source.video.decode_delay


def _seek_margin(seg: PlacedSegment) -> Fraction:
    """How far ahead of a piece's first frame its seek goes: ``PIECE_SEEK_MARGIN_FRAMES`` source frames."""
    assert seg.source.video is not None  # a piece starts mid-segment only in a video that seeks exactly
    return PIECE_SEEK_MARGIN_FRAMES / seg.source.video.fps


def seek_ahead(piece: Piece, fps: Fraction) -> Fraction:
    """Where a later piece's seek goes, in seconds after the segment's trim: the one place the
    command (``_piece_input``) and the estimate of its wasted decode (``piece_cost``) take it from."""
    return max(Fraction(0), piece.first_frame / fps - _seek_margin(piece.segment))


def _piece_input(piece: Piece, fps: Fraction) -> list[str]:
    """Where a piece starts reading its source, on the same clock as the whole segment's encode.

    The whole segment reads from ``-ss trim_start`` (frames before it dropped), and its rate
    conversion puts output frame n at n/fps on that clock. A later piece seeks the demuxer to
    a keyframe before its first frame without dropping anything, and ``-itsoffset`` gives the
    seek back: ffmpeg shifts timestamps by ``itsoffset - ss`` (whole microseconds), the whole
    segment's ``-trim_start`` exactly, so every frame keeps the timestamp it has there and the
    same source frame lands in each output slot (tested frame by frame, losslessly).
    """
    seg = piece.segment
    read_s = float((piece.first_frame + piece.frames) / fps) + 1.0  # stop decoding soon after the piece
    # -ss counts from the file's time 0, which is its earliest stream's start: a picture that
    # starts later (an edit list, a mux with -itsoffset) is read from its own first frame.
    trim = seg.trim_start + seg.source.video_lead
    if not demuxer_seeks(seg):
        start = _read_from(seg)
        if start < AVI_SEEK_FROM_S:
            return input_args(seg.source.path, "-threads", "1", "-t", secs(start + read_s))
        lead = micros(math.floor((start - AVI_SEEK_LEAD_S) * 1_000_000))
        seek = ["-noaccurate_seek", "-ss", lead, "-itsoffset", lead]  # the file's clock kept
        # -t counts from the keyframe the seek lands on: counted from there, it ends after the segment.
        return input_args(seg.source.path, "-threads", "1", *seek, "-t", secs(start + read_s))
    if piece.first_frame == 0:
        return input_args(seg.source.path, "-threads", "1", "-ss", secs(trim), "-t", secs(read_s))
    trim_us = round(trim * 1_000_000)
    ahead_us = math.floor(seek_ahead(piece, fps) * 1_000_000)
    seek = ["-noaccurate_seek", "-ss", micros(trim_us + ahead_us), "-itsoffset", micros(ahead_us)]
    # Without exact seeking, -t counts from the keyframe the seek lands on, which may be as
    # early as the file's start: counted from there, it still ends after the piece.
    return input_args(seg.source.path, "-threads", "1", *seek, "-t", secs(trim + read_s))


def _burned(piece: Piece, timeline: Timeline, script: Path) -> list[str]:
    """The captions drawn on the piece's frames at their scene times: the frames count from 0
    on the fps filter's clock (1/fps), so they are moved to the piece's first scene frame for
    libass and back, by whole ticks (exact, where seconds would be rounded)."""
    first = round(piece.segment.start * timeline.fps) + piece.first_frame
    return [f"setpts=PTS+{first}", subtitles_filter(script), f"setpts=PTS-{first}"]


def normalize_command(
    piece: Piece,
    timeline: Timeline,
    out: Path,
    enc: EncodeSettings,
    *,
    threads: int = 0,
    captions: Path | None = None,
) -> Command:
    """Re-encode one piece of a segment to the output's size, rate, pixel format and time base.

    The segment is padded with copies of its last frame and cut at an exact frame count,
    so rounding in the source never shortens it and every boundary stays on its frame.
    Output frame n shows the source at ``trim_start + n/fps`` (``start_time=0``): a trim that
    falls between source frames does not shift the segment by a frame. ``captions``: an ASS
    script on the scene's clock, burned into the piece in this same encode.
    """
    frames = piece.frames + piece.hold_frames
    fps = timeline.fps
    rate = f"fps={fps.numerator}/{fps.denominator}"
    if not demuxer_seeks(piece.segment):
        # Read from the file's start: the trim dropped as -ss's exact seek drops it (frames
        # before it gone), then the same slots on the trim's clock.
        trim = secs(_read_from(piece.segment))
        select = [f"trim=start={trim}", f"{rate}:start_time={trim}", "setpts=PTS-STARTPTS"]
    elif piece.first_frame == 0:
        # The rate conversion before the scaling in either case: only the frames kept are scaled.
        select = [f"{rate}:start_time=0"]
    else:
        # Output slots are whole numbers on the 1/fps clock: the piece keeps its own from there.
        select = [rate, f"trim=start_pts={piece.first_frame}", "setpts=PTS-STARTPTS"]
    video = piece.segment.source.video
    assert video is not None  # the timeline places only segments with a picture
    chain = ",".join(
        [
            *picture_filters(video, timeline, select),
            f"tpad=stop_mode=clone:stop={piece.hold_frames + 2}",
            *(_burned(piece, timeline, captions) if captions is not None else []),
        ]
    )
    argv = [
        "ffmpeg",
        "-y",
        # One decoder thread and one filter thread: decoding and scaling are a small part of
        # the work, and their frame/slice threads only add buffered 1080p frames (memory).
        *_piece_input(piece, fps),
        "-map",
        "0:v:0",
        "-filter_threads",
        "1",
        "-vf",
        chain,
        "-frames:v",
        str(frames),
        *enc.encoder_args(),
        "-profile:v",
        "high",
        "-pix_fmt",
        "yuv420p",
        "-g",
        str(gop_frames(enc, fps, frames)),
        "-threads",
        str(threads),
        *BT709_TAGS,
        "-video_track_timescale",
        str(track_timescale(fps)),
        "-an",
        "-sn",
        "-dn",
        "-map_metadata",
        "-1",
        "-f",
        "mp4",
        str(out),
    ]
    return Command(argv=argv, output=out, duration_s=float(frames / fps))
