"""Animated WebP's timing, read without decoding a frame (scenerender/core/webp.py); its
frames and their rendered times are tested in tests/integration/test_formats.py."""

from __future__ import annotations

import re
from itertools import accumulate, pairwise
from pathlib import Path

import pytest

from scenerender.core import webp
from scenerender.errors import InputMediaError, InputRefusedError, LimitExceededError


def evaluate(expression: str, n: int) -> int:
    """ffmpeg's expression language as pts_expression uses it: if, lt, +, *, -, integers, N."""
    python = re.sub(r"\bif\(", "iff(", expression)
    return int(eval(python, {"iff": lambda c, a, b: a if c else b, "lt": lambda a, b: a < b, "N": n}))


@pytest.mark.parametrize(
    "durations",
    [
        [40] * 50,  # one run: a line
        [70] * 10 + [130] * 9 + [97, 1],  # runs, and the last frame's copy a tick before the end
        [42, 41, 42] * 300,  # 24 fps in whole milliseconds: a run per frame, a tree of depth 10
        [100],
    ],
)
def test_each_frame_starts_at_the_sum_of_the_durations_before_it(durations: list[int]) -> None:
    expression = webp.pts_expression(durations)
    starts = [0, *accumulate(durations)][:-1]
    assert [evaluate(expression, n) for n in range(len(durations))] == starts
    runs = 1 + sum(a != b for a, b in pairwise(durations))
    assert expression.count("if(") == runs - 1  # a node between runs, none within one


def test_a_frame_of_ten_milliseconds_or_less_is_shown_for_a_hundred() -> None:
    assert webp.shown_ms([0, 5, 10, 11, 40, 1000]) == [100, 100, 100, 11, 40, 1000]


def riff(*chunks: bytes) -> bytes:
    body = b"WEBP" + b"".join(chunks)
    return b"RIFF" + len(body).to_bytes(4, "little") + body


def chunk(fourcc: bytes, payload: bytes) -> bytes:
    return fourcc + len(payload).to_bytes(4, "little") + payload + (b"\0" if len(payload) % 2 else b"")


def anmf(duration: int, image: bytes = b"VP8L-pixels") -> bytes:
    header = bytes(12) + duration.to_bytes(3, "little") + b"\0"
    return chunk(b"ANMF", header + chunk(b"VP8L", image))


def test_frame_durations_are_read_from_the_anmf_chunks(tmp_path: Path) -> None:
    vp8x = chunk(b"VP8X", bytes([0x12, 0, 0, 0]) + (99).to_bytes(3, "little") + (99).to_bytes(3, "little"))
    anim = chunk(b"ANIM", bytes(4) + (0).to_bytes(2, "little"))
    path = tmp_path / "a.webp"
    # An odd-sized frame (padded) and metadata chunks between frames are stepped over.
    path.write_bytes(riff(vp8x, anim, anmf(70, b"odd"), chunk(b"XMP ", b"<x/>"), anmf(130), anmf(5)))
    assert webp.is_animated_webp(path)
    assert webp.frame_durations(path) == [70, 130, 5]


def test_a_still_webp_is_not_taken_for_an_animation(tmp_path: Path) -> None:
    still = tmp_path / "s.webp"
    still.write_bytes(riff(chunk(b"VP8X", bytes(10)), chunk(b"VP8L", b"pixels")))
    assert not webp.is_animated_webp(still)
    plain = tmp_path / "p.webp"
    plain.write_bytes(riff(chunk(b"VP8 ", b"pixels")))
    assert not webp.is_animated_webp(plain)


def test_the_decoded_frames_are_bounded_from_the_header_and_share_what_the_budget_leaves(tmp_path: Path) -> None:
    # A 1000x500 canvas with alpha (VP8X flags 0x12: animation, alpha), three frames.
    vp8x = chunk(b"VP8X", bytes([0x12, 0, 0, 0]) + (999).to_bytes(3, "little") + (499).to_bytes(3, "little"))
    path = tmp_path / "a.webp"
    path.write_bytes(riff(vp8x, chunk(b"ANIM", bytes(6)), anmf(40), anmf(5), anmf(60)))
    header = webp.read_header(path, "segments[1].url")
    assert (header.width, header.height, header.durations, header.alpha) == (1000, 500, [40, 100, 60], True)
    # Every frame, the last one twice, at up to 4.5 bytes a pixel (FFV1 on noise: ~1.11x raw RGBA).
    assert header.decoded_bytes == int(4 * 1000 * 500 * 4.5) + webp.MOV_OVERHEAD_BYTES + 16 * 3
    budget = webp.DecodedBudget(left=header.decoded_bytes * 3 // 2, max_bytes=10**9)
    budget.take(header, "segments[0].url")
    with pytest.raises(LimitExceededError) as over:
        budget.take(header, "segments[1].url")  # the first one took most of what was left
    assert over.value.message.startswith("memory_mb: segments[1].url is an animated WebP whose frames take up to 9 MiB")
    assert [d.path for d in over.value.details] == ["segments[1].url"]
    with pytest.raises(InputRefusedError) as large:
        webp.DecodedBudget(None, max_bytes=1_000_000).take(header, "segments[2].url")
    assert large.value.message == (
        "segments[2].url: its 3 frames of 1000x500 take up to 9 MiB decoded; the largest input is 1,000,000 bytes"
    )
    # Refused on its header: the pixels (here not even an image) are never read.
    with pytest.raises(InputRefusedError):
        webp.convert(path, input_path="segments[2].url", max_bytes=1_000_000)
    assert not path.with_name("a.webp.frames.mov").exists()


def test_a_webp_cut_short_is_refused_on_its_header_naming_what_it_holds(tmp_path: Path) -> None:
    # A real animated WebP (libwebp's encoder in Pillow), cut mid-frame as an interrupted
    # download leaves it: its RIFF size says more than the file holds. Refused before any
    # frame is decoded, by the dry run (read_header) and the render (convert) alike.
    from PIL import Image

    frames = [Image.effect_noise((200, 120), 40 + 10 * n).convert("RGB") for n in range(10)]
    made = tmp_path / "made.webp"
    frames[0].save(made, save_all=True, append_images=frames[1:], duration=[100] * 9 + [300], lossless=True)
    data = made.read_bytes()
    assert len(webp.read_header(made, "segments[0].url").durations) == 10  # the whole one reads
    cut = tmp_path / "cut.webp"
    cut.write_bytes(data[: len(data) * 6 // 10])
    with pytest.raises(InputMediaError) as caught:
        webp.read_header(cut, "segments[1].url")
    message = caught.value.message
    assert message.startswith(f"segments[1].url: the file is cut: its header says {len(data):,} bytes, it holds ")
    whole = int(message.split("; ")[1].split(" frames")[0])
    assert 4 <= whole <= 6 and f"({whole / 10:.3f} s) are whole" in message, message
    with pytest.raises(InputMediaError, match="the file is cut"):
        webp.convert(cut, input_path="segments[1].url")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.webp", "made.webp"]
