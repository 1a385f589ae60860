"""Sidecars of `scenerender render` (docs/deliverables.md), measured on real outputs of generated scenes."""

from __future__ import annotations

import itertools
import json
import logging
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from scenerender.cli.local import local_policy
from scenerender.cli.specfiles import load_spec
from scenerender.core.deliverables import qc
from scenerender.core.deliverables.captions import Cue, to_ass
from scenerender.core.inputs import InputResolver
from scenerender.core.mp4 import video_samples
from scenerender.core.render import RenderOptions, render
from scenerender.settings import Settings
from tests import measure
from tests.cli import render_json
from tests.measure import Samples
from tests.mediagen import (
    make_clicks,
    make_silence,
    make_spoken_line,
    make_still_of_last_frame,
    make_tone_burst,
    make_video,
    pad_audio,
)

pytestmark = pytest.mark.integration

ONSET_TOLERANCE_S = 0.020
BASE_KEYS = ("version", "project_id", "scene_id")


def run_render(spec: Path, out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scenerender", "render", str(spec), "-o", str(out), "--json"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={**os.environ, "SCENERENDER_SEGMENT_CACHE": "false"},
    )


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
    assert {k: v for k, v in result["sidecars"].items() if k in ("vtt", "srt")} == {
        "vtt": "speech.vtt",
        "srt": "speech.srt",
    }
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


def test_a_clean_scene_has_no_quality_findings(speech_scene: Path, tmp_path: Path) -> None:
    result = render_json(speech_scene / "speech.json", tmp_path / "clean.mp4")
    assert result["qc"]["findings"] == [] and result["qc"]["failed"] is False
    assert result["qc"]["checks"] == list(qc.CHECKS)


def test_a_clean_scene_with_every_ingredient_has_no_quality_findings(tmp_path: Path) -> None:
    """What a director would call clean: moving pictures (one grainy), narration and dialogue
    with their text, music looped under them (ducked by default), an effect, the segments'
    own sound, loudness-normalised; every check runs and none finds anything."""
    make_video(tmp_path / "a.mp4", width=640, height=360, fps=30, duration=3.0)
    make_video(tmp_path / "b.mp4", width=640, height=360, fps=30, duration=3.0, pattern="testsrc", grain=8)
    make_video(tmp_path / "c.mp4", width=640, height=360, fps=30, duration=3.0, tone=440.0)
    make_spoken_line(tmp_path / "told.wav", "Long ago, in a quiet town.")
    make_spoken_line(tmp_path / "ava.wav", "Where were you?")
    make_spoken_line(tmp_path / "ben.wav", "Out.")
    make_tone_burst(tmp_path / "bed.wav", freq=220, duration=2.0, amplitude=0.1, channels=2)
    make_tone_burst(tmp_path / "door.wav", freq=900, duration=0.3, amplitude=0.5)
    spec = write_spec(
        tmp_path,
        "clean.json",
        output={"resolution": "640x360"},
        segments=[{"id": n, "url": f"{n}.mp4", "volume": 0.3} for n in "abc"],
        audio={
            "clips": [
                {"type": "narration", "url": "told.wav", "start": 0.3, "text": "Long ago, in a quiet town."},
                {"type": "dialogue", "url": "ava.wav", "segment_id": "b", "text": "Where were you?"},
                {"type": "dialogue", "url": "ben.wav", "segment_id": "b", "text": "Out."},
                {"type": "music", "url": "bed.wav", "loop": True},
                {"type": "sfx", "url": "door.wav", "start": 7.0},
            ]
        },
    )
    result = render_json(spec, tmp_path / "clean.mp4")
    assert result["qc"]["findings"] == [] and result["qc"]["failed"] is False, result["qc"]["findings"]
    assert result["qc"]["checks"] == list(qc.CHECKS)  # the report names every check it made


