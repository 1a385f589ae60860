"""A plain PCM WAV is described from its header (``scenerender.core.wav``) exactly as ffprobe
describes it, on WAVs ffmpeg writes; any other WAV is left to ffprobe."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from scenerender.core import probe, wav
from tests.mediagen import run_ffmpeg

pytestmark = pytest.mark.integration

PLAIN = {
    "s16-mono-44k": ("-ar", "44100", "-ac", "1", "-c:a", "pcm_s16le"),
    "s16-stereo-48k": ("-ar", "48000", "-ac", "2", "-c:a", "pcm_s16le"),
    "u8-mono-22k": ("-ar", "22050", "-ac", "1", "-c:a", "pcm_u8"),
    "s16-odd-length": ("-ar", "8000", "-ac", "1", "-c:a", "pcm_u8", "-t", "0.0011250"),  # 9 bytes: a pad byte
}
# What ffmpeg writes as WAVE_FORMAT_EXTENSIBLE (over 16 bits or over 2 channels): a channel
# mask, a layout: ffprobe's to describe.
EXTENSIBLE = {
    "s24-stereo": ("-ar", "48000", "-ac", "2", "-c:a", "pcm_s24le"),
    "s16-5.1": ("-ar", "48000", "-ac", "6", "-c:a", "pcm_s16le"),
    "f32-stereo": ("-ar", "48000", "-ac", "2", "-c:a", "pcm_f32le"),
}


def ffprobe(path: Path) -> dict[str, Any]:
    done = subprocess.run(probe.probe_command("ffprobe", path), capture_output=True, text=True, check=True)
    data: dict[str, Any] = json.loads(done.stdout)
    return data


def make(folder: Path, name: str, args: tuple[str, ...]) -> Path:
    path = folder / f"{name}.wav"
    run_ffmpeg("-f", "lavfi", "-i", "sine=f=440:d=1.3", *args, str(path))
    return path


@pytest.mark.parametrize("name", list(PLAIN))
def test_a_plain_wav_is_described_as_ffprobe_describes_it(tmp_path: Path, name: str) -> None:
    path = make(tmp_path, name, PLAIN[name])
    ours, theirs = wav.describe(path), ffprobe(path)
    assert ours is not None
    stream: dict[str, Any] = ours["streams"][0]
    their_stream: dict[str, Any] = theirs["streams"][0]
    assert len(ours["streams"]) == len(theirs["streams"]) == 1
    assert {k: v for k, v in their_stream.items() if k in stream and k != "disposition"} == {
        k: v for k, v in stream.items() if k != "disposition"
    }
    fields = ("format_name", "duration", "size", "nb_streams")
    assert {k: ours["format"][k] for k in fields} == {k: theirs["format"][k] for k in fields}
    # ...and the render reads the same input from either.
    assert probe.read_probe(path, ours, "clip") == probe.read_probe(path, theirs, "clip")


@pytest.mark.parametrize("name", list(EXTENSIBLE))
def test_other_wavs_are_left_to_ffprobe(tmp_path: Path, name: str) -> None:
    assert wav.describe(make(tmp_path, name, EXTENSIBLE[name])) is None


def test_a_wav_cut_short_or_with_chunks_after_its_sound_is_left_to_ffprobe(tmp_path: Path) -> None:
    whole = make(tmp_path, "whole", PLAIN["s16-stereo-48k"])
    data = whole.read_bytes()
    cut, more = tmp_path / "cut.wav", tmp_path / "more.wav"
    cut.write_bytes(data[: len(data) - 1000])
    more.write_bytes(data + b"junk" + (4).to_bytes(4, "little") + b"abcd")
    assert wav.describe(cut) is None and wav.describe(more) is None
    assert wav.describe(whole) is not None


def test_a_probe_of_a_plain_wav_starts_no_ffprobe(tmp_path: Path) -> None:
    path = make(tmp_path, "tts", PLAIN["s16-mono-44k"])
    info = probe.probe(path, input_path="audio.clips[0].url", ffprobe=str(tmp_path / "no-ffprobe-here"))
    assert info.audio is not None and info.audio.codec == "pcm_s16le" and info.audio.sample_rate == 44100
    assert info.path == path and abs(info.duration - 1.3) < 1e-6
