"""Reading ffprobe's JSON, and the caps every input must pass."""

from __future__ import annotations

import re
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from scenerender.core.probe import (
    CONTAINERS,
    DEMUXER_WHITELIST,
    PACKET_ENDS,
    formats_markdown,
    lavf_opus_error,
    packet_ends,
    parse_probe,
    read_probe,
    refuse_reference_files,
)
from scenerender.errors import InputMediaError, InputRefusedError

PCM = {"codec_type": "audio", "codec_name": "pcm_s16le"}


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
            probe_json(format={"format_name": "wav", "duration": "0"}, streams=[PCM]),
            InputMediaError,
            "zero duration",
        ),
        (
            probe_json(format={"format_name": "wav", "duration": "90000"}, streams=[PCM]),
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


def test_docs_list_the_formats_the_probe_accepts_and_refuses() -> None:
    # docs/media.md prints the table itself: a container added, removed or renamed in
    # CONTAINERS (or a codec, or a refusal) without the page following fails here.
    page = (Path(__file__).parents[2] / "docs" / "media.md").read_text(encoding="utf-8")
    begin, end = "<!-- formats table: begin -->\n", "<!-- formats table: end -->"
    assert begin in page and end in page
    shown = page.split(begin, 1)[1].split(end, 1)[0]
    assert shown == formats_markdown()
    for container in CONTAINERS:
        assert f"| {container.name} |" in shown
        # Every container is read by an ffmpeg demuxer on the list, but animated WebP (core/webp.py).
        assert container.demuxer in DEMUXER_WHITELIST.split(",") or container.name == "WebP (animated)"


@pytest.mark.parametrize(
    ("head", "name"),
    [
        (b"RIFF\x00\x00\x00\x00WEBPVP8X\x0a\x00\x00\x00\x10", "WebP"),  # alpha only: a still
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "WebP"),
        (b"\x89PNG\r\n\x1a\n", "PNG"),
        (b"\x00\x00\x00\x18ftypheic", "HEIF/AVIF"),
        (b"FLV\x01\x05", "FLV"),
        (bytes.fromhex("3026b2758e66cf11a6d9"), "ASF/WMV"),
    ],
)
def test_refused_formats_are_named_on_their_first_bytes(tmp_path: Path, head: bytes, name: str) -> None:
    path = tmp_path / "x"
    path.write_bytes(head + bytes(64))
    with pytest.raises(InputRefusedError) as caught:
        refuse_reference_files(path, "segments[3].url")
    assert f"the container is {name}, which is not accepted" in str(caught.value)
    assert caught.value.input_path == "segments[3].url" and "accepted: MP4/MOV, Matroska/WebM" in str(caught.value)


@pytest.mark.parametrize(
    "head",
    [
        b"GIF89a",
        b"\x00\x00\x00\x18ftypisom",
        b"RIFF\x00\x00\x00\x00WAVEfmt ",
        b"RIFF\x00\x00\x00\x00WEBPVP8X\x0a\x00\x00\x00\x12",  # animation + alpha flags: core/webp.py reads it
    ],
)
def test_accepted_formats_pass_the_first_bytes(tmp_path: Path, head: bytes) -> None:
    path = tmp_path / "x"
    path.write_bytes(head + bytes(64))
    refuse_reference_files(path, "segments[0].url")


def test_a_codec_outside_the_table_is_refused_by_name() -> None:
    data = probe_json()
    data["streams"][0]["codec_name"] = "cinepak"
    with pytest.raises(
        InputRefusedError, match=r"the video codec is 'cinepak', which is not accepted; accepted: H\.264"
    ):
        parse_probe(Path("x"), data, "segments[0].url")
    data = probe_json()
    data["streams"][1]["codec_name"] = "pcm_s24le"  # any PCM
    assert parse_probe(Path("x"), data, "segments[0].url").audio is not None


def test_packet_ends_take_each_streams_latest_end() -> None:
    lines = ["0,0.000000,0.000000,0.040000", "1,0.021000,0.021000,0.021000", "0,N/A,1.960000,0.040000,"]
    lines.append("1,N/A,N/A,0.02")
    assert packet_ends(lines) == {"0": pytest.approx(2.0), "1": pytest.approx(0.042)}


def test_a_container_whose_packets_end_early_is_cut_short_else_its_streams_get_their_lengths() -> None:
    data = probe_json(format={"format_name": "matroska,webm", "duration": "4.021", "size": "1000"})
    for stream in data["streams"]:
        stream.pop("duration")
    data["streams"][0]["index"], data["streams"][1]["index"] = 0, 1
    whole = read_probe(Path("x"), {**data, PACKET_ENDS: {"0": 4.0, "1": 4.021}}, "segments[0].url")
    assert (whole.readable_video, whole.readable_audio) == (None, None)
    assert whole.video_duration == pytest.approx(4.0) and whole.audio_duration == pytest.approx(4.021)
    cut = read_probe(Path("x"), {**data, PACKET_ENDS: {"0": 2.12, "1": 1.94}}, "segments[0].url")
    assert cut.readable_video == pytest.approx(2.12) and cut.readable_audio == pytest.approx(1.94)


def test_an_avi_with_b_frames_has_the_decode_delay_its_frames_are_timed_with() -> None:
    # AVI keeps no presentation times: with B-frames ffmpeg times each frame by the packet
    # after it, one frame late; MP4 keeps its times, so nothing is owed there.
    avi = {"format_name": "avi", "duration": "2.0", "size": "1000"}
    stream = {**probe_json()["streams"][0], "codec_name": "mpeg4", "avg_frame_rate": "25/1", "has_b_frames": 1}
    info = parse_probe(Path("x.avi"), probe_json(format=avi, streams=[stream]), "segments[0].url")
    assert info.video is not None and info.video.decode_delay == pytest.approx(0.04)
    info = parse_probe(Path("x.mp4"), probe_json(streams=[stream]), "segments[0].url")
    assert info.video is not None and info.video.decode_delay == 0.0