@pytest.fixture(scope="module")
def flawed_scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six 2 s segments and clips, each flaw in its own place:

    s1 black; s3 the last frame of s2, held; s4 a still picture; dialogue 0 with 1.5 s of
    silence after its words (its caption runs on); dialogue 1 silent; dialogue 2 under loud
    music; a loud effect that clips in s5. Levels as mixed (loudness null).
    """
    folder = tmp_path_factory.mktemp("flawed")
    make_video(folder / "s0.mp4", width=640, height=360, fps=30, duration=2.0, audio=False)
    make_video(folder / "s1.mp4", width=640, height=360, fps=30, duration=2.0, audio=False, pattern="color")
    make_video(folder / "s2.mp4", width=640, height=360, fps=30, duration=2.0, audio=False, grain=8)
    make_still_of_last_frame(folder / "s2.mp4", folder / "s3.mp4", duration=2.0)
    make_video(folder / "s4.mp4", width=640, height=360, fps=30, duration=2.0, audio=False, pattern="smptebars")
    make_video(folder / "s5.mp4", width=640, height=360, fps=30, duration=2.0, audio=False)
    make_spoken_line(folder / "line.wav", "Where were you?")
    pad_audio(folder / "line.wav", folder / "tail.wav", trailing=1.5)
    make_silence(folder / "silent.wav", duration=1.0)
    make_spoken_line(folder / "under.wav", "Can you hear me?")
    make_tone_burst(folder / "music.wav", freq=220, duration=2.0, amplitude=0.3, channels=2)
    make_tone_burst(folder / "bang.wav", freq=500, duration=0.5, amplitude=0.9)
    write_spec(
        folder,
        "flawed.json",
        output={"resolution": "640x360"},
        segments=[{"id": f"s{i}", "url": f"s{i}.mp4"} for i in range(6)],
        audio={
            "clips": [
                {"type": "dialogue", "url": "tail.wav", "start": 0.2, "text": "Where were you?"},
                {"type": "dialogue", "url": "silent.wav", "start": 4.2, "text": "..."},
                {"type": "dialogue", "url": "under.wav", "start": 8.3, "text": "Can you hear me?"},
                {"type": "music", "url": "music.wav", "start": 8.0, "volume": 2.0},
                {"type": "sfx", "url": "bang.wav", "start": 10.5, "volume": 3.0},
            ],
            "ducking": {"enabled": False},
            "loudness": None,
        },
    )
    return folder


def test_each_flaw_is_found_where_it_is_with_what_caused_it(flawed_scene: Path, tmp_path: Path) -> None:
    result = render_json(flawed_scene / "flawed.json", tmp_path / "flawed.mp4")
    found = {(f["check"], f["segment_id"], f["clip"]): f for f in result["qc"]["findings"]}
    assert set(found) == {
        ("caption_overrun", "s0", "audio.clips[0]"),
        ("black_picture", "s1", None),
        ("dialogue_silent", "s2", "audio.clips[1]"),
        ("still_copy", "s3", None),
        ("frozen_picture", "s4", None),
        ("dialogue_under_music", "s4", "audio.clips[2]"),
        ("clipping", "s5", "audio.clips[4]"),
    }, result["qc"]["findings"]
    assert all(f["severity"] == "warning" for f in found.values()) and result["qc"]["failed"] is False

    def span(check: str) -> tuple[float, float]:
        f = next(f for f in found.values() if f["check"] == check)
        return f["start_s"], f["end_s"]

    assert span("black_picture") == pytest.approx((2.0, 4.0), abs=0.04)
    assert span("still_copy") == pytest.approx((6.0, 8.0), abs=0.04)
    assert span("frozen_picture") == pytest.approx((8.0, 10.0), abs=0.04)
    assert span("dialogue_silent") == pytest.approx((4.2, 5.2), abs=0.01)
    clip_start, clip_end = span("clipping")
    assert clip_start >= 10.45 and clip_end <= 11.05
    voice_end, cue_end = span("caption_overrun")
    assert 1.45 <= cue_end - voice_end <= 2.1  # the 1.5 s added, and espeak-ng's own short tail


@pytest.mark.parametrize("path", ["copied", "normalised"])
def test_grainy_black_and_grainy_still_pictures_are_found_and_grainy_motion_is_not(path: str, tmp_path: Path) -> None:
    """Generators' black and frozen stretches carry grain too (noise=alls=8:allf=t): every frame
    is large and changes a little, yet the picture is black or still; a grainy moving
    picture is not. On the copy path (the sources' frames) and the normalising one (the output's)."""
    size: dict[str, Any] = {"width": 640, "height": 360, "fps": 30, "duration": 2.0, "audio": False, "grain": 8}
    make_video(tmp_path / "moving.mp4", **size)
    make_video(tmp_path / "black.mp4", **size, pattern="color")
    make_video(tmp_path / "still.mp4", **size, pattern="smptebars")
    make_video(tmp_path / "other.mp4", **size, pattern="testsrc")
    output = {"resolution": "640x360" if path == "copied" else "480x270"}
    names = ("moving", "black", "still", "other")
    spec = write_spec(tmp_path, "grain.json", output=output, segments=[{"id": n, "url": f"{n}.mp4"} for n in names])
    result = render_json(spec, tmp_path / "grain.mp4")
    assert result["fast_path"] is (path == "copied")
    found = {(f["check"], f["segment_id"]): (f["start_s"], f["end_s"]) for f in result["qc"]["findings"]}
    assert set(found) == {("black_picture", "black"), ("frozen_picture", "still")}, result["qc"]["findings"]
    # Its first frame is a keyframe and its last a P-frame, both decoded: the spans are exact.
    assert found[("black_picture", "black")] == pytest.approx((2.0, 4.0), abs=0.04)
    assert found[("frozen_picture", "still")] == pytest.approx((4.0, 6.0), abs=0.04)
    spec = write_spec(
        tmp_path, "motion.json", output=output, segments=[{"id": n, "url": f"{n}.mp4"} for n in ("moving", "other")]
    )
    assert render_json(spec, tmp_path / "motion.mp4")["qc"]["findings"] == []


def test_the_copy_paths_early_reads_match_the_output_and_silence_is_found_from_the_mix(tmp_path: Path) -> None:
    """On the copy path the sidecars read the sources before the output exists: its sample
    table is theirs, each segment's from its start (what ``source_samples`` assumes). Its
    audio is not decoded when it cannot clip: a silent line is found in the mix's levels at
    the gain the output took (loudness normalised, true peak under 0 dBTP)."""
    make_video(tmp_path / "a.mp4", width=640, height=360, fps=30, duration=2.0, audio=False)
    make_video(tmp_path / "b.mp4", width=640, height=360, fps=30, duration=2.0, audio=False, pattern="testsrc")
    make_spoken_line(tmp_path / "line.wav", "Where were you?")
    make_silence(tmp_path / "silent.wav", duration=1.0)
    spec = write_spec(
        tmp_path,
        "early.json",
        output={"resolution": "640x360"},
        segments=[{"id": "a", "url": "a.mp4"}, {"id": "b", "url": "b.mp4"}, {"id": "c", "url": "a.mp4"}],
        audio={
            "clips": [
                {"type": "dialogue", "url": "line.wav", "start": 0.3, "text": "Where were you?"},
                {"type": "dialogue", "url": "silent.wav", "start": 3.0, "text": "..."},
            ]
        },
    )
    out = tmp_path / "early.mp4"
    result = render_json(spec, out)
    assert result["fast_path"] is True and result["true_peak_db"] < 0
    assert "qc_audio_s" not in result["timings"]  # the output's audio was not decoded
    found = [(f["check"], f["clip"], f["start_s"], f["end_s"]) for f in result["qc"]["findings"]]
    assert found == [("dialogue_silent", "audio.clips[1]", 3.0, 4.0)], found
    joined = [
        (2.0 * i + s.time_s, s.size, s.key)
        for i, name in enumerate(("a", "b", "a"))
        for s in video_samples(tmp_path / f"{name}.mp4")
    ]
    made = [(s.time_s, s.size, s.key) for s in video_samples(out)]
    # Keyframes at the same places; every other frame the same bytes (a keyframe gains 38 bytes
    # in the mux, which no check reads: a keyframe always ends a run of repeated frames).
    assert [key for *_, key in made] == [key for *_, key in joined]
    assert [size for _, size, key in made if not key] == [size for _, size, key in joined if not key]
    assert max(abs(a[0] - b[0]) for a, b in zip(made, joined, strict=True)) < 0.001


@pytest.mark.parametrize("path", ["copied", "normalised"])
def test_the_poster_and_sheet_decode_only_keyframes_and_on_the_copy_path_never_the_output(
    path: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Every ffmpeg a real render runs, from its log: the poster and sheet come from one pass
    that decodes keyframes only (``-skip_frame nokey``). Copied, it reads the sources joined
    and nothing the sidecars run reads the output (the reads of it are those of a render
    without them); normalised, that one pass reads the output."""
    for name in "abc":
        make_video(tmp_path / f"{name}.mp4", width=640, height=360, fps=30, duration=2.0, audio=False)
    make_spoken_line(tmp_path / "line.wav", "Where were you?")
    spec = write_spec(
        tmp_path,
        "keys.json",
        output={"resolution": "640x360" if path == "copied" else "480x270"},
        segments=[{"id": n, "url": f"{n}.mp4"} for n in "abc"],
        audio={"clips": [{"type": "dialogue", "url": "line.wav", "start": 0.5, "text": "Where were you?"}]},
    )

    def commands(deliverables: bool, name: str) -> tuple[list[list[str]], Path]:
        settings = Settings(segment_cache=False, deliverables=deliverables)
        out = tmp_path / name
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="scenerender.core.ffmpeg"):
            result = render(
                load_spec(spec),
                out,
                lambda d: InputResolver(d, local_policy(spec, settings)),
                options=RenderOptions.from_settings(settings),
            )
        assert result.fast_path is (path == "copied")
        ran = [shlex.split(r.getMessage().removeprefix("ffmpeg: ")) for r in caplog.records]
        return [argv for argv in ran if argv], out

    def reads(argv: list[str], name: str) -> bool:
        return any(a == "-i" and Path(b).name.startswith(f".{name}.part") for a, b in itertools.pairwise(argv))

    with_them, _ = commands(True, "with.mp4")
    without, _ = commands(False, "without.mp4")
    stills = [argv for argv in with_them if "-skip_frame" in argv and argv[argv.index("-skip_frame") + 1] == "nokey"]
    assert len(stills) == 1, stills  # poster candidates and every tile, one pass
    source = stills[0][stills[0].index("-i") + 1]
    if path == "copied":
        assert source.endswith(".ffconcat"), stills[0]  # the sources joined (the render's private dir is gone)
        assert sum(reads(argv, "with.mp4") for argv in with_them) == sum(reads(argv, "without.mp4") for argv in without)
    else:
        assert Path(source).name.startswith(".with.mp4.part"), stills[0]
    # Nothing else the sidecars run decodes every frame of the picture to make the stills.
    assert not any("select=" in " ".join(argv) and "-skip_frame" not in argv for argv in with_them)


