"""The plan: pure functions from a timeline to ffmpeg argument lists. No I/O here.

Video and audio are made apart and joined by one copying pass:
  video  = the sources as they are (fast path) or normalised segments
  audio  = one mix pass to float WAV -> loudness measured -> normalised, AAC-encoded
  output = the video pieces copy-concatenated beside the audio, ``+faststart``
"""

from __future__ import annotations

import itertools
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import ClassVar

from scenerender.core import adts
from scenerender.core.probe import DEMUXER_WHITELIST, MediaInfo, VideoInfo
from scenerender.core.timeline import PlacedClip, PlacedSegment, Timeline
from scenerender.errors import RenderError

SAMPLE_RATE = 48000
AUDIO_BITRATE = "192k"
END_FADE_S = 0.5  # audio running past the scene end fades out over this long (contract)
TRUE_PEAK_MARGIN_DB = 0.5  # AAC encoding adds inter-sample peaks; aim this far under the ceiling
COPY_FORMATS = frozenset({"mov", "mp4", "m4a", "3gp", "3g2", "mj2"})
DUCK_STEP_SAMPLES = 480  # 10 ms: the volume expression is evaluated once per frame of this size


@dataclass(frozen=True)
class EncodeSettings:
    preset: str
    crf: float
    x264_params: str = ""  # on top of the preset, ``key=value:key=value``
    gop_seconds: float = 4.0

    # A finished scene: the picture of plain veryfast at crf 20, well above x264's default 23.
    # veryfast's hexagon motion search and second subpel pass cost a quarter to a third of its
    # CPU for at most 0.2 dB; the diamond search with one subpel pass at half a step lower crf
    # gives the same picture or better for that much less CPU (measured: docs/performance.md, "Encoding").
    # Memory: every frame x264 holds at 1080p costs 6 MiB (a frame waiting in the lookahead)
    # to 10 MiB (a reference, with its half-pel planes). Without the B-pyramid a B-frame is
    # never a reference, so two fewer references are kept (22 MiB), and a lookahead of 8
    # frames instead of 10 keeps two fewer waiting (13 MiB); the picture stays at or above
    # plain veryfast crf 20 on every picture measured. Two encodes at once then fit, with
    # Python, in 400 MB.
    FULL_CRF: ClassVar[float] = 19.5
    FULL_X264_PARAMS: ClassVar[str] = "me=dia:subme=1:b-pyramid=none:rc-lookahead=8"
    PREVIEW_CRF: ClassVar[float] = 30
    # ultrafast alone turns off every High-profile tool, and x264 then writes Constrained
    # Baseline whatever -profile:v asks; the 8x8 transform makes the preview High as the
    # contract promises, at the same CPU and size (20 s of 480p: 1.06 s against 1.05 s user,
    # 5.51 MB against 5.50 MB, three runs each).
    PREVIEW_X264_PARAMS: ClassVar[str] = "8x8dct=1"

    @classmethod
    def full(cls) -> EncodeSettings:
        return cls(preset="veryfast", crf=cls.FULL_CRF, x264_params=cls.FULL_X264_PARAMS)

    @classmethod
    def for_timeline(cls, timeline: Timeline) -> EncodeSettings:
        if timeline.preview:
            return cls(preset="ultrafast", crf=cls.PREVIEW_CRF, x264_params=cls.PREVIEW_X264_PARAMS)
        return cls.full()

    def encoder_args(self) -> list[str]:
        """The video encoder and its settings as ffmpeg options (profile and pixel format apart)."""
        params = ["-x264-params", self.x264_params] if self.x264_params else []
        return ["-c:v", "libx264", "-preset", self.preset, "-crf", f"{self.crf:g}", *params]


@dataclass(frozen=True)
class Command:
    """One ffmpeg run: its arguments, what it writes, how long its output is (for progress)."""

    argv: list[str]
    output: Path
    duration_s: float
    files: dict[Path, str] = field(default_factory=dict)  # written before the run (lists, filter scripts)


def _f(value: float | Fraction) -> str:
    """Seconds as ffmpeg reads them: plain decimal, enough digits for sample accuracy."""
    return f"{float(value):.6f}".rstrip("0").rstrip(".") or "0"


def _samples(seconds: float | Fraction) -> int:
    return round(float(seconds) * SAMPLE_RATE)


def total_samples(timeline: Timeline) -> int:
    """The output's audio length in samples: the timeline's duration, exactly."""
    return _samples(timeline.duration)


def _input(path: Path, *pre: str) -> list[str]:
    # Each input is opened with only the file protocol and the media demuxers: no URL,
    # playlist or nested reference is followed.
    return [*pre, "-protocol_whitelist", "file", "-format_whitelist", DEMUXER_WHITELIST, "-i", str(path)]


def track_timescale(fps: Fraction) -> int:
    """One MP4 time base for every video piece, so copy-concat joins them without rounding."""
    return 90000 if (90000 * fps.denominator) % fps.numerator == 0 else fps.numerator * 1000


# ---------------------------------------------------------------------------- video


