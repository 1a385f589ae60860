"""A long segment is encoded as pieces: the same frames as one encode, on every core."""

from __future__ import annotations

import json
import subprocess
from fractions import Fraction
from pathlib import Path

import pytest

from scenerender.core import plan
from scenerender.core.probe import probe
from scenerender.core.spec import parse_spec
from scenerender.core.timeline import Timeline, build_timeline
from tests import measure
from tests.cli import render_json
from tests.ffmpeg_log import busy_at, logging_ffmpeg, read_runs
from tests.mediagen import make_tone_burst, make_video, run_ffmpeg

pytestmark = pytest.mark.integration


def timeline_of(tmp_path: Path, source: Path, *, trim: float, fps: int, size: str = "320x180") -> Timeline:
    spec = {
        "version": 1,
        "project_id": "p",
        "scene_id": "s",
        "output": {"resolution": size, "fps": fps},
        "segments": [{"id": "a", "url": source.name, "trim_start": trim}],
    }
    probes = {source.name: probe(source, input_path="segments[0].url")}
    return build_timeline(parse_spec(json.dumps(spec)), probes)


def frame_digests(argv: list[str]) -> list[str]:
    """What the command hands its encoder, frame by frame: the encode itself left out, so the
    frames are compared exactly rather than through a lossy encode."""
    to_encoder = argv[: argv.index("-frames:v") + 2]
    done = subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", *to_encoder[1:], "-f", "framemd5", "-"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return [line.rsplit(",", 1)[1].strip() for line in done.stdout.splitlines() if not line.startswith("#")]


@pytest.mark.parametrize(
    ("rate", "b_frames", "gop", "trim", "out_fps"),
    [
        ("25", 0, 50, 0.3, 30),  # rate conversion, a trim between source frames
        ("30000/1001", 0, 60, 0.123, 30),  # NTSC to whole frames: slots drift against the source
        ("30", 3, 60, 0.0, 24),  # B-frames in the source, frames dropped
        # x264's default GOP (8.3 s here): a piece's seek lands on the file's first keyframe,
        # and its read limit must still reach past its end.
        ("30000/1001", 0, 250, 1.392, 30),
    ],
)
def test_pieces_hand_the_encoder_exactly_the_frames_of_the_whole_segment(
    tmp_path: Path, rate: str, b_frames: int, gop: int, trim: float, out_fps: int
) -> None:
    source = tmp_path / "long.mp4"
    # testsrc2 moves every frame, so a frame taken once too often or once too few shows. A
    # piece's seek lands on a keyframe ahead of it and decodes up to the piece.
    run_ffmpeg(
        "-f",
        "lavfi",
        "-i",
        f"testsrc2=s=320x180:r={rate}:d=19",
        *("-c:v", "libx264", "-preset", "ultrafast", "-bf", str(b_frames), "-g", str(gop)),
        *("-pix_fmt", "yuv420p", str(source)),
    )
    timeline = timeline_of(tmp_path, source, trim=trim, fps=out_fps)
    enc = plan.EncodeSettings.full()
    pieces = plan.segment_pieces(timeline, enc, {0: [0.0]})  # even cuts, wherever the keyframes are
    seg = timeline.segments[0]
    assert len(pieces) == 3 and sum(p.frames for p in pieces) == seg.frames
    whole_segment = plan.Piece(seg, 0, seg.frames)
    whole = frame_digests(plan.normalize_command(whole_segment, timeline, tmp_path / "w.mp4", enc).argv)
    split = [
        digest
        for n, piece in enumerate(pieces)
        for digest in frame_digests(plan.normalize_command(piece, timeline, tmp_path / f"{n}.mp4", enc).argv)
    ]
    assert len(whole) == seg.frames
    mismatched = [i for i, (a, b) in enumerate(zip(whole, split, strict=True)) if a != b]
    assert not mismatched, f"frames {mismatched[:10]} differ (pieces start at {[p.first_frame for p in pieces]})"
    # And the slots show the source's frames, each once where the output's rate is not above the
    # source's, and some twice where it is (25 -> 30: five of every six distinct).
    shown = seg.frames * min(Fraction(1), Fraction(rate) / out_fps)
    assert abs(len(set(whole)) - shown) <= 1, (len(set(whole)), shown)


def test_a_long_segment_is_encoded_as_pieces_on_both_cores_and_joins_whole(tmp_path: Path) -> None:
    """One 30 s segment on two cores: whole, one encode of two frame threads with the audio
    beside it; as four pieces, two encodes at a time with the audio among them."""
    source = make_video(tmp_path / "seg.mp4", width=320, height=180, fps=25, duration=30.0)
    make_tone_burst(tmp_path / "line.wav", freq=1000, duration=0.4)
    spec = {
        "version": 1,
        "project_id": "p",
        "scene_id": "long",
        "output": {"resolution": "720p", "fps": 30},
        "segments": [{"id": "s0", "url": "seg.mp4"}],
        "audio": {"clips": [{"type": "dialogue", "url": "line.wav", "segment_id": "s0", "offset": 16.0}]},
    }
    (tmp_path / "job_spec.json").write_text(json.dumps(spec))
    logged, log = logging_ffmpeg(tmp_path)
    env = {
        "SCENERENDER_CPUS": "2",
        **logged,
        "SCENERENDER_SEGMENT_CACHE": "true",
        "SCENERENDER_CACHE_DIR": str(tmp_path / "cache"),
    }
    out = tmp_path / "o.mp4"
    result = render_json(tmp_path / "job_spec.json", out, env=env)
    assert (result["segments_encoded"], result["segments_reused"]) == (1, 0)

    runs = read_runs(log)
    encodes = sorted(run for run in runs if "libx264" in run[2])
    assert len(encodes) == 4 and all("-threads 1 " in argv for *_, argv in encodes)
    # Both cores busy (two encodes, or one beside the audio pass) until the last piece starts.
    for began, _, _ in encodes[1:]:
        encoding, others = busy_at(runs, began)
        assert encoding + min(others, 1) == 2, (encoding, others)

    # The pieces join into the segment: every frame, in order, with the sound where it belongs.
    assert measure.count_frames(out) == 900
    assert result["duration_s"] == pytest.approx(30.0, abs=1 / 30) and result["av_drift_ms"] == 0.0
    psnr, _ = measure.picture_quality(out, [source], width=1280, height=720, fps="30")
    assert psnr >= 38.0, psnr  # a piece out of place or a frame out of step drops this below 20 dB
    samples = measure.decode_audio(out)
    assert measure.onset_time(samples, freq=1000) == pytest.approx(16.0, abs=0.02)

    # Rendered again, every piece comes from the cache: the segment counts as reused.
    again = render_json(tmp_path / "job_spec.json", tmp_path / "again.mp4", env=env)
    assert (again["segments_encoded"], again["segments_reused"]) == (0, 1)
