"""Formats users' tools write (issue #21): accepted ones render frame-exactly, refused ones
are named with the accepted list, and files cut short are refused before the render. All the
media is made here with ffmpeg: small, short, frame-stamped, click-timed."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests import measure
from tests.integration.test_render import render, write_spec
from tests.mediagen import make_stamped, run_ffmpeg, stamp_filter

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
