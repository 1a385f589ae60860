"""Spec v1: every rule of CONTRACT.md section 1, each error located by its JSON path."""

from __future__ import annotations

import json
from typing import Any

import pytest

from scenerender.core.spec import default_job_id, json_schema, parse_spec
from scenerender.errors import SpecError

CONTRACT_EXAMPLE: dict[str, Any] = {
    "version": 1,
    "job_id": "scene-42-r3",
    "project_id": "p-7",
    "scene_id": "scene-42",
    "owner_uid": "firebase-uid-123",
    "batch_id": None,
    "output": {
        "resolution": "1080p",
        "fps": 30,
        "fit": "letterbox",
        "preview": False,
        "duration_policy": "video",
        "filename": "scene-42.mp4",
    },
    "segments": [
        {"id": "seg-1", "url": "gs://media/scene-42/seg-1.mp4", "trim_start": 0.0, "duration": 4.8, "volume": 0.0}
    ],
    "audio": {
        "tracks": {"narration": True, "dialogue": True, "music": True, "sfx": False},
        "clips": [
            {"type": "narration", "url": "gs://media/narr.mp3", "start": 0.0},
            {
                "type": "dialogue",
                "url": "gs://media/d1.wav",
                "segment_id": "seg-1",
                "offset": 0.25,
                "character": {"id": "c-1", "name": "Ava"},
                "text": "Where were you?",
            },
            {
                "type": "music",
                "url": "https://cdn.example.com/theme.mp3",
                "start": 0.0,
                "loop": True,
                "volume": 0.35,
                "fade_in": 1.0,
                "fade_out": 2.0,
            },
            {"type": "sfx", "url": "gs://media/door.wav", "start": 3.2, "volume": 0.8},
        ],
        "ducking": {"enabled": True, "music_db": -12, "attack": 0.2, "release": 0.5},
        "loudness": {"target_lufs": -14, "true_peak_db": -1.0},
    },
}


def minimal(**overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"version": 1, "project_id": "p", "scene_id": "s", "segments": [{"id": "a", "url": "a.mp4"}]}
    spec.update(overrides)
    return spec


def errors_of(raw: Any) -> list[str]:
    with pytest.raises(SpecError) as info:
        parse_spec(raw if isinstance(raw, (bytes, str)) else json.dumps(raw))
    assert info.value.exit_code == 2 and info.value.code == "INVALID_SPEC"
    return [str(d) for d in info.value.details]


def test_contract_example_parses_with_every_field() -> None:
    spec = parse_spec(json.dumps(CONTRACT_EXAMPLE))
    assert spec.audio.clips[1].character is not None and spec.audio.clips[1].character.name == "Ava"
    assert spec.audio.tracks.enabled("sfx") is False
    assert spec.output.size() == (1920, 1080)


def test_defaults_follow_the_contract() -> None:
    spec = parse_spec(json.dumps(minimal()))
    assert spec.output.resolution == "1080p" and spec.output.fit == "letterbox"
    assert spec.output.duration_policy == "video" and spec.output.fps is None
    assert spec.segments[0].volume == 0 and spec.segments[0].trim_start == 0
    assert spec.audio.ducking.enabled and spec.audio.ducking.music_db == -12
    assert spec.audio.loudness is not None and spec.audio.loudness.target_lufs == -14
    assert spec.audio.loudness.true_peak_db == -1.0


def test_unknown_field_is_an_error_at_its_path() -> None:
    bad = minimal(segments=[{"id": "a", "url": "a.mp4", "volumme": 1}])
    assert errors_of(bad) == ["segments[0].volumme: unknown field (did you mean `volume`?)"]


def test_every_problem_is_listed_with_its_path() -> None:
    bad = minimal(output={"resolution": "999p", "fit": "zoom"}, segments=[{"id": "-bad", "url": ""}])
    found = errors_of(bad)
    paths = {e.split(":")[0] for e in found}
    assert paths == {"output.resolution", "output.fit", "segments[0].id", "segments[0].url"}


