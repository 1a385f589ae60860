"""The pure parts of the sidecars: poster rule, sheet layout, still runs, level checks."""

from __future__ import annotations

import json
import math
from array import array
from fractions import Fraction
from pathlib import Path
from typing import Any, cast

from scenerender.core.deliverables import GREY_FRAMES_PER_PROCESS, grey_frames, qc, roles, stills
from scenerender.core.ffmpeg import FFmpegRunner
from scenerender.core.mp4 import VideoSample
from scenerender.core.spec import parse_spec
from scenerender.core.timeline import Timeline, build_timeline
from tests.unit.fakes import sound, video


def test_poster_candidates_are_the_middle_thirds_keyframes_or_the_one_nearest_the_middle() -> None:
    keyframes = [0.0, 4.0, 8.0, 12.0, 16.0, 20.0, 24.0, 28.0]
    assert stills.poster_candidates(keyframes, 30.0) == [12.0, 16.0]
    assert stills.poster_candidates([0.0, 25.0], 30.0) == [25.0]
    assert len(stills.poster_candidates([i * 0.5 for i in range(200)], 100.0)) == stills.POSTER_CANDIDATES


def test_the_poster_is_the_sharpest_frame_that_is_not_black() -> None:
    flat = stills.frame_stats(bytes([120]) * 100, 10, 10)
    black_sharp = stills.frame_stats(bytes([16, 30] * 50), 10, 10)
    sharp = stills.frame_stats(bytes([60, 200] * 50), 10, 10)
    assert black_sharp.black and not flat.black and sharp.sharpness > flat.sharpness
    assert stills.choose_poster([flat, black_sharp, sharp]) == 2
    assert stills.choose_poster([black_sharp]) is None


def test_a_selection_of_many_frames_stays_within_what_ffmpegs_expression_parser_takes() -> None:
    expression = stills._near([float(i) for i in range(500)], 0.01)
    depth = max(expression[: i + 1].count("(") - expression[: i + 1].count(")") for i in range(len(expression)))
    assert expression.count("lt(") == 500 and depth <= 4
    assert max(len(group.split("+")) for group in expression.split("(lt")) <= stills.EXPRESSION_GROUP + 1


def _samples(sizes: list[int], keys: set[int]) -> list[VideoSample]:
    return [VideoSample(i / 10, size, i in keys) for i, size in enumerate(sizes)]


def test_still_runs_are_tiny_frames_broken_at_keyframes_and_joined_when_the_picture_continues() -> None:
    sizes = [5000] + [20] * 9 + [5000] + [20] * 9 + [5000, 4000, 3000]
    runs = qc.still_runs(_samples(sizes, {0, 10, 20}), 0.1, tiny=100)
    assert [(r.start, round(r.end, 3)) for r in runs] == [(0.0, 1.0), (1.0, 2.0)]
    same = bytes(100)
    assert [round(r.last, 3) for r in runs] == [0.6, 1.6]  # compared: the first frame past 0.5 s
    joined = qc.confirmed_runs(runs, {0.0: same, 0.6: same, 1.0: same, 1.6: same}, 0.1)
    assert [(r.start, round(r.end, 3)) for r in joined] == [(0.0, 2.0)]
    other = bytes([50]) * 100
    apart = qc.confirmed_runs(runs, {0.0: same, 0.6: same, 1.0: other, 1.6: other}, 0.1)
    assert len(apart) == 2
    moving = qc.confirmed_runs(runs, {0.0: same, 0.6: other, 1.0: other, 1.6: same}, 0.1)
    assert moving == []


def _levels(amplitude_at: Any, seconds: float) -> roles.Levels:
    rate = roles.LEVEL_RATE
    samples = array("f", (amplitude_at(i / rate) * math.sin(i * 0.7) for i in range(int(seconds * rate))))
    return roles.Levels(rate=rate, samples=samples, peaks=array("f", [0.5] * int(seconds / roles.PEAK_WINDOW_S)))


