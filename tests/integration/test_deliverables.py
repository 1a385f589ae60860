"""Sidecars of `scenerender render` (docs/deliverables.md), measured on real outputs of generated scenes."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests import measure
from tests.cli import render_json
from tests.mediagen import make_spoken_line, make_video

pytestmark = pytest.mark.integration

ONSET_TOLERANCE_S = 0.020


def write_spec(folder: Path, name: str, **fields: Any) -> Path:
    path = folder / name
    path.write_text(json.dumps({"version": 1, "project_id": "p", "scene_id": "s", **fields}, ensure_ascii=False))
    return path


_STAMP = r"(\d\d):(\d\d):(\d\d)[.,](\d\d\d)"
_TIMING = re.compile(rf"^{_STAMP} --> {_STAMP}$", re.M)


def cue_times(text: str) -> list[tuple[float, float]]:
    def seconds(h: str, m: str, s: str, ms: str) -> float:
        return int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000

    return [(seconds(*found.groups()[:4]), seconds(*found.groups()[4:])) for found in _TIMING.finditer(text)]


@pytest.fixture(scope="module")
def speech_scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three 3 s segments; narration trimmed into its file, two auto-sequenced lines, a looped line."""
    folder = tmp_path_factory.mktemp("speech")
    for name in ("a", "b", "c"):
        make_video(folder / f"{name}.mp4", width=640, height=360, fps=30, duration=3.0, audio=False)
    make_spoken_line(folder / "narration.wav", "Long ago, in a quiet town.", lead_silence=0.3)
    make_spoken_line(folder / "ava.wav", "Where were you?")
    make_spoken_line(folder / "ben.wav", "Out.")
    make_spoken_line(folder / "loop.wav", "Again.")
    ava, ben = {"id": "ava", "name": "Ava"}, {"id": "ben", "name": "בן"}
    write_spec(
        folder,
        "speech.json",
        output={"resolution": "640x360"},
        segments=[{"id": n, "url": f"{n}.mp4"} for n in "abc"],
        audio={
            "clips": [
                {"type": "narration", "url": "narration.wav", "start": 0.4, "trim_start": 0.3, "text": "Long ago."},
                {"type": "dialogue", "url": "ava.wav", "segment_id": "b", "character": ava, "text": "Where were you?"},
                {"type": "dialogue", "url": "ben.wav", "segment_id": "b", "character": ben, "text": "בחוץ. 外面。"},
                {"type": "dialogue", "url": "loop.wav", "start": 7.3, "loop": True, "text": "Again."},
            ]
        },
    )
    return folder


def test_caption_cues_start_where_the_spoken_clips_start_in_the_output(speech_scene: Path, tmp_path: Path) -> None:
    out = tmp_path / "speech.mp4"
    result = render_json(speech_scene / "speech.json", out)
    assert result["sidecars"] == {"vtt": "speech.vtt", "srt": "speech.srt"}
    vtt = (tmp_path / "speech.vtt").read_text(encoding="utf-8")
    srt = (tmp_path / "speech.srt").read_text(encoding="utf-8")
    cues = cue_times(vtt)
    assert cues == cue_times(srt) and len(cues) == 4
    samples = measure.decode_audio(out)
    ends = [cue[0] for cue in cues[1:]] + [cues[-1][1]]
    for (start, _), limit in zip(cues, ends, strict=True):
        onset = measure.sound_onset(samples, after=max(0.0, start - 0.25), before=limit)
        assert abs(onset - start) <= ONSET_TOLERANCE_S, (start, onset)
    # Trimmed narration at 0.4; Ava auto-sequenced at segment b's start; Ben after her probed
    # length + 0.2 s; the looped line from 7.3 s to the scene's end.
    assert cues[0][0] == pytest.approx(0.4, abs=0.001) and cues[1][0] == pytest.approx(3.0, abs=0.001)
    assert cues[2][0] == pytest.approx(cues[1][1] + 0.2, abs=0.002)
    assert cues[3] == pytest.approx((7.3, 9.0), abs=0.001)
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(cues))
    assert "<v Ava>Where were you?</v>" in vtt and "Ava: Where were you?" in srt
    assert "<v בן>בחוץ. 外面。</v>" in vtt and "בן: בחוץ. 外面。" in srt
