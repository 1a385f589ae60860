"""The timeline: where every segment and clip sits in the scene. Pure: spec + probes in, data out.

Segment boundaries are counted in output frames, so the audio that is placed against
them lands on the same frame the video shows, however many segments there are.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction

from scenerender.core.probe import MediaInfo
from scenerender.core.spec import SPEECH_TYPES, Clip, Ducking, JobSpec, Loudness
from scenerender.errors import ErrorDetail, InputMediaError, SceneRenderError, SpecError, collected

AUTO_DIALOGUE_GAP_S = 0.2
DEFAULT_FPS = Fraction(30)
# Rates people write as decimals but mean as NTSC fractions.
_NTSC = {
    23.976: Fraction(24000, 1001),
    29.97: Fraction(30000, 1001),
    59.94: Fraction(60000, 1001),
    119.88: Fraction(120000, 1001),
}
# How far a spec duration may exceed the probed length before it is an error (container rounding).
LENGTH_TOLERANCE_S = 0.02


@dataclass(frozen=True)
class PlacedSegment:
    index: int
    id: str
    source: MediaInfo
    trim_start: float
    frames: int  # output frames this segment contributes (hold frames excluded)
    start: Fraction  # scene seconds
    duration: Fraction  # frames / fps
    requested_duration: float | None  # the spec's duration, if any
    volume: float

    @property
    def has_audio(self) -> bool:
        return self.source.audio is not None


@dataclass(frozen=True)
class PlacedClip:
    index: int
    type: str
    source: MediaInfo
    start: float
    trim_start: float
    length: float  # one play of the clip, seconds
    end: float  # scene seconds where it stops sounding (before the scene cut)
    loop: bool
    volume: float
    fade_in: float
    fade_out: float

    @property
    def path(self) -> str:
        return f"audio.clips[{self.index}]"


@dataclass(frozen=True)
class Timeline:
    fps: Fraction
    width: int
    height: int
    fit: str
    preview: bool
    segments: tuple[PlacedSegment, ...]
    clips: tuple[PlacedClip, ...]
    video_frames: int  # sum of segment frames
    hold_frames: int  # last frame held (duration_policy "longest")
    ducking: Ducking | None
    loudness: Loudness | None
    speech: tuple[tuple[float, float], ...]  # merged narration/dialogue intervals
    overruns: tuple[int, ...] = field(default=())  # clip indexes cut at the scene end
    overlaps: tuple[tuple[int, int], ...] = field(default=())  # speech clips that sound together

    @property
    def total_frames(self) -> int:
        return self.video_frames + self.hold_frames

    @property
    def duration(self) -> Fraction:
        return self.total_frames / self.fps

    @property
    def video_duration(self) -> Fraction:
        return self.video_frames / self.fps


def output_fps(spec: JobSpec, first: MediaInfo | None) -> Fraction:
    if spec.output.fps is not None:
        for decimal, exact in _NTSC.items():
            if abs(spec.output.fps - decimal) < 0.005:
                return exact
        return Fraction(spec.output.fps).limit_denominator(1001)
    if first is not None and first.video is not None and first.video.fps > 0:
        return nearest_standard_rate(first.video.fps)
    return DEFAULT_FPS


# The rates players and editors expect. A first segment's own rate may be anything: a
# variable-rate phone clip averages 49050000/1796977, which no MP4 time base holds exactly.
STANDARD_RATES = (
    Fraction(24000, 1001),
    Fraction(24),
    Fraction(25),
    Fraction(30000, 1001),
    Fraction(30),
    Fraction(50),
    Fraction(60000, 1001),
    Fraction(60),
)


def nearest_standard_rate(rate: Fraction) -> Fraction:
    """The standard rate nearest ``rate`` (by ratio, so 12.5 fps is nearer 23.976 than 60)."""
    return min(STANDARD_RATES, key=lambda r: abs(math.log(r / rate)))


def _available(
    path: str, field_name: str, total: float, trim: float, wanted: float | None, problems: list[SceneRenderError]
) -> float:
    """Length used from a source of ``total`` seconds; problems (spec errors at ``path``) are
    added to ``problems`` and a stand-in length returned, so the rest is still checked."""
    if trim >= total:
        problems.append(
            SpecError.from_details(
                [ErrorDetail(f"{path}.trim_start", f"{trim:g} s is past the end of the source ({total:.3f} s)")]
            )
        )
        return wanted if wanted is not None else max(total, 1e-3)
    left = total - trim
    if wanted is None:
        return left
    if wanted > left + LENGTH_TOLERANCE_S:
        problems.append(
            SpecError.from_details(
                [
                    ErrorDetail(
                        f"{path}.{field_name}",
                        f"{wanted:g} s is longer than the source ({left:.3f} s after trim_start)",
                    )
                ]
            )
        )
    return min(wanted, left)


def _check_readable(
    problems: list[SceneRenderError], path: str, url: str, who: str, stream: str, readable: float | None, needed: float
) -> None:
    """A file cut short (its header promises more than it holds) is refused where the render
    would need what is missing: padded out, it would complete with frozen picture or silence."""
    if readable is not None and needed > readable + LENGTH_TOLERANCE_S:
        problems.append(
            InputMediaError(
                path,
                f"the file is cut short: {who} needs {needed:.3f} s of its {stream}, and only {readable:.3f} s of it "
                "is in the file (its header says more: an interrupted download or copy?)",
                url=url,
            )
        )


def _merge(intervals: list[tuple[float, float]]) -> tuple[tuple[float, float], ...]:
    merged: list[tuple[float, float]] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return tuple(merged)


def build_timeline(spec: JobSpec, probes: dict[str, MediaInfo]) -> Timeline:
    """Place every segment and enabled clip. ``probes`` maps each URL to its probe.

    Every problem is found in one pass and raised together (``errors.collected``). An input
    missing from ``probes`` (it could not be fetched: reported already) is left out, so the
    others are still checked; placements that depend on its length are then not judged.
    """
    problems: list[SceneRenderError] = []
    first = probes.get(spec.segments[0].url)
    fps = output_fps(spec, first)
    width, height = spec.output.size()

    segments: list[PlacedSegment] = []
    frame_cursor = 0
    video_known = True
    for index, seg in enumerate(spec.segments):
        where = f"segments[{index}]"
        maybe = probes.get(seg.url)
        if maybe is None:
            video_known = False
            frame_cursor += max(1, round((seg.duration or 1.0) * fps))
            continue
        info = maybe
        if info.video is None:
            problems.append(InputMediaError(f"{where}.url", "no video stream", url=seg.url))
            used = seg.duration or 1.0
        else:
            used = _available(where, "duration", info.video_duration, seg.trim_start, seg.duration, problems)
            needed = seg.trim_start + used
            who = f"segment {seg.id!r}"
            _check_readable(problems, f"{where}.url", seg.url, who, "picture", info.readable_video, needed)
            if seg.volume > 0:
                _check_readable(problems, f"{where}.url", seg.url, who, "sound", info.readable_audio, needed)
        frames = max(1, round(used * fps))
        segments.append(
            PlacedSegment(
                index=index,
                id=seg.id,
                source=info,
                trim_start=seg.trim_start,
                frames=frames,
                start=frame_cursor / fps,
                duration=frames / fps,
                requested_duration=seg.duration,
                volume=seg.volume,
            )
        )
        frame_cursor += frames
    video_frames = frame_cursor
    video_end = float(video_frames / fps)
    by_id = {s.id: s for s in segments}

    placed: list[tuple[int, Clip, MediaInfo, float, float]] = []  # index, clip, info, start, length
    auto_cursor: dict[str, float] = {}
    for index, clip in enumerate(spec.audio.clips):
        if not spec.audio.tracks.enabled(clip.type):
            continue
        where = f"audio.clips[{index}]"
        maybe_clip = probes.get(clip.url)
        if maybe_clip is None:
            continue
        info = maybe_clip
        if info.audio is None:
            problems.append(InputMediaError(f"{where}.url", "no audio stream", url=clip.url))
            continue
        length = _available(where, "duration", info.audio_duration, clip.trim_start, clip.duration, problems)
        who = f"the {clip.type} clip"
        _check_readable(problems, f"{where}.url", clip.url, who, "sound", info.readable_audio, clip.trim_start + length)
        if clip.loop and clip.duration is None and "aac" in info.format_name.split(","):
            # ADTS states no length: ffprobe's is the decoded frames', the encoder's padding
            # (up to 1023 samples) in it, which a loop would repeat on every pass.
            problems.append(
                SpecError.from_details(
                    [
                        ErrorDetail(
                            f"{where}.loop",
                            "AAC in ADTS (.aac) does not state its length to the sample: looped, every pass would "
                            "add up to 21 ms of the encoder's padding. Give the loop's length as "
                            f"{where}.duration, or loop an M4A, MP3, Opus, WAV or FLAC file",
                        )
                    ]
                )
            )
            continue
        if clip.segment_id is not None:
            if clip.segment_id not in by_id:  # its segment could not be probed
                continue
            anchor = by_id[clip.segment_id]
            if clip.offset is not None:
                offset, field_name = clip.offset, "offset"
            elif clip.type == "dialogue":
                offset, field_name = auto_cursor.get(clip.segment_id, 0.0), "segment_id"
                auto_cursor[clip.segment_id] = offset + length + AUTO_DIALOGUE_GAP_S
            else:
                offset, field_name = 0.0, "segment_id"
            start = float(anchor.start) + offset
        else:
            start, field_name = (clip.start or 0.0), "start"
        if start >= video_end and video_known:
            problems.append(
                SpecError.from_details(
                    [
                        ErrorDetail(
                            f"{where}.{field_name}",
                            f"starts at {start:.3f} s, at or after the end of the video ({video_end:.3f} s)",
                        )
                    ]
                )
            )
            continue
        if clip.fade_in + clip.fade_out > length + 1e-9:
            problems.append(
                SpecError.from_details(
                    [ErrorDetail(f"{where}.fade_out", f"fade_in + fade_out is longer than the clip ({length:.3f} s)")]
                )
            )
            continue
        placed.append((index, clip, info, start, length))
    if problems:
        raise collected(problems)
    if not video_known or len(placed) < sum(spec.audio.tracks.enabled(c.type) for c in spec.audio.clips):
        raise SceneRenderError("an input has no probe")  # its own problem was reported by whoever fetched it

    hold_frames = 0
    if spec.output.duration_policy == "longest":
        last_audio = max((start + length for _, clip, _, start, length in placed if not clip.loop), default=0.0)
        last_audio = max(
            last_audio, *(float(s.start + s.duration) for s in segments if s.volume > 0 and s.has_audio), 0.0
        )
        if last_audio > video_end:
            hold_frames = math.ceil((last_audio - video_end) * fps - 1e-6)
    scene_end = float((video_frames + hold_frames) / fps)

    clips: list[PlacedClip] = []
    for index, clip, info, start, length in placed:
        end = scene_end if clip.loop else start + length
        clips.append(
            PlacedClip(
                index=index,
                type=clip.type,
                source=info,
                start=start,
                trim_start=clip.trim_start,
                length=length,
                end=end,
                loop=clip.loop,
                volume=clip.volume,
                fade_in=clip.fade_in,
                fade_out=clip.fade_out,
            )
        )

    speech_clips = [c for c in clips if c.type in SPEECH_TYPES]
    overlaps = tuple(
        (a.index, b.index)
        for i, a in enumerate(speech_clips)
        for b in speech_clips[i + 1 :]
        if a.start < b.end and b.start < a.end
    )
    return Timeline(
        fps=fps,
        width=width,
        height=height,
        fit=spec.output.fit,
        preview=spec.output.preview,
        segments=tuple(segments),
        clips=tuple(clips),
        video_frames=video_frames,
        hold_frames=hold_frames,
        ducking=spec.audio.ducking if spec.audio.ducking.enabled else None,
        loudness=spec.audio.loudness,
        speech=_merge([(c.start, min(c.end, scene_end)) for c in speech_clips]),
        overruns=tuple(c.index for c in clips if c.end > scene_end + 1e-6),
        overlaps=overlaps,
    )
