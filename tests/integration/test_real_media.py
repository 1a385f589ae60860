"""Media as users' tools make it (generator and phone exports, editor trims, TTS and music
files), made here with ffmpeg: every output frame's source frame read back from its stamp,
every click found at the sample, against the timeline."""

from __future__ import annotations

import re
import subprocess
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests import measure
from tests.integration.test_render import render, run_cli, write_spec
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
    heard: int | None = None,
) -> None:
    """Picture: frame n of the output is the frame of its segment the timeline puts there.
    Sound: a click in each segment at its scene time. Both streams as long as the timeline.
    ``heard``: how many segments have sound of their own (all of them unless said)."""
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
    # The render's own certificate agrees: every join and every segment's sound measured in place.
    sync = result["sync"]
    assert sync["boundaries_measured"] >= len(segment_frames) + 1, sync
    heard = len(segment_frames) if heard is None else heard
    assert sync["onsets_measured"] == heard and not sync["onsets_not_measured"], sync
    assert sync["max_boundary_error_ms"] <= 1000 * frame and sync["max_onset_error_ms"] <= 20, sync


def render_files(folder: Path, names: list[str]) -> tuple[Path, dict[str, Any]]:
    """A 320x180, 30 fps scene of one segment per name (``NAME.mp4``), each heard in full."""
    spec = write_spec(
        folder,
        {
            "output": {"resolution": "320x180", "fps": 30},
            "segments": [{"id": f"s{i}", "url": f"{n}.mp4", "volume": 1.0} for i, n in enumerate(names)],
            "audio": {"loudness": None},
        },
    )
    out = folder / "out.mp4"
    return out, render(spec, out)


@pytest.mark.parametrize(
    ("sound_s", "clicks", "heard"),
    [
        (5.5, (0.2, 5.3), (0.2,)),  # the click 5.3 s in falls past the picture: not heard
        (4.0, (0.2, 3.5), (0.2, 3.5)),  # the last second of each segment is silence
    ],
    ids=["longer", "shorter"],
)
def test_segment_sound_longer_or_shorter_than_its_picture_stays_on_the_copy_path_in_sync(
    tmp_path: Path, sound_s: float, clicks: tuple[float, ...], heard: tuple[float, ...]
) -> None:
    # Generator and phone exports: 5 s of picture with 5.5 s of sound (or 4). Joined by the
    # file's sound, each later segment would start 0.5 s late (frozen frames at every join),
    # or 1 s early.
    make_stamped(tmp_path / "seg.mp4", duration=5, audio_duration=sound_s, clicks=clicks)
    out, result = render_files(tmp_path, ["seg"] * 4)
    assert result["fast_path"] is True and result["segments_copied"] == 4, result["fast_path_blockers"]
    assert result["duration_s"] == pytest.approx(20.0, abs=0.001)
    assert_in_sync(
        out, result, fps=Fraction(30), segment_frames=[150] * 4, clicks=[5 * k + t for k in range(4) for t in heard]
    )
    if sound_s < 5:
        samples = measure.decode_audio(out)
        for k in range(4):
            gap = samples[int((5 * k + sound_s + 0.02) * 48000) : int((5 * k + 4.98) * 48000)]
            assert np.abs(gap).max() < 0.01, (k, float(np.abs(gap).max()))


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
    out, result = render_files(tmp_path, names)
    assert result["fast_path"] is copied, result["fast_path_blockers"]
    if not copied:
        assert "segments[0]: picture starts 0.500 s into the file" in result["fast_path_blockers"]
    heard = {"late-sound": [0.68, 1.68], "late-picture": [0.7]}
    clicks = [3 * k + t for k, n in enumerate(names) for t in heard[n]]
    assert_in_sync(out, result, fps=Fraction(30), segment_frames=[90, 90], clicks=clicks)


