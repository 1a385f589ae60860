"""Formats users' tools write (issue #21): accepted ones render frame-exactly, refused ones
are named with the accepted list, and files cut short are refused before the render. All the
media is made here with ffmpeg: small, short, frame-stamped, click-timed."""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests import measure
from tests.integration.test_real_media import assert_in_sync
from tests.integration.test_render import render, run_cli, write_spec
from tests.mediagen import click_train, make_stamped, run_ffmpeg, stamp_filter

pytestmark = pytest.mark.integration


def video_stream(path: Path) -> dict[str, str]:
    return next(s for s in measure.probe(path)["streams"] if s["codec_type"] == "video")


def gif_frame_times(path: Path) -> list[float]:
    done = subprocess.run(
        ["ffprobe", "-v", "error", "-of", "json", "-show_entries", "packet=pts_time", str(path)],
        capture_output=True,
        check=True,
        text=True,
        timeout=60,
    )
    return [float(p["pts_time"]) for p in json.loads(done.stdout)["packets"]]


def test_an_animated_gif_plays_each_frame_for_its_own_delay_and_its_transparency_is_black(tmp_path: Path) -> None:
    # 20 frames with delays of their own (0.1, 0.2, 0.3 s: a GIF keeps them in centiseconds),
    # the bottom-left quarter transparent, after a stamped MP4 second.
    alpha = "geq=r='r(X,Y)':g='g(X,Y)':b='b(X,Y)':a='if(gt(Y,H/2)*lt(X,W/2),0,255)'"
    picture = (
        f"color=c=0x2040C0:s=320x180:r=10:d=2,format=yuv420p,{stamp_filter()},format=rgba,{alpha},"
        "setpts='if(lt(N,10),N,10+(N-10)*2)/10/TB',split[a][b];[a]palettegen=reserve_transparent=1[p];"
        "[b][p]paletteuse=alpha_threshold=128"
    )
    run_ffmpeg("-f", "lavfi", "-i", picture, "-fps_mode", "passthrough", str(tmp_path / "anim.gif"))
    make_stamped(tmp_path / "first.mp4", duration=1, fps=10, audio_duration=1, clicks=(0.1,))
    spec = write_spec(
        tmp_path,
        {
            "output": {"resolution": "320x180", "fps": 10},
            "segments": [
                {"id": "mp4", "url": "first.mp4", "volume": 1.0},
                {"id": "gif", "url": "anim.gif", "duration": 2.8},
            ],
            "audio": {"loudness": None},
        },
    )
    out = tmp_path / "out.mp4"
    result = render(spec, out)
    assert "segments[1]: container gif is not MP4/MOV" in result["fast_path_blockers"]
    # What a plain decode of the GIF shows at each output slot: the last frame whose own time
    # (the sum of the delays before it) rounds to that slot or earlier.
    shown = gif_frame_times(tmp_path / "anim.gif")
    assert len(set(np.diff(shown).round(2))) >= 3, shown  # its delays do differ
    expected = [max(k for k, t in enumerate(shown) if round(t * 10) <= n) for n in range(28)]
    assert measure.frame_stamps(out) == list(range(10)) + expected
    video_s, audio_s = measure.stream_durations(out)
    assert abs(video_s - 3.8) <= 0.001 and abs(audio_s - 3.8) <= 0.001, (video_s, audio_s)
    assert [round(t, 3) for t in measure.click_onsets(measure.decode_audio(out))] == [pytest.approx(0.1, abs=0.005)]
    frame = measure.gray_frame(out, 1.55)  # the GIF's sixth frame
    transparent, opaque = frame[100:170, 10:150], frame[100:170, 170:310]
    assert transparent.max() <= 20 and 60 <= opaque.mean() <= 110, (transparent.max(), opaque.mean())


def set_webp_durations(path: Path, durations: list[int]) -> None:
    """Rewrite each ANMF chunk's 24-bit frame duration (RIFF read here, not by the renderer's reader)."""
    data = bytearray(path.read_bytes())
    at, n = 12, 0
    while at + 8 <= len(data):
        size = int.from_bytes(data[at + 4 : at + 8], "little")
        if data[at : at + 4] == b"ANMF":
            data[at + 8 + 12 : at + 8 + 15] = durations[n].to_bytes(3, "little")
            n += 1
        at += 8 + size + (size & 1)
    assert n == len(durations), (n, len(durations))
    path.write_bytes(bytes(data))