def test_qc_fail_on_fails_the_render_with_render_failed(flawed_scene: Path, tmp_path: Path) -> None:
    spec = json.loads((flawed_scene / "flawed.json").read_text())
    spec["qc"] = {"fail_on": ["clipping", "black_picture"]}
    path = write_spec(flawed_scene, "strict.json", **{k: v for k, v in spec.items() if k not in BASE_KEYS})
    out = tmp_path / "strict.mp4"
    done = run_render(path, out)
    assert done.returncode == 4, done.stderr
    assert "[RENDER_FAILED] quality check failed" in done.stderr
    assert "qc.fail_on (clipping): " in done.stderr and "qc.fail_on (black_picture): " in done.stderr
    assert "frozen_picture" not in done.stderr  # a finding not named stays a warning
    assert not out.exists() and not list(tmp_path.iterdir())  # nothing published, no sidecar either


def jpeg_grey(path: Path, width: int | None = None, height: int | None = None) -> npt.NDArray[np.uint8]:
    """A JPEG decoded to grey pixels (scaled when a size is given)."""
    scale = ["-vf", f"scale={width}:{height}"] if width and height else []
    done = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), *scale, "-f", "rawvideo", "-pix_fmt", "gray", "-"],
        capture_output=True,
        check=True,
    )
    info = next(s for s in measure.probe(path)["streams"] if s["codec_type"] == "video")
    w, h = (width, height) if width and height else (int(info["width"]), int(info["height"]))
    return np.frombuffer(done.stdout, dtype=np.uint8).reshape(h, w)


