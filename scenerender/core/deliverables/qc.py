"""The quality report: what a user would find by eye and ear, measured on the output.

Each finding has its time range and the segment or clip responsible. The checks
(docs/deliverables.md):

  black_picture, frozen_picture  a stretch over 0.5 s: the picture's reference frames (every
                                 keyframe and P-frame; B-frames skipped: 63 of the 150
                                 frames of a moving x264 segment decoded) at 80x45 grey, so
                                 grain averages out, show the stretch's first frame's picture
                                 (``same_picture``). The sample table places its end to the
                                 frame where the frames after the last decoded one repeat it
                                 (tiny frames).
  still_copy                     a segment whose picture is a still copy of the previous
                                 segment's last frame (a generator that returned its input).
  dialogue_silent                a narration or dialogue clip's span is silent in the output,
                                 or the clip itself is silent there (covered by other sound).
  clipping                       output samples at or over full scale.
  dialogue_under_music           while a clip speaks, the speech is less than 6 dB above the
                                 music (both measured from the mix's own chains, ducking on).
  caption_overrun                a caption stays up more than 0.5 s after its clip's voice ends.
  caption_glyph_missing          a burned caption has a character no installed font has (libass
                                 draws an empty box for it).

Every check is a warning unless ``qc.fail_on`` names it.
"""

from __future__ import annotations

import bisect
import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from scenerender.core.deliverables.captions import Cue
from scenerender.core.deliverables.roles import PEAK_WINDOW_S, Levels
from scenerender.core.deliverables.stills import BLACK_LUMA, frame_stats
from scenerender.core.mp4 import VideoSample
from scenerender.core.spec import SPEECH_TYPES, JobSpec
from scenerender.core.timeline import Timeline

CHECKS = (
    "black_picture",
    "frozen_picture",
    "still_copy",
    "dialogue_silent",
    "clipping",
    "dialogue_under_music",
    "caption_overrun",
    "caption_glyph_missing",
)
MIN_STILL_S = 0.5
# Two frames (grey, QC_SIZE) show one picture when at most CHANGED_PIXELS of their pixels
# differ by more than CHANGE_LEVEL. Not a mean: a small moving thing over a still background
# moves the mean of a small frame less than grain does, but it moves a few pixels a lot.
# Measured at 80x45: heavy grain (noise=alls=20) on a 640x360 still moves no pixel by more
# than 11 levels; a moving test pattern moves 90 or more pixels by more than 12 in 0.1 s.
CHANGE_LEVEL = 16
CHANGED_PIXELS = 18  # 0.5 % of 80x45
COPY_CHANGE_LEVEL = 24  # the same across two encodes (a copy re-encoded as the next segment's keyframe)
SILENT_DB = -50.0  # a speech span whose loudest 50 ms stays under this is silent
UNDER_MUSIC_DB = 6.0
CAPTION_OVERRUN_S = 0.5
ACTIVE_BELOW_PEAK_DB = 30.0  # speech counts as sounding within this much of the clip's loudest 50 ms
WINDOW_S = 0.05
MAX_FINDINGS_PER_CHECK = 20
CLIPPING_GAP_S = 0.5  # clipped stretches closer than this are one finding


@dataclass(frozen=True)
class Finding:
    check: str
    start: float
    end: float
    message: str
    segment_id: str | None = None
    clip: str | None = None  # "audio.clips[3]"

    def to_dict(self, failing: bool) -> dict[str, Any]:
        return {
            "check": self.check,
            "severity": "error" if failing else "warning",
            "start_s": round(self.start, 3),
            "end_s": round(self.end, 3),
            "segment_id": self.segment_id,
            "clip": self.clip,
            "message": self.message,
        }


def report(spec: JobSpec, findings: list[Finding]) -> dict[str, Any]:
    """The ``qc`` block of the result."""
    fail_on = set(spec.qc.fail_on)
    ordered = sorted(findings, key=lambda f: (f.start, f.check))
    return {
        "checks": list(CHECKS),
        "fail_on": sorted(fail_on),
        "failed": any(f.check in fail_on for f in ordered),
        "findings": [f.to_dict(f.check in fail_on) for f in ordered],
    }