def copy_blockers(timeline: Timeline) -> list[str]:
    """Why the sources cannot simply be copy-concatenated; empty means the fast path is taken."""
    reasons: list[str] = []
    if timeline.hold_frames:
        reasons.append("the last frame is held past the video (duration_policy longest)")
    first = timeline.segments[0].source.video
    for seg in timeline.segments:
        v = seg.source.video
        assert v is not None and first is not None
        name = f"segments[{seg.index}]"
        if not set(seg.source.format_name.split(",")) & COPY_FORMATS:
            reasons.append(f"{name}: container {seg.source.format_name} is not MP4/MOV")
        if v.codec != "h264" or v.profile != "High":
            reasons.append(f"{name}: codec {v.codec} {v.profile}, not H.264 High")
        if v.hdr is not None:
            reasons.append(f"{name}: HDR ({v.hdr}), tone-mapped to SDR")
        if v.interlaced:
            reasons.append(f"{name}: interlaced ({v.field_order}), deinterlaced")
        if v.pix_fmt != "yuv420p":
            reasons.append(f"{name}: pixel format {v.pix_fmt}, not yuv420p")
        if v.rotation:
            reasons.append(f"{name}: rotated {v.rotation} degrees")
        if (v.width, v.height) != (timeline.width, timeline.height):
            reasons.append(f"{name}: {v.width}x{v.height}, output is {timeline.width}x{timeline.height}")
        if v.sar not in (Fraction(1), Fraction(0)):
            reasons.append(f"{name}: sample aspect ratio {v.sar}")
        if v.fps != timeline.fps:
            reasons.append(f"{name}: {v.fps} fps, output is {timeline.fps}")
        if v.time_base != first.time_base or v.extradata_hash != first.extradata_hash:
            reasons.append(f"{name}: encoded with other parameters than segments[0]")
        if seg.source.video_lead > 1e-4:
            reasons.append(f"{name}: picture starts {seg.source.video_lead:.3f} s into the file")
        if seg.trim_start > 0:
            reasons.append(f"{name}: trimmed at the start")
        source_frames = v.frames if v.frames else round(seg.source.video_duration * timeline.fps)
        if seg.frames < source_frames:
            reasons.append(f"{name}: trimmed at the end")
    return reasons


def _fit_filter(timeline: Timeline) -> str:
    w, h = timeline.width, timeline.height
    if timeline.fit == "crop":
        return f"scale={w}:{h}:force_original_aspect_ratio=increase,crop={w}:{h}"
    if timeline.fit == "stretch":
        return f"scale={w}:{h}"
    return (
        f"scale={w}:{h}:force_original_aspect_ratio=decrease:force_divisible_by=2,"
        f"pad={w}:{h}:(ow-iw)/2:(oh-ih)/2:color=black"
    )


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


# An x264 start and its lookahead, and one more keyframe, per piece: 1-2 % of a piece's
# encode in isolation, 10 % for a busy picture whose two halves ran at once (measured).
PIECE_OVERHEAD = 0.04
# A normalising ffmpeg decodes and scales in one thread beside x264's frame threads: with
# two threads it finished in 0.53-0.67 of one thread's time (measured on 10 s of 1080p).
FRAME_THREAD_LOSS = 0.25
# CPU-seconds of decoding a source megapixel-frame of a flat picture (what a piece decodes
# for nothing between the keyframe its seek lands on and its start: 0.62 s for 250 frames of
# a busy 720p picture, measured).
DECODE_S_PER_MEGAPIXEL_FRAME = 0.0013


def plan_pieces(
    timeline: Timeline,
    enc: EncodeSettings,
    keyframes: Mapping[int, Sequence[float]],
    *,
    cores: int,
    jobs_for: Callable[[int], tuple[int, int]],
) -> list[Piece]:
    """The segments whole, or the long ones cut, whichever should finish soonest.

    Cutting pays when whole segments leave cores idle (three long ones on two cores: the
    third runs on one; one on two: frame threads do less than two encodes) and costs its
    overhead where they pack well anyway (a busy one beside two flat ones). Two ways to
    cut are weighed: evenly, and at the source's keyframes (``keyframes``: segment index ->
    keyframe times, ``mp4.keyframe_times``), where a piece's seek lands right before it
    instead of decoding from an earlier keyframe for nothing. A segment whose keyframes are
    not known is not cut. ``jobs_for`` gives (encodes at once, threads each) for a number
    of jobs (``parallel_jobs``).
    """
    layouts = [segment_pieces(timeline, enc, {})]
    for reach in (0, 1):  # even cuts; cuts moved onto keyframes up to a piece away
        cut = segment_pieces(timeline, enc, keyframes, reach=reach)
        if cut not in layouts:
            layouts.append(cut)

    def wall(pieces: list[Piece]) -> float:
        workers, threads = jobs_for(len(pieces))
        costs = [piece_cost(p, timeline, keyframes.get(p.segment.index, ())) for p in pieces]
        return estimated_wall(costs, workers, threads, audio_cost(timeline), queued=workers >= cores, cores=cores)

    return min(layouts, key=wall)  # the first of equals: the fewest pieces


def piece_cost(piece: Piece, timeline: Timeline, keyframes: Sequence[float]) -> float:
    """Rough CPU-seconds of one piece: its encode, what starting apart costs, and the decode
    from the keyframe its seek lands on up to its start."""
    seg = piece.segment
    cost = encode_cost(seg, piece.frames, (timeline.width, timeline.height))
    if piece.frames == seg.frames:
        return cost
    video = seg.source.video
    lead_s = 0.0
    if piece.first_frame and video is not None and video.fps > 0:
        seek = seg.trim_start + float(_seek_ahead(piece, timeline.fps))
        lead_s = seek - max((k for k in keyframes if k <= seek), default=0.0)
        lead_s *= video.width * video.height / 1e6 * float(video.fps) * DECODE_S_PER_MEGAPIXEL_FRAME
        lead_s *= 1 + _bits_per_pixel(seg) / DETAIL_BPP
    return cost * (1 + PIECE_OVERHEAD) + lead_s


