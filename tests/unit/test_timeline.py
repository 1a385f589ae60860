"""Where everything sits: frame-exact segment boundaries, dialogue placement, loops, policies."""

from __future__ import annotations

import json
from dataclasses import replace
from fractions import Fraction
from typing import Any

import pytest

from scenerender.core.probe import MediaInfo
from scenerender.core.spec import parse_spec
from scenerender.core.timeline import Timeline, build_timeline
from scenerender.errors import InputMediaError, SpecError
from tests.unit.fakes import sound, video


def timeline(spec: dict[str, Any], probes: dict[str, MediaInfo]) -> Timeline:
    base: dict[str, Any] = {"version": 1, "project_id": "p", "scene_id": "s"}
    return build_timeline(parse_spec(json.dumps({**base, **spec})), probes)


def test_segments_start_on_output_frames_without_drift() -> None:
    # 100 segments of 1.01 s at 30 fps: each rounds to 30 frames, boundaries stay on frames.
    segs = [{"id": f"s{i}", "url": "v.mp4", "duration": 1.01} for i in range(100)]
    tl = timeline({"segments": segs}, {"v.mp4": video("v.mp4", seconds=5)})
    assert [s.frames for s in tl.segments] == [30] * 100
    assert tl.segments[99].start == Fraction(99)
    assert tl.duration == Fraction(100)


def test_fps_defaults_to_first_segment_and_ntsc_decimals_are_exact() -> None:
    probes = {"v.mp4": video("v.mp4", fps=Fraction(30000, 1001))}
    assert timeline({"segments": [{"id": "a", "url": "v.mp4"}]}, probes).fps == Fraction(30000, 1001)
    tl = timeline({"output": {"fps": 29.97}, "segments": [{"id": "a", "url": "v.mp4"}]}, probes)
    assert tl.fps == Fraction(30000, 1001)


def test_dialogue_by_segment_offset_and_automatic_sequence() -> None:
    probes = {
        "v.mp4": video("v.mp4", seconds=4),
        "d1.wav": sound("d1.wav", seconds=1.0),
        "d2.wav": sound("d2.wav", seconds=0.5),
        "d3.wav": sound("d3.wav", seconds=0.3),
    }
    spec = {
        "segments": [{"id": "a", "url": "v.mp4"}, {"id": "b", "url": "v.mp4"}],
        "audio": {
            "clips": [
                {"type": "dialogue", "url": "d1.wav", "segment_id": "b"},
                {"type": "dialogue", "url": "d2.wav", "segment_id": "b"},
                {"type": "dialogue", "url": "d3.wav", "segment_id": "b", "offset": 0.25},
                {"type": "sfx", "url": "d3.wav", "start": 1.5},
                {"type": "narration", "url": "d3.wav"},
            ]
        },
    }
    starts = [c.start for c in timeline(spec, probes).clips]
    assert starts == pytest.approx([4.0, 5.2, 4.25, 1.5, 0.0])


def test_clip_past_the_scene_end_is_a_located_error() -> None:
    probes = {"v.mp4": video("v.mp4", seconds=2), "d.wav": sound("d.wav")}
    spec = {
        "segments": [{"id": "a", "url": "v.mp4"}],
        "audio": {"clips": [{"type": "sfx", "url": "d.wav", "start": 2.5}]},
    }
    with pytest.raises(SpecError) as info:
        timeline(spec, probes)
    assert str(info.value.details[0]).startswith("audio.clips[0].start: starts at 2.500 s")
    spec["audio"] = {"clips": [{"type": "dialogue", "url": "d.wav", "segment_id": "a", "offset": 3}]}
    with pytest.raises(SpecError, match=r"audio.clips\[0\].offset"):
        timeline(spec, probes)


def test_duration_longer_than_source_is_an_error_never_a_silent_fix() -> None:
    probes = {"v.mp4": video("v.mp4", seconds=2), "d.wav": sound("d.wav", seconds=1)}
    with pytest.raises(SpecError, match=r"segments\[0\]\.duration: 3 s is longer than the source"):
        timeline({"segments": [{"id": "a", "url": "v.mp4", "duration": 3}]}, probes)
    with pytest.raises(SpecError, match=r"segments\[0\]\.trim_start: 2.5 s is past the end"):
        timeline({"segments": [{"id": "a", "url": "v.mp4", "trim_start": 2.5}]}, probes)
    with pytest.raises(SpecError, match=r"audio\.clips\[0\]\.duration"):
        timeline(
            {
                "segments": [{"id": "a", "url": "v.mp4"}],
                "audio": {"clips": [{"type": "sfx", "url": "d.wav", "duration": 1.5}]},
            },
            probes,
        )


