"""The box reader on hand-built MP4s: the 64-bit forms (long scenes, files over 4 GB) small test outputs never use."""

from __future__ import annotations

import struct
from fractions import Fraction
from pathlib import Path

import pytest

from scenerender.core.mp4 import keyframe_times, missing_index, read_movie
from scenerender.errors import RenderError


def box(kind: bytes, *parts: bytes, large: bool = False) -> bytes:
    body = b"".join(parts)
    if large:
        return struct.pack(">I4sQ", 1, kind, 16 + len(body)) + body
    return struct.pack(">I4s", 8 + len(body), kind) + body


def full(version: int) -> bytes:
    return bytes([version, 0, 0, 0])


def header_v1(timescale: int, duration: int) -> bytes:
    """mvhd/mdhd version 1 up to the duration: creation and modification times are 64-bit."""
    return full(1) + struct.pack(">QQIQ", 0, 0, timescale, duration)


def edits_v1(*entries: tuple[int, int]) -> bytes:
    body = full(1) + struct.pack(">I", len(entries))
    for duration, media_time in entries:
        body += struct.pack(">QqI", duration, media_time, 0x00010000)
    return box(b"edts", box(b"elst", body))


def stts(*runs: tuple[int, int]) -> bytes:
    return box(b"stts", full(0) + struct.pack(">I", len(runs)) + b"".join(struct.pack(">II", n, d) for n, d in runs))


def hdlr(kind: bytes) -> bytes:
    return box(b"hdlr", full(0) + b"\0\0\0\0" + kind + b"\0" * 12 + b"name\0")


def avc1_stsd(width: int, height: int) -> bytes:
    entry = box(b"avc1", b"\0" * 6 + b"\0\1" + b"\0" * 16 + struct.pack(">HH", width, height) + b"\0" * 50)
    return box(b"stsd", full(0) + struct.pack(">I", 1) + entry)


def trak(handler: bytes, timescale: int, duration: int, edits: bytes, sample_table: bytes) -> bytes:
    mdia = box(
        b"mdia",
        box(b"mdhd", header_v1(timescale, duration) + b"\0" * 4),
        hdlr(handler),
        box(b"minf", box(b"stbl", sample_table)),
    )
    return box(b"trak", edits, mdia)