def test_the_poster_is_never_black_and_poster_at_takes_that_frame(tmp_path: Path) -> None:
    make_video(tmp_path / "lit.mp4", width=640, height=360, fps=30, duration=2.0, audio=False)
    make_video(tmp_path / "dark.mp4", width=640, height=360, fps=30, duration=2.0, audio=False, pattern="color")
    segments = [{"id": "lit", "url": "lit.mp4"}, {"id": "d1", "url": "dark.mp4"}, {"id": "d2", "url": "dark.mp4"}]
    # The middle third (2-4 s) is all black: the rule falls back to the whole scene's keyframes.
    spec = write_spec(tmp_path, "dark.json", output={"resolution": "640x360"}, segments=segments)
    out = tmp_path / "out" / "dark.mp4"
    out.parent.mkdir()
    result = render_json(spec, out)
    poster = jpeg_grey(out.with_name("dark.poster.jpg"))
    assert poster.shape == (360, 640) and poster.mean() > 60
    assert result["sidecars"]["poster"] == "dark.poster.jpg"

    spec = write_spec(tmp_path, "at.json", output={"resolution": "640x360", "poster_at": 1.5}, segments=segments)
    render_json(spec, out.with_name("at.mp4"))
    chosen = jpeg_grey(out.with_name("at.poster.jpg")).astype(np.int16)
    assert np.abs(chosen - measure.gray_frame(out.with_name("at.mp4"), 1.5)).mean() < 3
    assert np.abs(chosen - measure.gray_frame(out.with_name("at.mp4"), 0.5)).mean() > 3  # a moving picture


