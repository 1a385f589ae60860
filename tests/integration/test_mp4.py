"""The result is measured by reading the output's boxes: it must say what ffprobe says of the same file."""

from __future__ import annotations

import subprocess
from fractions import Fraction
from pathlib import Path

import pytest

from scenerender.core.mp4 import keyframe_times, read_movie
from scenerender.errors import RenderError
from tests import measure
from tests.mediagen import make_not_media, make_video, run_ffmpeg

pytestmark = pytest.mark.integration


def _movie(path: Path, *, size: str, rate: str, video_s: float, audio_s: float, faststart: bool) -> Path:
    """H.264 with B-frames (an edit list for the video) and AAC (an edit list for its priming)."""
    run_ffmpeg(
        *("-f", "lavfi", "-i", f"testsrc2=s={size}:r={rate}:d={video_s}"),
        *("-f", "lavfi", "-i", f"sine=f=440:r=48000:d={audio_s}"),
        *("-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p"),
        *("-c:a", "aac", "-ar", "48000", "-ac", "2"),
        *(["-movflags", "+faststart"] if faststart else []),
        str(path),
    )
    return path


@pytest.mark.parametrize(
    ("size", "rate", "video_s", "audio_s", "faststart"),
    [
        ("1920x1080", "30", 2.5, 2.5, True),
        ("1280x720", "30000/1001", 3.7, 3.2, True),  # audio ends early: a drift of about -0.5 s
        ("720x1280", "25", 1.96, 2.43, False),  # moov after mdat; audio runs on
        ("640x480", "24", 1.0, 1.0, False),
    ],
)
def test_read_movie_agrees_with_ffprobe(
    tmp_path: Path, size: str, rate: str, video_s: float, audio_s: float, faststart: bool
) -> None:
    path = _movie(tmp_path / "m.mp4", size=size, rate=rate, video_s=video_s, audio_s=audio_s, faststart=faststart)
    probed = measure.probe(path)
    video = next(s for s in probed["streams"] if s["codec_type"] == "video")
    audio = next(s for s in probed["streams"] if s["codec_type"] == "audio")

    movie = read_movie(path)

    assert movie.duration_s == pytest.approx(float(probed["format"]["duration"]), abs=1e-3)
    assert movie.video.duration_s == pytest.approx(float(video["duration"]), abs=1e-3)
    assert movie.audio.duration_s == pytest.approx(float(audio["duration"]), abs=1e-3)
    assert (movie.video.width, movie.video.height) == (video["width"], video["height"])
    assert movie.video.frame_rate == Fraction(video["r_frame_rate"])
    drift = movie.audio.duration_s - movie.video.duration_s
    assert drift == pytest.approx(float(audio["duration"]) - float(video["duration"]), abs=1e-3)


def test_read_movie_refuses_what_is_not_a_finished_scene(tmp_path: Path) -> None:
    silent = make_video(tmp_path / "silent.mp4", width=320, height=240, fps=30, duration=1.0, audio=False)
    with pytest.raises(RenderError, match="video or an audio track"):
        read_movie(silent)
    with pytest.raises(RenderError, match="could not be read as MP4"):
        read_movie(make_not_media(tmp_path / "noise.mp4"))
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(
        _movie(
            tmp_path / "whole.mp4", size="320x240", rate="30", video_s=1.0, audio_s=1.0, faststart=True
        ).read_bytes()[:600]
    )
    with pytest.raises(RenderError, match="could not be read as MP4"):
        read_movie(truncated)


def _ffprobe_keyframes(path: Path) -> list[float]:
    """The keyframes' times as ffprobe decodes them (the frames it shows when it skips the rest)."""
    argv = ["ffprobe", "-v", "error", "-select_streams", "v:0", "-skip_frame", "nokey", "-show_entries"]
    done = subprocess.run(
        [*argv, "frame=pts_time", "-of", "csv=p=0", str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    return [float(line.strip(",")) for line in done.stdout.split()]


@pytest.mark.parametrize(
    ("options", "rate"),
    [
        (["-bf", "3", "-g", "48", "-sc_threshold", "0"], "24"),  # B-frames: composition offsets and an edit list
        (["-bf", "0", "-g", "250"], "30000/1001"),  # x264's default GOP
        (["-x264-params", "keyint=1"], "25"),  # every frame a keyframe: no sync sample table
    ],
)
def test_keyframe_times_are_the_ones_ffprobe_decodes(tmp_path: Path, options: list[str], rate: str) -> None:
    source = tmp_path / "k.mp4"
    run_ffmpeg(
        *("-f", "lavfi", "-i", f"testsrc2=s=160x90:r={rate}:d=12"),
        *("-f", "lavfi", "-i", "sine=f=440:d=12"),
        *("-c:v", "libx264", "-preset", "ultrafast", *options, "-pix_fmt", "yuv420p", "-c:a", "aac", str(source)),
    )
    ours, theirs = keyframe_times(source), _ffprobe_keyframes(source)
    assert ours is not None and len(ours) == len(theirs) > 1
    assert ours == pytest.approx(theirs, abs=1e-4)


def test_keyframe_times_of_what_is_not_mp4_are_unknown(tmp_path: Path) -> None:
    assert keyframe_times(make_not_media(tmp_path / "notes.mp4")) is None
    wav = tmp_path / "tone.wav"
    run_ffmpeg("-f", "lavfi", "-i", "sine=d=1", str(wav))
    assert keyframe_times(wav) is None
