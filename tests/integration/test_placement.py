"""Where pictures and sounds land (issue #21), on media made here: joins at every standard
rate with and without trims, a variable-rate first segment choosing the output's rate,
a segment without sound on the copy path, a trim far into
its file, rotations. Every output frame's source frame read from its stamp, every click
found at the sample, the render's own certificate checked beside."""

from __future__ import annotations

import subprocess
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests import measure
from tests.integration.test_real_media import assert_in_sync, render_files
from tests.integration.test_render import render, write_spec
from tests.mediagen import H264_HIGH, click_train, make_stamped, run_ffmpeg, stamp_filter

pytestmark = pytest.mark.integration


def video_stream(path: Path) -> dict[str, Any]:
    return next(s for s in measure.probe(path)["streams"] if s["codec_type"] == "video")


@pytest.mark.parametrize("rate", ["24000/1001", "24", "25", "30000/1001", "30", "60"])
def test_joins_land_on_frames_at_every_standard_rate_with_and_without_trims(tmp_path: Path, rate: str) -> None:
    # 48 frames of source with clicks at its 3rd and 18th frames; the middle segment trimmed
    # by 12 frames and 24 long (its first click cut off, its second 6 frames in). Trims and
    # lengths are whole frames, written as the exact decimals they are (0.5005 s at 23.976).
    fps = Fraction(rate)
    make_stamped(
        tmp_path / "seg.mp4",
        fps=rate,
        duration=float(48 / fps),
        audio_duration=float(48 / fps),
        clicks=(float(3 / fps), float(18 / fps)),
    )
    spec = write_spec(
        tmp_path,
        {
            "output": {"resolution": "320x180", "fps": float(fps)},
            "segments": [
                {"id": "a", "url": "seg.mp4", "volume": 1.0},
                {"id": "b", "url": "seg.mp4", "trim_start": float(12 / fps), "duration": float(24 / fps), "volume": 1},
                {"id": "c", "url": "seg.mp4", "volume": 1.0},
            ],
            "audio": {"loudness": None},
        },
    )
    out = tmp_path / "out.mp4"
    result = render(spec, out)
    assert video_stream(out)["r_frame_rate"] == f"{fps.numerator}/{fps.denominator}"
    clicks = [3, 18, 48 + 6, 72 + 3, 72 + 18]
    assert_in_sync(
        out,
        result,
        fps=fps,
        segment_frames=[48, 24, 48],
        first_frames=[0, 12, 0],
        clicks=[float(n / fps) for n in clicks],
    )


def test_a_variable_rate_first_segment_without_an_output_rate_gets_the_nearest_standard_one(tmp_path: Path) -> None:
    # A phone's VFR: 30 fps with every 20th frame never made (57 frames in 2 s: an average
    # of 28.5). No output.fps: the output is 29.97 (nearest by ratio), never 28.5 or the
    # odd fraction a phone's timestamps give. Each output slot shows the latest source frame
    # at its time; its clicks on time; a constant-rate segment after it keeps its frames.
    picture = f"testsrc2=s=320x180:r=30:d=2,format=yuv420p,{stamp_filter()},select='mod(n+1\\,20)'"
    run_ffmpeg(
        *("-f", "lavfi", "-i", picture, "-f", "lavfi", "-i", click_train([0.3, 1.3], duration=2.0)),
        *("-fps_mode", "vfr", *H264_HIGH, "-c:a", "aac", str(tmp_path / "vfr.mp4")),
    )
    times = measure.frame_times(tmp_path / "vfr.mp4")
    kept = [n for n in range(60) if (n + 1) % 20]
    assert measure.frame_stamps(tmp_path / "vfr.mp4") == kept and len(times) == 57
    assert Fraction(video_stream(tmp_path / "vfr.mp4")["avg_frame_rate"]) not in (30, Fraction(30000, 1001))
    make_stamped(tmp_path / "cfr.mp4", fps="30000/1001", duration=1.001, audio_duration=1.001, clicks=(0.2,))
    spec = write_spec(
        tmp_path,
        {
            "output": {"resolution": "320x180"},
            "segments": [{"id": "vfr", "url": "vfr.mp4", "volume": 1.0}, {"id": "cfr", "url": "cfr.mp4", "volume": 1}],
            "audio": {"loudness": None},
        },
    )
    out = tmp_path / "out.mp4"
    result = render(spec, out)
    fps = Fraction(30000, 1001)
    assert video_stream(out)["r_frame_rate"] == "30000/1001"
    # Its picture lasts until its last frame (58, the 60th never made) ends: 59/30 s, 59
    # frames at 29.97. Slot n shows the latest frame whose own time rounds to slot n or before.
    vfr_frames = round(Fraction(59, 30) * fps)
    assert vfr_frames == 59
    expected = [kept[max(k for k, t in enumerate(times) if round(t * fps) <= n)] for n in range(vfr_frames)]
    assert measure.frame_stamps(out) == expected + list(range(30)), measure.frame_stamps(out)[:70]
    video_s, audio_s = measure.stream_durations(out)
    total = float((vfr_frames + 30) / fps)
    assert abs(video_s - total) <= 0.001 and abs(audio_s - total) <= 0.001, (video_s, audio_s, total)
    onsets = measure.click_onsets(measure.decode_audio(out))
    wanted = [0.3, 1.3, float(vfr_frames / fps) + 0.2]
    assert len(onsets) == 3 and max(abs(a - b) for a, b in zip(onsets, wanted, strict=True)) <= 0.005, onsets
    sync = result["sync"]
    assert sync["onsets_measured"] == 2 and sync["max_onset_error_ms"] <= 5, sync
    assert sync["max_boundary_error_ms"] <= 1000 / 29.97, sync