def segment_at(timeline: Timeline, t: float) -> str | None:
    for seg in timeline.segments:
        if float(seg.start) <= t < float(seg.start + seg.duration):
            return seg.id
    return timeline.segments[-1].id if timeline.segments else None


# ---------------------------------------------------------------------------- picture


def _over(level: int) -> list[int]:
    """1 for a difference (-255..255, indexed as Python indexes a list) beyond ``level``, else 0."""
    table = [0] * 511
    for d in range(-255, 256):
        table[d] = int(abs(d) > level)
    return table


_OVER = {level: _over(level) for level in (CHANGE_LEVEL, COPY_CHANGE_LEVEL)}


def changed_pixels(a: bytes, b: bytes, level: int = CHANGE_LEVEL, enough: int = CHANGED_PIXELS + 1) -> int:
    """How many pixels of two grey frames of one size differ by more than ``level``, counted
    up to ``enough`` (then the answer is known). Decoded copies of one picture are often the
    same bytes; a moving picture shows itself in every fourth pixel already."""
    if a == b:
        return 0
    over = _OVER.get(level) or _over(level)
    # Differences looked up in a table: the loop stays in C (a frame is 3,600 pixels, a scene
    # thousands of frames).
    sampled: int = sum(map(over.__getitem__, map(operator.sub, a[::4], b[::4])))
    if sampled * 4 >= enough:
        return sampled * 4
    return sum(map(over.__getitem__, map(operator.sub, a, b)))


def same_picture(a: bytes, b: bytes, level: int = CHANGE_LEVEL) -> bool:
    return changed_pixels(a, b, level) <= CHANGED_PIXELS


@dataclass(frozen=True)
class Frame:
    """A decoded picture of the scene, small and grey (``stills.QC_SIZE``)."""

    time: float
    grey: bytes


def tiny_frame_bytes(width: int, height: int) -> int:
    """A frame that repeats the one before it: x264 writes 60-70 bytes at 1080p; moving
    pictures take kilobytes. Above this, a frame is taken to change the picture."""
    return 64 + width * height // 20000


@dataclass(frozen=True)
class StillRun:
    first: int  # index of its first frame (in the decoded frames)
    last: int  # index of its last frame
    start: float
    end: float  # where it stops showing


def still_runs(frames: Sequence[Frame], samples: Sequence[VideoSample], timeline: Timeline) -> list[StillRun]:
    """Stretches of the decoded frames that show their first frame's picture (``same_picture``),
    each within one segment (a segment's keyframe starts a new one; ``joined_runs``
    joins them where the picture continues across a cut).

    The frames are the reference frames (the pass skips B-frames): a run ends one frame after
    its last, or later where the sample table shows that the frames after it repeat it
    (tiny frames; grain keeps every frame large, so then the run ends at its last frame).
    """
    if not frames:
        return []
    frame_s = 1 / float(timeline.fps)
    tiny = tiny_frame_bytes(timeline.width, timeline.height)
    times = [s.time_s for s in samples]
    ends = [float(seg.start + seg.duration) for seg in timeline.segments]
    segment = [bisect.bisect_right(ends, f.time + 1e-6) for f in frames]
    runs: list[StillRun] = []
    first = 0
    for i in range(1, len(frames) + 1):
        if i < len(frames) and segment[i] == segment[first] and same_picture(frames[first].grey, frames[i].grey):
            continue
        last = i - 1
        if last > first:
            end = frames[last].time + frame_s
            limit = frames[i].time if i < len(frames) else float(timeline.duration)
            k = bisect.bisect_right(times, frames[last].time + frame_s / 2)
            while k < len(samples) and samples[k].time_s < limit - frame_s / 2:
                if samples[k].key or samples[k].size > tiny:
                    break
                end = samples[k].time_s + frame_s
                k += 1
            runs.append(StillRun(first, last, frames[first].time, min(end, float(timeline.duration))))
        first = i
    return runs


