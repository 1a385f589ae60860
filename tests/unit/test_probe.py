"""Reading ffprobe's JSON, and the caps every input must pass."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from scenerender.core.probe import parse_probe
from scenerender.errors import InputMediaError, InputRefusedError


def probe_json(**overrides: Any) -> dict[str, Any]:
    video = {
        "codec_type": "video",
        "codec_name": "h264",
        "profile": "High",
        "pix_fmt": "yuv420p",
        "width": 1080,
        "height": 1920,
        "avg_frame_rate": "30000/1001",
        "time_base": "1/30000",
        "duration": "5.005",
        "nb_frames": "150",
        "side_data_list": [{"rotation": -90}],
        "extradata_hash": "SHA256:x",
    }
    audio = {
        "codec_type": "audio",
        "codec_name": "aac",
        "sample_rate": "44100",
        "channels": 1,
        "channel_layout": "mono",
        "duration": "4.99",
    }
    data: dict[str, Any] = {
        "format": {"format_name": "mov,mp4,m4a,3gp,3g2,mj2", "duration": "5.005", "size": "1000"},
        "streams": [video, audio],
    }
    data.update(overrides)
    return data


def test_streams_are_read_with_rotation_and_exact_rates() -> None:
    info = parse_probe(Path("x.mp4"), probe_json(), "segments[0].url")
    assert info.video is not None and info.audio is not None
    assert info.video.fps == Fraction(30000, 1001) and info.video.rotation == 270
    assert info.video.display_size == (1920, 1080) and info.video.frames == 150
    assert (info.audio.sample_rate, info.audio.channels) == (44100, 1) and info.audio_duration == 4.99


@pytest.mark.parametrize(
    ("data", "error", "reason"),
    [
        (probe_json(format={"format_name": "hls", "duration": "5"}), InputRefusedError, "accepted: MP4/MOV"),
        (probe_json(format={"format_name": "concat", "duration": "5"}), InputRefusedError, "accepted: MP4/MOV"),
        (probe_json(streams=[]), InputMediaError, "no audio or video stream"),
        (probe_json(streams=[{"codec_type": "audio", "codec_name": "aac"}] * 40), InputRefusedError, "40 streams"),
        (
            probe_json(format={"format_name": "wav", "duration": "0"}, streams=[{"codec_type": "audio"}]),
            InputMediaError,
            "zero duration",
        ),
        (
            probe_json(format={"format_name": "wav", "duration": "90000"}, streams=[{"codec_type": "audio"}]),
            InputRefusedError,
            "90000 s long",
        ),
    ],
)
def test_refused_and_unusable_inputs(data: dict[str, Any], error: type[Exception], reason: str) -> None:
    with pytest.raises(error, match=reason):
        parse_probe(Path("x"), data, "audio.clips[0].url")


def test_huge_frames_are_refused() -> None:
    data = probe_json()
    data["streams"][0].update(width=16384, height=16384)
    with pytest.raises(InputRefusedError, match="16384x16384"):
        parse_probe(Path("x"), data, "segments[0].url")