def test_the_contact_sheet_has_one_labelled_tile_per_segment(flawed_scene: Path, tmp_path: Path) -> None:
    out = tmp_path / "sheet.mp4"
    result = render_json(flawed_scene / "flawed.json", out)
    sheet = jpeg_grey(tmp_path / result["sidecars"]["contact_sheet"])
    # Six segments: 3 columns x 2 rows of 320x180 pictures over a 24 px label band, 4 px apart.
    assert sheet.shape == (4 + 2 * (180 + 24 + 4), 4 + 3 * (320 + 4))
    for i in range(6):
        x, y = 4 + (i % 3) * 324, 4 + (i // 3) * 208
        tile, band = sheet[y : y + 180, x : x + 320].astype(np.int16), sheet[y + 180 : y + 204, x : x + 320]
        start = 2.0 * i
        expected = measure.gray_frame(out, start).astype(np.int16)[::2, ::2]  # the tile's own size
        assert np.abs(tile - expected).mean() < 12, i  # the segment's own picture (its keyframe)
        assert (band > 200).sum() > 50 and (band[:, 200:] > 200).sum() < (band[:, :200] > 200).sum(), i  # text
    assert sheet[4:184, 4 + 324 : 4 + 324 + 320].mean() < 30  # s1 is the black one


STEM_ROLES = ("stem_dialogue", "stem_narration", "stem_music", "stem_sfx")


def render_stems(
    folder: Path, name: str, clips: list[dict[str, Any]]
) -> tuple[dict[str, Any], dict[str, Samples], Samples]:
    """Two 3 s segments of one picture under ``clips``, stems asked for: the result, the
    stems decoded (kind -> samples) and the MP4's audio, cut to one length, with the four
    roles' sum under the key ``sum``."""
    make_video(folder / "v.mp4", width=640, height=360, fps=30, duration=3.0, audio=False)
    spec = write_spec(
        folder,
        f"{name}.json",
        output={"resolution": "640x360", "stems": True},
        segments=[{"id": "a", "url": "v.mp4"}, {"id": "b", "url": "v.mp4"}],
        audio={"clips": clips},
    )
    out = folder / f"{name}.mp4"
    result = render_json(spec, out)
    names = {k: v for k, v in result["sidecars"].items() if k.startswith("stem_")}
    assert set(names) == {*STEM_ROLES, "stem_me"}  # every stem, whatever the mix went through
    stems = {k: measure.decode_audio(folder / v) for k, v in names.items()}
    mix = measure.decode_audio(out)
    # The scene's length exactly (the MP4's decode runs up to one AAC frame past it).
    assert all(len(s) == 6 * measure.SAMPLE_RATE for s in stems.values()) and len(mix) - len(stems["stem_me"]) < 1024
    n = min(len(mix), *(len(s) for s in stems.values()))
    stems = {k: v[:n] for k, v in stems.items()}
    total = stems["stem_dialogue"] + stems["stem_narration"] + stems["stem_music"] + stems["stem_sfx"]
    return result, {**stems, "sum": total}, mix[:n]


def level_db(samples: Samples) -> float:
    return float(10 * np.log10(np.mean(samples.astype(np.float64) ** 2)))


def test_stems_sum_to_the_mix_and_the_m_and_e_has_no_speech(tmp_path: Path) -> None:
    make_spoken_line(tmp_path / "line.wav", "Where were you last night?")
    make_spoken_line(tmp_path / "told.wav", "Once upon a time.")
    make_tone_burst(tmp_path / "bed.wav", freq=220, duration=2.0, amplitude=0.3, channels=2)
    make_tone_burst(tmp_path / "door.wav", freq=900, duration=0.3, amplitude=0.5)
    _, stems, mix = render_stems(
        tmp_path,
        "stems",
        [
            {"type": "narration", "url": "told.wav", "start": 0.2},
            {"type": "dialogue", "url": "line.wav", "segment_id": "b", "offset": 0.3},
            {"type": "music", "url": "bed.wav", "loop": True, "volume": 0.5},
            {"type": "sfx", "url": "door.wav", "start": 2.5},
        ],
    )
    level, summed, residual = level_db(mix), level_db(stems["sum"]), level_db(mix - stems["sum"])
    assert abs(level - summed) <= 0.5 and residual < level - 20, (level, summed, residual)
    m_and_e, n = stems["stem_me"], len(mix)
    body = slice(0, n - measure.SAMPLE_RATE // 20)  # amix ends its last frame a few ms early, as in the mix
    assert np.abs(m_and_e - (stems["stem_music"] + stems["stem_sfx"]))[body].max() < 1e-3
    # No speech energy in the M&E where the dialogue or the narration sounds: it is the music alone there.
    for role, at in (("stem_dialogue", 3.3), ("stem_narration", 0.2)):
        start = int(at * measure.SAMPLE_RATE)
        speaking = slice(start, start + int(1.0 * measure.SAMPLE_RATE))
        assert level_db(stems[role][speaking]) > -40, role
        leak = m_and_e[speaking] - stems["stem_music"][speaking]
        assert np.abs(leak).max() < 1e-3, role


@pytest.mark.parametrize(("suffix", "codec"), [(".m4a", "aac"), (".opus", "libopus"), (".mp3", "libmp3lame")])
def test_stems_of_looped_compressed_music_keep_the_mixs_loop_points(tmp_path: Path, suffix: str, codec: str) -> None:
    """Half a second of music with a click on its first sample, in a codec with encoder
    priming, looped 24 times under a quiet line. The mix loops it exactly (decoded once,
    looped in memory); the stems are made with the mix's own loop code, so the music stem
    clicks where the mix does and the stems null against the mix. (A demuxer loop decodes
    the priming and padding again on every pass: the music stem drifts 10-30 ms a loop.)"""
    make_clicks(tmp_path / f"bar{suffix}", duration=0.5, clicks=(0.0,), args=("-ac", "2", "-c:a", codec))
    make_spoken_line(tmp_path / "line.wav", "Where were you last night?")
    for name in "abcd":
        make_video(tmp_path / f"{name}.mp4", width=320, height=180, fps=30, duration=3.0, audio=False)
    spec = write_spec(
        tmp_path,
        "loops.json",
        output={"resolution": "320x180", "stems": True},
        segments=[{"id": name, "url": f"{name}.mp4"} for name in "abcd"],
        audio={
            "clips": [
                {"type": "dialogue", "url": "line.wav", "start": 5.2, "volume": 0.05},
                {"type": "music", "url": f"bar{suffix}", "loop": True},
            ],
            "loudness": None,  # levels as mixed: the loop points, not the limiter, are under test
        },
    )
    out = tmp_path / "loops.mp4"
    result = render_json(spec, out)
    rate = measure.SAMPLE_RATE
    mix = measure.decode_audio(out)
    stems = {k: measure.decode_audio(tmp_path / v) for k, v in result["sidecars"].items() if k.startswith("stem_")}
    assert all(len(s) == 12 * rate for s in stems.values()), {k: len(s) for k, s in stems.items()}
    n = 12 * rate
    mix = mix[:n]
    # Every loop's click, those ducked under the line (-12 dB) too: the threshold is between
    # a ducked click (0.1 or more) and the quiet line (0.05 at most).
    wanted = [0.5 * k for k in range(24)]
    in_mix = measure.click_onsets(mix, threshold=0.08)
    in_stem = measure.click_onsets(stems["stem_music"], threshold=0.08)
    assert len(in_mix) == 24 and max(abs(a - b) for a, b in zip(in_mix, wanted, strict=True)) <= 0.005, in_mix
    assert len(in_stem) == 24, in_stem
    late = [round(a - b, 4) for a, b in zip(in_stem, in_mix, strict=True)]
    assert max(abs(x) for x in late) <= 0.001, late
    total = stems["stem_dialogue"] + stems["stem_narration"] + stems["stem_music"] + stems["stem_sfx"]
    assert abs(level_db(mix) - level_db(total)) <= 0.5
    # Null over the whole scene and over its last second, where a drifting loop is furthest off.
    assert level_db(mix - total) < level_db(mix) - 20, (level_db(mix), level_db(mix - total))
    last = slice(11 * rate, n - rate // 20)  # amix ends its last frame a few ms early, as in the mix
    assert level_db((mix - total)[last]) < level_db(mix[last]) - 20
    assert np.abs(stems["stem_me"] - stems["stem_music"] - stems["stem_sfx"])[: n - rate // 20].max() < 1e-3


def test_stems_of_a_hot_scene_are_written_at_the_mixs_gain_and_differ_only_where_the_limiter_acted(
    tmp_path: Path,
) -> None:
    """A quiet scene with two 10 ms full-scale clicks: bringing it to -14 LUFS lifts the clicks
    far over the true-peak ceiling, so the limiter acts on them (and the level correction adds
    gain for what it took). The stems take the mix's gain, not its limiting: they sum to the
    mix within 0.5 dB, exactly away from the clicks, and hold the peaks the limiter took off."""
    make_spoken_line(tmp_path / "line.wav", "Where were you last night? I waited for hours.")
    make_tone_burst(tmp_path / "bed.wav", freq=220, duration=2.0, amplitude=0.05, channels=2)
    make_tone_burst(tmp_path / "click.wav", freq=1500, duration=0.01, amplitude=0.99)
    result, stems, mix = render_stems(
        tmp_path,
        "hot",
        [
            {"type": "dialogue", "url": "line.wav", "start": 0.2, "volume": 0.05},
            {"type": "music", "url": "bed.wav", "loop": True},
            {"type": "sfx", "url": "click.wav", "start": 4.0},
            {"type": "sfx", "url": "click.wav", "start": 5.0},
        ],
    )
    assert result["loudness_lufs"] == pytest.approx(-14.0, abs=0.5) and result["true_peak_db"] <= -1.0
    total = stems["sum"]
    assert abs(level_db(mix) - level_db(total)) <= 0.5, (level_db(mix), level_db(total))
    rate = measure.SAMPLE_RATE
    # Away from the clicks (50 ms on either side: the limiter's attack and release) the
    # stems null against the mix; at the clicks they are louder by what the limiter took.
    away = np.ones(len(mix), dtype=bool)
    for click in (4.0, 5.0):
        away[int((click - 0.05) * rate) : int((click + 0.06) * rate)] = False
    assert level_db((mix - total)[away]) < level_db(mix[away]) - 25
    at_click = slice(int(4.0 * rate), int(4.01 * rate))
    assert np.abs(total[at_click]).max() > 1.5 * np.abs(mix[at_click]).max()


@pytest.mark.parametrize("path", ["copied", "normalised"])
def test_burned_captions_show_at_their_cue_and_nowhere_else(speech_scene: Path, tmp_path: Path, path: str) -> None:
    """Copied segments are burned in one encode after the render; normalised ones in their own
    encodes (no burn pass after: the picture is encoded once), each piece's captions on the
    scene's clock (Ava's cue starts on the second segment's first frame)."""
    spec = json.loads((speech_scene / "speech.json").read_text(encoding="utf-8"))
    height = 360 if path == "copied" else 540
    spec["output"]["resolution"] = f"{height * 16 // 9}x{height}"
    fields = {k: v for k, v in spec.items() if k not in BASE_KEYS}
    plain = render_json(write_spec(speech_scene, f"plain-{path}.json", **fields), tmp_path / "plain.mp4")
    fields["output"] = {**fields["output"], "burn_captions": True}
    burned = render_json(write_spec(speech_scene, f"burn-{path}.json", **fields), tmp_path / "burned.mp4")
    assert burned["captions_burned"] is True and plain["captions_burned"] is False
    assert burned["fast_path"] is False and any("burn_captions" in b for b in burned["fast_path_blockers"])
    assert plain["fast_path"] is (path == "copied")
    assert ("burn_captions_s" in burned["timings"]) is (path == "copied"), burned["timings"]
    assert burned["duration_s"] == plain["duration_s"] and abs(burned["av_drift_ms"]) <= 1000 / 30
    # The Hebrew and CJK of Ben's line have their glyphs (see the test below): no box to report.
    assert not [f for f in burned["qc"]["findings"] if f["check"] == "caption_glyph_missing"], burned["qc"]

    def caption_area_difference(at: float) -> int:
        """Pixels of the bottom of the frame (where captions sit) that the burn changed outright:
        the re-encode alone moves none of them by more than a few levels."""
        a = measure.gray_frame(tmp_path / "plain.mp4", at).astype(np.int16)
        b = measure.gray_frame(tmp_path / "burned.mp4", at).astype(np.int16)
        return int((np.abs(a - b)[int(height * 0.7) :] > 60).sum())

    # Cues: 0.4-2.39 narration, 3.0-3.85 Ava, 4.05-4.63 Ben (Hebrew and CJK), 7.3-9.0.
    for inside in (1.0, 3.05, 3.4, 4.3, 8.0):
        assert caption_area_difference(inside) > 150, inside
    for outside in (0.2, 2.7, 2.95, 6.0):
        assert caption_area_difference(outside) < 10, outside


def test_burned_hebrew_and_cjk_find_a_glyph_for_every_character(tmp_path: Path) -> None:
    """The burn test above sees pixels where a cue is, which boxes for missing glyphs would
    also give. libass names every character no installed font has: the caption style's font
    (DejaVu Sans) and its fallback (Droid Sans Fallback) have every Hebrew and CJK character
    of the test's lines, and a character neither has (an Egyptian hieroglyph) is named."""

    def missing(text: str) -> list[str]:
        script = tmp_path / "cue.ass"
        script.write_text(to_ass([Cue(0, 0.0, 1.0, "בן", (text,))], 640, 360), encoding="utf-8")
        done = subprocess.run(
            [
                *("ffmpeg", "-hide_banner", "-f", "lavfi", "-i", "color=c=gray:s=640x360:d=1"),
                *("-vf", f"subtitles=filename={script}", "-f", "null", "-"),
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        return re.findall(r"failed to find any fallback with glyph (0x[0-9A-Fa-f]+)", done.stderr)

    assert missing("בחוץ. 外面。 Where were you? 你去哪儿了") == []
    assert set(missing("𓀀")) == {"0x13000"}


def test_a_burned_caption_with_a_character_no_font_has_is_a_qc_warning(tmp_path: Path) -> None:
    """libass burns an empty box for a character no font has; the report says which, where and
    for which clip, and ``qc.fail_on`` can make it fail the render."""
    make_video(tmp_path / "a.mp4", width=320, height=180, fps=30, duration=2.0, audio=False)
    make_spoken_line(tmp_path / "line.wav", "The sign reads.")
    fields: dict[str, Any] = {
        "output": {"resolution": "320x180", "burn_captions": True},
        "segments": [{"id": "a", "url": "a.mp4"}],
        "audio": {
            "clips": [
                {
                    "type": "dialogue",
                    "url": "line.wav",
                    "start": 0.2,
                    "text": "The sign reads 𓀀.",
                    "character": {"id": "c", "name": "Ava"},
                }
            ]
        },
    }
    result = render_json(write_spec(tmp_path, "glyph.json", **fields), tmp_path / "glyph.mp4")
    found = [f for f in result["qc"]["findings"] if f["check"] == "caption_glyph_missing"]
    assert len(found) == 1, result["qc"]
    assert found[0]["clip"] == "audio.clips[0]" and found[0]["segment_id"] == "a" and found[0]["severity"] == "warning"
    assert "U+13000" in found[0]["message"] and found[0]["start_s"] >= 0.2, found[0]
    assert "caption_glyph_missing" in result["qc"]["checks"]
    fields["qc"] = {"fail_on": ["caption_glyph_missing"]}
    done = run_render(write_spec(tmp_path, "strict.json", **fields), tmp_path / "strict.mp4")
    assert done.returncode == 4 and "U+13000" in json.loads(done.stdout)["error"]["message"], done.stdout
    assert not (tmp_path / "strict.mp4").exists()
