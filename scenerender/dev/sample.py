"""The bundled sample scene: media made on the spot with ffmpeg (and espeak-ng for voices)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from scenerender.errors import RenderError

PATTERNS = ("testsrc2", "smptebars", "rgbtestsrc", "testsrc", "smptehdbars", "pal100bars")
LINES = (
    ("narration", "en", "Night falls over the harbour. Ava has waited for hours."),
    ("dialogue", "en-us", "Where were you?"),
    ("dialogue", "en+m3", "Out at sea. The storm turned us back."),
)


def _ffmpeg(binary: str, *args: str) -> None:
    done = subprocess.run(
        [binary, "-nostdin", "-v", "error", "-y", *args], capture_output=True, text=True, check=False, timeout=300
    )
    if done.returncode != 0:
        raise RenderError("could not make the sample media", stderr_tail=done.stderr[-2000:])


def _voice(path: Path, voice: str, text: str, fallback_hz: int, ffmpeg: str) -> None:
    if shutil.which("espeak-ng"):
        subprocess.run(
            ["espeak-ng", "-v", voice, "-s", "150", "-w", str(path), text], check=True, capture_output=True, timeout=60
        )
    else:  # a tone burst stands in for speech where espeak-ng is missing
        _ffmpeg(ffmpeg, "-f", "lavfi", "-i", f"sine=f={fallback_hz}:d={max(0.6, len(text) / 16):.2f}", str(path))


def make_sample_scene(
    dest: Path, *, segments: int = 6, seconds: float = 2.0, job_id: str = "sample-scene", ffmpeg: str = "ffmpeg"
) -> Path:
    """Write the sample media and its ``job_spec.json`` into ``dest``; returns the spec's path.

    ``ffmpeg``: the binary (``Settings.ffmpeg``).
    """
    media = dest / "media"
    media.mkdir(parents=True, exist_ok=True)
    for i in range(segments):
        pattern = PATTERNS[i % len(PATTERNS)]
        _ffmpeg(
            ffmpeg,
            "-f",
            "lavfi",
            "-i",
            f"{pattern}=s=1280x720:r=30:d={seconds}",
            "-f",
            "lavfi",
            "-i",
            f"anoisesrc=d={seconds}:c=pink:a=0.02",
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-profile:v",
            "high",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-ar",
            "48000",
            "-ac",
            "2",
            "-shortest",
            str(media / f"seg-{i + 1}.mp4"),
        )
    for index, (_, voice, text) in enumerate(LINES):
        _voice(media / f"line-{index}.wav", voice, text, 500 + 200 * index, ffmpeg)
    # A short chord, looped under the whole scene.
    _ffmpeg(
        ffmpeg,
        "-f",
        "lavfi",
        "-i",
        "sine=f=220:d=3",
        "-f",
        "lavfi",
        "-i",
        "sine=f=277:d=3",
        "-f",
        "lavfi",
        "-i",
        "sine=f=330:d=3",
        "-filter_complex",
        "amix=inputs=3,volume=0.6",
        "-ac",
        "2",
        str(media / "music.wav"),
    )
    _ffmpeg(
        ffmpeg, "-f", "lavfi", "-i", "anoisesrc=d=0.4:c=brown:a=0.6,afade=t=out:st=0.05:d=0.35", str(media / "door.wav")
    )

    last = f"seg-{segments}"
    spec: dict[str, Any] = {
        "version": 1,
        "job_id": job_id,
        "project_id": "sample-project",
        "scene_id": "harbour-night",
        "output": {"resolution": "720p", "fit": "letterbox", "filename": f"{job_id}.mp4"},
        "segments": [{"id": f"seg-{i + 1}", "url": f"media/seg-{i + 1}.mp4", "volume": 0.5} for i in range(segments)],
        "audio": {
            "clips": [
                {"type": "narration", "url": "media/line-0.wav", "start": 0.3, "text": LINES[0][2]},
                {
                    "type": "dialogue",
                    "url": "media/line-1.wav",
                    "segment_id": "seg-3",
                    "character": {"id": "ava", "name": "Ava"},
                    "text": LINES[1][2],
                },
                {
                    "type": "dialogue",
                    "url": "media/line-2.wav",
                    "segment_id": "seg-3",
                    "character": {"id": "tom", "name": "Tom"},
                    "text": LINES[2][2],
                },
                {
                    "type": "music",
                    "url": "media/music.wav",
                    "loop": True,
                    "volume": 0.4,
                    "fade_in": 1.0,
                    "fade_out": 1.5,
                },
                {"type": "sfx", "url": "media/door.wav", "segment_id": last, "offset": 0.5, "volume": 0.8},
            ],
            "ducking": {"enabled": True, "music_db": -12, "attack": 0.2, "release": 0.5},
            "loudness": {"target_lufs": -14, "true_peak_db": -1.0},
        },
    }
    path = dest / "job_spec.json"
    path.write_text(json.dumps(spec, indent=2))
    return path
