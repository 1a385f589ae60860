"""The pure parts of the sidecars: poster rule, sheet layout, still runs, level checks."""

from __future__ import annotations

import json
import math
import random
from array import array
from fractions import Fraction
from pathlib import Path
from typing import Any

from scenerender.core.deliverables import qc, roles, stills
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


QC_PIXELS = stills.QC_SIZE[0] * stills.QC_SIZE[1]


def _picture(seed: int) -> bytes:
    """A busy grey picture of the report's size."""
    rng = random.Random(seed)
    return bytes(rng.randrange(40, 220) for _ in range(QC_PIXELS))


def _grain(picture: bytes, seed: int, strength: int = 6) -> bytes:
    """``picture`` with temporal noise (what is left of film grain after the area scaling)."""
    rng = random.Random(seed)
    return bytes(min(255, max(0, v + rng.randint(-strength, strength))) for v in picture)


def _frames(pictures: list[bytes], fps: int = 10) -> list[qc.Frame]:
    return [qc.Frame(i / fps, picture) for i, picture in enumerate(pictures)]


def test_one_picture_is_told_from_a_moving_one_through_grain_by_the_pixels_that_change() -> None:
    base = _picture(1)
    assert qc.same_picture(base, _grain(base, 2, strength=12))  # grain moves every pixel a little
    moved = bytearray(base)
    for i in range(40):  # a small thing moving over a still background: a few pixels, a lot
        moved[1000 + i] = (moved[1000 + i] + 128) % 256
    assert not qc.same_picture(base, bytes(moved))
    assert qc.changed_pixels(base, _picture(3)) > qc.CHANGED_PIXELS  # another picture


def test_grainy_still_black_and_copied_segments_are_found_and_a_grainy_moving_one_is_not() -> None:
    # a moves (a new picture every frame, with grain); b is a still copy of a's last frame,
    # grainy; c is a grainy black. 10 fps, 1 s each; every frame decoded (no tiny frames).
    timeline = _three_segments()
    moving = [_grain(_picture(10 + i), i) for i in range(10)]
    still = [_grain(moving[-1], 100 + i) for i in range(10)]
    black = [_grain(bytes([16]) * QC_PIXELS, 200 + i, strength=4) for i in range(10)]
    frames = _frames(moving + still + black)
    samples = [VideoSample(i / 10, 5000, i % 10 == 0) for i in range(30)]
    findings = qc.picture_findings(frames, samples, timeline, stills.QC_SIZE)
    assert [(f.check, f.segment_id, f.start, round(f.end, 3)) for f in findings] == [
        ("still_copy", "b", 1.0, 2.0),
        ("black_picture", "c", 2.0, 3.0),
    ]
    clean = qc.picture_findings(_frames(moving * 3), samples, timeline, stills.QC_SIZE)
    assert clean == []


def test_a_still_runs_end_is_the_last_frame_the_sample_table_shows_repeating_it() -> None:
    # Only every third frame decoded (B-frames skipped): a still from 0.0 to 0.8 s, then motion.
    timeline = _three_segments()
    still, other = _picture(1), [_picture(50 + i) for i in range(30)]
    decoded = [(t, still if t < 0.75 else other[t_i]) for t_i, t in enumerate([0.0, 0.3, 0.6, 0.9, 1.2])]
    frames = [qc.Frame(t, picture) for t, picture in decoded]
    tiny = qc.tiny_frame_bytes(timeline.width, timeline.height)
    # The frames after 0.6 (0.7, 0.8) repeat it (tiny); 0.9 is where the picture moves on.
    samples = [VideoSample(i / 10, tiny if 1 <= i <= 8 and i % 3 else 5000, i % 10 == 0) for i in range(30)]
    runs = qc.still_runs(frames, samples, timeline)
    assert [(r.start, round(r.end, 3)) for r in runs] == [(0.0, 0.9)]
    grainy = [VideoSample(s.time_s, 5000, s.key) for s in samples]  # grain: no frame is tiny
    assert [round(r.end, 3) for r in qc.still_runs(frames, grainy, timeline)] == [0.7]
    for table, end in ((samples, 0.9), (grainy, 0.7)):
        found = qc.picture_findings(frames, table, timeline, stills.QC_SIZE)
        assert [(f.check, f.segment_id, f.start, round(f.end, 3)) for f in found] == [("frozen_picture", "a", 0.0, end)]


def test_the_stills_decode_keyframes_only_and_the_reports_frames_each_source_once_without_b_frames(
    tmp_path: Path,
) -> None:
    timeline = _three_segments()
    listing = tmp_path / "picture.ffconcat"
    argv, files = stills.picture_pass(
        stills.sources_input(listing), timeline, poster_times=[1.0], tile_times=[0.0, 1.0, 2.0], work=tmp_path
    )
    # Keyframes only, read from the sources joined (the copy path: before the output exists).
    assert argv[argv.index("-skip_frame") + 1] == "nokey" and argv[argv.index("-i") + 1] == str(listing)
    assert argv[argv.index("-f") + 1] == "concat"
    graph = files[tmp_path / "stills.filtergraph"]
    assert graph.startswith("[0:v]setpts=PTS-STARTPTS,split=2")  # times from the first frame shown
    sources = [tmp_path / "a.mp4", tmp_path / "b.mp4"]
    qc_argv = stills.qc_frames_command([stills.picture_input(p) for p in sources], tmp_path / "qc.grey")
    assert [qc_argv[i + 1] for i, a in enumerate(qc_argv) if a == "-skip_frame"] == ["bidir", "bidir"]
    assert [qc_argv[i + 1] for i, a in enumerate(qc_argv) if a == "-threads"] == ["1", "1"]
    log = "\n".join(
        f"[showinfo@i{i} @ 0x55] n:   {n} pts:  {n * 512} pts_time:{0.021 + n / 10:.6f} pos: 48 fmt:gray"
        for i in (0, 1)
        for n in range(3)
    )
    assert stills.parse_frame_times(log, 2) == [[0.021, 0.121, 0.221]] * 2
