"""Probe results made by hand, so timeline and plan are tested without ffmpeg."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

from scenerender.core.probe import AudioInfo, MediaInfo, VideoInfo


def video(
    name: str,
    *,
    seconds: float = 2.0,
    width: int = 1920,
    height: int = 1080,
    fps: Fraction = Fraction(30),
    codec: str = "h264",
    profile: str = "High",
    audio: bool = True,
    rotation: int = 0,
    extradata: str = "SHA256:same",
) -> MediaInfo:
    return MediaInfo(
        path=Path(f"/work/{name}"),
        format_name="mov,mp4,m4a,3gp,3g2,mj2",
        duration=seconds,
        size_bytes=1000,
        video=VideoInfo(
            codec=codec,
            profile=profile,
            pix_fmt="yuv420p",
            width=width,
            height=height,
            fps=fps,
            time_base=Fraction(1, 15360),
            duration=seconds,
            frames=round(seconds * fps),
            rotation=rotation,
            sar=Fraction(1),
            extradata_hash=extradata,
        ),
        audio=AudioInfo("aac", 48000, 2, "stereo", seconds) if audio else None,
    )


def sound(name: str, *, seconds: float = 1.0, sample_rate: int = 48000, channels: int = 1) -> MediaInfo:
    return MediaInfo(
        path=Path(f"/work/{name}"),
        format_name="wav",
        duration=seconds,
        size_bytes=100,
        video=None,
        audio=AudioInfo("pcm_s16le", sample_rate, channels, "mono", seconds),
    )
