"""Captions from the script: cue times from the timeline, wrapping, speakers, no overlaps, formats."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest

from scenerender.core.deliverables import caption_formats
from scenerender.core.deliverables.captions import Cue, build_cues, columns, to_ass, to_srt, to_vtt, wrap
from scenerender.core.spec import JobSpec, parse_spec
from scenerender.core.timeline import build_timeline
from scenerender.errors import SpecError
from tests.unit.fakes import sound, video

BASE: dict[str, Any] = {"version": 1, "project_id": "p", "scene_id": "s"}


def spec_of(**fields: Any) -> JobSpec:
    return parse_spec(json.dumps({**BASE, **fields}))


PROBES = {
    "v.mp4": video("v.mp4", seconds=4),
    "d1.wav": sound("d1.wav", seconds=1.0),
    "d2.wav": sound("d2.wav", seconds=0.5),
    "long.wav": sound("long.wav", seconds=3.0),
}


def test_cues_sit_where_the_timeline_places_the_clips_not_where_the_spec_says() -> None:
    spec = spec_of(
        segments=[{"id": "a", "url": "v.mp4"}, {"id": "b", "url": "v.mp4"}],
        audio={
            "clips": [
                # auto-sequenced in segment b: 4.0 and 4.0 + 1.0 (probed length) + 0.2
                {"type": "dialogue", "url": "d1.wav", "segment_id": "b", "text": "One.", "character": _ch("Ava")},
                {"type": "dialogue", "url": "d2.wav", "segment_id": "b", "text": "Two.", "character": _ch("Ben")},
                {"type": "narration", "url": "d1.wav", "start": 0.5, "trim_start": 0.25, "text": "Once upon."},
                {"type": "music", "url": "d1.wav", "loop": True},
            ]
        },
    )
    cues = build_cues(spec, build_timeline(spec, PROBES))
    assert times(cues) == pytest.approx([0.5, 1.25, 4.0, 5.0, 5.2, 5.7])
    assert [c.speaker for c in cues] == [None, "Ava", "Ben"]
    assert [c.clip_index for c in cues] == [2, 0, 1]


def test_a_looped_speech_clip_is_captioned_until_the_scene_end_and_a_cue_ends_where_the_next_begins() -> None:
    spec = spec_of(
        segments=[{"id": "a", "url": "v.mp4"}],
        audio={
            "clips": [
                {"type": "narration", "url": "d2.wav", "start": 3.0, "loop": True, "text": "Again and again."},
                {"type": "dialogue", "url": "long.wav", "start": 0.0, "text": "Overlapping."},
                {"type": "dialogue", "url": "d1.wav", "start": 2.0, "text": "Me too."},
            ]
        },
    )
    cues = build_cues(spec, build_timeline(spec, PROBES))
    assert times(cues) == pytest.approx([0.0, 2.0, 2.0, 3.0, 3.0, 4.0])
    assert all(a.end <= b.start for a, b in itertools.pairwise(cues))


def test_long_text_is_wrapped_at_42_columns_two_lines_a_cue_in_turn_over_the_clip() -> None:
    text = " ".join(["word"] * 40)  # 199 characters: six lines (the first leaves room for "Ava: ")
    spec = spec_of(
        segments=[{"id": "a", "url": "v.mp4"}],
        audio={"clips": [{"type": "dialogue", "url": "long.wav", "text": text, "character": _ch("Ava")}]},
    )
    cues = build_cues(spec, build_timeline(spec, PROBES))
    assert len(cues) == 3 and [len(c.lines) for c in cues] == [2, 2, 2]
    assert cues[0].start == 0.0 and cues[-1].end == pytest.approx(3.0)
    assert all(a.end == pytest.approx(b.start) for a, b in itertools.pairwise(cues))
    srt_lines = [line for line in to_srt(cues).splitlines() if line.startswith(("Ava", "word"))]
    assert srt_lines and all(columns(line) <= 42 for line in srt_lines)
    assert " ".join(line.removeprefix("Ava: ") for c in cues for line in c.lines) == text


def test_wrap_counts_wide_characters_twice_and_breaks_cjk_without_spaces() -> None:
    cjk = "你好世界" * 8  # 32 characters, 64 columns
    lines = wrap(cjk)
    assert lines == ["你好世界" * 5 + "你", "好世界" + "你好世界" * 2]
    assert all(columns(line) <= 42 for line in lines) and "".join(lines) == cjk
    assert wrap("a" * 50) == ["a" * 42, "a" * 8]
    assert wrap("שלום עולם, מה שלומך היום?") == ["שלום עולם, מה שלומך היום?"]


def test_formats_carry_the_speaker_and_escape_what_would_be_markup() -> None:
    spec = spec_of(
        segments=[{"id": "a", "url": "v.mp4"}],
        audio={
            "clips": [
                {"type": "dialogue", "url": "d1.wav", "start": 1.0, "text": "a <b> & {c}", "character": _ch("Ava")}
            ]
        },
    )
    cues = build_cues(spec, build_timeline(spec, PROBES))
    assert to_srt(cues) == "1\n00:00:01,000 --> 00:00:02,000\nAva: a <b> & {c}\n"
    assert to_vtt(cues) == "WEBVTT\n\n1\n00:00:01.000 --> 00:00:02.000\n<v Ava>a &lt;b&gt; &amp; {c}</v>\n"
    ass = to_ass(cues, 1280, 720)
    assert "Dialogue: 0,0:00:01.00,0:00:02.00,Default,,0,0,0,,Ava: a <b> & \uff5bc\uff5d" in ass
    assert "PlayResX: 1280" in ass and "PlayResY: 720" in ass


def test_default_formats_and_sidecar_errors() -> None:
    with_text = {"type": "dialogue", "url": "d1.wav", "text": "Hi."}
    segs = [{"id": "a", "url": "v.mp4"}]
    assert caption_formats(spec_of(segments=segs, audio={"clips": [with_text]})) == ["vtt", "srt"]
    assert caption_formats(spec_of(segments=segs)) == []
    assert caption_formats(spec_of(segments=segs, output={"captions": "srt"}, audio={"clips": [with_text]})) == ["srt"]
    with pytest.raises(SpecError) as info:
        spec_of(segments=segs, output={"captions": "vtt", "burn_captions": True})
    assert [d.path for d in info.value.details] == ["output.captions", "output.burn_captions"]
    with pytest.raises(SpecError) as info:
        spec_of(segments=segs, qc={"fail_on": ["blurry"]})
    assert info.value.details[0].path == "qc.fail_on[0]"


def times(cues: list[Cue]) -> list[float]:
    return [t for cue in cues for t in (cue.start, cue.end)]


def _ch(name: str) -> dict[str, str]:
    return {"id": name.lower(), "name": name}
