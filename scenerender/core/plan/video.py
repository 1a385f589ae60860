"""The picture: encoder settings, whether the sources can be copied as they are, the filters
that bring a source to the output's size, rate and colour, and the concat list that joins
the encoded parts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import ClassVar

from scenerender.core.plan.command import micros
from scenerender.core.probe import VideoInfo
from scenerender.core.timeline import Timeline

COPY_FORMATS = frozenset({"mov", "mp4", "m4a", "3gp", "3g2", "mj2"})


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


def picture_filters(video: VideoInfo, timeline: Timeline, select: list[str]) -> list[str]:
    """A source's picture brought to the output: deinterlaced, ``select`` (the rate conversion
    and the frames kept, before the scaling so only those are scaled), flattened, tone-mapped,
    made square-pixelled and fitted to the output's size in yuv420p."""
    return [
        *_deinterlace(video, timeline.fps),
        *select,
        *_flatten_alpha(video),
        *_tone_map(video),
        *_square_pixels(video),
        _fit_filter(timeline),
        "setsar=1",
        "format=yuv420p",
    ]


def subtitles_filter(script: Path) -> str:
    """libass drawing the ASS ``script`` on the picture (burned captions)."""
    # The path is escaped for the filter's option parser, then for the graph's.
    return "subtitles=filename='" + str(script).replace("\\", "/").replace("'", "") + "'"


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


def gop(enc: EncodeSettings, fps: Fraction) -> int:
    return max(1, round(enc.gop_seconds * fps))


def gop_frames(enc: EncodeSettings, fps: Fraction, frames: int) -> int:
    """Keyframe spacing: every piece starts on one (it is a separate encode); a piece up
    to two GOPs long needs no other, a longer one (a segment not cut, or the held frames of
    the last) gets one every GOP for seeking."""
    every = gop(enc, fps)
    return frames if frames <= 2 * every else every


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
        lines.append(f"duration {micros(round(end * 1_000_000) - round(start * 1_000_000))}")
    return "\n".join(lines) + "\n"