def joined_runs(runs: Sequence[StillRun], frames: Sequence[Frame], timeline: Timeline) -> list[StillRun]:
    """Runs joined where one continues the last's picture from the next frame on (across a
    cut); those longer than ``MIN_STILL_S``."""
    frame_s = 1 / float(timeline.fps)
    kept: list[StillRun] = []
    for run in runs:
        if (
            kept
            and run.start - kept[-1].end < frame_s / 2
            and same_picture(frames[kept[-1].last].grey, frames[run.first].grey)
        ):
            kept[-1] = StillRun(kept[-1].first, run.last, kept[-1].start, run.end)
            continue
        kept.append(run)
    return [run for run in kept if run.end - run.start > MIN_STILL_S + 1e-6]


def _segment_started(run: StillRun, timeline: Timeline) -> int | None:
    """Index (>= 1) of the segment this run starts and covers (to within two frames)."""
    frame_s = 1 / float(timeline.fps)
    for seg in timeline.segments[1:]:
        start, end = float(seg.start), float(seg.start + seg.duration)
        if abs(run.start - start) < frame_s / 2 and run.end >= end - 2 * frame_s:
            return seg.index
    return None


def picture_findings(
    frames: Sequence[Frame], samples: Sequence[VideoSample], timeline: Timeline, size: tuple[int, int]
) -> list[Finding]:
    """Black, frozen and still-copied stretches of the decoded frames (grey, ``size``)."""
    width, height = size
    findings: list[Finding] = []
    for run in joined_runs(still_runs(frames, samples, timeline), frames, timeline):
        first = frames[run.first].grey
        seg_id = segment_at(timeline, run.start + 1e-6)
        started = _segment_started(run, timeline)
        # The picture just before a run that starts a segment: the previous segment's last
        # reference frame, which is its last frame (an encoder ends a stream on a P-frame).
        before = frames[run.first - 1].grey if run.first > 0 else None
        black = frame_stats(first, width, height).mean_luma < BLACK_LUMA
        span = f"{run.start:.2f}-{run.end:.2f} s"
        if started is not None and before is not None and not black and same_picture(before, first, COPY_CHANGE_LEVEL):
            previous = timeline.segments[started - 1].id
            message = f"segment {seg_id} is a still copy of the last frame of {previous} ({span})"
            findings.append(Finding("still_copy", run.start, run.end, message, seg_id))
        elif black:
            message = f"black picture for {run.end - run.start:.2f} s ({span})"
            findings.append(Finding("black_picture", run.start, run.end, message, seg_id))
        else:
            message = f"frozen picture for {run.end - run.start:.2f} s ({span})"
            findings.append(Finding("frozen_picture", run.start, run.end, message, seg_id))
    return findings


# ---------------------------------------------------------------------------- sound


def _power(levels: Levels, start: float, end: float) -> float:
    a, b = max(0, int(start * levels.rate)), min(len(levels.samples), int(end * levels.rate))
    if b <= a:
        return 0.0
    part = levels.samples[a:b]
    total: float = sum(map(operator.mul, part, part))
    return total / (b - a)


def _db(power: float) -> float:
    return 10 * math.log10(power) if power > 1e-12 else -120.0


def window_levels(levels: Levels, start: float, end: float) -> list[tuple[float, float]]:
    """(window start, dB) of each ``WINDOW_S`` window of [start, end)."""
    count = max(1, math.ceil((end - start) / WINDOW_S - 1e-9))
    return [
        (start + i * WINDOW_S, _db(_power(levels, start + i * WINDOW_S, min(end, start + (i + 1) * WINDOW_S))))
        for i in range(count)
    ]


