"""Media as users' tools make it (generator and phone exports, editor trims, TTS and music
files), made here with ffmpeg: every output frame's source frame read back from its stamp,
every click found at the sample, against the timeline."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from tests import measure
from tests.integration.test_render import render, write_spec
from tests.mediagen import make_clicks, make_stamped, mux_offset

pytestmark = pytest.mark.integration


def assert_in_sync(
    out: Path,
    result: dict[str, Any],
    *,
    fps: Fraction,
    segment_frames: list[int],
    clicks: list[float],
    first_frames: list[int] | None = None,
) -> None:
    """Picture: frame n of the output is the frame of its segment the timeline puts there.
    Sound: a click in each segment at its scene time. Both streams as long as the timeline."""
    frame = 1 / fps
    total = sum(segment_frames)
    stamps = measure.frame_stamps(out)
    firsts = first_frames or [0] * len(segment_frames)
    expected = [firsts[k] + i for k, count in enumerate(segment_frames) for i in range(count)]
    wrong = [(n, got, want) for n, (got, want) in enumerate(zip(stamps, expected, strict=False)) if got != want]
    assert len(stamps) == total and not wrong, (len(stamps), total, wrong[:5])
    video_s, audio_s = measure.stream_durations(out)
    assert abs(video_s - float(total * frame)) <= 0.001, video_s
    assert abs(audio_s - float(total * frame)) <= 0.001, audio_s
    assert abs(result["av_drift_ms"]) <= 1000 * frame
    onsets = measure.click_onsets(measure.decode_audio(out))
    assert len(onsets) == len(clicks), (onsets[:5], clicks[:5])
    late = max(abs(got - want) for got, want in zip(onsets, clicks, strict=True))
    assert late <= 0.005, late


def test_segment_audio_longer_than_its_picture_stays_on_the_copy_path_in_sync(tmp_path: Path) -> None:
    # Generator and phone exports: 5 s of picture with 5.5 s of sound. Joined by the file's
    # length, each later segment would start 0.5 s late (frozen frames at every join).
    make_stamped(tmp_path / "long.mp4", duration=5, audio_duration=5.5, clicks=(0.2, 5.3))
    spec = write_spec(
        tmp_path,
        {
            "output": {"resolution": "320x180", "fps": 30},
            "segments": [{"id": f"s{i}", "url": "long.mp4", "volume": 1.0} for i in range(4)],
            "audio": {"loudness": None},
        },
    )
    out = tmp_path / "out.mp4"
    result = render(spec, out)
    assert result["fast_path"] is True and result["segments_copied"] == 4, result["fast_path_blockers"]
    assert result["duration_s"] == pytest.approx(20.0, abs=0.001)
    # The clicks 5.3 s into each file fall past its picture: they are not heard.
    assert_in_sync(out, result, fps=Fraction(30), segment_frames=[150] * 4, clicks=[5 * k + 0.2 for k in range(4)])


@pytest.mark.parametrize(
    ("rate", "seconds", "frames", "copied"),
    [
        ("24", 4.95, 119, True),  # the reported case: 595.079 s of picture against 595.000 s of sound
        ("24", 1.05, 26, False),
        ("30000/1001", 1.03, 31, True),
        ("30000/1001", 1.03, 31, False),
    ],
    ids=["24-copy", "24-encode", "29.97-copy", "29.97-encode"],
)
def test_a_hundred_and_twenty_joins_add_no_rounding(
    tmp_path: Path, rate: str, seconds: float, frames: int, copied: bool
) -> None:
    # Frame counts that are not a whole number of milliseconds (4.958333 s, 1.034367 s): each
    # join rounded to the millisecond would push the picture later by up to 1 ms.
    size = "320x180" if copied else "384x216"
    width, height = map(int, size.split("x"))
    make_stamped(tmp_path / "seg.mp4", width=width, height=height, fps=rate, duration=seconds, audio_duration=seconds)
    spec = write_spec(
        tmp_path,
        {
            "output": {"resolution": "320x180", "fps": float(Fraction(rate)), "preview": not copied},
            "segments": [{"id": f"s{i}", "url": "seg.mp4", "volume": 1.0} for i in range(120)],
            "audio": {"loudness": None},
        },
    )
    out = tmp_path / "out.mp4"
    result = render(spec, out)
    assert result["fast_path"] is copied, result["fast_path_blockers"]
    fps = Fraction(rate)
    assert_in_sync(
        out, result, fps=fps, segment_frames=[frames] * 120, clicks=[float(k * frames / fps) + 0.1 for k in range(120)]
    )


@pytest.mark.parametrize("copied", [True, False], ids=["copy", "encode"])
def test_each_stream_is_placed_by_its_own_start_time(tmp_path: Path, copied: bool) -> None:
    # An edit list or an -itsoffset mux: the sound starts 0.48 s after the picture (its click,
    # 0.2 s into the sound, belongs 0.68 s into the segment), or the picture 0.5 s after the
    # sound (the click 1.2 s into the sound is 0.7 s into the picture; the one at 0.2 s comes
    # before any picture and is not heard).
    picture = make_stamped(tmp_path / "picture.mp4", duration=3)
    sound = make_clicks(tmp_path / "sound.m4a", duration=2.5, clicks=(0.2, 1.2), args=("-c:a", "aac"))
    mux_offset(picture, sound, tmp_path / "late-sound.mp4", audio_offset=0.48)
    mux_offset(picture, sound, tmp_path / "late-picture.mp4", video_offset=0.5)
    names = ["late-sound", "late-sound"] if copied else ["late-picture", "late-sound"]
    spec = write_spec(
        tmp_path,
        {
            "output": {"resolution": "320x180", "fps": 30},
            "segments": [{"id": f"s{i}", "url": f"{n}.mp4", "volume": 1.0} for i, n in enumerate(names)],
            "audio": {"loudness": None},
        },
    )
    out = tmp_path / "out.mp4"
    result = render(spec, out)
    assert result["fast_path"] is copied, result["fast_path_blockers"]
    if not copied:
        assert "segments[0]: picture starts 0.500 s into the file" in result["fast_path_blockers"]
    heard = {"late-sound": [0.68, 1.68], "late-picture": [0.7]}
    clicks = [3 * k + t for k, n in enumerate(names) for t in heard[n]]
    assert_in_sync(out, result, fps=Fraction(30), segment_frames=[90, 90], clicks=clicks)
