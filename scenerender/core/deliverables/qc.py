"""The quality report: what a user would find by eye and ear, measured on the output.

Each finding has its time range and the segment or clip responsible. The checks
(docs/deliverables.md):

  black_picture, frozen_picture  a stretch over 0.5 s. Found without decoding the scene: in
                                 the output's sample table a picture that does not change
                                 is a run of tiny frames (a few dozen bytes each, where a
                                 changing picture takes kilobytes); each run is then
                                 confirmed by decoding its first and last frame only.
  still_copy                     a segment whose picture is a still copy of the previous
                                 segment's last frame (a generator that returned its input).
  dialogue_silent                a narration or dialogue clip's span is silent in the output,
                                 or the clip itself is silent there (covered by other sound).
  clipping                       output samples at or over full scale.
  dialogue_under_music           while a clip speaks, the speech is less than 6 dB above the
                                 music (both measured from the mix's own chains, ducking on).
  caption_overrun                a caption stays up more than 0.5 s after its clip's voice ends.

The picture checks miss a picture that is black or still but noisy (grain keeps its frames
large); every check is a warning unless ``qc.fail_on`` names it.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from scenerender.core.deliverables.captions import Cue
from scenerender.core.deliverables.roles import PEAK_WINDOW_S, Levels
from scenerender.core.deliverables.stills import BLACK_LUMA, frame_stats, mean_difference
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
)
MIN_STILL_S = 0.5
STILL_DIFFERENCE = 2.0  # mean absolute grey difference (0-255) under which two frames are one picture
COPY_DIFFERENCE = 3.0  # the same across two encodes (a copy re-encoded as the next segment's keyframe)
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


@dataclass(frozen=True)
class StillRun:
    start: float  # the first frame showing the picture that then does not change
    last: float  # the frame compared with it: the run's last, or the first past MIN_STILL_S (less to decode)
    end: float  # where the run stops showing (last + one frame)


def tiny_frame_bytes(width: int, height: int) -> int:
    """A frame that repeats the one before it: x264 writes 60-70 bytes at 1080p; moving
    pictures take kilobytes. Above this, a frame is taken to change the picture."""
    return 64 + width * height // 20000


def still_runs(samples: Sequence[VideoSample], frame_s: float, tiny: int) -> list[StillRun]:
    """Stretches of frames that repeat the picture before them (candidates: ``confirmed_runs``).

    A keyframe ends a stretch (it may show another picture: every segment starts on one);
    ``confirmed_runs`` joins stretches on either side of one that show the same picture.
    Stretches of at most one frame are left out.
    """

    def repeats(i: int) -> bool:
        return 0 <= i < len(samples) and not samples[i].key and samples[i].size <= tiny

    runs: list[StillRun] = []
    i = 0
    while i < len(samples):
        if not repeats(i):
            i += 1
            continue
        j = i
        while repeats(j + 1):
            j += 1
        start = samples[i - 1].time_s if i > 0 else samples[i].time_s
        # Confirming a run decodes from the keyframe before its compared frame: the frame just
        # past MIN_STILL_S proves the finding, and its tiny frames vouch for the rest.
        probe = next((samples[k].time_s for k in range(i, j + 1) if samples[k].time_s > start + MIN_STILL_S), None)
        runs.append(StillRun(start, samples[j].time_s if probe is None else probe, samples[j].time_s + frame_s))
        i = j + 1
    return runs


def confirmed_runs(runs: Sequence[StillRun], frames: dict[float, bytes], frame_s: float) -> list[StillRun]:
    """The runs whose first and last frames are one picture, joined where one continues the
    last's picture across a keyframe; those longer than ``MIN_STILL_S``."""
    kept: list[StillRun] = []
    for run in runs:
        first, last = frames.get(run.start), frames.get(run.last)
        if first is None or last is None or mean_difference(first, last) >= STILL_DIFFERENCE:
            continue  # a slow, flat picture: small frames, but it moves
        if kept and run.start - kept[-1].end < frame_s / 2:
            before = frames.get(kept[-1].last)
            if before is not None and mean_difference(before, first) < STILL_DIFFERENCE:
                kept[-1] = StillRun(kept[-1].start, run.last, run.end)
                continue
        kept.append(run)
    return [run for run in kept if run.end - run.start > MIN_STILL_S + 1e-6]