def estimated_wall(costs: list[float], workers: int, threads: int, audio: float, *, queued: bool, cores: int) -> float:
    """Seconds until the last job ends: dearest first, each to the worker free first (the
    render's own order), a job of ``threads`` frame threads taking that much less time. The
    audio is one of the jobs (``queued``) or runs beside them, taking its share of the cores."""
    speedup = threads / (1 + FRAME_THREAD_LOSS * (threads - 1))
    jobs = [cost / speedup for cost in costs] + ([audio] if queued else [])
    loads = [0.0] * max(1, workers)
    for job in sorted(jobs, reverse=True):
        loads[loads.index(min(loads))] += job
    return max(loads) + (0.0 if queued else audio / max(1, cores))


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
    return PIECE_MAX_GOPS * _gop(enc, fps)


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


def _micros(us: int) -> str:
    return f"{us // 1_000_000}.{us % 1_000_000:06d}"


def _seek_margin(seg: PlacedSegment) -> Fraction:
    """How far ahead of a piece's first frame its seek goes: ``PIECE_SEEK_MARGIN_FRAMES`` source frames."""
    assert seg.source.video is not None  # a piece starts mid-segment only in a video that seeks exactly
    return PIECE_SEEK_MARGIN_FRAMES / seg.source.video.fps


def _seek_ahead(piece: Piece, fps: Fraction) -> Fraction:
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
    if piece.first_frame == 0:
        return _input(seg.source.path, "-threads", "1", "-ss", _f(trim), "-t", _f(read_s))
    trim_us = round(trim * 1_000_000)
    ahead_us = math.floor(_seek_ahead(piece, fps) * 1_000_000)
    seek = ["-noaccurate_seek", "-ss", _micros(trim_us + ahead_us), "-itsoffset", _micros(ahead_us)]
    # Without exact seeking, -t counts from the keyframe the seek lands on, which may be as
    # early as the file's start: counted from there, it still ends after the piece.
    return _input(seg.source.path, "-threads", "1", *seek, "-t", _f(trim + read_s))