def test_a_file_cut_short_is_refused_naming_the_segment_and_both_lengths(tmp_path: Path) -> None:
    # Index first (as uploads are), then cut in the middle of its media data: the header
    # still promises 4 s. Copied as it is, the render completed with 1 s of video against 2 s
    # of sound; encoded, the last frame would be held.
    whole = make_stamped(tmp_path / "whole.mp4", duration=4, audio_duration=4, output_args=("-movflags", "+faststart"))
    data = whole.read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])
    spec = write_spec(
        tmp_path,
        {
            "output": {"resolution": "320x180", "fps": 30},
            "segments": [{"id": "ok", "url": "whole.mp4"}, {"id": "cut", "url": "cut.mp4", "volume": 1.0}],
        },
    )
    done = run_cli("render", spec, "-o", tmp_path / "out.mp4")
    assert done.returncode == 3, done.stderr
    text = done.stderr
    assert "INPUT_INVALID_MEDIA" in text, text
    assert "segments[1].url" in text and "segment 'cut'" in text and "needs 4.000 s" in text, text
    have = float(re.search(r"only ([\d.]+) s", text)[1])  # type: ignore[index]
    assert 1.0 < have < 3.5, text
    assert not (tmp_path / "out.mp4").exists()


X264 = ("-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p")


@pytest.mark.parametrize(
    ("size", "sar"),
    [((1440, 1080), "4/3"), ((720, 576), "64/45")],
    ids=["1440x1080-sar4:3", "720x576-sar64:45"],
)
def test_anamorphic_sources_fit_by_their_display_shape(tmp_path: Path, size: tuple[int, int], sar: str) -> None:
    # Both are 16:9 pictures. A grey frame whose leftmost 16th is white: letterboxed into 4:3
    # it gets bars top and bottom (none at the sides); cropped to 4:3 it loses its edges, white
    # stripe included. Taken as square pixels it was 4:3 (or 5:4): no bars, stripe kept.
    width, height = size
    picture = f"color=c=gray:s={width}x{height}:r=25:d=1,drawbox=x=0:y=0:w={width // 16}:h=ih:c=white:t=fill"
    from tests.mediagen import run_ffmpeg

    run_ffmpeg("-f", "lavfi", "-i", f"{picture},setsar={sar}", *X264, str(tmp_path / "ana.mp4"))
    results = {}
    for fit in ("letterbox", "crop"):
        spec = write_spec(
            tmp_path,
            {"output": {"resolution": "480x360", "fps": 25, "fit": fit}, "segments": [{"id": "a", "url": "ana.mp4"}]},
            f"{fit}.json",
        )
        out = tmp_path / f"{fit}.mp4"
        render(spec, out)
        results[fit] = out
    top, bottom, left, right = measure.letterbox_bars(results["letterbox"], 0.5)
    assert (left, right) == (0, 0) and abs(top - 45) <= 2 and abs(bottom - 45) <= 2, (top, bottom, left, right)
    frame = measure.gray_frame(results["crop"], 0.5)
    columns = frame.mean(axis=0)
    assert columns.max() < 160 and measure.letterbox_bars(results["crop"], 0.5) == (0, 0, 0, 0), columns[:40]
    stream = next(s for s in measure.probe(results["crop"])["streams"] if s["codec_type"] == "video")
    assert stream.get("sample_aspect_ratio", "1:1") == "1:1"