def _opus_in_matroska(tmp_path: Path, encoder: str, pre_skip: int = 312) -> tuple[Path, dict[str, Any]]:
    # The file's first bytes as a Matroska header holds them: OpusHead in CodecPrivate.
    path = tmp_path / "v.webm"
    head = b"OpusHead\x01\x02" + pre_skip.to_bytes(2, "little") + b"\0" * 9
    path.write_bytes(b"\x1a\x45\xdf\xa3" + b"\0" * 200 + head)
    data = {
        "format": {"format_name": "matroska,webm", "tags": {"ENCODER": encoder}},
        "streams": [
            {"codec_type": "video", "codec_name": "vp9", "time_base": "1/1000"},
            {"codec_type": "audio", "codec_name": "opus", "time_base": "1/1000", "start_time": "-0.007000"},
        ],
    }
    return path, data


@pytest.mark.parametrize(
    ("encoder", "pre_skip", "early"),
    [
        ("Lavf59.27.100", 312, 0.007),  # ffmpeg 5.1: 6.5 ms of pre-skip, 7 of Matroska's ticks
        ("Lavf58.76.100", 3840, 0.08),
        ("Lavf60.3.100", 312, 0.0),  # written right since
        ("Lavf", 312, 0.0),  # bitexact: the version is not known, nothing is guessed
        ("libwebm-0.2.1.0", 312, 0.0),  # a browser's MediaRecorder
    ],
)
def test_opus_that_old_ffmpeg_muxed_early_into_matroska_is_known_by_how_much(
    tmp_path: Path, encoder: str, pre_skip: int, early: float
) -> None:
    path, data = _opus_in_matroska(tmp_path, encoder, pre_skip)
    assert lavf_opus_error(path, data) == pytest.approx(early)
    data["streams"][1]["codec_name"] = "aac"  # only Opus has its CodecDelay mishandled
    assert lavf_opus_error(path, data) == 0.0


def test_every_test_docs_media_names_as_proof_exists() -> None:
    # "How each case is proven" maps issue #21's bullets to tests: a renamed or deleted test
    # must not leave a bullet pointing at nothing.
    root = Path(__file__).resolve().parents[2]
    page = (root / "docs" / "media.md").read_text(encoding="utf-8")
    section = page[page.index("## How each case is proven") :].split("\n## ", 1)[0]
    short = {f"{name}::": f"tests/integration/test_{name}.py::" for name in ("real_media", "formats", "placement")}
    named = re.findall(r"`([\w/.]+\.py)::(test_\w+)", "".join(short.get(w, w) for w in re.split(r"(\w+::)", section)))
    assert len(named) >= 30, named
    missing = [(f, t) for f, t in named if f"def {t}(" not in (root / f).read_text(encoding="utf-8")]
    assert not missing, missing


@pytest.mark.parametrize(
    ("format_name", "channels", "right"),
    [
        ("mxf", (1, 1, 1, 1), 1),  # broadcast: a mono track per channel, the first two left and right
        ("mxf", (2, 1), None),  # a stereo first track is heard as it is
        ("mxf", (1,), None),
        ("mov,mp4,m4a,3gp,3g2,mj2", (1, 1), None),  # two mono tracks in MP4 are languages, not channels
    ],
)
def test_an_mxfs_first_two_mono_tracks_are_left_and_right(
    format_name: str, channels: tuple[int, ...], right: int | None
) -> None:
    tracks = [{**PCM, "index": k + 1, "channels": n, "sample_rate": "48000"} for k, n in enumerate(channels)]
    fmt = {"format_name": format_name, "duration": "2.0", "size": "1000"}
    info = parse_probe(Path("x"), probe_json(format=fmt, streams=[probe_json()["streams"][0], *tracks]), "s")
    assert info.audio is not None and info.audio.right_track == right


def test_matroska_without_a_duration_is_as_long_as_its_packets() -> None:
    # Written as a stream (a live muxer, a browser's MediaRecorder): no Duration, no tags.
    streams = [{k: v for k, v in s.items() if k != "duration"} for s in probe_json()["streams"]]
    data = probe_json(format={"format_name": "matroska,webm", "size": "1000"}, streams=streams)
    with pytest.raises(InputMediaError, match="zero duration"):
        parse_probe(Path("x.webm"), data, "segments[0].url")
    data[PACKET_ENDS] = {"0": 2.04, "1": 2.0}
    info = read_probe(Path("x.webm"), data, "segments[0].url")
    assert info.duration == pytest.approx(2.04) and info.readable_video is None
    assert info.video is not None and info.video.duration == pytest.approx(2.04)


def test_aac_in_adts_has_its_encoders_priming_to_drop() -> None:
    # No edit list in ADTS: a plain decode keeps the encoder's 1024 samples before the sound.
    adts = {"format_name": "aac", "duration": "2.0", "size": "1000"}
    aac = probe_json()["streams"][1]  # 44.1 kHz
    info = parse_probe(Path("x.aac"), probe_json(format=adts, streams=[aac]), "audio.clips[0].url")
    assert info.priming == pytest.approx(1024 / 44100)
    info = parse_probe(Path("x.m4a"), probe_json(streams=[aac]), "audio.clips[0].url")  # its edit list says
    assert info.priming == 0.0