def frames_wanted(runs: Sequence[StillRun], timeline: Timeline) -> list[float]:
    """The frames to decode to confirm ``runs``: each run's first and last (the first stage;
    ``previous_frames_wanted`` asks for the rest once these are known)."""
    frame_s = 1 / float(timeline.fps)
    # Only runs that could make a stretch over MIN_STILL_S, joined across keyframes, are decoded.
    groups: list[list[StillRun]] = []
    for run in runs:
        if groups and run.start - groups[-1][-1].end < frame_s / 2:
            groups[-1].append(run)
        else:
            groups.append([run])
    wanted: list[float] = []
    for group in groups:
        joined = StillRun(group[0].start, group[-1].last, group[-1].end)
        if joined.end - joined.start <= MIN_STILL_S + 1e-6:
            continue
        for run in group:
            wanted += [run.start, run.last]
    return wanted


def previous_frames_wanted(runs: Sequence[StillRun], frames: dict[float, bytes], timeline: Timeline) -> list[float]:
    """The second stage: for each confirmed run that starts (and covers) a segment, the previous
    segment's last frame, which the still-copy check compares it with. Not decoded when a
    confirmed still run ends where this one starts: its last decoded frame is that picture
    (its tiny frames vouch for the ones up to the boundary). The previous segment's last frame
    may be most of a GOP from its keyframe, so this is asked only where it decides a finding."""
    frame_s = 1 / float(timeline.fps)
    kept = confirmed_runs(runs, frames, frame_s)
    return [
        run.start - frame_s
        for run in kept
        if _segment_started(run, timeline) is not None and _previous_picture(run, kept, frames, frame_s) is None
    ]


def _previous_picture(
    run: StillRun, kept: Sequence[StillRun], frames: dict[float, bytes], frame_s: float
) -> bytes | None:
    """The picture shown just before ``run``: decoded, or that of a confirmed still run ending there."""
    before = frames.get(run.start - frame_s)
    if before is not None:
        return before
    ending = next((k for k in kept if abs(k.end - run.start) < frame_s / 2), None)
    return frames.get(ending.last) if ending is not None else None


def _segment_started(run: StillRun, timeline: Timeline) -> int | None:
    """Index (>= 1) of the segment this run starts and covers (to within two frames)."""
    frame_s = 1 / float(timeline.fps)
    for seg in timeline.segments[1:]:
        start, end = float(seg.start), float(seg.start + seg.duration)
        if abs(run.start - start) < frame_s / 2 and run.end >= end - 2 * frame_s:
            return seg.index
    return None


def picture_findings(
    runs: Sequence[StillRun], frames: dict[float, bytes], timeline: Timeline, size: tuple[int, int]
) -> list[Finding]:
    """The runs confirmed by their decoded frames (grey, ``size``), as findings."""
    frame_s = 1 / float(timeline.fps)
    width, height = size
    findings: list[Finding] = []
    kept = confirmed_runs(runs, frames, frame_s)
    for run in kept:
        first = frames[run.start]
        seg_id = segment_at(timeline, run.start + frame_s / 2)
        started = _segment_started(run, timeline)
        before = _previous_picture(run, kept, frames, frame_s)
        black = frame_stats(first, width, height).mean_luma < BLACK_LUMA
        span = f"{run.start:.2f}-{run.end:.2f} s"
        if (
            started is not None
            and before is not None
            and not black
            and mean_difference(before, first) < COPY_DIFFERENCE
        ):
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
) -> list[Finding]:
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
        in_output = max(db for _, db in window_levels(output, start, end))
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