@pytest.mark.parametrize(
    ("first", "order"), [("top", "tt"), ("bottom", "bb")], ids=["top-field-first", "bottom-field-first"]
)
def test_interlaced_sources_are_deinterlaced_into_a_progressive_output(tmp_path: Path, first: str, order: str) -> None:
    # 25i with fast motion: woven fields comb on every moving edge; idet finds them. Top field
    # first (HD broadcast, most cameras) and bottom field first (PAL DV, many SD captures).
    from tests.mediagen import run_ffmpeg

    source = tmp_path / "i.mp4"
    short = {"top": "tff", "bottom": "bff"}[first]
    run_ffmpeg(
        *("-f", "lavfi", "-i", f"testsrc2=s=720x576:r=50:d=2,tinterlace=mode=interleave_{first},setfield={short}"),
        *X264,
        *("-flags", "+ilme+ildct", "-x264-params", f"{short}=1", str(source)),
    )
    assert next(s for s in measure.probe(source)["streams"] if s["codec_type"] == "video")["field_order"] == order
    spec = write_spec(
        tmp_path, {"output": {"resolution": "720x576", "fps": 25}, "segments": [{"id": "a", "url": "i.mp4"}]}
    )
    out = tmp_path / "out.mp4"
    result = render(spec, out)
    assert any("interlaced" in b for b in result["fast_path_blockers"])
    stream = next(s for s in measure.probe(out)["streams"] if s["codec_type"] == "video")
    assert stream.get("field_order", "progressive") == "progressive"
    interlaced, progressive = measure.interlace_detection(out)
    source_interlaced, _ = measure.interlace_detection(source)
    assert source_interlaced > 40 and interlaced <= 5 and progressive >= 40, (
        source_interlaced,
        interlaced,
        progressive,
    )


TONE_MAP = (
    "zscale=tin={transfer}:pin=bt2020:min=bt2020nc:t=linear:npl=100,format=gbrpf32le,zscale=p=bt709,"
    "tonemap=tonemap=hable:desat=0,zscale=t=bt709:m=bt709:r=tv,format=yuv420p"
)


def patches(path: Path, at: float, chain: str = "null") -> list[int]:
    """Mean RGB of the left and right halves of the frame at ``at`` s (decoded as BT.709)."""
    done = subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-v",
            "error",
            "-ss",
            str(at),
            "-i",
            str(path),
            "-vf",
            f"{chain},scale=2:1:flags=area:in_color_matrix=bt709,format=rgb24",
            "-frames:v",
            "1",
            "-f",
            "rawvideo",
            "-",
        ],
        capture_output=True,
        check=True,
        timeout=60,
    )
    return list(done.stdout)


def test_hdr_segments_are_tone_mapped_beside_sdr_and_the_output_is_bt709(tmp_path: Path) -> None:
    # A red and a grey patch, as SDR (untagged, 8 bit), as HLG and as PQ (10 bit, BT.2020):
    # an iPhone's HLG beside a generator's SDR. The output takes no source's tags.
    from tests.mediagen import run_ffmpeg

    picture = "color=c=0xB43C3C:s=320x180:r=25:d=1,drawbox=x=160:y=0:w=160:h=180:c=0x808080:t=fill"
    run_ffmpeg("-f", "lavfi", "-i", picture, *X264, str(tmp_path / "sdr.mp4"))
    for transfer in ("arib-std-b67", "smpte2084"):
        run_ffmpeg(
            *("-f", "lavfi", "-i", f"{picture},format=yuv420p10le", "-c:v", "libx264", "-preset", "veryfast"),
            *("-color_primaries", "bt2020", "-color_trc", transfer, "-colorspace", "bt2020nc"),
            str(tmp_path / f"{transfer}.mp4"),
        )
    names = ["arib-std-b67", "sdr", "smpte2084"]
    spec = write_spec(
        tmp_path,
        {
            "output": {"resolution": "320x180", "fps": 25},
            "segments": [{"id": f"s{i}", "url": f"{n}.mp4"} for i, n in enumerate(names)],
        },
    )
    out = tmp_path / "out.mp4"
    render(spec, out)
    video = next(s for s in measure.probe(out)["streams"] if s["codec_type"] == "video")
    assert (video["color_primaries"], video["color_transfer"], video["color_space"]) == ("bt709",) * 3, video
    for k, name in enumerate(names):
        got = patches(out, k + 0.5)
        source = tmp_path / f"{name}.mp4"
        wanted = patches(source, 0.5, "null" if name == "sdr" else TONE_MAP.format(transfer=name))
        assert max(abs(a - b) for a, b in zip(got, wanted, strict=True)) <= 8, (name, got, wanted)
        if name != "sdr":
            untreated = patches(source, 0.5)
            assert max(abs(a - b) for a, b in zip(got, untreated, strict=True)) >= 25, (name, got, untreated)