def test_missing_segment_reference_is_named() -> None:
    bad = minimal(
        audio={
            "clips": [{"type": "sfx", "url": "x.wav", "start": 0}] * 3
            + [{"type": "dialogue", "url": "d.wav", "segment_id": "seg-9"}]
        }
    )
    assert errors_of(bad) == ['audio.clips[3].segment_id: no segment "seg-9"']


def test_duplicate_segment_id() -> None:
    bad = minimal(segments=[{"id": "a", "url": "1.mp4"}, {"id": "a", "url": "2.mp4"}])
    assert errors_of(bad) == ['segments[1].id: duplicate id "a" (also segments[0])']


@pytest.mark.parametrize(
    ("clip", "expected"),
    [
        ({"type": "sfx", "url": "x", "start": 1, "segment_id": "a"}, "audio.clips[0].start: give either start"),
        ({"type": "sfx", "url": "x", "offset": 1}, "audio.clips[0].offset: offset needs segment_id"),
        ({"type": "music", "url": "x", "text": "hi"}, "audio.clips[0].text: only narration and dialogue"),
        ({"type": "sfx", "url": "x", "duration": 1, "fade_in": 0.6, "fade_out": 0.6}, "audio.clips[0].fade_out"),
        ({"type": "sfx", "url": "x", "volume": 5}, "audio.clips[0].volume"),
        ({"type": "speech", "url": "x"}, "audio.clips[0].type"),
        ({"type": "sfx", "url": "x", "start": -1}, "audio.clips[0].start"),
    ],
)
def test_clip_rules(clip: dict[str, Any], expected: str) -> None:
    assert errors_of(minimal(audio={"clips": [clip]}))[0].startswith(expected)


@pytest.mark.parametrize(
    ("resolution", "size"),
    [
        ("360p", (640, 360)),
        ("480p", (854, 480)),
        ("720p", (1280, 720)),
        ("1080p", (1920, 1080)),
        ("1440p", (2560, 1440)),
        ("2160p", (3840, 2160)),
        ("1080x1920", (1080, 1920)),
    ],
)
def test_resolutions(resolution: str, size: tuple[int, int]) -> None:
    assert parse_spec(json.dumps(minimal(output={"resolution": resolution}))).output.size() == size


@pytest.mark.parametrize("resolution", ["1081x720", "8x8", "5000x1000", "hd", "720"])
def test_bad_resolutions(resolution: str) -> None:
    assert errors_of(minimal(output={"resolution": resolution}))[0].startswith("output.resolution:")


def test_preview_is_capped_at_480p_keeping_shape() -> None:
    spec = parse_spec(json.dumps(minimal(output={"resolution": "2160p", "preview": True})))
    assert spec.output.size() == (854, 480)
    portrait = parse_spec(json.dumps(minimal(output={"resolution": "1080x1920", "preview": True})))
    assert portrait.output.size() == (270, 480)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"\xff\xfe not utf8", "spec is not UTF-8"),
        (b"{not json", "spec is not valid JSON"),
        (b"[1, 2]", "spec must be a JSON object"),
        (b'{"version": 1, "x": NaN}', "spec is not valid JSON"),
        (b" " * (1024 * 1024 + 1), "spec is 1048577 bytes"),
        (b"[" * 100_000 + b"]" * 100_000, "spec is not valid JSON"),
    ],
)
def test_unreadable_specs(raw: bytes, expected: str) -> None:
    assert errors_of(raw)[0].startswith(expected)


def test_types_are_strict() -> None:
    found = errors_of(minimal(version="1", segments=[{"id": "a", "url": "a.mp4", "volume": True}]))
    assert {e.split(":")[0] for e in found} == {"version", "segments[0].volume"}


def test_segment_count_limits() -> None:
    assert errors_of(minimal(segments=[]))[0].startswith("segments:")
    many = [{"id": f"s{i}", "url": "a.mp4"} for i in range(501)]
    assert errors_of(minimal(segments=many))[0].startswith("segments:")