def test_a_segment_without_sound_is_silent_between_segments_with_sound(tmp_path: Path) -> None:
    # A generator's picture-only segment between two with sound: it is copied like them, its
    # three seconds silent, and the next segment's sound starts at its own first frame.
    make_stamped(tmp_path / "sound.mp4", duration=2, audio_duration=2, clicks=(0.2, 1.5))
    make_stamped(tmp_path / "mute.mp4", duration=3)
    names = ["sound", "mute", "sound"]
    out, result = render_files(tmp_path, names)
    assert result["fast_path"] is True, result["fast_path_blockers"]
    assert_in_sync(out, result, fps=Fraction(30), segment_frames=[60, 90, 60], clicks=[0.2, 1.5, 5.2, 6.5], heard=2)
    samples = measure.decode_audio(out)
    assert np.abs(samples[int(2.02 * 48000) : int(4.98 * 48000)]).max() < 0.01


def test_a_trim_far_into_its_file_reads_picture_and_sound_from_there(tmp_path: Path) -> None:
    # 12 s of phone footage trimmed at 8.2 s: the sound is read from a seek (plan.sound_seek),
    # not decoded from the start; every frame and both clicks land where they would have.
    make_stamped(tmp_path / "long.mp4", fps=10, duration=12, audio_duration=12, clicks=(8.5, 9.3, 11.5))
    spec = write_spec(
        tmp_path,
        {
            "output": {"resolution": "320x180", "fps": 10},
            "segments": [
                {"id": "a", "url": "long.mp4", "trim_start": 8.2, "duration": 2, "volume": 1.0},
                {"id": "b", "url": "long.mp4", "trim_start": 9.0, "duration": 1, "volume": 1.0},
            ],
            "audio": {"loudness": None},
        },
    )
    out = tmp_path / "out.mp4"
    result = render(spec, out)
    assert_in_sync(
        out, result, fps=Fraction(10), segment_frames=[20, 10], first_frames=[82, 90], clicks=[0.3, 1.1, 2.3]
    )


def quadrants(path: Path, at: float, *, autorotate: bool = True) -> list[int]:
    """Mean grey of the picture's four quarters (top-left, top-right, bottom-left, bottom-right),
    decoded as a player shows it (rotation applied) unless told not to."""
    done = subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-v",
            "error",
            *([] if autorotate else ["-noautorotate"]),
            *("-ss", str(at), "-i", str(path), "-frames:v", "1"),
            *("-vf", "scale=2:2:flags=area,format=gray", "-f", "rawvideo", "-"),
        ],
        capture_output=True,
        check=True,
        timeout=60,
    )
    return list(done.stdout)


@pytest.mark.parametrize(
    ("rotate", "coded", "bars"),
    [
        (90, "transpose=cclock", (0, 0, 0, 0)),
        (180, "hflip,vflip", (0, 0, 0, 0)),
        (270, "transpose=clock", (0, 0, 0, 0)),
        (90, "null", (0, 0, 109, 109)),  # landscape-coded, shown portrait: pillarboxed
    ],
    ids=["90", "180", "270", "portrait-90"],
)
def test_rotated_sources_are_shown_upright(tmp_path: Path, rotate: int, coded: str, bars: tuple[int, ...]) -> None:
    # A picture whose top-left quarter is white, stored turned (as a phone stores it) with the
    # rotation the player undoes. The output shows what a plain ffmpeg decode of the source
    # shows; the stored picture itself has the white corner elsewhere.
    picture = "color=c=0x404040:s=320x180:r=25:d=1,drawbox=x=0:y=0:w=160:h=90:c=white:t=fill"
    run_ffmpeg("-f", "lavfi", "-i", f"{picture},{coded}", *H264_HIGH, str(tmp_path / "stored.mp4"))
    # The rotation as a display matrix (a remux writes the tag as one, as phones write it).
    run_ffmpeg(
        *("-i", str(tmp_path / "stored.mp4"), "-c", "copy", "-metadata:s:v:0", f"rotate={rotate}"),
        str(tmp_path / "turned.mp4"),
    )
    assert int(video_stream(tmp_path / "turned.mp4")["side_data_list"][0]["rotation"]) % 360 in (rotate, 360 - rotate)
    shown = quadrants(tmp_path / "turned.mp4", 0.5)
    assert shown != quadrants(tmp_path / "turned.mp4", 0.5, autorotate=False)  # really stored turned
    spec = write_spec(
        tmp_path, {"output": {"resolution": "320x180", "fps": 25}, "segments": [{"id": "a", "url": "turned.mp4"}]}
    )
    out = tmp_path / "out.mp4"
    render(spec, out)
    got = measure.letterbox_bars(out, 0.5)
    assert all(abs(a - b) <= 2 for a, b in zip(got, bars, strict=True)), got
    # The picture between the bars, by quarters, is what the source shows.
    frame = measure.gray_frame(out, 0.5)[:, bars[2] : 320 - bars[3]].astype(float)
    h, w = frame.shape[0] // 2, frame.shape[1] // 2
    quarters = [frame[:h, :w], frame[:h, w:], frame[h:, :w], frame[h:, w:]]
    means = [float(q.mean()) for q in quarters]
    assert max(abs(m - s) for m, s in zip(means, shown, strict=True)) <= 8, (means, shown)
    assert video_stream(out).get("side_data_list") is None  # no rotation left for a player to apply twice