def test_an_animated_webp_plays_each_frame_for_its_own_duration_and_its_transparency_is_black(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 20 stamped frames (libwebp's animation encoder, in Debian's ffmpeg), the bottom-left
    # quarter transparent, given durations of their own: uneven, one of 5 ms (shown for
    # 100 ms, as browsers do) and a long last one. No `duration` in the spec: the segment
    # lasts as its frames are shown, 2.5 s.
    alpha = "geq=r='r(X,Y)':g='g(X,Y)':b='b(X,Y)':a='if(gt(Y,H/2)*lt(X,W/2),0,255)'"
    picture = f"color=c=0x2040C0:s=320x180:r=10:d=2,format=yuv420p,{stamp_filter()},format=rgba,{alpha}"
    webp = tmp_path / "anim.webp"
    run_ffmpeg("-f", "lavfi", "-i", picture, "-frames:v", "20", "-c:v", "libwebp_anim", "-lossless", "1", str(webp))
    durations = [70, 130, 40, 200, 70, 70, 70, 110, 90, 150, 60, 60, 60, 120, 80, 5, 50, 170, 100, 700]
    set_webp_durations(webp, durations)
    shown = [100 if d <= 10 else d for d in durations]
    assert sum(shown) == 2500
    make_stamped(tmp_path / "first.mp4", duration=1, fps=10, audio_duration=1, clicks=(0.1,))
    spec = write_spec(
        tmp_path,
        {
            "output": {"resolution": "320x180", "fps": 10},
            "segments": [{"id": "mp4", "url": "first.mp4", "volume": 1.0}, {"id": "webp", "url": "anim.webp"}],
            "audio": {"loudness": None},
        },
    )
    # The dry run reads its length from its chunks: with no ffmpeg to convert it, the same
    # timeline (validate --probe needs only ffprobe, and never converts).
    monkeypatch.setenv("FFMPEG", str(tmp_path / "no-ffmpeg"))
    dry = run_cli("validate", spec, "--probe", "--json")
    monkeypatch.delenv("FFMPEG")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    report = json.loads(dry.stdout)
    assert report["duration_s"] == pytest.approx(3.5, abs=1e-9) and report["fps"] == 10
    assert [(row["id"], row["start"], row["end"]) for row in report["segments"]] == [
        ("mp4", 0.0, pytest.approx(1.0, abs=1e-9)),
        ("webp", pytest.approx(1.0, abs=1e-9), pytest.approx(3.5, abs=1e-9)),
    ]
    assert not list(tmp_path.rglob("*.frames.mov"))
    out = tmp_path / "out.mp4"
    result = render(spec, out)
    # Output slot n (at n/10 s) shows the last frame whose start, rounded to the nearest slot
    # (halves up, as ffmpeg's fps filter rounds), is n or earlier.
    starts = [sum(shown[:k]) for k in range(len(shown))]
    expected = [max(k for k, ms in enumerate(starts) if (ms + 50) // 100 <= n) for n in range(25)]
    assert measure.frame_stamps(out) == list(range(10)) + expected
    video_s, audio_s = measure.stream_durations(out)
    assert abs(video_s - 3.5) <= 0.001 and abs(audio_s - 3.5) <= 0.001, (video_s, audio_s)
    assert result["duration_s"] == pytest.approx(3.5, abs=0.001)
    assert [round(t, 3) for t in measure.click_onsets(measure.decode_audio(out))] == [pytest.approx(0.1, abs=0.005)]
    frame = measure.gray_frame(out, 1.55)
    transparent, opaque = frame[100:170, 10:150], frame[100:170, 170:310]
    assert transparent.max() <= 20 and 60 <= opaque.mean() <= 110, (transparent.max(), opaque.mean())


def test_an_animated_webp_decodes_to_the_same_bytes_anywhere_and_a_huge_one_is_refused(tmp_path: Path) -> None:
    # A helper worker converts the WebP again and must find the assembler's bytes (the
    # digest it checks, the cache address); decoded frames past the size limit are refused.
    from scenerender.core import webp
    from scenerender.core.cache import file_digest
    from scenerender.core.probe import probe
    from scenerender.errors import InputRefusedError

    made = tmp_path / "made.webp"
    run_ffmpeg("-f", "lavfi", "-i", "testsrc2=s=320x180:r=10:d=3", "-c:v", "libwebp_anim", str(made))
    copies = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        copy = tmp_path / name / "in.webp"
        copy.write_bytes(made.read_bytes())
        copies.append(webp.convert(copy, input_path="segments[0].url"))
    assert copies[0].frames == 30 and copies[0].duration_ms == copies[1].duration_ms
    assert file_digest(copies[0].path) == file_digest(copies[1].path)
    # What a dry run reports from the header alone is what probing the conversion finds.
    header = webp.read_header(made, "segments[0].url")
    described, probed = webp.describe(made, header), probe(copies[0].path, input_path="segments[0].url")
    assert described.video is not None and probed.video is not None
    assert (described.format_name, described.duration, described.audio) == (probed.format_name, probed.duration, None)
    assert replace(described.video, extradata_hash="") == replace(probed.video, extradata_hash="")
    # Its frames' bound is above what they take (FFV1 of testsrc2: a fifth of it).
    assert copies[0].path.stat().st_size < header.decoded_bytes
    # Past the size limit, refused on its header: no frame is decoded, nothing begun.
    (tmp_path / "c").mkdir()
    huge = tmp_path / "c" / "in.webp"
    huge.write_bytes(made.read_bytes())
    with pytest.raises(InputRefusedError) as caught:
        webp.convert(huge, input_path="segments[2].url", max_bytes=200_000)
    assert caught.value.input_path == "segments[2].url"
    assert "its 30 frames of 320x180 take up to 8 MiB decoded; the largest input is 200,000 bytes" in str(caught.value)
    assert [p.name for p in huge.parent.iterdir()] == ["in.webp"]  # nothing half-written left


def test_an_animated_webp_with_a_damaged_frame_is_named_and_leaves_no_frames_behind(tmp_path: Path) -> None:
    # Its headers read, so it is taken for an animation; the third frame's bitstream is
    # damaged (400 bytes after its VP8 start code inverted), which libwebp finds only when it
    # decodes that frame. The user gets exit 3 naming the segment, not an internal error.
    from scenerender.core import webp
    from scenerender.errors import InputMediaError

    made = tmp_path / "made.webp"
    run_ffmpeg("-f", "lavfi", "-i", "testsrc2=s=320x180:r=10:d=3", "-c:v", "libwebp_anim", str(made))
    raw = bytearray(made.read_bytes())
    third = raw.index(b"ANMF", raw.index(b"ANMF", raw.index(b"ANMF") + 1) + 1)
    at = raw.index(b"\x9d\x01\x2a", third) + 10
    raw[at : at + 400] = bytes(b ^ 0xFF for b in raw[at : at + 400])
    damaged = tmp_path / "damaged" / "anim.webp"
    damaged.parent.mkdir()
    damaged.write_bytes(raw)
    with pytest.raises(InputMediaError) as caught:
        webp.convert(damaged, input_path="segments[1].url")
    assert caught.value.input_path == "segments[1].url" and "frame 3 of 30" in str(caught.value), caught.value
    assert sorted(p.name for p in damaged.parent.iterdir()) == ["anim.webp"]  # no MOV, part or script left

    make_stamped(tmp_path / "first.mp4", duration=1, fps=10, audio_duration=1)
    (tmp_path / "anim.webp").write_bytes(raw)
    spec = write_spec(
        tmp_path,
        {
            "output": {"resolution": "320x180"},
            "segments": [{"id": "mp4", "url": "first.mp4"}, {"id": "w", "url": "anim.webp"}],
        },
    )
    done = run_cli("render", spec, "-o", tmp_path / "out.mp4", "--json")
    assert done.returncode == 3, done.stderr
    error = json.loads(done.stdout)["error"]
    assert error["code"] == "INPUT_INVALID_MEDIA" and error["details"][0]["path"] == "segments[1].url", error
    assert "Traceback" not in done.stderr and not (tmp_path / "out.mp4").exists()


def test_an_mxf_segment_renders_frame_exactly(tmp_path: Path) -> None:
    # Broadcast and editing exports: MPEG-2 picture, PCM sound, in MXF.
    make_stamped(
        tmp_path / "seg.mxf",
        fps=25,
        duration=2,
        audio_duration=2,
        clicks=(0.3,),
        video_args=("-c:v", "mpeg2video", "-q:v", "2"),
        audio_args=("-c:a", "pcm_s16le"),
    )
    spec = write_spec(
        tmp_path,
        {
            "output": {"resolution": "320x180", "fps": 25},
            "segments": [{"id": f"s{i}", "url": "seg.mxf", "volume": 1.0} for i in range(2)],
            "audio": {"loudness": None},
        },
    )
    out = tmp_path / "out.mp4"
    result = render(spec, out)
    assert_in_sync(out, result, fps=Fraction(25), segment_frames=[50, 50], clicks=[0.3, 2.3])


def test_an_mxf_with_a_mono_track_per_channel_is_heard_left_and_right(tmp_path: Path) -> None:
    # Broadcast MXF: one mono PCM track per channel. Tracks 1 and 2 are left and right
    # (clicks at 0.3 and 0.6 s); 3 and 4 (a second pair, or music and effects) are not heard.
    clicks = [0.3, 0.6, 0.9, 1.2]
    sources = [a for t in clicks for a in ("-f", "lavfi", "-i", click_train([t], duration=2.0))]
    picture = f"testsrc2=s=320x180:r=25:d=2,format=yuv420p,{stamp_filter()}"
    maps = [a for k in range(5) for a in ("-map", str(k))]
    run_ffmpeg(
        *("-f", "lavfi", "-i", picture, *sources, *maps),
        *("-c:v", "mpeg2video", "-q:v", "2", "-c:a", "pcm_s16le", str(tmp_path / "seg.mxf")),
    )
    tracks = [s for s in measure.probe(tmp_path / "seg.mxf")["streams"] if s["codec_type"] == "audio"]
    assert [t["channels"] for t in tracks] == [1, 1, 1, 1], tracks
    spec = write_spec(
        tmp_path,
        {
            "output": {"resolution": "320x180", "fps": 25},
            "segments": [{"id": "a", "url": "seg.mxf", "volume": 1.0}],
            "audio": {"loudness": None},
        },
    )
    out = tmp_path / "out.mp4"
    result = render(spec, out)
    left, right = left_and_right(out)
    assert measure.click_onsets(left) == [pytest.approx(0.3, abs=0.002)], measure.click_onsets(left)
    assert measure.click_onsets(right) == [pytest.approx(0.6, abs=0.002)], measure.click_onsets(right)
    assert measure.frame_stamps(out) == list(range(50))
    # The certificate hears the segment as the render does (both tracks): its first click found.
    assert result["sync"]["onsets_measured"] == 1 and result["sync"]["max_onset_error_ms"] <= 1, result["sync"]


@pytest.mark.parametrize("loop", [False, True], ids=["once", "looped"])
def test_an_mxf_clip_with_a_mono_track_per_channel_is_heard_left_and_right(tmp_path: Path, loop: bool) -> None:
    # The same rule for an audio clip (an MXF from an editing suite used as music or
    # dialogue): tracks 1 and 2 are left and right, 3 and 4 are not heard. Placed at 1 s,
    # and looped (a 2 s file, twice in a 5 s scene) where asked.
    clicks = [0.3, 0.6, 0.9, 1.2]
    sources = [a for t in clicks for a in ("-f", "lavfi", "-i", click_train([t], duration=2.0))]
    maps = [a for k in range(5) for a in ("-map", str(k))]
    run_ffmpeg(
        *("-f", "lavfi", "-i", "testsrc2=s=320x180:r=25:d=2", *sources, *maps),
        *("-c:v", "mpeg2video", "-q:v", "2", "-c:a", "pcm_s16le", str(tmp_path / "music.mxf")),
    )
    make_stamped(tmp_path / "seg.mp4", fps=25, duration=5)
    clip: dict[str, Any] = {"type": "music", "url": "music.mxf", "start": 1.0}
    if loop:
        clip["loop"] = True  # to the scene's end: 1-3 s, 3-5 s
    spec = write_spec(
        tmp_path,
        {
            "output": {"resolution": "320x180", "fps": 25},
            "segments": [{"id": "a", "url": "seg.mp4"}],
            "audio": {"loudness": None, "clips": [clip]},
        },
    )
    out = tmp_path / "out.mp4"
    result = render(spec, out)
    left, right = left_and_right(out)
    starts = [1.0, 3.0] if loop else [1.0]
    heard_left, heard_right = measure.click_onsets(left), measure.click_onsets(right)
    assert heard_left == [pytest.approx(t + 0.3, abs=0.002) for t in starts], heard_left
    assert heard_right == [pytest.approx(t + 0.6, abs=0.002) for t in starts], heard_right
    # The certificate hears the clip as the render does (both tracks): its first click found.
    assert result["sync"]["onsets_measured"] == 1 and result["sync"]["max_onset_error_ms"] <= 1, result["sync"]


def cut(path: Path, fraction: float = 0.5) -> Path:
    """The first part of ``path``'s bytes: an interrupted download or copy."""
    data = path.read_bytes()
    short = path.with_name("cut-" + path.name)
    short.write_bytes(data[: int(len(data) * fraction)])
    return short


SEGMENT_FORMATS = {
    # suffix: (video args, audio args, extra output args)
    ".mov": (("-c:v", "libx264", "-preset", "veryfast"), ("-c:a", "aac"), ("-movflags", "+faststart")),
    ".mkv": (("-c:v", "libx264", "-preset", "veryfast"), ("-c:a", "aac"), ()),
    ".webm": (("-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8"), ("-c:a", "libopus"), ()),
    ".ts": (("-c:v", "libx264", "-preset", "veryfast"), ("-c:a", "aac"), ()),
    ".mxf": (("-c:v", "mpeg2video"), ("-c:a", "pcm_s16le"), ()),
}


@pytest.mark.parametrize("suffix", list(SEGMENT_FORMATS))
def test_a_segment_cut_mid_stream_is_refused_naming_it_and_both_lengths(tmp_path: Path, suffix: str) -> None:
    video_args, audio_args, output_args = SEGMENT_FORMATS[suffix]
    whole = make_stamped(
        tmp_path / f"whole{suffix}",
        fps=25,
        duration=4,
        audio_duration=4,
        video_args=video_args,
        audio_args=audio_args,
        output_args=output_args,
    )
    spec = write_spec(
        tmp_path,
        {
            "output": {"resolution": "320x180", "fps": 25},
            "segments": [
                {"id": "ok", "url": whole.name},
                {"id": "cut", "url": cut(whole).name, "duration": 4.0, "volume": 1.0},
            ],
        },
    )
    done = run_cli("render", spec, "-o", tmp_path / "out.mp4")
    assert not (tmp_path / "out.mp4").exists()
    text = done.stderr
    if suffix == ".ts":
        # MPEG-TS states no length of its own: ffprobe reports what the file holds, and the
        # spec asking more is refused at its duration.
        assert done.returncode == 2 and "INVALID_SPEC" in text and "segments[1].duration" in text, text
        have = float(re.search(r"longer than the source \(([\d.]+) s", text)[1])  # type: ignore[index]
    else:
        assert done.returncode == 3 and "INPUT_INVALID_MEDIA" in text, text
        assert "segments[1].url" in text and "segment 'cut'" in text and "needs 4.000 s" in text, text
        have = float(re.search(r"only ([\d.]+) s", text)[1])  # type: ignore[index]
    assert 0.5 < have < 3.5, text


@pytest.mark.parametrize(
    ("suffix", "video_args", "audio_args"),
    [
        (".mkv", ("-c:v", "libx264", "-preset", "veryfast"), ("-c:a", "aac")),
        # A browser's MediaRecorder writes WebM as it records: no Duration, no Cues.
        (".webm", ("-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "1M"), ("-c:a", "libopus")),
    ],
    ids=["mkv", "webm-recorder"],
)
def test_matroska_written_as_a_stream_has_no_duration_and_renders_from_its_packets(
    tmp_path: Path, suffix: str, video_args: tuple[str, ...], audio_args: tuple[str, ...]
) -> None:
    # Written to a pipe, the muxer cannot go back for the Duration element (nor the Cues).
    fmt = "webm" if suffix == ".webm" else "matroska"
    picture = f"testsrc2=s=320x180:r=25:d=2,format=yuv420p,{stamp_filter()}"
    sources = ("-f", "lavfi", "-i", picture, "-f", "lavfi", "-i", click_train([0.3], duration=2))
    done = subprocess.run(
        ["ffmpeg", "-v", "error", *sources, *video_args, *audio_args, "-f", fmt, "-"],
        capture_output=True,
        check=True,
        timeout=120,
    )
    live = tmp_path / f"live{suffix}"
    live.write_bytes(done.stdout)
    assert "duration" not in measure.probe(live)["format"], measure.probe(live)["format"]
    out, result = render_twice(live)
    assert_in_sync(out, result, fps=Fraction(25), segment_frames=[50, 50], clicks=[0.3, 2.3])
    # Cut, it still states no length: it is as long as what it holds (the cut check, which
    # compares the packets with the header, has nothing to misfire on); asked for more, the
    # spec is refused at its duration.
    short = cut(live, 0.5)
    for asked, code in ((None, 0), (2.0, 2)):
        segment: dict[str, Any] = {"id": "cut", "url": short.name, **({"duration": asked} if asked else {})}
        spec = write_spec(tmp_path, {"output": {"resolution": "320x180", "fps": 25}, "segments": [segment]})
        done_cut = run_cli("render", spec, "-o", tmp_path / f"cut-{code}.mp4")
        assert done_cut.returncode == code, done_cut.stderr
        if code:
            assert "INVALID_SPEC" in done_cut.stderr and "segments[0].duration" in done_cut.stderr, done_cut.stderr
        else:
            frames = len(measure.frame_stamps(tmp_path / "cut-0.mp4"))
            assert measure.frame_stamps(tmp_path / "cut-0.mp4") == list(range(frames)) and 10 < frames < 45, frames


@pytest.mark.parametrize("where", ["segments", "audio.clips"])
def test_an_mp4_cut_before_its_index_is_refused_as_cut(tmp_path: Path, where: str) -> None:
    # A plain export writes its index (moov) last: a cut copy has media data and no index.
    whole = make_stamped(tmp_path / "whole.mp4", fps=25, duration=4, audio_duration=4)
    assert measure.probe(whole)["format"]["format_name"].startswith("mov")
    short = cut(whole, 0.6)
    segments = [{"id": "ok", "url": whole.name}]
    clips: list[dict[str, Any]] = []
    if where == "segments":
        segments.append({"id": "cut", "url": short.name})
    else:
        clips.append({"type": "music", "url": short.name, "start": 0.5})
    spec = write_spec(
        tmp_path,
        {"output": {"resolution": "320x180", "fps": 25}, "segments": segments, "audio": {"clips": clips}},
    )
    done = run_cli("render", spec, "-o", tmp_path / "out.mp4")
    assert not (tmp_path / "out.mp4").exists()
    text = done.stderr
    assert done.returncode == 3 and "INPUT_INVALID_MEDIA" in text, text
    located = "segments[1].url (cut-whole.mp4)" if where == "segments" else "audio.clips[0].url (cut-whole.mp4)"
    assert located in text and "the file is cut: no index (moov) found" in text, text
    size = short.stat().st_size
    assert f"it ends at byte {size:,} inside its media data" in text and "re-export" in text, text
    assert "Invalid data" not in text, text


@pytest.mark.parametrize(
    ("suffix", "args"),
    [
        (".wav", ()),
        (".mp3", ("-c:a", "libmp3lame")),
        (".m4a", ("-c:a", "aac", "-movflags", "+faststart")),
        (".flac", ()),
        (".aiff", ()),
    ],
)
def test_a_music_clip_cut_short_is_refused_naming_it_and_both_lengths(
    tmp_path: Path, suffix: str, args: tuple[str, ...]
) -> None:
    make_stamped(tmp_path / "seg.mp4", fps=25, duration=6, audio_duration=6)
    # A tone (music compresses to more than its header: cut, the header is kept, the sound not).
    whole = tmp_path / f"music{suffix}"
    run_ffmpeg("-f", "lavfi", "-i", "sine=f=220:d=5,aeval=val(0)*(0.5+random(0)/4)", "-ac", "2", *args, str(whole))
    spec = write_spec(
        tmp_path,
        {
            "output": {"resolution": "320x180", "fps": 25},
            "segments": [{"id": "s", "url": "seg.mp4"}],
            "audio": {"clips": [{"type": "music", "url": cut(whole, 0.4).name, "start": 0.5}]},
        },
    )
    done = run_cli("render", spec, "-o", tmp_path / "out.mp4")
    text = done.stderr
    if suffix == ".wav":
        # WAV's length is what its data holds (ffprobe reads it so): nothing is missing, the
        # clip is as long as what is there, and ends where the file does.
        assert done.returncode == 0, text
        samples = measure.decode_audio(tmp_path / "out.mp4")
        assert measure.band_level_db(samples, freq=220, start=2.0, end=2.4) > -30
        assert measure.band_level_db(samples, freq=220, start=2.7, end=5.5) < -60
        return
    assert not (tmp_path / "out.mp4").exists()
    assert done.returncode == 3 and "INPUT_INVALID_MEDIA" in text and "audio.clips[0].url" in text, text
    assert "the music clip needs 5.0" in text, text
    have = float(re.search(r"only ([\d.]+) s", text)[1])  # type: ignore[index]
    assert 1.0 < have < 3.0, text


def test_a_matching_hdr_scene_is_not_copied_with_its_hdr_tags(tmp_path: Path) -> None:
    # Every segment H.264 High yuv420p at the output's size and rate, but HLG: copied, the
    # output would carry arib-std-b67 over pixels no SDR player shows right.
    from tests.integration.test_real_media import TONE_MAP, patches

    picture = "color=c=0xB43C3C:s=320x180:r=25:d=1,drawbox=x=160:y=0:w=160:h=180:c=0x808080:t=fill"
    run_ffmpeg(
        *("-f", "lavfi", "-i", picture, "-c:v", "libx264", "-preset", "veryfast", "-profile:v", "high"),
        *("-pix_fmt", "yuv420p", "-color_primaries", "bt2020", "-color_trc", "arib-std-b67", "-colorspace", "bt2020nc"),
        str(tmp_path / "hlg.mp4"),
    )
    spec = write_spec(
        tmp_path,
        {
            "output": {"resolution": "320x180", "fps": 25},
            "segments": [{"id": f"s{i}", "url": "hlg.mp4"} for i in range(2)],
        },
    )
    out = tmp_path / "out.mp4"
    result = render(spec, out)
    assert result["fast_path"] is False and "segments[0]: HDR (hlg), tone-mapped to SDR" in result["fast_path_blockers"]
    video = video_stream(out)
    assert (video["color_primaries"], video["color_transfer"], video["color_space"]) == ("bt709",) * 3, video
    wanted = patches(tmp_path / "hlg.mp4", 0.5, TONE_MAP.format(transfer="arib-std-b67"))
    for at in (0.5, 1.5):
        assert max(abs(a - b) for a, b in zip(patches(out, at), wanted, strict=True)) <= 8, (at, wanted)


def render_one_twice(
    tmp_path: Path, suffix: str, video_args: tuple[str, ...], audio_args: tuple[str, ...], size: str = "320x180"
) -> tuple[Path, Path, dict[str, Any]]:
    """A 1 s stamped 25 fps segment (a click at 0.2 s) in this format, rendered twice in a row:
    (the source, the output, the result)."""
    width, height = map(int, size.split("x"))
    source = make_stamped(
        tmp_path / f"seg{suffix}",
        width=width,
        height=height,
        fps=25,
        duration=1,
        audio_duration=1,
        clicks=(0.2,),
        video_args=video_args,
        audio_args=audio_args,
    )
    return source, *render_twice(source, size)


def render_twice(source: Path, resolution: str = "320x180") -> tuple[Path, dict[str, Any]]:
    """``source`` as two segments in a row, at 25 fps (stretched to ``resolution``): (the output, the result)."""
    spec = write_spec(
        source.parent,
        {
            "output": {"resolution": resolution, "fps": 25, "fit": "stretch"},
            "segments": [{"id": f"s{i}", "url": source.name, "volume": 1.0} for i in range(2)],
            "audio": {"loudness": None},
        },
    )
    out = source.parent / "out.mp4"
    return out, render(spec, out)


@pytest.mark.parametrize(
    ("suffix", "video_args", "audio_args"),
    [
        (".mp4", ("-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "log-level=none"), ("-c:a", "aac")),
        # Opus in Matroska as ffmpeg 5.1 writes it: its sound 7 ms early by its timestamps
        # (probe.lavf_opus_error), heard on time.
        (".webm", ("-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8"), ("-c:a", "libopus")),
        (".mkv", ("-c:v", "libsvtav1", "-preset", "12"), ("-c:a", "libopus")),
        (".mov", ("-c:v", "prores_ks", "-profile:v", "0"), ("-c:a", "pcm_s16le")),
        # The same pictures with sound in another codec: VP9 and AV1 decoding is exact on its own.
        (".webm", ("-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8"), ("-c:a", "libvorbis")),
        (".mp4", ("-c:v", "libsvtav1", "-preset", "12"), ("-c:a", "aac")),
    ],
    ids=["hevc", "vp9", "av1", "prores", "vp9-vorbis", "av1-mp4"],
)
def test_segments_in_every_common_codec_render_frame_exactly(
    tmp_path: Path, suffix: str, video_args: tuple[str, ...], audio_args: tuple[str, ...]
) -> None:
    _, out, result = render_one_twice(tmp_path, suffix, video_args, audio_args)
    assert_in_sync(out, result, fps=Fraction(25), segment_frames=[25, 25], clicks=[0.2, 1.2])


# Every other codec and container in the table (scenerender/core/probe.py), as the tools
# that still write them do. Named "video codec-audio codec-container", as ffprobe names them:
# (suffix, size, video args, audio args).
OTHER_FORMATS = {
    "mpeg2video-ac3-m2ts": (".m2ts", "320x180", ("-c:v", "mpeg2video", "-q:v", "2"), ("-c:a", "ac3")),
    "mpeg1video-mp2-ts": (".ts", "320x180", ("-c:v", "mpeg1video", "-q:v", "2"), ("-c:a", "mp2")),
    "dnxhd-alac-mov": (
        ".mov",
        "320x180",
        ("-c:v", "dnxhd", "-profile:v", "dnxhr_lb", "-pix_fmt", "yuv422p"),
        ("-c:a", "alac"),
    ),
    "mjpeg-pcm_s16le-avi": (
        ".avi",
        "320x180",
        ("-c:v", "mjpeg", "-q:v", "3", "-pix_fmt", "yuvj420p"),
        ("-c:a", "pcm_s16le"),
    ),
    "h263-aac-3gp": (".3gp", "352x288", ("-c:v", "h263"), ("-c:a", "aac", "-ar", "48000")),
    "theora-vorbis-ogg": (".ogg", "320x180", ("-c:v", "libtheora", "-q:v", "7"), ("-c:a", "libvorbis")),
    "ffv1-flac-mkv": (".mkv", "320x180", ("-c:v", "ffv1"), ("-c:a", "flac")),
    "dvvideo-pcm_s16le-mov": (".mov", "720x576", ("-c:v", "dvvideo", "-pix_fmt", "yuv420p"), ("-c:a", "pcm_s16le")),
    "qtrle-pcm_s16le-mov": (".mov", "320x180", ("-c:v", "qtrle", "-pix_fmt", "rgb24"), ("-c:a", "pcm_s16le")),
    "h264-eac3-mp4": (".mp4", "320x180", ("-c:v", "libx264", "-preset", "veryfast"), ("-c:a", "eac3")),
    # MPEG-4 Part 2 with B-frames in MP4 (older cameras and phones): timestamps of its own,
    # unlike the same stream in AVI (test_an_mpeg4_avi_segment_shows_each_frame_in_its_own_slot).
    "mpeg4-aac-mp4": (".mp4", "320x180", ("-c:v", "mpeg4", "-q:v", "3", "-bf", "2"), ("-c:a", "aac")),
}


@pytest.mark.parametrize("name", list(OTHER_FORMATS))
def test_every_other_accepted_codec_and_container_renders_frame_exactly(tmp_path: Path, name: str) -> None:
    suffix, size, video_args, audio_args = OTHER_FORMATS[name]
    source, out, result = render_one_twice(tmp_path, suffix, video_args, audio_args, size)
    codecs = {s["codec_type"]: s["codec_name"] for s in measure.probe(source)["streams"]}
    assert [codecs["video"], codecs["audio"]] == name.split("-")[:2], codecs
    assert_in_sync(out, result, fps=Fraction(25), segment_frames=[25, 25], clicks=[0.2, 1.2])


def avi_slots(path: Path, frames: int) -> list[int]:
    """What an AVI shows at each of its first ``frames`` slots, by AVI's own rule: chunk n is
    slot n (an empty chunk repeats the frame before), and the frames, in display order (read
    from their stamps), take the slots of their chunks in order."""
    done = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-of", "json", "-show_entries", "packet=dts", str(path)],
        capture_output=True,
        check=True,
        text=True,
        timeout=60,
    )
    slots = sorted(int(p["dts"]) for p in json.loads(done.stdout)["packets"])  # time base 1/fps
    stamps = measure.frame_stamps(path)
    assert len(stamps) == len(slots), (stamps, slots)
    return [stamps[max(k for k, slot in enumerate(slots) if slot <= n)] for n in range(frames)]


@pytest.mark.parametrize(
    ("video_args", "audio_args"),
    [
        # MP3's priming makes ffmpeg's AVI muxer start the picture a slot late: the file holds
        # an empty (repeat) chunk after its first frame, and is 26 slots long.
        (("-c:v", "mpeg4", "-q:v", "2"), ("-c:a", "libmp3lame")),
        # B-frames, as Xvid/DivX write them: AVI keeps no presentation times (ffmpeg's decode
        # times each frame a slot late), and a seek landed on a non-keyframe (a grey, smeared
        # first GOP; this test fails on that code).
        (("-c:v", "mpeg4", "-q:v", "2", "-bf", "2"), ("-c:a", "libmp3lame")),
    ],
    ids=["mp3-priming", "b-frames"],
)
def test_an_mpeg4_avi_segment_shows_each_frame_in_its_own_slot(
    tmp_path: Path, video_args: tuple[str, ...], audio_args: tuple[str, ...]
) -> None:
    source, out, result = render_one_twice(tmp_path, ".avi", video_args, audio_args)
    frames = round(float(video_stream(source)["duration"]) * 25)
    assert frames in (25, 26), frames
    expected = avi_slots(source, frames)
    assert sorted(set(expected)) == list(range(25)), expected  # every source frame is shown
    assert measure.frame_stamps(out) == expected * 2
    assert measure.stream_durations(out) == pytest.approx((frames * 2 / 25,) * 2, abs=0.001)
    # The sound where a plain decode of the file has it (AVI's sound has no times either), in each segment.
    (click,) = measure.click_onsets(measure.decode_audio(source))
    onsets = measure.click_onsets(measure.decode_audio(out))
    assert onsets == [pytest.approx(click, abs=0.002), pytest.approx(click + frames / 25, abs=0.002)], (click, onsets)
    assert result["sync"]["max_boundary_error_ms"] <= 40 and result["sync"]["max_onset_error_ms"] <= 20
    # Trimmed (an AVI is read from its start, the trim made in the filter): 3 slots in, 10 long.
    spec = write_spec(
        tmp_path,
        {
            "output": {"resolution": "320x180", "fps": 25},
            "segments": [{"id": "t", "url": source.name, "trim_start": 0.12, "duration": 0.4, "volume": 1.0}],
            "audio": {"loudness": None},
        },
        "trimmed.json",
    )
    render(spec, tmp_path / "trimmed.mp4")
    assert measure.frame_stamps(tmp_path / "trimmed.mp4") == expected[3:13]
    onsets = measure.click_onsets(measure.decode_audio(tmp_path / "trimmed.mp4"))
    assert onsets == [pytest.approx(click - 0.12, abs=0.002)], (click, onsets)


def segment_sound(tmp_path: Path, source: Path, segment: dict[str, Any], name: str) -> tuple[bytes, list[str]]:
    """The mix's WAV (the segments' own sound, no clips) as the render plans it, and its ffmpeg
    arguments: the audio pass alone, run here so its samples are compared before AAC."""
    from scenerender.core import plan
    from scenerender.core.probe import probe
    from scenerender.core.spec import parse_spec
    from scenerender.core.timeline import build_timeline

    spec = {"version": 1, "project_id": "p", "scene_id": "s", "output": {"fps": 25}, "segments": [segment]}
    timeline = build_timeline(parse_spec(json.dumps(spec)), {source.name: probe(source, input_path="segments[0].url")})
    out, graph = tmp_path / f"{name}.wav", tmp_path / f"{name}.graph"
    cmd = plan.audio_mix_command(plan.plan_mix(timeline), out, graph)
    for path, text in cmd.files.items():
        path.write_text(text, encoding="utf-8")
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", *cmd.argv[1:]], check=True, timeout=300)
    return out.read_bytes(), cmd.argv


@pytest.mark.parametrize(
    ("video_args", "audio_args"),
    [
        (("-c:v", "mpeg4", "-q:v", "3", "-bf", "2", "-g", "60"), ("-c:a", "libmp3lame")),
        (("-c:v", "libxvid", "-q:v", "3", "-bf", "2", "-g", "60"), ("-c:a", "libmp3lame")),
        (("-c:v", "libxvid", "-q:v", "3", "-bf", "2", "-g", "60"), ("-c:a", "libmp3lame", "-ar", "44100")),
    ],
    ids=["mpeg4-b-frames", "xvid-b-frames", "xvid-mp3-44.1k"],
)
def test_an_avi_trimmed_far_into_its_file_shows_the_frames_a_read_from_its_start_shows(
    tmp_path: Path, video_args: tuple[str, ...], audio_args: tuple[str, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    # 40 s of B-frame AVI (keyframes every 2.4 s), trimmed at 30.12 s: read from a keyframe
    # ahead of the trim, not decoded from the start, and still each frame in its own slot.
    # Its sound too is read from a seek (on its MP3 frames' grid: 24 ms at 48 kHz, 1.28 s at
    # 44.1 kHz), and holds the samples a decode from its start gives, bit for bit.
    source = make_stamped(
        tmp_path / "long.avi",
        fps=25,
        duration=40,
        audio_duration=40,
        clicks=(30.5,),
        video_args=video_args,
        audio_args=audio_args,
    )
    frames = round(float(video_stream(source)["duration"]) * 25)
    expected = avi_slots(source, frames)
    segment = {"id": "t", "url": source.name, "trim_start": 30.12, "duration": 2, "volume": 1.0}
    spec = write_spec(
        tmp_path,
        {"output": {"resolution": "320x180", "fps": 25}, "segments": [segment], "audio": {"loudness": None}},
    )
    out = tmp_path / "out.mp4"
    result = render(spec, out)
    assert measure.frame_stamps(out) == expected[753:803]
    (click,) = [t for t in measure.click_onsets(measure.decode_audio(source)) if t > 30]
    onsets = measure.click_onsets(measure.decode_audio(out))
    assert onsets == [pytest.approx(click - 30.12, abs=0.002)], (click, onsets)
    assert result["sync"]["max_onset_error_ms"] <= 20, result["sync"]
    sought, argv = segment_sound(tmp_path, source, segment, "sought")
    seek = float(argv[argv.index("-ss") + 1])
    assert 28.0 <= seek < 29.12 and round(seek * 48000) % (1152 if "44100" not in audio_args else 61440) == 0, seek
    from scenerender.core.plan import audio_mix

    monkeypatch.setattr(audio_mix, "SOUND_SEEK_FROM_S", 1e9)  # the render before: decoded from the start
    whole, argv = segment_sound(tmp_path, source, segment, "whole")
    assert "-ss" not in argv
    assert sought == whole
    bed = measure.decode_audio(tmp_path / "sought.wav")
    assert measure.click_onsets(bed) == [pytest.approx(click - 30.12, abs=0.002)]


def left_and_right(path: Path) -> tuple[np.ndarray, np.ndarray]:
    done = subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-map", "0:a:0", "-f", "f32le", "-ac", "2", "-"],
        capture_output=True,
        check=True,
        timeout=120,
    )
    both = np.frombuffer(done.stdout, dtype=np.float32).reshape(-1, 2)
    return both[:, 0], both[:, 1]


@pytest.mark.parametrize(
    ("name", "source_args", "args"),
    [
        (
            "id3-cover.mp3",
            (),
            (
                "-map",
                "0:a",
                "-map",
                "1:v",
                "-c:v",
                "mjpeg",
                "-disposition:v",
                "attached_pic",
                "-id3v2_version",
                "3",
                "-metadata",
                "title=Line",
            ),
        ),
        ("tts.wav", (), ("-ar", "22050", "-ac", "1")),
        ("pcm24.wav", (), ("-c:a", "pcm_s24le")),
        ("voice.ogg", (), ("-c:a", "libopus")),
        ("centre.wav", ("-af", "pan=5.1|FC=c0"), ()),  # dialogue on the centre channel only
        ("long.w64", (), ()),
        ("apple.caf", (), ("-c:a", "alac")),
        ("tts.aac", (), ("-c:a", "aac")),  # ADTS, as TTS services stream it
    ],
    ids=["mp3-id3-cover-art", "22.05k-mono", "24-bit-wav", "opus-ogg", "5.1-centre", "w64", "alac-caf", "adts"],
)
def test_audio_files_as_tools_write_them_are_heard_on_time_in_both_channels(
    tmp_path: Path, name: str, source_args: tuple[str, ...], args: tuple[str, ...]
) -> None:
    make_stamped(tmp_path / "seg.mp4", fps=25, duration=3)
    cover = ("-f", "lavfi", "-i", "color=c=red:s=64x64:d=1") if "cover" in name else ()
    run_ffmpeg(
        *("-f", "lavfi", "-i", click_train([0.4, 1.4], duration=2.0)), *cover, *source_args, *args, str(tmp_path / name)
    )
    streams = measure.probe(tmp_path / name)["streams"]
    assert not cover or any(s["disposition"].get("attached_pic") for s in streams), streams  # a real cover
    spec = write_spec(
        tmp_path,
        {
            "output": {"resolution": "320x180", "fps": 25},
            "segments": [{"id": "s", "url": "seg.mp4"}],
            "audio": {"clips": [{"type": "dialogue", "url": name, "start": 0.5}], "loudness": None},
        },
    )
    out = tmp_path / "out.mp4"
    render(spec, out)
    onsets = measure.click_onsets(measure.decode_audio(out))
    assert len(onsets) == 2 and max(abs(a - b) for a, b in zip(onsets, [0.9, 1.9], strict=True)) <= 0.005, onsets
    left, right = left_and_right(out)
    for channel in (left, right):  # mono, and 5.1's centre, heard in both at one level
        assert np.abs(channel[int(0.9 * 48000) : int(0.92 * 48000)]).max() > 0.1
    assert np.abs(left).max() == pytest.approx(np.abs(right).max(), rel=0.05)


@pytest.mark.parametrize("suffix", [".mp3", ".m4a"])
def test_music_with_cover_art_used_as_a_segment_is_refused_as_having_no_video(tmp_path: Path, suffix: str) -> None:
    # A song's cover art (an attached picture) is a video stream to ffprobe, but no picture
    # that plays: as a segment it is located INPUT_INVALID_MEDIA, never a still held for the song.
    run_ffmpeg(
        *("-f", "lavfi", "-i", click_train([0.4], duration=2.0), "-f", "lavfi", "-i", "color=c=red:s=64x64:d=1"),
        *("-map", "0:a", "-map", "1:v", "-c:v", "mjpeg", "-disposition:v", "attached_pic", "-frames:v", "1"),
        str(tmp_path / f"song{suffix}"),
    )
    streams = measure.probe(tmp_path / f"song{suffix}")["streams"]
    assert any(s["codec_type"] == "video" and s["disposition"].get("attached_pic") for s in streams), streams
    make_stamped(tmp_path / "seg.mp4", fps=25, duration=1)
    spec = write_spec(
        tmp_path,
        {"segments": [{"id": "ok", "url": "seg.mp4"}, {"id": "song", "url": f"song{suffix}"}]},
    )
    done = run_cli("render", spec, "-o", tmp_path / "out.mp4", "--json")
    assert done.returncode == 3, done.stdout + done.stderr
    error = json.loads(done.stdout)["error"]
    assert error["code"] == "INPUT_INVALID_MEDIA" and error["details"][0]["path"] == "segments[1].url", error
    assert "no video stream" in error["message"], error
    assert not (tmp_path / "out.mp4").exists()


BT2020_HLG = ("-color_trc", "arib-std-b67", "-color_primaries", "bt2020", "-colorspace", "bt2020nc")
X264_FAST = ("-c:v", "libx264", "-preset", "veryfast")


@pytest.mark.parametrize(
    ("size", "pix_fmt", "tags"),
    [
        ("320x180", "yuv420p", (*X264_FAST, "-color_trc", "arib-std-b67")),  # "no path between colorspaces"
        ("321x181", "yuv444p10le", (*X264_FAST, *BT2020_HLG)),
        # As a phone records HLG: HEVC Main 10 (without the Dolby Vision RPU: docs/media.md).
        (
            "320x180",
            "yuv420p10le",
            ("-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "log-level=none", *BT2020_HLG),
        ),
    ],
    ids=["hlg-transfer-tag-only", "hlg-odd-size", "hlg-hevc-main10"],
)
def test_hdr_sources_zscale_rejected_are_tone_mapped(
    tmp_path: Path, size: str, pix_fmt: str, tags: tuple[str, ...]
) -> None:
    # The transfer-only one failed the render (zscale: "no path between colorspaces"; this
    # test fails on that code). The odd-sized one is kept as coverage of the 4:4:4 ending.
    from tests.integration.test_real_media import TONE_MAP, patches

    picture = f"color=c=0xB43C3C:s={size}:r=25:d=1,drawbox=x=160:y=0:w=161:h=181:c=0x808080:t=fill,format={pix_fmt}"
    run_ffmpeg("-f", "lavfi", "-i", picture, *tags, str(tmp_path / "hlg.mp4"))
    spec = write_spec(
        tmp_path, {"output": {"resolution": "320x180", "fps": 25}, "segments": [{"id": "a", "url": "hlg.mp4"}]}
    )
    out = tmp_path / "out.mp4"
    render(spec, out)
    video = video_stream(out)
    assert (video["color_primaries"], video["color_transfer"], video["color_space"]) == ("bt709",) * 3, video
    tagged = "setparams=color_primaries=bt2020:color_trc=arib-std-b67:colorspace=bt2020nc,"
    # The chain as the renderer runs it (4:4:4 until scaled to the even output size), then
    # 4:2:0 as the output is (``patches`` averages what shares a chroma sample).
    chain = TONE_MAP.format(transfer="arib-std-b67").replace("format=yuv420p", "format=yuv444p")
    wanted = patches(tmp_path / "hlg.mp4", 0.5, f"{tagged}{chain},scale=320:180,format=yuv420p")
    got = patches(out, 0.5)
    assert max(abs(a - b) for a, b in zip(got, wanted, strict=True)) <= 8, (got, wanted)
    assert max(abs(a - b) for a, b in zip(got, patches(tmp_path / "hlg.mp4", 0.5), strict=True)) >= 25


def test_a_variable_frame_rate_segment_shows_each_frame_at_its_own_time(tmp_path: Path) -> None:
    # A phone's VFR: every fourth frame of a 30 fps stamped picture never made (its time kept
    # by the others), written with -fps_mode vfr. Each output slot shows the latest frame
    # that exists at its time.
    picture = f"testsrc2=s=320x180:r=30:d=2,format=yuv420p,{stamp_filter()},select='mod(n\\,4)'"
    run_ffmpeg(
        *("-f", "lavfi", "-i", picture, "-fps_mode", "vfr", "-c:v", "libx264", "-preset", "veryfast"),
        str(tmp_path / "vfr.mp4"),
    )
    kept = [n for n in range(60) if n % 4]
    assert measure.frame_stamps(tmp_path / "vfr.mp4") == kept
    spec = write_spec(
        tmp_path, {"output": {"resolution": "320x180", "fps": 30}, "segments": [{"id": "a", "url": "vfr.mp4"}]}
    )
    out = tmp_path / "out.mp4"
    render(spec, out)
    stamps = measure.frame_stamps(out)
    # The segment starts at its first frame (source time 1/30 s): slot n is source time (n + 1)/30.
    assert stamps == [max(k for k in kept if k <= n + 1) for n in range(len(stamps))], stamps
    assert len(stamps) == 59, len(stamps)  # to its last frame's end (2 s)
