"""Probes started while the CLI loads: taken only for the very file, from the same ffprobe; the render is the same."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from scenerender.probe import EarlyProbes, parse_probe, probe_data
from tests.cli import render_json
from tests.mediagen import make_music, make_video

pytestmark = pytest.mark.integration


def _without_filename(data: dict[str, Any]) -> dict[str, Any]:
    return {**data, "format": {k: v for k, v in data["format"].items() if k != "filename"}}


def test_taken_for_the_same_file_and_ffprobe_only(tmp_path: Path) -> None:
    video = make_video(tmp_path / "seg.mp4", width=320, height=240, fps=30, duration=1.0)
    music = make_music(tmp_path / "music.wav", duration=2.0)
    early = EarlyProbes("ffprobe", workers=2)
    early.start(video)
    early.start(music)
    try:
        # Through a link, as the render's private dir sees its local inputs.
        link = tmp_path / "in-link.mp4"
        link.symlink_to(video)
        taken = early.take(link, "ffprobe")
        assert taken is not None
        assert _without_filename(taken) == _without_filename(probe_data(video, input_path="segments[0].url"))
        assert parse_probe(link, taken, "segments[0].url").video is not None
        assert early.take(link, "ffprobe") is None  # handed over once
        assert early.take(music, "/usr/bin/ffprobe") is None  # another binary than the render's
        assert early.taken == 1
    finally:
        early.close()


def test_not_taken_once_the_file_changed(tmp_path: Path) -> None:
    music = make_music(tmp_path / "music.wav", duration=2.0)
    early = EarlyProbes("ffprobe", workers=1)
    early.start(music)
    try:
        with music.open("ab") as fh:
            fh.write(b"\0" * 4096)
        assert early.take(music, "ffprobe") is None
    finally:
        early.close()


def test_not_started_on_what_is_not_a_plain_media_file(tmp_path: Path) -> None:
    playlist = tmp_path / "list.mp4"
    playlist.write_text("#EXTM3U\n#EXTINF:1,\nhttp://example.com/a.ts\n")
    fifo = tmp_path / "pipe.wav"
    os.mkfifo(fifo)
    early = EarlyProbes("ffprobe", workers=1)
    for path in (playlist, fifo, tmp_path, tmp_path / "missing.wav"):
        early.start(path)
    try:
        assert early.take(playlist, "ffprobe") is None
        assert early.take(tmp_path, "ffprobe") is None
    finally:
        early.close()
    assert not early._started  # nothing was queued


def test_a_queued_probe_is_dropped_for_the_caller_to_run(tmp_path: Path) -> None:
    files = [make_music(tmp_path / f"m{i}.wav", duration=1.0, freq=200.0 + i) for i in range(3)]
    early = EarlyProbes("ffprobe", workers=1)
    for path in files:
        early.start(path)
    try:
        assert early.take(files[2], "ffprobe") is None  # still behind the first two: not waited for
        assert early.take(files[0], "ffprobe") is not None
    finally:
        early.close()


def test_the_cli_renders_the_same_scene_with_its_early_probes(tmp_path: Path) -> None:
    media = tmp_path / "media"
    media.mkdir()
    for i in range(3):
        make_video(media / f"s{i}.mp4", width=640, height=360, fps=30, duration=1.0, tone=300.0 + 50 * i)
    make_music(media / "music.wav", duration=1.5)
    spec = tmp_path / "job.json"
    spec.write_text(
        json.dumps(
            {
                "version": 1,
                "project_id": "p",
                "scene_id": "early",
                "output": {"resolution": "360p", "fps": 30},
                "segments": [{"id": f"s{i}", "url": f"media/s{i}.mp4"} for i in range(3)],
                "audio": {"clips": [{"type": "music", "url": "media/music.wav", "loop": True}]},
            }
        )
    )
    early = render_json(spec, tmp_path / "early.mp4")
    plain = render_json(spec, tmp_path / "plain.mp4", module="scenerender.cli")  # the CLI module itself starts none

    assert 1 <= early["probes_early"] <= 4
    assert plain["probes_early"] == 0
    ignore = {"output", "timings", "probes_early", "size_bytes"}
    assert {k: v for k, v in early.items() if k not in ignore} == {k: v for k, v in plain.items() if k not in ignore}
    assert early["fast_path"] is True