def test_audio_length_comes_from_the_file() -> None:
    probes = {"v.mp4": video("v.mp4", seconds=6), "d.wav": sound("d.wav", seconds=1.37)}
    tl = timeline(
        {
            "segments": [{"id": "a", "url": "v.mp4"}],
            "audio": {"clips": [{"type": "sfx", "url": "d.wav", "start": 1, "trim_start": 0.2}]},
        },
        probes,
    )
    assert tl.clips[0].length == pytest.approx(1.17) and tl.clips[0].end == pytest.approx(2.17)


def test_segment_without_video_and_clip_without_audio_name_the_input() -> None:
    with pytest.raises(InputMediaError, match=r"segments\[0\]\.url.*no video stream"):
        timeline({"segments": [{"id": "a", "url": "d.wav"}]}, {"d.wav": sound("d.wav")})
    with pytest.raises(InputMediaError, match=r"audio\.clips\[0\]\.url.*no audio stream"):
        timeline(
            {"segments": [{"id": "a", "url": "v.mp4"}], "audio": {"clips": [{"type": "sfx", "url": "m.mp4"}]}},
            {"v.mp4": video("v.mp4"), "m.mp4": video("m.mp4", audio=False)},
        )


def test_loops_run_to_the_scene_end_and_overruns_are_reported() -> None:
    probes = {
        "v.mp4": video("v.mp4", seconds=3),
        "m.wav": sound("m.wav", seconds=1),
        "n.wav": sound("n.wav", seconds=2),
    }
    tl = timeline(
        {
            "segments": [{"id": "a", "url": "v.mp4"}],
            "audio": {
                "clips": [
                    {"type": "music", "url": "m.wav", "loop": True},
                    {"type": "narration", "url": "n.wav", "start": 2},
                ]
            },
        },
        probes,
    )
    assert tl.clips[0].end == pytest.approx(3.0)
    assert tl.overruns == (1,)
    assert tl.speech == ((2.0, 3.0),)


def test_longest_policy_holds_the_last_frame_until_audio_ends() -> None:
    probes = {"v.mp4": video("v.mp4", seconds=3), "n.wav": sound("n.wav", seconds=2)}
    tl = timeline(
        {
            "output": {"duration_policy": "longest"},
            "segments": [{"id": "a", "url": "v.mp4"}],
            "audio": {"clips": [{"type": "narration", "url": "n.wav", "start": 2.51}]},
        },
        probes,
    )
    assert tl.hold_frames == 46  # 1.51 s at 30 fps, rounded up
    assert tl.duration == Fraction(136, 30) and not tl.overruns


def test_disabled_tracks_are_left_out_and_overlaps_are_found() -> None:
    probes = {"v.mp4": video("v.mp4", seconds=5), "d.wav": sound("d.wav", seconds=1)}
    tl = timeline(
        {
            "segments": [{"id": "a", "url": "v.mp4"}],
            "audio": {
                "tracks": {"sfx": False},
                "clips": [
                    {"type": "sfx", "url": "d.wav"},
                    {"type": "dialogue", "url": "d.wav", "start": 1},
                    {"type": "narration", "url": "d.wav", "start": 1.5},
                ],
            },
        },
        probes,
    )
    assert [c.index for c in tl.clips] == [1, 2]
    assert tl.overlaps == ((1, 2),)
    assert tl.speech == ((1.0, 2.5),)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (Fraction(49050000, 1796977), Fraction(25)),  # a variable-rate phone clip's average (27.3)
        (Fraction(24), Fraction(24)),
        (Fraction(2997, 100), Fraction(30000, 1001)),
        (Fraction(23976, 1000), Fraction(24000, 1001)),
        (Fraction(5994, 100), Fraction(60000, 1001)),
        (Fraction(48), Fraction(50)),
        (Fraction(10), Fraction(24000, 1001)),  # an animated GIF's
        (Fraction(120), Fraction(60)),
    ],
)
def test_without_output_fps_the_rate_is_the_standard_one_nearest_the_first_segment(
    source: Fraction, expected: Fraction
) -> None:
    probes = {"v.mp4": video("v.mp4", fps=source)}
    assert timeline({"segments": [{"id": "a", "url": "v.mp4"}]}, probes).fps == expected


def test_a_looped_adts_clip_needs_its_loop_length_given() -> None:
    # ADTS states no length to the sample: a loop of its decoded frames repeats the padding.
    probes = {"v.mp4": video("v.mp4", seconds=4), "m.aac": replace(sound("m.aac"), format_name="aac")}
    clip: dict[str, Any] = {"type": "music", "url": "m.aac", "loop": True}
    spec = {"segments": [{"id": "a", "url": "v.mp4"}], "audio": {"clips": [clip]}}
    with pytest.raises(SpecError, match=r"audio.clips\[0\].loop: AAC in ADTS"):
        timeline(spec, probes)
    clip["duration"] = 0.5
    assert timeline(spec, probes).clips[0].length == 0.5