def sound_findings(
    spec: JobSpec,
    timeline: Timeline,
    cues: Sequence[Cue],
    output: Levels,
    speech: Levels | None,
    music: Levels | None,
    *,
    output_gain_db: float = 0.0,
) -> list[Finding]:
    """The sound's findings. ``output``: the output's levels (its peaks for clipping), or the
    mix's before the loudness gain, with ``output_gain_db`` the gain the output took."""
    findings: list[Finding] = []
    scene_end = float(timeline.duration)
    last_cue_end: dict[int, float] = {}
    for cue in cues:
        last_cue_end[cue.clip_index] = max(last_cue_end.get(cue.clip_index, 0.0), cue.end)
    for clip in timeline.clips:
        if clip.type not in SPEECH_TYPES:
            continue
        start, end = clip.start, min(clip.end, scene_end)
        if end - start < WINDOW_S:
            continue
        seg_id = segment_at(timeline, start)
        in_output = max(db for _, db in window_levels(output, start, end)) + output_gain_db
        own = window_levels(speech, start, end) if speech is not None else []
        loudest = max((db for _, db in own), default=0.0)
        if in_output < SILENT_DB or loudest < SILENT_DB:
            where = "in the output" if in_output < SILENT_DB else "(the clip itself; other sound covers it)"
            message = f"{clip.type} {clip.path} is silent {where} at {start:.2f}-{end:.2f} s"
            findings.append(Finding("dialogue_silent", start, end, message, seg_id, clip.path))
            continue
        if not own:
            continue
        active = [(t, db) for t, db in own if db >= loudest - ACTIVE_BELOW_PEAK_DB]
        if music is not None:
            speech_power = sum(10 ** (db / 10) for _, db in active) / len(active)
            music_power = sum(_power(music, t, t + WINDOW_S) for t, _ in active) / len(active)
            margin = _db(speech_power) - _db(music_power)
            if music_power > 1e-9 and margin < UNDER_MUSIC_DB:
                message = (
                    f"{clip.type} {clip.path} is only {margin:.1f} dB above the music (at least {UNDER_MUSIC_DB:g})"
                )
                findings.append(Finding("dialogue_under_music", start, end, message, seg_id, clip.path))
        cue_end = last_cue_end.get(clip.index)
        if cue_end is not None:
            voice_end = max(t for t, _ in active) + WINDOW_S
            if cue_end - voice_end > CAPTION_OVERRUN_S:
                message = f"the caption of {clip.path} stays {cue_end - voice_end:.2f} s after its voice ends"
                findings.append(Finding("caption_overrun", voice_end, cue_end, message, seg_id, clip.path))
    findings += clipping_findings(timeline, output)
    return findings


def clipping_findings(timeline: Timeline, output: Levels) -> list[Finding]:
    """Stretches where the output's samples reach full scale, with the loudest clip sounding there."""
    window = PEAK_WINDOW_S
    ranges: list[list[float]] = []
    for i, peak in enumerate(output.peaks):
        if peak < 1.0:
            continue
        t = i * window
        if ranges and t - ranges[-1][1] <= CLIPPING_GAP_S:
            ranges[-1][1] = t + window
        else:
            ranges.append([t, t + window])
    findings: list[Finding] = []
    for start, end in ranges[:MAX_FINDINGS_PER_CHECK]:
        middle = (start + end) / 2
        sounding = [c for c in timeline.clips if c.start <= middle < c.end]
        loudest = max(sounding, key=lambda c: c.volume, default=None)
        clip = loudest.path if loudest is not None else None
        message = f"the output clips (samples at full scale) at {start:.2f}-{end:.2f} s" + (
            f"; loudest clip there: {clip}" if clip else ""
        )
        findings.append(Finding("clipping", start, end, message, segment_at(timeline, start), clip))
    return findings


def glyph_findings(timeline: Timeline, cues: Sequence[Cue], missing: frozenset[int]) -> list[Finding]:
    """A finding for each burned cue with a character in ``missing`` (code points no font has)."""
    findings: list[Finding] = []
    for cue in cues:
        text = "".join((cue.speaker or "", *cue.lines))
        absent = list(dict.fromkeys(ch for ch in text if ord(ch) in missing))
        if absent:
            named = ", ".join(f"U+{ord(ch):04X} {ch}" for ch in absent)
            message = f"the burned caption of {cue.path} shows an empty box for {named}: no installed font has it"
            findings.append(
                Finding("caption_glyph_missing", cue.start, cue.end, message, segment_at(timeline, cue.start), cue.path)
            )
    return findings