def long_scene(path: Path) -> Path:
    """Two days of 24000/1001 video beside audio that runs 0.5 s longer: every duration past 32 bits."""
    frames = 2 * 86400 * 24
    video = trak(
        b"vide",
        24000,
        frames * 1001,
        edits_v1(
            (1000, -1), (frames * 1001 * 1000 // 24000, 2002)
        ),  # a 1 s empty edit delays the start: not presented media
        avc1_stsd(3840, 2160) + stts((frames - 1, 1001), (1, 500)),
    )
    audio_samples = (frames * 1001 * 48000) // 24000 + 24000
    audio = trak(
        b"soun",
        48000,
        audio_samples + 1024,
        edits_v1((audio_samples * 1000 // 48000, 1024)),
        stts((audio_samples // 1024 + 1, 1024)),
    )
    moov = box(b"moov", box(b"mvhd", header_v1(1000, audio_samples * 1000 // 48000) + b"\0" * 80), video, audio)
    path.write_bytes(
        box(b"ftyp", b"isom\0\0\2\0") + box(b"free", b"", large=True) + moov + box(b"mdat", b"\0" * 32, large=True)
    )
    return path


def test_sixty_four_bit_boxes_and_times(tmp_path: Path) -> None:
    movie = read_movie(long_scene(tmp_path / "long.mp4"))

    seconds = 2 * 86400 * 1001 / 1000
    assert movie.video.duration_s == pytest.approx(seconds, abs=1e-3)
    assert movie.audio.duration_s - movie.video.duration_s == pytest.approx(0.5, abs=1e-3)
    assert movie.duration_s == pytest.approx(seconds + 0.5, abs=1e-3)
    assert (movie.video.width, movie.video.height) == (3840, 2160)
    assert movie.video.frame_rate == Fraction(24000, 1001)  # the most common sample duration, not the last


def test_a_box_that_claims_more_than_the_file_holds(tmp_path: Path) -> None:
    path = long_scene(tmp_path / "long.mp4")
    data = bytearray(path.read_bytes())
    moov_at = data.index(b"moov") - 4
    trak_at = data.index(b"trak", moov_at) - 4
    data[trak_at : trak_at + 4] = struct.pack(">I", 0x7FFFFFFF)
    path.write_bytes(bytes(data))
    with pytest.raises(RenderError, match="could not be read as MP4"):
        read_movie(path)


def stss(*numbers: int) -> bytes:
    return box(b"stss", full(0) + struct.pack(f">I{len(numbers)}I", len(numbers), *numbers))


def ctts(*runs: tuple[int, int]) -> bytes:
    return box(b"ctts", full(1) + struct.pack(">I", len(runs)) + b"".join(struct.pack(">Ii", n, o) for n, o in runs))


def keyframed(path: Path, padding: int = 0) -> Path:
    """Samples of 1000 and 500 ticks at 10000/s, composition offsets, keyframes 1, 3, 7, 11,
    and an edit list whose media starts at 2000; ``padding`` bytes of free space in the moov."""
    table = avc1_stsd(64, 64) + stts((4, 1000), (8, 500)) + ctts((2, 2000), (10, 1000)) + stss(1, 3, 7, 11)
    video = trak(b"vide", 10000, 8000, edits_v1((800, 2000)), table)
    free = box(b"free", b"\0" * padding) if padding else b""
    moov = box(b"moov", box(b"mvhd", header_v1(1000, 800) + b"\0" * 80), video, free)
    path.write_bytes(box(b"ftyp", b"isom\0\0\2\0") + moov + box(b"mdat", b"\0" * 8))
    return path


def test_keyframe_times_from_the_sample_table(tmp_path: Path) -> None:
    """Decode times from stts runs, composition offsets from ctts, the edit list's start taken off."""
    # Samples 1, 3, 7, 11 decode at 0, 2000, 5000, 7000; their offsets 2000, 1000, 1000, 1000.
    assert keyframe_times(keyframed(tmp_path / "k.mp4")) == pytest.approx([0.0, 0.1, 0.4, 0.6])


def test_an_input_moov_too_large_to_be_a_real_one_is_not_read(tmp_path: Path) -> None:
    assert keyframe_times(keyframed(tmp_path / "k.mp4", padding=3 << 20)) is not None
    assert keyframe_times(keyframed(tmp_path / "huge.mp4", padding=5 << 20)) is None


def _box(kind: bytes, body: bytes, size: int | None = None) -> bytes:
    return struct.pack(">I4s", len(body) + 8 if size is None else size, kind) + body


@pytest.mark.parametrize(
    ("data", "why"),
    [
        # Cut inside the media data: the index after it is gone.
        (
            _box(b"ftyp", b"isom") + _box(b"mdat", b"x" * 100, size=5000),
            "it ends at byte 120 inside its media data, which runs to byte 5,012",
        ),
        # The writer never came back to size its media data (a crashed recorder).
        (_box(b"ftyp", b"isom") + _box(b"mdat", b"x" * 100, size=0), "never closed"),
        # Whole media data, then nothing.
        (_box(b"ftyp", b"isom") + _box(b"mdat", b"x" * 100), "it ends after its media data"),
        # An index: not this problem.
        (_box(b"ftyp", b"isom") + _box(b"moov", b"") + _box(b"mdat", b"x", size=5000), None),
        (b"RIFF" + b"\0" * 100, None),
    ],
    ids=["cut-mid-mdat", "mdat-never-sized", "ends-after-mdat", "has-moov", "not-mp4"],
)
def test_why_an_mp4_has_no_index(tmp_path: Path, data: bytes, why: str | None) -> None:
    path = tmp_path / "x.mp4"
    path.write_bytes(data)
    found = missing_index(path)
    assert found == why if why is None else (found is not None and why in found), found