def test_default_job_id_from_names() -> None:
    assert default_job_id("jobs/Scene 42 (final).json") == "Scene-42-final"
    assert default_job_id("/tmp/x/job_spec.json") == "job_spec"
    assert default_job_id("???.json") == "job"


def test_schema_describes_v1() -> None:
    schema = json_schema()
    assert set(schema["required"]) == {"version", "project_id", "scene_id", "segments"}
    assert schema["additionalProperties"] is False
    json.dumps(schema)


def test_inputs_are_listed_with_their_paths_and_muted_tracks_only_on_request() -> None:
    spec = parse_spec(
        {
            "version": 1,
            "project_id": "p",
            "scene_id": "s",
            "segments": [{"id": "a", "url": "a.mp4"}, {"id": "b", "url": "gs://m/b.mp4"}],
            "audio": {
                "tracks": {"music": False},
                "clips": [{"type": "music", "url": "bed.wav"}, {"type": "dialogue", "url": "line.wav"}],
            },
        }
    )
    assert spec.inputs() == [
        ("segments[0].url", "a.mp4"),
        ("segments[1].url", "gs://m/b.mp4"),
        ("audio.clips[0].url", "bed.wav"),
        ("audio.clips[1].url", "line.wav"),
    ]
    # What the render fetches: the muted music is not among them.
    assert ("audio.clips[0].url", "bed.wav") not in spec.inputs(muted_tracks=False)
    assert len(spec.inputs(muted_tracks=False)) == 3


def test_unknown_fields_get_the_nearest_known_name_at_their_own_level() -> None:
    bad = minimal(output={"resolutoin": "720p"}, audio={"clips": [{"type": "sfx", "url": "x.wav", "strat": 1}]})
    assert errors_of(bad) == [
        "output.resolutoin: unknown field (did you mean `resolution`?)",
        "audio.clips[0].strat: unknown field (did you mean `start`?)",
    ]
    assert errors_of(minimal(zzzz=1)) == ["zzzz: unknown field"]


def test_type_and_cross_reference_errors_come_in_one_round() -> None:
    bad = minimal(
        segments=[{"id": "a", "url": "a.mp4", "volume": "loud"}, {"id": "a", "url": "b.mp4"}],
        audio={"clips": [{"type": "dialogue", "url": "d.wav", "segment_id": "seg-9", "offset": "x"}]},
    )
    assert errors_of(bad) == [
        "segments[0].volume: Input should be a valid number",
        "audio.clips[0].offset: Input should be a valid number",
        'segments[1].id: duplicate id "a" (also segments[0])',
        'audio.clips[0].segment_id: no segment "seg-9"',
    ]


def test_a_byte_order_mark_is_accepted() -> None:
    assert parse_spec(b"\xef\xbb\xbf" + json.dumps(minimal()).encode()).scene_id == "s"


def test_duplicate_keys_are_refused_with_their_path() -> None:
    raw = (
        '{"version": 1, "project_id": "p", "scene_id": "s", "scene_id": "t",'
        ' "segments": [{"id": "a", "url": "a.mp4", "url": "b.mp4"}]}'
    )
    assert errors_of(raw) == [
        "scene_id: key given more than once (JSON keeps only one: which one you meant is unclear)",
        "segments[0].url: key given more than once (JSON keeps only one: which one you meant is unclear)",
    ]


def test_repaired_spec_leaves_out_only_the_fields_with_problems() -> None:
    from scenerender.core.spec import repaired_spec

    bad = minimal(output={"resolution": "720p", "colour": 1}, segments=[{"id": "a", "url": "a.mp4", "volume": "x"}])
    spec = repaired_spec(bad)
    assert spec is not None and spec.output.resolution == "720p" and spec.segments[0].volume == 0.0
    assert repaired_spec(minimal(segments=[{"id": "a"}])) is None  # a required field cannot be left out
