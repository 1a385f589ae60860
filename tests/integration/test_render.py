"""`scenerender render` end to end: real ffmpeg, media the suite makes, outputs measured."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests import measure
from tests.mediagen import make_music, make_not_media, make_tone_burst, make_video

pytestmark = pytest.mark.integration

FRAME_30 = 1 / 30


def write_spec(folder: Path, spec: dict[str, Any], name: str = "job_spec.json") -> Path:
    path = folder / name
    path.write_text(json.dumps({"version": 1, "project_id": "p", "scene_id": "s", **spec}))
    return path


def run_cli(*args: str | Path, cache_dir: Path | None = None) -> subprocess.CompletedProcess[str]:
    # No segment cache unless a test asks for one: each test measures its own encodes.
    env = {**os.environ, "SCENERENDER_SEGMENT_CACHE": "false"}
    if cache_dir is not None:
        env.update(SCENERENDER_SEGMENT_CACHE="true", SCENERENDER_CACHE_DIR=str(cache_dir))
    return subprocess.run(
        [sys.executable, "-m", "scenerender", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env=env,
    )


def render(spec_path: Path, out: Path, cache_dir: Path | None = None) -> dict[str, Any]:
    done = run_cli("render", spec_path, "-o", out, "--json", cache_dir=cache_dir)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("media")
    for name in ("a", "b", "c"):
        make_video(folder / f"{name}.mp4", width=1280, height=720, fps=30, duration=2.0)
    make_tone_burst(folder / "line.wav", freq=1000, duration=0.6, lead_silence=0.0)
    make_music(folder / "bed.wav", duration=2.5, freq=220)
    return folder


def test_matching_segments_are_copied_into_a_browser_ready_mp4(media: Path, tmp_path: Path) -> None:
    spec = write_spec(
        media,
        {"output": {"resolution": "720p"}, "segments": [{"id": n, "url": f"{n}.mp4"} for n in "abc"]},
        "fast.json",
    )
    out = tmp_path / "fast.mp4"
    result = render(spec, out)
    assert result["fast_path"] is True and result["segments_encoded"] == 0
    info = measure.probe(out)
    video = next(s for s in info["streams"] if s["codec_type"] == "video")
    audio = next(s for s in info["streams"] if s["codec_type"] == "audio")
    assert (video["codec_name"], video["profile"], video["pix_fmt"]) == ("h264", "High", "yuv420p")
    assert (video["width"], video["height"], video["avg_frame_rate"]) == (1280, 720, "30/1")
    assert (audio["codec_name"], audio["profile"], audio["sample_rate"], audio["channels"]) == ("aac", "LC", "48000", 2)
    assert abs(float(info["format"]["duration"]) - 6.0) <= FRAME_30
    assert measure.count_frames(out) == 180
    assert measure.is_faststart(out)
    assert result["size_bytes"] == out.stat().st_size
    assert abs(result["av_drift_ms"]) <= 1000 * FRAME_30


def test_dialogue_lands_on_its_segment_offset_and_music_ducks_under_it(media: Path, tmp_path: Path) -> None:
    spec = write_spec(
        media,
        {
            "output": {"resolution": "720p"},
            "segments": [{"id": n, "url": f"{n}.mp4"} for n in "abc"],
            "audio": {
                "clips": [
                    {"type": "music", "url": "bed.wav", "loop": True, "volume": 0.5},
                    {"type": "dialogue", "url": "line.wav", "segment_id": "b", "offset": 0.25},
                ],
                "ducking": {"music_db": -12, "attack": 0.2, "release": 0.5},
            },
        },
        "duck.json",
    )
    out = tmp_path / "duck.mp4"
    render(spec, out)
    samples = measure.decode_audio(out)
    onset = measure.onset_time(samples, freq=1000, after=1.0)
    assert abs(onset - 2.25) <= 0.020, onset
    before = measure.band_level_db(samples, freq=220, start=1.4, end=1.95)
    during = measure.band_level_db(samples, freq=220, start=2.3, end=2.8)
    after = measure.band_level_db(samples, freq=220, start=3.6, end=4.5)
    assert before - during >= 8, (before, during)
    assert abs(after - before) <= 1.5, (before, after)  # released again


def test_loudness_reaches_the_target_under_the_peak_ceiling(media: Path, tmp_path: Path) -> None:
    spec = write_spec(
        media,
        {
            "output": {"resolution": "720p"},
            "segments": [{"id": n, "url": f"{n}.mp4", "volume": 1.0} for n in "abc"],
            "audio": {
                "clips": [{"type": "music", "url": "bed.wav", "loop": True, "volume": 2.0}],
                "loudness": {"target_lufs": -18, "true_peak_db": -2.0},
            },
        },
        "loud.json",
    )
    out = tmp_path / "loud.mp4"
    result = render(spec, out)
    lufs, peak = measure.loudness(out)
    assert abs(lufs - (-18)) <= 1.0 and peak <= -2.0, (lufs, peak)
    assert result["loudness_lufs"] == pytest.approx(lufs, abs=0.2)


def test_mixed_sources_are_normalised_and_letterboxed(tmp_path: Path) -> None:
    make_video(tmp_path / "hd25.mp4", width=1280, height=720, fps=25, duration=2, sample_rate=44100, channels=1)
    make_video(tmp_path / "ntsc.mp4", width=1920, height=1080, fps="30000/1001", duration=2)
    make_video(tmp_path / "portrait.mp4", width=1080, height=1920, fps=30, duration=2, audio=False)
    make_video(tmp_path / "sd24.mp4", width=640, height=480, fps=24, duration=2)
    names = ["hd25", "ntsc", "portrait", "sd24"]
    spec = write_spec(
        tmp_path,
        {
            "output": {"resolution": "1080p", "fps": 30},
            "segments": [{"id": n, "url": f"{n}.mp4", "volume": 1.0} for n in names],
        },
    )
    out = tmp_path / "mixed.mp4"
    result = render(spec, out)
    assert result["fast_path"] is False and result["segments_encoded"] == 4
    assert (result["width"], result["height"], result["fps"]) == (1920, 1080, 30)
    assert measure.count_frames(out) == 240  # 2 s each at 30 fps, whatever the source rate
    # Portrait at 4-6 s: pillarboxed, bars left and right only.
    top, bottom, left, right = measure.letterbox_bars(out, at=5.0)
    assert left > 600 and right > 600 and top == 0 and bottom == 0, (top, bottom, left, right)
    # 4:3 at 6-8 s: 240 px bars each side at 1080p.
    top, bottom, left, right = measure.letterbox_bars(out, at=7.0)
    assert abs(left - 240) <= 4 and abs(right - 240) <= 4 and top == 0, (top, bottom, left, right)
    assert abs(result["av_drift_ms"]) <= 1000 * FRAME_30


def test_normalised_segments_keep_their_picture(tmp_path: Path) -> None:
    # A flat pattern and a grainy one (texture like real footage), 720p25 up to 1080p30.
    sources = [
        make_video(tmp_path / "flat.mp4", width=1280, height=720, fps=25, duration=2, audio=False),
        make_video(tmp_path / "grain.mp4", width=1280, height=720, fps=25, duration=2, audio=False, grain=12),
    ]
    spec = write_spec(
        tmp_path,
        {"output": {"resolution": "1080p", "fps": 30}, "segments": [{"id": s.stem, "url": s.name} for s in sources]},
    )
    out = tmp_path / "scene.mp4"
    result = render(spec, out)
    assert result["segments_encoded"] == 2
    psnr, ssim = measure.picture_quality(out, sources, width=1920, height=1080, fps="30")
    # The picture of plain veryfast at crf 20 (measured 42.13 dB / 0.9683; ours 42.16 / 0.9684,
    # and 42.26 / 0.9690 with the B-pyramid and a lookahead of 10, which cost 35 MiB an encode).
    # Fails on x264's default crf 23 (40.09 / 0.9485), on the diamond search at crf 20 without
    # the half step (41.91 / 0.9665) and on the preview's ultrafast crf 30 (37.86 / 0.9025).
    assert psnr >= 42.0 and ssim >= 0.967, (psnr, ssim)


def test_hundred_one_second_segments_do_not_drift(tmp_path: Path) -> None:
    make_video(tmp_path / "one.mp4", width=320, height=180, fps=25, duration=1.0)
    make_tone_burst(tmp_path / "tick.wav", freq=1000, duration=0.2)
    spec = write_spec(
        tmp_path,
        {
            "output": {"resolution": "360p", "fps": 30, "preview": True},
            "segments": [{"id": f"s{i}", "url": "one.mp4"} for i in range(100)],
            "audio": {
                "clips": [{"type": "sfx", "url": "tick.wav", "segment_id": "s98", "offset": 0.5}],
                "loudness": None,
            },
        },
    )
    out = tmp_path / "long.mp4"
    result = render(spec, out)
    assert abs(result["av_drift_ms"]) <= 1000 * FRAME_30
    assert measure.count_frames(out) == 3000
    assert abs(measure.onset_time(measure.decode_audio(out), freq=1000, after=90) - 98.5) <= 0.020


def test_preview_is_small_and_fades_and_loops_happen_where_asked(media: Path, tmp_path: Path) -> None:
    make_tone_burst(tmp_path / "blip.wav", freq=700, duration=0.3, lead_silence=0.0)
    make_music(tmp_path / "pad.wav", duration=6.0, freq=300)
    spec = write_spec(
        tmp_path,
        {
            "output": {"resolution": "1080p", "preview": True},
            "segments": [{"id": n, "url": str(media / f"{n}.mp4")} for n in "abc"],
            "audio": {
                "clips": [
                    {"type": "sfx", "url": "blip.wav", "start": 0.5, "duration": 0.3, "loop": True},
                    {"type": "music", "url": "pad.wav", "fade_in": 2.0},
                ],
                "loudness": None,
                "ducking": {"enabled": False},
            },
        },
    )
    out = tmp_path / "preview.mp4"
    result = render(spec, out)
    assert (result["width"], result["height"]) == (854, 480)
    samples = measure.decode_audio(out)
    # Loop: the 0.3 s blip repeats back to back from 0.5 s; silence before it.
    assert measure.band_level_db(samples, freq=700, start=0.0, end=0.45) < -50
    for t in (0.6, 2.0, 4.0, 5.8):
        assert measure.band_level_db(samples, freq=700, start=t, end=t + 0.1) > -40
    # Fade in: quiet at the start, full after 2 s.
    assert (
        measure.band_level_db(samples, freq=300, start=2.5, end=3.0)
        - measure.band_level_db(samples, freq=300, start=0.05, end=0.3)
        >= 15
    )


def test_longest_policy_holds_the_last_frame_until_the_narration_ends(media: Path, tmp_path: Path) -> None:
    make_tone_burst(tmp_path / "narr.wav", freq=900, duration=2.0)
    spec = write_spec(
        tmp_path,
        {
            "output": {"resolution": "720p", "duration_policy": "longest"},
            "segments": [{"id": "a", "url": str(media / "a.mp4")}],
            "audio": {"clips": [{"type": "narration", "url": "narr.wav", "start": 1.0}]},
        },
    )
    out = tmp_path / "longest.mp4"
    result = render(spec, out)
    assert abs(result["duration_s"] - 3.0) <= FRAME_30 and measure.count_frames(out) == 90
    assert abs(result["av_drift_ms"]) <= 1000 * FRAME_30


def test_validate_probe_reports_the_timeline(media: Path) -> None:
    spec = write_spec(
        media,
        {
            "segments": [{"id": n, "url": f"{n}.mp4"} for n in "abc"],
            "audio": {
                "clips": [
                    {"type": "dialogue", "url": "line.wav", "segment_id": "c", "offset": 1.8},
                    {"type": "narration", "url": "line.wav", "start": 4.1},
                ]
            },
        },
        "dry.json",
    )
    done = run_cli("validate", spec, "--probe", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["duration_s"] == pytest.approx(6.0)
    assert report["clips"][0]["start"] == pytest.approx(5.8) and report["clips"][0]["end"] == pytest.approx(6.0)
    assert report["overruns"] == ["audio.clips[0]"]
    assert all("1280x720, output is 1920x1080" in row["note"] for row in report["segments"])


@pytest.mark.parametrize(
    ("segment", "code", "message"),
    [
        ({"url": "missing.mp4"}, 3, "segments[0].url"),
        # Named as the spec names it, not as the private dir's link ffprobe was given.
        ({"url": "notes.mp4"}, 3, "segments[0].url (notes.mp4): not usable media (Invalid data found"),
        ({"url": "line.wav"}, 3, "no video stream"),
        ({"url": "a.mp4", "trim_start": 9.0}, 2, "segments[0].trim_start"),
        ({"url": "https://127.0.0.1:9/x.mp4"}, 3, "segments[0].url"),
        ({"url": "file:///etc/passwd"}, 3, "not allowed"),
    ],
)
def test_bad_inputs_exit_with_their_code_and_leave_no_output(
    media: Path, tmp_path: Path, segment: dict[str, Any], code: int, message: str
) -> None:
    make_not_media(media / "notes.mp4")
    spec = write_spec(media, {"segments": [{"id": "a", **segment}]}, f"bad-{code}.json")
    out = tmp_path / "bad.mp4"
    done = run_cli("render", spec, "-o", out)
    assert done.returncode == code, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr
    assert not out.exists() and not list(tmp_path.iterdir())


def test_an_output_that_would_replace_an_input_or_the_spec_is_refused(tmp_path: Path) -> None:
    make_video(tmp_path / "seg.mp4", width=320, height=240, fps=30, duration=1.0)
    make_tone_burst(tmp_path / "line.wav", freq=1000, duration=0.3)
    spec = write_spec(
        tmp_path,
        {
            "segments": [{"id": "a", "url": "seg.mp4"}],
            "audio": {"clips": [{"type": "dialogue", "url": "line.wav", "segment_id": "a"}]},
        },
    )
    (tmp_path / "linked").symlink_to(tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    for output, named in [
        (tmp_path / "seg.mp4", "segments[0].url (seg.mp4)"),
        (spec, f"SPEC ({spec})"),
        (tmp_path / "linked" / "line.wav", "audio.clips[0].url (line.wav)"),  # the same file by another name
    ]:
        done = run_cli("render", spec, "-o", output)
        assert done.returncode == 2, done.stderr
        assert f"--output: is {named}: the render would overwrite it" in done.stderr, done.stderr
        # The pipeline's download too, refused before the spec is submitted (no cloud is asked).
        done = run_cli("submit", spec, "--download", output)
        assert done.returncode == 2, done.stderr
        assert f"--download: is {named}: the render would overwrite it" in done.stderr, done.stderr
    done = run_cli("submit", spec, "--download", tmp_path / "missing" / "scene.mp4")
    assert done.returncode == 2 and "--download: folder does not exist" in done.stderr, done.stderr
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before


def test_a_peaky_mix_is_limited_to_the_ceiling_on_its_way_to_the_target(media: Path, tmp_path: Path) -> None:
    # A quiet bed with one loud click: the gain to -14 LUFS would push the click far past
    # the ceiling, so the limiter path (loudnorm with the first pass's measurements) runs.
    make_tone_burst(tmp_path / "bed.wav", freq=300, duration=6.0, amplitude=0.02)
    make_tone_burst(tmp_path / "click.wav", freq=2000, duration=0.01, amplitude=0.9)
    spec = write_spec(
        tmp_path,
        {
            "output": {"resolution": "720p"},
            "segments": [{"id": n, "url": str(media / f"{n}.mp4")} for n in "abc"],
            "audio": {"clips": [{"type": "music", "url": "bed.wav"}, {"type": "sfx", "url": "click.wav", "start": 3}]},
        },
    )
    out = tmp_path / "peaky.mp4"
    render(spec, out)
    lufs, peak = measure.loudness(out)
    assert abs(lufs - (-14)) <= 1.0 and peak <= -1.0, (lufs, peak)


def test_unchanged_segments_are_reused_and_a_changed_one_is_encoded(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    for i in range(4):
        make_video(tmp_path / f"s{i}.mp4", width=640, height=360, fps=25, duration=1.0, tone=300 + 50 * i)
    spec = write_spec(
        tmp_path,
        {
            "output": {"resolution": "720p", "fps": 30},
            "segments": [{"id": f"s{i}", "url": f"s{i}.mp4"} for i in range(4)],
        },
    )
    first = render(spec, tmp_path / "first.mp4", cache)
    assert (first["segments_encoded"], first["segments_reused"]) == (4, 0)
    second = render(spec, tmp_path / "second.mp4", cache)
    assert (second["segments_encoded"], second["segments_reused"]) == (0, 4)
    make_video(tmp_path / "s2.mp4", width=640, height=360, fps=25, duration=1.0, pattern="smptebars")
    third = render(spec, tmp_path / "third.mp4", cache)
    assert (third["segments_encoded"], third["segments_reused"]) == (1, 3)
    for name in ("first", "second", "third"):
        assert measure.count_frames(tmp_path / f"{name}.mp4") == 120
    assert (tmp_path / "first.mp4").read_bytes() == (tmp_path / "second.mp4").read_bytes()


def test_playlists_are_refused_and_a_render_past_its_time_limit_fails(media: Path, tmp_path: Path) -> None:
    (tmp_path / "list.m3u8").write_text(f"#EXTM3U\n#EXTINF:2.0,\n{media / 'a.mp4'}\n#EXT-X-ENDLIST\n")
    spec = write_spec(tmp_path, {"segments": [{"id": "a", "url": "list.m3u8"}]}, "playlist.json")
    done = run_cli("render", spec, "-o", tmp_path / "p.mp4")
    assert done.returncode == 3 and "INPUT_REFUSED" in done.stderr and "segments[0].url" in done.stderr

    slow = write_spec(
        tmp_path,
        {
            "output": {"resolution": "2160p", "fps": 60},
            "segments": [{"id": f"s{i}", "url": str(media / "a.mp4")} for i in range(6)],
        },
        "slow.json",
    )
    env_done = subprocess.run(
        [sys.executable, "-m", "scenerender", "render", str(slow), "-o", str(tmp_path / "slow.mp4")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "SCENERENDER_RENDER_TIMEOUT_S": "1", "SCENERENDER_SEGMENT_CACHE": "false"},
    )
    assert env_done.returncode == 4 and "TIMEOUT" in env_done.stderr, env_done.stderr
    assert not (tmp_path / "slow.mp4").exists()


def audio_stream_md5(path: Path) -> str:
    done = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-map", "0:a", "-c", "copy", "-f", "md5", "-"],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def test_the_full_render_after_its_preview_reuses_the_audio_and_a_changed_mix_does_not(
    media: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    scene: dict[str, Any] = {
        "output": {"resolution": "720p", "fps": 30, "preview": True},
        "segments": [{"id": n, "url": str(media / f"{n}.mp4")} for n in "ab"],
        "audio": {
            "clips": [
                {"type": "music", "url": str(media / "bed.wav"), "loop": True},
                {"type": "dialogue", "url": str(media / "line.wav"), "segment_id": "b", "offset": 0.5},
            ]
        },
    }
    preview = render(write_spec(tmp_path, scene, "preview.json"), tmp_path / "preview.mp4", cache)
    assert preview["audio_reused"] is False and preview["height"] == 480
    # a.mp4 and b.mp4 are the same bytes: whichever probe ends first may serve the other from the cache.
    assert preview["probes_reused"] in (0, 1)
    scene["output"]["preview"] = False
    full = render(write_spec(tmp_path, scene, "full.json"), tmp_path / "full.mp4", cache)
    assert full["audio_reused"] is True and full["height"] == 720
    assert full["probes_reused"] == 4  # a.mp4, b.mp4, bed.wav, line.wav: nothing probed twice
    assert audio_stream_md5(tmp_path / "full.mp4") == audio_stream_md5(tmp_path / "preview.mp4")
    assert full["loudness_lufs"] == preview["loudness_lufs"]
    scene["audio"]["clips"][1]["offset"] = 0.7
    moved = render(write_spec(tmp_path, scene, "moved.json"), tmp_path / "moved.mp4", cache)
    assert moved["audio_reused"] is False
    onset = measure.onset_time(measure.decode_audio(tmp_path / "moved.mp4"), freq=1000)
    assert abs(onset - (2.0 + 0.7)) <= 0.02, onset