def normalize_command(piece: Piece, timeline: Timeline, out: Path, enc: EncodeSettings, *, threads: int = 0) -> Command:
    """Re-encode one piece of a segment to the output's size, rate, pixel format and time base.

    The segment is padded with copies of its last frame and cut at an exact frame count,
    so rounding in the source never shortens it and every boundary stays on its frame.
    Output frame n shows the source at ``trim_start + n/fps`` (``start_time=0``): a trim that
    falls between source frames does not shift the segment by a frame.
    """
    frames = piece.frames + piece.hold_frames
    fps = timeline.fps
    rate = f"fps={fps.numerator}/{fps.denominator}"
    if piece.first_frame == 0:
        # The rate conversion before the scaling in either case: only the frames kept are scaled.
        select = [f"{rate}:start_time=0"]
    else:
        # Output slots are whole numbers on the 1/fps clock: the piece keeps its own from there.
        select = [rate, f"trim=start_pts={piece.first_frame}", "setpts=PTS-STARTPTS"]
    video = piece.segment.source.video
    assert video is not None  # the timeline places only segments with a picture
    chain = ",".join(
        [
            *_deinterlace(video, fps),
            *select,
            *_flatten_alpha(video),
            *_tone_map(video),
            *_square_pixels(video),
            _fit_filter(timeline),
            "setsar=1",
            "format=yuv420p",
            f"tpad=stop_mode=clone:stop={piece.hold_frames + 2}",
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
        str(_gop_frames(enc, fps, frames)),
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


# Every output is SDR BT.709, and says so, whatever its sources were tagged (or not).
BT709_TAGS = ["-color_primaries", "bt709", "-color_trc", "bt709", "-colorspace", "bt709", "-color_range", "tv"]


def _deinterlace(video: VideoInfo, fps: Fraction) -> list[str]:
    """bwdif on a source coded as fields (its field order says so), before the rate
    conversion: a field per frame when the output rate is about the field rate (50i -> 50p),
    else a frame per frame."""
    if not video.interlaced:
        return []
    mode = "send_field" if video.fps > 0 and fps > video.fps * Fraction(3, 2) else "send_frame"
    return [f"bwdif=mode={mode}:parity=auto:deint=all"]


# HDR to SDR: to linear light (100 nits the SDR white), BT.709 primaries, Hable's curve
# (keeps highlights' detail without greying the picture: desat=0), then BT.709's transfer.
_TRANSFER = {"pq": "smpte2084", "hlg": "arib-std-b67"}


def _tone_map(video: VideoInfo) -> list[str]:
    """The tone-map, made to start whatever else the source says: its frames are given the
    HDR tags the chain reads (a phone export tagged with its transfer alone made zscale fail
    with "no path between colorspaces"), and it ends in 4:4:4 (zscale cannot subsample an
    odd-sized picture; the fit's scale to the even output size does)."""
    hdr = video.hdr
    if hdr is None:
        return []
    transfer = _TRANSFER[hdr]
    return [
        f"setparams=color_primaries=bt2020:color_trc={transfer}:colorspace=bt2020nc",
        f"zscale=tin={transfer}:pin=bt2020:min=bt2020nc:t=linear:npl=100",
        "format=gbrpf32le",
        "zscale=p=bt709",
        "tonemap=tonemap=hable:desat=0",
        "zscale=t=bt709:m=bt709:r=tv",
        "format=yuv444p",
    ]


# Pixel formats that carry transparency (a GIF decodes to bgra; PNG-in-MOV, QuickTime
# Animation and ProRes 4444 may too).
_ALPHA_PREFIXES = ("yuva", "gbrap", "ya", "rgba", "bgra", "argb", "abgr", "pal8")


def _flatten_alpha(video: VideoInfo) -> list[str]:
    """Transparent pixels become black, as the bars around a letterboxed picture are:
    dropping the alpha plane alone shows whatever colour they were stored with (often white)."""
    if not video.pix_fmt.startswith(_ALPHA_PREFIXES):
        return []
    return ["format=rgba", "premultiply=inplace=1"]


def _square_pixels(video: VideoInfo) -> list[str]:
    """An anamorphic source (1440x1080 at SAR 4:3, 720x576 at 64:45) stretched to its display
    shape first, so letterbox, crop and stretch fit the picture as it is meant to be seen."""
    if video.sar in (Fraction(1), Fraction(0)):
        return []
    return ["scale=trunc(iw*sar/2)*2:ih", "setsar=1"]


def _gop(enc: EncodeSettings, fps: Fraction) -> int:
    return max(1, round(enc.gop_seconds * fps))


def _gop_frames(enc: EncodeSettings, fps: Fraction, frames: int) -> int:
    """Keyframe spacing: every piece starts on one (it is a separate encode); a piece up
    to two GOPs long needs no other, a longer one (a segment not cut, or the held frames of
    the last) gets one every GOP for seeking."""
    gop = _gop(enc, fps)
    return frames if frames <= 2 * gop else gop


@dataclass(frozen=True)
class VideoPart:
    """One file of the joined video and how long its picture lasts in the scene (exactly)."""

    path: Path
    duration: Fraction
    label: str = ""  # where it comes from, for the sync certificate: "segments[3] ('s3')"


def concat_list(parts: Sequence[VideoPart]) -> str:
    """A concat-demuxer list; paths are quoted the way the demuxer unescapes them.

    Each file carries its ``duration``: without it the demuxer starts the next file where
    this one's container says it ends, which is the longest stream (segment audio that
    outlasts the picture slides every later segment) rounded up to the movie header's
    millisecond (a 24 fps segment of 119 frames adds 0.67 ms per join). The demuxer reads
    durations in microseconds; each is written as the difference of the rounded ends, so the
    start of every file is its exact scene time rounded once, never a sum of roundings.
    """
    lines = ["ffconcat version 1.0"]
    end = Fraction(0)
    for part in parts:
        start, end = end, end + part.duration
        lines.append("file '" + str(part.path).replace("'", "'\\''") + "'")
        lines.append(f"duration {_micros(round(end * 1_000_000) - round(start * 1_000_000))}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------- audio


def _duck_expression(timeline: Timeline) -> str | None:
    """Music gain as a function of scene time ``t``: lowered while anyone speaks.

    Driven by the timeline, not the signal: the ramp down starts ``attack`` seconds before
    the speech so the first syllable is already clear, and comes back over ``release``.
    """
    duck = timeline.ducking
    if duck is None or not timeline.speech or duck.music_db == 0:
        return None
    terms = []
    for start, end in timeline.speech:
        rise = (
            f"clip((t-{_f(start - duck.attack)})/{_f(duck.attack)},0,1)" if duck.attack > 0 else f"gte(t,{_f(start)})"
        )
        fall = f"clip(({_f(end + duck.release)}-t)/{_f(duck.release)},0,1)" if duck.release > 0 else f"lte(t,{_f(end)})"
        terms.append(f"min({rise},{fall})")
    envelope = f"min(1,{'+'.join(terms)})"
    # ffmpeg also evaluates the expression once when it configures the filter, before any
    # frame, with t = NaN; a NaN there is logged as "Invalid value NaN for volume, setting to
    # 0", which reads like muted music in the stderr tail of a failed render.
    return f"if(isnan(t),1,pow(10,{_f(duck.music_db)}*{envelope}/20))"


def _clip_chain(clip: PlacedClip, label: str, input_label: str, timeline: Timeline, looped_input: bool) -> str:
    # The clip's own fades sit at its natural end; the scene cut (with its fade) comes later, on the mix.
    play = clip.end - clip.start
    steps = [f"aresample={SAMPLE_RATE}", "aformat=sample_fmts=fltp:channel_layouts=stereo"]
    if not looped_input:
        first, last = _samples(clip.trim_start), _samples(clip.trim_start + clip.length)
        steps.append(f"atrim=start_sample={first}:end_sample={last}")
    steps.append("asetpts=N/SR/TB")
    if clip.loop and not looped_input:
        steps.append(f"aloop=loop=-1:size={_samples(clip.length)}")
    steps.append(f"atrim=end_sample={_samples(play)}")
    if clip.volume != 1:
        steps.append(f"volume={_f(clip.volume)}")
    if clip.fade_in > 0:
        steps.append(f"afade=t=in:st=0:d={_f(clip.fade_in)}")
    if clip.fade_out > 0:
        steps.append(f"afade=t=out:st={_f(max(0.0, play - clip.fade_out))}:d={_f(clip.fade_out)}")
    steps.append(f"adelay=delays={_samples(clip.start)}S:all=1")
    expr = _duck_expression(timeline) if clip.type == "music" else None
    if expr is not None:
        steps += [f"asetnsamples=n={DUCK_STEP_SAMPLES}:p=0", f"volume=volume='{expr}':eval=frame"]
    return f"[{input_label}]{','.join(steps)}[{label}]"


# A segment's sound from further in than this is read from a seek, not decoded from the
# file's start (a 580 s trim: 0.6 s instead of 9.8 s). The seek goes SOUND_SEEK_MARGIN_S
# before the first sample needed, so the decoder is warm (AAC's overlap, Opus's pre-roll)
# when it gets there; ffmpeg's exact seek keeps the file's clock (tested to the sample).
SOUND_SEEK_FROM_S = 5.0
SOUND_SEEK_MARGIN_S = 1.0


def sound_seek(seg: PlacedSegment) -> tuple[int, int]:
    """Where a segment's sound is read from (``-ss``, in samples at 48 kHz: a whole number
    of milliseconds, 0 for no seek) and its first sample after that seek; negative: that
    many samples of silence come first (sound a muxer wrote early, ``AudioInfo.delay``)."""
    delay = seg.source.audio.delay if seg.source.audio else 0.0
    first = _samples(seg.trim_start + seg.source.video_lead) - _samples(delay)
    if first < _samples(SOUND_SEEK_FROM_S):
        return 0, first
    seek = (first - _samples(SOUND_SEEK_MARGIN_S)) // (SAMPLE_RATE // 1000) * (SAMPLE_RATE // 1000)
    return seek, first - seek


def _segment_bed(timeline: Timeline, first_input: int) -> tuple[list[str], list[str], int]:
    """The segments' own sound as one stream: each piece cut or padded to its exact sample span.

    Concatenated rather than mixed, so 100 segments cost one pass, not 100 delayed inputs.
    Sample spans come from the frame-exact boundaries, so rounding never accumulates.
    """
    inputs: list[str] = []
    pieces: list[str] = []
    n = first_input
    for seg in timeline.segments:
        begin, end = _samples(seg.start), _samples(seg.start + seg.duration)
        length = end - begin
        if seg.volume > 0 and seg.has_audio:
            # The sound is placed by its own timestamps (first_pts=0: silence before a stream
            # that starts late, none of what comes before the file's time 0), and the segment
            # starts at the picture's first frame.
            seek, first = sound_seek(seg)
            inputs += _input(seg.source.path, *(["-ss", _f(seek / SAMPLE_RATE)] if seek else []))
            late = f"adelay=delays={-first}S:all=1," if first < 0 else ""
            first = max(0, first)
            pieces.append(
                f"[{n}:a:0]aresample={SAMPLE_RATE}:first_pts=0,{late}aformat=sample_fmts=fltp:channel_layouts=stereo,"
                f"atrim=start_sample={first}:end_sample={first + length},asetpts=N/SR/TB,"
                f"apad=whole_len={length},volume={_f(seg.volume)}[p{seg.index}]"
            )
            n += 1
        else:
            pieces.append(f"anullsrc=r={SAMPLE_RATE}:cl=stereo,atrim=end_sample={length}[p{seg.index}]")
    labels = "".join(f"[p{seg.index}]" for seg in timeline.segments)
    pieces.append(f"{labels}concat=n={len(timeline.segments)}:v=0:a=1[bed]")
    return inputs, pieces, n - first_input


# Codecs whose every decode is the file's samples and nothing else. Others carry encoder
# priming and padding (AAC 1024+ samples, Opus its pre-skip, MP3 its LAME delay) that one
# decode trims (edit list, pre-skip, LAME tag) but a demuxer loop (-stream_loop) decodes again
# on every pass: 31 ms of silence per loop, the music 615 ms late after 30 loops. They are
# decoded once and looped in memory (aloop), which costs the clip's length in float samples.
_EXACT_LOOP_CODECS = ("pcm_", "flac")


def _loops_exactly(source: MediaInfo) -> bool:
    return source.audio is not None and source.audio.codec.startswith(_EXACT_LOOP_CODECS)


def audio_mix_command(timeline: Timeline, out: Path, script_path: Path, *, scan_fd: int | None = None) -> Command:
    """Every clip placed at its sample, faded, looped and ducked; summed without rescaling.

    The EBU R128 scan rides along on a copy of the mix (no second decode of the WAV): in
    this process, or — with ``scan_fd`` — as raw samples to ``pipe:scan_fd`` for
    ``mix_scan_command`` on another core.
    """
    total = _samples(timeline.duration)
    inputs: list[str] = []
    chains: list[str] = []
    labels: list[str] = []
    n = 0
    if any(seg.volume > 0 and seg.has_audio for seg in timeline.segments):
        bed_inputs, bed_chains, n = _segment_bed(timeline, 0)
        inputs += bed_inputs
        chains += bed_chains
        labels.append("[bed]")
    for clip in timeline.clips:
        # Whole-file loops are looped by the demuxer (constant memory); a trimmed loop is
        # looped in memory by aloop, since only that part repeats.
        looped_input = (
            clip.loop
            and clip.trim_start == 0
            and clip.length >= clip.source.audio_duration - 1e-3
            and _loops_exactly(clip.source)
        )
        inputs += _input(clip.source.path, *(["-stream_loop", "-1"] if looped_input else []))
        chains.append(_clip_chain(clip, f"c{clip.index}", f"{n}:a:0", timeline, looped_input))
        labels.append(f"[c{clip.index}]")
        n += 1
    tail = [f"apad=whole_len={total}", f"atrim=end_sample={total}"]
    if timeline.overruns and float(timeline.duration) > END_FADE_S:
        tail.append(f"afade=t=out:st={_f(float(timeline.duration) - END_FADE_S)}:d={_f(END_FADE_S)}")
    if not labels:
        chains.append(f"anullsrc=r={SAMPLE_RATE}:cl=stereo,{','.join(tail)}[mix]")
    else:
        mix = (
            f"amix=inputs={len(labels)}:duration=longest:normalize=0:dropout_transition=0"
            if len(labels) > 1
            else "anull"
        )
        chains.append(f"{''.join(labels)}{mix},{','.join(tail)}[mix]")
    chains.append("[mix]asplit=2[out][scan]" + ("" if scan_fd is not None else f";[scan]{EBUR128_SCAN}[scanned]"))
    graph = ";\n".join(chains)
    argv = [
        "ffmpeg",
        "-y",
        *inputs,
        "-filter_complex_script",
        str(script_path),
        "-map",
        "[out]",
        "-c:a",
        "pcm_f32le",
        "-ar",
        str(SAMPLE_RATE),
        "-ac",
        "2",
        "-rf64",
        "auto",
        "-f",
        "wav",
        str(out),
        *(
            ["-map", "[scanned]", "-f", "null", "-"]
            if scan_fd is None
            else ["-map", "[scan]", "-c:a", "pcm_f32le", "-f", "f32le", f"pipe:{scan_fd}"]
        ),
    ]
    return Command(argv=argv, output=out, duration_s=float(timeline.duration), files={script_path: graph})


def mix_scan_command(fd: int) -> list[str]:
    """The EBU R128 scan of the raw mix ``audio_mix_command`` writes to ``pipe:fd``."""
    raw = ["-f", "f32le", "-ar", str(SAMPLE_RATE), "-ac", "2"]
    return ["ffmpeg", "-protocol_whitelist", "pipe", *raw, "-i", f"pipe:{fd}", "-af", EBUR128_SCAN, "-f", "null", "-"]


EBUR128_SCAN = "ebur128=peak=true:framelog=verbose"


def loudness_scan_command(path: Path) -> list[str]:
    """EBU R128 scan (integrated, range, true peak) of a file's first audio stream."""
    return ["ffmpeg", *_input(path), "-map", "0:a:0", "-af", EBUR128_SCAN, "-f", "null", "-"]


AAC_PRIMING_SAMPLES = 1024  # ffmpeg's AAC encoder delay; the MP4 edit list skips it, raw ADTS does not
_ENCODED_SCAN = f"atrim=start_sample={AAC_PRIMING_SAMPLES},{EBUR128_SCAN}"


def encoded_scan_command(fd: int) -> list[str]:
    """The EBU R128 scan of the ADTS copy ``audio_encode_command`` writes to ``pipe:fd``.

    It decodes the very packets that go into the M4A; dropping the encoder delay leaves the
    samples a decode of the M4A gives, bit for bit, so this measures the output's audio
    while it is being encoded instead of in a pass after it.
    """
    return [
        "ffmpeg",
        "-protocol_whitelist",
        "pipe",
        "-f",
        "aac",
        "-i",
        f"pipe:{fd}",
        "-map",
        "0:a:0",
        "-af",
        _ENCODED_SCAN,
        "-f",
        "null",
        "-",
    ]


def _tee_escape(path: Path) -> str:
    """A file name as the tee muxer's slave list reads it (backslash before anything special)."""
    return re.sub(r"([^A-Za-z0-9/._-])", r"\\\1", str(path))


@dataclass(frozen=True)
class LoudnessScan:
    integrated_lufs: float  # -70 or below: silence
    threshold_lufs: float
    range_lu: float
    true_peak_db: float

    @property
    def silent(self) -> bool:
        return self.integrated_lufs <= -70


_SUMMARY = re.compile(
    r"Integrated loudness:\s+I:\s+(?P<i>-?[\d.]+|-?inf) LUFS\s+Threshold:\s+(?P<thr>-?[\d.]+|-?inf) LUFS"
    r".*?LRA:\s+(?P<lra>-?[\d.]+) LU.*?True peak:\s+Peak:\s+(?P<tp>-?[\d.]+|-?inf) dBFS",
    re.S,
)


def parse_ebur128(stderr: str) -> LoudnessScan:
    """The summary ebur128 logs at the end (it has no JSON output; the block's layout is stable)."""
    found = _SUMMARY.search(stderr[stderr.rfind("Summary:") :] if "Summary:" in stderr else stderr)
    if found is None:
        raise RenderError("loudness scan printed no summary", stderr_tail=stderr[-2000:])
    return LoudnessScan(float(found["i"]), float(found["thr"]), float(found["lra"]), float(found["tp"]))


@dataclass(frozen=True)
class LevelCorrection:
    """What a measurement of an encoded result asks of the next encode.

    ``gain_db``: limiting a peak changes what EBU R128's gate counts, so the first result
    can land off the loudness target. ``headroom_db``: the encoder's rounding can lift a
    limited peak over the ceiling, so the limiter then aims this much lower.
    """

    gain_db: float = 0.0
    headroom_db: float = 0.0


def _loudness_chain(timeline: Timeline, scan: LoudnessScan | None, correction: LevelCorrection) -> list[str]:
    """The mix brought to the loudness target: one linear gain when it keeps the true peak
    under the ceiling; otherwise the same gain followed by a limiter working at 4x the rate
    (so it catches peaks between samples)."""
    chain: list[str] = []
    loud = timeline.loudness
    if loud is not None and scan is not None and not scan.silent:
        ceiling = loud.true_peak_db - TRUE_PEAK_MARGIN_DB - correction.headroom_db
        gain = loud.target_lufs - scan.integrated_lufs + correction.gain_db
        chain.append(f"volume={gain:.2f}dB")
        if scan.true_peak_db + gain > ceiling:
            limit = max(0.0625, 10 ** (ceiling / 20))
            chain += [
                f"aresample={4 * SAMPLE_RATE}",
                f"alimiter=limit={limit:.4f}:attack=0.5:release=20:level=false",
                f"aresample={SAMPLE_RATE}",
                f"aformat=sample_fmts=fltp:sample_rates={SAMPLE_RATE}:channel_layouts=stereo",
            ]
    return chain


AAC_ENCODER = ["-c:a", "aac", "-profile:a", "aac_low", "-b:a", AUDIO_BITRATE, "-ar", str(SAMPLE_RATE), "-ac", "2"]


def audio_encode_command(
    wav: Path,
    timeline: Timeline,
    scan: LoudnessScan | None,
    out: Path,
    *,
    correction: LevelCorrection = LevelCorrection(),
    scan_fd: int | None = None,
) -> Command:
    """Second pass: the mix brought to the loudness target, then AAC-LC 48 kHz stereo.

    ``correction`` is what a measurement of an earlier result asked for.
    With ``scan_fd``, the encoded packets also go, as ADTS, to ``pipe:scan_fd`` (one
    encode, two muxers) for ``encoded_scan_command``.
    """
    total = _samples(timeline.duration)
    chain = [*_loudness_chain(timeline, scan, correction), f"apad=whole_len={total}", f"atrim=end_sample={total}"]
    argv = [
        "ffmpeg",
        "-y",
        *_input(wav),
        "-af",
        ",".join(chain),
        *AAC_ENCODER,
        *(
            ["-f", "mp4", str(out)]
            if scan_fd is None
            else ["-map", "0:a:0", "-f", "tee", f"[f=mp4]{_tee_escape(out)}|[f=adts]pipe:{scan_fd}"]
        ),
    ]
    return Command(argv=argv, output=out, duration_s=float(timeline.duration))


# Encoding the audio in chunks, one encoder per core, joined frame by frame (scenerender.core.adts).
AUDIO_CHUNK_MIN_S = 8.0  # shorter chunks spend too much of their time on the lead-in
AUDIO_LEAD_IN_FRAMES = 48  # ~1 s encoded before a chunk's first usable frame: its rate control settles
AUDIO_JOIN_SEARCH_FRAMES = 16  # the join may move this far either way to find matching windows
AUDIO_TAIL_FRAMES = AUDIO_JOIN_SEARCH_FRAMES + 8  # an encode's last frames are windowed for its end: unused
# The first chunk's share of the audio against each other chunk's. The final mux (which
# also measures the joined stream) takes the first chunk's frames as they come and every
# later chunk's only after it: with equal chunks it would be left a half of the audio to
# catch up on once the encoders are done; with a shorter first chunk it catches up while
# the later encoders still run.
AUDIO_FIRST_CHUNK_WEIGHT = 0.7


@dataclass(frozen=True)
class AudioChunk:
    """One encoder's share of the audio: input samples [start, end) on the 1024-sample frame grid.

    Its frame ``j`` is frame ``first_frame + j`` of a single encode of the whole mix. It is used
    from one of ``join_candidates`` (global frame indices, best first; empty for the first
    chunk) up to where the next chunk takes over.
    """

    start_sample: int
    end_sample: int
    join_candidates: tuple[int, ...] = ()

    @property
    def first_frame(self) -> int:
        return self.start_sample // adts.FRAME_SAMPLES

    @property
    def frames(self) -> int:
        return adts.packet_count(self.end_sample - self.start_sample)

    @property
    def duration_s(self) -> float:
        return (self.end_sample - self.start_sample) / SAMPLE_RATE


def audio_chunks(total_samples: int, cores: int) -> list[AudioChunk]:
    """How to share the AAC encode of ``total_samples`` among ``cores`` encoders; [] for one encode."""
    count = min(cores, int(total_samples / SAMPLE_RATE // AUDIO_CHUNK_MIN_S))
    if count < 2:
        return []
    frames = total_samples // adts.FRAME_SAMPLES
    weight = AUDIO_FIRST_CHUNK_WEIGHT + count - 1
    joins = [round(frames * (AUDIO_FIRST_CHUNK_WEIGHT + i - 1) / weight) * adts.FRAME_SAMPLES for i in range(1, count)]
    search = AUDIO_JOIN_SEARCH_FRAMES
    chunks: list[AudioChunk] = []
    for i in range(count):
        start = 0 if i == 0 else joins[i - 1] - (AUDIO_LEAD_IN_FRAMES + search) * adts.FRAME_SAMPLES
        end = total_samples if i == count - 1 else joins[i] + AUDIO_TAIL_FRAMES * adts.FRAME_SAMPLES
        candidates: tuple[int, ...] = ()
        if i > 0:
            # Frame k of one encode holds samples from before k * 1024 (the encoder delay): the
            # join nearest the boundary sample is frame boundary/1024 + 1.
            nominal = joins[i - 1] // adts.FRAME_SAMPLES + 1
            candidates = tuple(
                sorted(range(nominal - search, nominal + search + 1), key=lambda k: (abs(k - nominal), k))
            )
        chunks.append(AudioChunk(start, end, candidates))
    return chunks


def audio_chunk_command(
    wav: Path,
    timeline: Timeline,
    scan: LoudnessScan | None,
    chunk: AudioChunk,
    fd: int,
    *,
    correction: LevelCorrection = LevelCorrection(),
) -> Command:
    """One chunk of ``audio_encode_command``'s work: the same samples, gain and encoder, as ADTS on ``pipe:fd``."""
    total = _samples(timeline.duration)
    length = chunk.end_sample - chunk.start_sample
    chain = [
        f"apad=whole_len={total}",
        f"atrim=start_sample={chunk.start_sample}:end_sample={chunk.end_sample}",
        "asetpts=N/SR/TB",
        *_loudness_chain(timeline, scan, correction),
        f"apad=whole_len={length}",
        f"atrim=end_sample={length}",
    ]
    argv = [
        "ffmpeg",
        "-y",
        *_input(wav),
        "-af",
        ",".join(chain),
        *AAC_ENCODER,
        "-map",
        "0:a:0",
        "-f",
        "adts",
        f"pipe:{fd}",
    ]
    return Command(argv=argv, output=Path(f"pipe:{fd}"), duration_s=chunk.duration_s)


def _adts_timestamps(total_samples: int) -> str:
    """Timestamps for ADTS frames (which carry none), set as one encode of the mix sets them.

    The first frame is the encoder delay (pts -1024, which the MP4 edit list skips) and the
    last frame lasts only as many samples as are real.
    """
    step = adts.FRAME_SAMPLES
    last = adts.packet_count(total_samples) - 1
    # Commas inside the expression are escaped: -bsf:a takes a comma-separated list of filters.
    duration = f"if(eq(N\\,{last})\\,{adts.last_packet_samples(total_samples)}\\,{step})"
    return f"setts=time_base=1/{SAMPLE_RATE}:pts=N*{step}-{step}:dts=N*{step}-{step}:duration={duration}"


def assemble_command(
    timeline: Timeline,
    pieces: Sequence[VideoPart],
    list_path: Path,
    audio: Path | int,
    out: Path,
    *,
    audio_copy: Path | None = None,
) -> Command:
    """The finished MP4 in one copying pass: the video pieces joined, the audio beside them, index first.

    ``audio`` is the encoded M4A, or the read end of a pipe of ADTS frames (the joined chunk
    encodes), stamped here as one encoder would have stamped them; then ``audio_copy``
    receives the audio alone as an M4A too (what the audio cache keeps), and the same
    process measures it: the EBU R128 summary of ``encoded_scan_command`` ends its stderr.
    """
    if isinstance(audio, Path):
        audio_input, stamps, scan = _input(audio), [], []
    else:
        audio_input = ["-protocol_whitelist", "pipe", "-f", "aac", "-i", f"pipe:{audio}"]
        stamps = ["-bsf:a", _adts_timestamps(total_samples(timeline))]
        scan = ["-map", "1:a:0", "-af", _ENCODED_SCAN, "-f", "null", "-"]
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
    ]
    if audio_copy is not None:
        argv += ["-map", "1:a:0", "-c", "copy", *stamps, "-f", "mp4", str(audio_copy)]
    argv += scan
    return Command(argv=argv, output=out, duration_s=float(timeline.duration), files={list_path: concat_list(pieces)})


ENCODER_BASE_MB = 60  # ffmpeg's own libraries and buffers
# A full render's x264 holds about this many frames (lookahead, B-frames, references,
# half-pel planes), and more with each extra frame thread. Fitted at 1080p (192 MiB with one
# thread, 243 with two); measured 3 % under at 720p (122 MiB), 14 % over at 2160p (515 MiB).
ENCODER_FRAMES = 44
ENCODER_FRAMES_PER_EXTRA_THREAD = 17
MEMORY_HEADROOM = 0.75  # the rest of a budget is for Python, the audio pass and copies


def encoder_mb(width: int, height: int, threads: int) -> float:
    """Resident memory of one normalising ffmpeg at this output size."""
    frame_mb = width * height * 1.5 / 2**20
    return ENCODER_BASE_MB + frame_mb * (ENCODER_FRAMES + ENCODER_FRAMES_PER_EXTRA_THREAD * (threads - 1))


# Source bits per pixel at which x264's detail-dependent work equals its fixed work per frame
# (veryfast, 720p25 -> 1080p30, the benchmark's patterns: 2.2-2.8 CPU-s per 5 s segment at
# 0.006 bpp, 5.0-6.0 at 0.11 bpp).
DETAIL_BPP = 0.1
# CPU-seconds of a full-settings encode per output megapixel-frame of a flat picture (5 s of
# 720p25 test pattern to 1080p30: 1.75-1.97 s), and of the audio pass per second of scene (the
# mix and its scan, one AAC encoder, the scan of its output: 1.8 s for a 30 s scene, 2.3 s for
# 50 s). Both are this machine's; only their ratio matters: where the audio goes in the queue
# of encodes, and whether cutting long segments should finish sooner (``plan_pieces``).
ENCODE_S_PER_MEGAPIXEL_FRAME = 0.0058
AUDIO_S_PER_SCENE_S = 0.05


def encode_cost(seg: PlacedSegment, frames: int | None = None, frame_size: tuple[int, int] = (1920, 1080)) -> float:
    """Rough CPU-seconds of encoding ``frames`` of a segment (all of it by default) at ``frame_size``.

    Encodes started in order of the spec can leave the dearest for last, one core busy with
    it while the others idle. x264 spends a fixed part per frame and a part that grows with
    the picture's detail; the source's bits per pixel stand for the detail (a busy picture
    takes more bits at any quality). Only the order of the work depends on it.
    """
    megapixels = frame_size[0] * frame_size[1] / 1e6
    count = seg.frames if frames is None else frames
    return count * megapixels * ENCODE_S_PER_MEGAPIXEL_FRAME * (1 + _bits_per_pixel(seg) / DETAIL_BPP)


def _bits_per_pixel(seg: PlacedSegment) -> float:
    video, source = seg.source.video, seg.source
    pixel_rate = video.width * video.height * float(video.fps) if video is not None else 0.0
    return source.size_bytes * 8 / (source.duration * pixel_rate) if pixel_rate > 0 and source.duration > 0 else 0.0


def audio_cost(timeline: Timeline) -> float:
    """Rough CPU-seconds of the audio pass on one core, in the units of ``encode_cost``."""
    return AUDIO_S_PER_SCENE_S * float(timeline.duration)


def parallel_jobs(
    configured: int, pieces: int, cpus: int = 0, *, memory_mb: int = 0, frame_size: tuple[int, int] = (0, 0)
) -> tuple[int, int]:
    """(segments encoded at once, encoder threads each): one process per core, no oversubscription.

    ``cpus`` is this worker's share of the machine when it is not the whole of it (a
    container's CPU limit, which ``os.cpu_count`` does not see; several local workers).
    With a ``memory_mb`` budget, fewer processes with more threads each when one process
    per core would not fit: a little slower (frame threads start and drain with every
    segment), never killed for memory.
    """
    cores = cpus or os.cpu_count() or 1
    workers = max(1, min(configured or cores, pieces))
    if memory_mb and all(frame_size):
        budget = memory_mb * MEMORY_HEADROOM
        while workers > 1 and workers * encoder_mb(*frame_size, max(1, cores // workers)) > budget:
            workers -= 1
    return workers, max(1, cores // workers)