def test_speech_over_music_by_6_db_or_more_is_clean_and_less_is_a_finding() -> None:
    spec = parse_spec(
        json.dumps(
            {
                "version": 1,
                "project_id": "p",
                "scene_id": "s",
                "segments": [{"id": "a", "url": "v.mp4"}],
                "audio": {"clips": [{"type": "dialogue", "url": "d.wav", "start": 1.0}]},
            }
        )
    )
    timeline = build_timeline(spec, {"v.mp4": video("v.mp4", seconds=4), "d.wav": sound("d.wav", seconds=1.0)})
    speech = _levels(lambda t: 0.3 if 1.0 <= t < 2.0 else 0.0, 4.0)
    output = _levels(lambda t: 0.3, 4.0)
    for music_amplitude, flagged in ((0.1, False), (0.2, True)):  # 9.5 dB and 3.5 dB under the speech
        music = _levels(lambda t, a=music_amplitude: a, 4.0)
        findings = qc.sound_findings(spec, timeline, [], output, speech, music)
        assert [f.check for f in findings] == (["dialogue_under_music"] if flagged else [])
    silent = qc.sound_findings(spec, timeline, [], output, _levels(lambda t: 0.0, 4.0), None)
    assert [(f.check, f.clip) for f in silent] == [("dialogue_silent", "audio.clips[0]")]


def _three_segments() -> Timeline:
    spec = parse_spec(
        json.dumps(
            {
                "version": 1,
                "project_id": "p",
                "scene_id": "s",
                "output": {"fps": 10},
                "segments": [{"id": n, "url": f"{n}.mp4"} for n in "abc"],
            }
        )
    )
    probes = {f"{n}.mp4": video(f"{n}.mp4", seconds=1.0, fps=Fraction(10)) for n in "abc"}
    return build_timeline(spec, probes)


def test_the_previous_segments_last_frame_is_decoded_only_where_it_decides_a_still_copy() -> None:
    # a moves; b and c are each still (tiny frames after their keyframes, 1 s each at 10 fps).
    timeline = _three_segments()
    sizes = [5000] * 10 + ([5000] + [20] * 9) * 2
    runs = qc.still_runs(_samples(sizes, {0, 10, 20}), 0.1, tiny=100)
    first = qc.frames_wanted(runs, timeline)
    assert sorted(round(t, 3) for t in first) == [1.0, 1.6, 2.0, 2.6]  # not the costly 0.9
    b, c = bytes([120]) * 100, bytes([200]) * 100
    frames = {t: (b if t < 1.95 else c) for t in first}
    # b starts after a moving segment: a's last frame (0.9) decides; c starts where b's
    # confirmed still ends: b's decoded frame is the picture before it.
    assert [round(t, 3) for t in qc.previous_frames_wanted(runs, frames, timeline)] == [0.9]
    frames[0.9] = b  # b is a still copy of a's last frame; c is frozen, but no copy of b
    findings = qc.picture_findings(runs, frames, timeline, (10, 10))
    assert [(f.check, f.segment_id) for f in findings] == [("still_copy", "b"), ("frozen_picture", "c")]
    # A run that is not confirmed (its picture changes slowly) asks for nothing more.
    moving = {t: bytes([int(t * 40)]) * 100 for t in first}
    assert qc.previous_frames_wanted(runs, moving, timeline) == []


class _GreyFrames:
    """Stands in for ffmpeg in ``grey_frames``: each input's frame filled with its seek time's tenths."""

    def __init__(self) -> None:
        self.inputs: list[int] = []

    def run(self, argv: list[str], **_: Any) -> str:
        seeks = [float(argv[i + 1]) for i, arg in enumerate(argv) if arg == "-ss"]
        self.inputs.append(len(seeks))
        size = stills.ANALYSIS_SIZE[0] * stills.ANALYSIS_SIZE[1]
        Path(argv[-1]).write_bytes(b"".join(bytes([round(s * 10) % 256]) * size for s in seeks))
        return ""


def test_frames_to_confirm_are_decoded_a_few_inputs_per_process(tmp_path: Path) -> None:
    # A scene of many still segments asks for hundreds of frames; one ffmpeg input each held
    # 4.2 GB in one process. Batched, each process holds a few, and every frame still lands.
    timeline = _three_segments()
    times = [round(0.1 * k + 0.05, 3) for k in range(20)]
    fake = _GreyFrames()
    frames = grey_frames(Path("out.mp4"), times, timeline, tmp_path / "g.grey", cast(FFmpegRunner, fake), False)
    assert max(fake.inputs) <= GREY_FRAMES_PER_PROCESS and sum(fake.inputs) == 20 and len(fake.inputs) > 1
    frame_s = 1 / float(timeline.fps)
    assert {t: frame[0] for t, frame in frames.items()} == {t: round((t - frame_s / 4) * 10) for t in times}