@pytest.fixture(scope="module")
def thirty_seconds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.mediagen import make_video

    folder = tmp_path_factory.mktemp("loops")
    make_video(folder / "scene.mp4", width=320, height=180, fps=10, duration=30, audio=False)
    return folder


@pytest.mark.parametrize(
    ("suffix", "codec"),
    [
        (".m4a", ("-c:a", "aac")),
        (".aac", ("-c:a", "aac")),  # ADTS: no edit list, a length ffprobe estimates from the bitrate
        (".opus", ("-c:a", "libopus")),
        (".mp3", ("-c:a", "libmp3lame")),
        (".flac", ()),
        (".wav", ()),
    ],
)
def test_looped_music_is_seamless_in_every_codec(thirty_seconds: Path, suffix: str, codec: tuple[str, ...]) -> None:
    # One second of music with a click on its first sample, looped 30 times: each click must
    # land on its second. A demuxer loop decoded the encoder's priming on every pass (AAC:
    # 31 ms of silence per loop, 615 ms late after 30).
    make_clicks(thirty_seconds / f"bar{suffix}", duration=1.0, clicks=(0.0,), args=("-ac", "2", *codec))
    clip: dict[str, Any] = {"type": "music", "url": f"bar{suffix}", "loop": True}

    def loop_spec() -> Path:
        return write_spec(
            thirty_seconds,
            {
                "output": {"resolution": "320x180", "fps": 10},
                "segments": [{"id": "s", "url": "scene.mp4"}],
                "audio": {"clips": [clip], "loudness": None},
            },
            f"loop{suffix}.json",
        )

    out = thirty_seconds / f"loop{suffix}.mp4"
    if suffix == ".aac":
        # ADTS states no length to the sample (its decoded frames hold the encoder's padding:
        # 2.7 ms more per loop here): refused at loop, unless the loop's length is given.
        done = run_cli("render", loop_spec(), "-o", out)
        assert done.returncode == 2 and "audio.clips[0].loop" in done.stderr and "ADTS" in done.stderr, done.stderr
        clip["duration"] = 1.0
    render(loop_spec(), out)
    onsets = measure.click_onsets(measure.decode_audio(out))
    assert len(onsets) == 30, onsets
    late = [round(t - k, 4) for k, t in enumerate(onsets)]
    assert max(abs(x) for x in late) <= 0.005, late


@pytest.mark.parametrize(
    ("suffix", "args", "name"),
    [
        (".png", ("-frames:v", "1"), "PNG"),
        (".flv", ("-c:v", "flv1"), "FLV"),
        (".nut", ("-c:v", "ffv1"), "'nut' (ffmpeg's name)"),  # no signature of ours: named by ffmpeg
        (".webp", ("-c:v", "libwebp", "-frames:v", "1"), "WebP"),
        (".jpg", ("-frames:v", "1"), "JPEG"),
        (".wmv", ("-c:v", "wmv2"), "ASF/WMV"),
        (".mpg", ("-c:v", "mpeg2video", "-f", "vob"), "MPEG program stream (.mpg/.vob)"),
    ],
)
def test_unaccepted_containers_are_refused_naming_the_container_and_the_accepted_list(
    tmp_path: Path, suffix: str, args: tuple[str, ...], name: str
) -> None:
    from tests.mediagen import run_ffmpeg

    run_ffmpeg("-f", "lavfi", "-i", "testsrc2=s=160x90:r=25:d=1", *args, str(tmp_path / f"seg{suffix}"))
    spec = write_spec(tmp_path, {"segments": [{"id": "a", "url": f"seg{suffix}"}]})
    done = run_cli("render", spec, "-o", tmp_path / "out.mp4")
    assert done.returncode == 3, done.stderr
    assert "INPUT_REFUSED" in done.stderr and "segments[0].url" in done.stderr, done.stderr
    assert f"the container is {name}" in done.stderr and "accepted: MP4/MOV" in done.stderr, done.stderr
