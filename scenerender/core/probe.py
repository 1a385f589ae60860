"""What an input really is, read with ``ffprobe -of json`` (never by scraping stderr)."""

from __future__ import annotations

import json
import math
import subprocess
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

from scenerender.core import mp4
from scenerender.errors import InputMediaError, InputRefusedError

# Containers we read. Anything else (playlists, concat lists, image sequences, raw
# protocols) could make ffmpeg open other files or hosts on the spec author's behalf.
ALLOWED_FORMATS: frozenset[str] = frozenset(
    {
        "mov",
        "mp4",
        "m4a",
        "3gp",
        "3g2",
        "mj2",
        "matroska",
        "webm",
        "wav",
        "mp3",
        "aac",
        "flac",
        "ogg",
        "avi",
        "mpegts",
        "w64",
        "aiff",
        "caf",
    }
)
# The demuxers ffprobe/ffmpeg may use on an input (-format_whitelist): no playlist, list or
# manifest demuxer can be picked by content sniffing.
DEMUXER_WHITELIST = "mov,matroska,wav,mp3,aac,flac,ogg,avi,mpegts,w64,aiff,caf"
PROBE_TIMEOUT_S = 60
# Caps on what one input may be: beyond them a file is refused before ffmpeg spends time on it.
MAX_DURATION_S = 4 * 3600.0
MAX_DIMENSION = 8192
MAX_STREAMS = 32


@dataclass(frozen=True)
class VideoInfo:
    codec: str
    profile: str
    pix_fmt: str
    width: int
    height: int
    fps: Fraction
    time_base: Fraction
    duration: float | None
    frames: int | None
    rotation: int
    sar: Fraction
    extradata_hash: str
    start_time: float = 0.0  # of the stream, on the file's clock (an edit list or a mux may delay it)
    field_order: str = "progressive"  # ffprobe's: progressive, tt, bb, tb, bt, unknown
    color_transfer: str = ""  # bt709, smpte2084 (PQ), arib-std-b67 (HLG), ...
    color_primaries: str = ""
    color_space: str = ""

    @property
    def interlaced(self) -> bool:
        """Coded as fields, by the stream's own word (``unknown`` and absent are taken as progressive)."""
        return self.field_order in ("tt", "bb", "tb", "bt")

    @property
    def hdr(self) -> str | None:
        """``"pq"`` or ``"hlg"`` when the stream says it is HDR; None for SDR."""
        return {"smpte2084": "pq", "arib-std-b67": "hlg"}.get(self.color_transfer)

    @property
    def display_size(self) -> tuple[int, int]:
        """Size as shown, rotation applied (ffmpeg autorotates when decoding)."""
        if self.rotation % 180:
            return self.height, self.width
        return self.width, self.height


@dataclass(frozen=True)
class AudioInfo:
    codec: str
    sample_rate: int
    channels: int
    channel_layout: str
    duration: float | None
    start_time: float = 0.0


@dataclass(frozen=True)
class MediaInfo:
    """One probed input file."""

    path: Path
    format_name: str
    duration: float
    size_bytes: int
    video: VideoInfo | None
    audio: AudioInfo | None
    start_time: float = 0.0  # the earliest stream's: where ffmpeg puts time 0 when it reads the file
    # What the file really holds of each stream when that is less than its header says (an
    # MP4 cut mid-mdat by a failed download or copy); None: all of it, or not known.
    readable_video: float | None = None
    readable_audio: float | None = None

    @property
    def video_lead(self) -> float:
        """Seconds from the file's time 0 (as ffmpeg reads it) to its first frame of picture."""
        return max(0.0, self.video.start_time - self.start_time) if self.video else 0.0

    @property
    def audio_duration(self) -> float:
        """Length of the audio stream, falling back to the container's."""
        if self.audio and self.audio.duration:
            return self.audio.duration
        return self.duration

    @property
    def video_duration(self) -> float:
        if self.video and self.video.duration:
            return self.video.duration
        return self.duration


def probe_command(ffprobe: str, path: Path) -> list[str]:
    return [
        ffprobe,
        "-v",
        "error",
        "-protocol_whitelist",
        "file",
        "-format_whitelist",
        DEMUXER_WHITELIST,
        "-of",
        "json",
        "-show_streams",
        "-show_format",
        "-show_data_hash",
        "sha256",
        str(path),
    ]


def _fraction(text: str | None, default: Fraction = Fraction(0)) -> Fraction:
    if not text or text in ("0/0", "N/A"):
        return default
    try:
        return Fraction(text.replace(":", "/"))
    except (ValueError, ZeroDivisionError):
        return default


def _float(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number == number and number >= 0 else None


def _seconds(value: Any) -> float:
    """A start time: may be negative (priming before an edit list), 0 when absent."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return 0.0
    return number if math.isfinite(number) else 0.0


def _rotation(stream: dict[str, Any]) -> int:
    for side in stream.get("side_data_list", []) or []:
        if "rotation" in side:
            return round(float(side["rotation"])) % 360
    rotate = stream.get("tags", {}).get("rotate")
    return int(rotate) % 360 if rotate is not None and str(rotate).lstrip("-").isdigit() else 0


def parse_probe(path: Path, data: dict[str, Any], input_path: str) -> MediaInfo:
    """Turn ffprobe's JSON into ``MediaInfo``; pure, so it is unit-tested without ffprobe."""
    fmt = data.get("format") or {}
    format_names = set(str(fmt.get("format_name", "")).split(","))
    if not format_names & ALLOWED_FORMATS:
        raise InputRefusedError(
            input_path,
            f"the container is {fmt.get('format_name', '?')!r}, which is not accepted; accepted: {ACCEPTED_CONTAINERS}",
        )
    streams = data.get("streams", [])
    if len(streams) > MAX_STREAMS:
        raise InputRefusedError(input_path, f"{len(streams)} streams; at most {MAX_STREAMS} are accepted")
    video: VideoInfo | None = None
    audio: AudioInfo | None = None
    for stream in streams:
        kind = stream.get("codec_type")
        if kind == "video" and video is None and not stream.get("disposition", {}).get("attached_pic"):
            fps = _fraction(stream.get("avg_frame_rate")) or _fraction(stream.get("r_frame_rate"))
            frames = stream.get("nb_frames")
            video = VideoInfo(
                codec=str(stream.get("codec_name", "")),
                profile=str(stream.get("profile", "")),
                pix_fmt=str(stream.get("pix_fmt", "")),
                width=int(stream.get("width", 0)),
                height=int(stream.get("height", 0)),
                fps=fps,
                time_base=_fraction(stream.get("time_base")),
                duration=_float(stream.get("duration")),
                frames=int(frames) if frames and str(frames).isdigit() else None,
                rotation=_rotation(stream),
                sar=_fraction(stream.get("sample_aspect_ratio"), Fraction(1)),
                extradata_hash=str(stream.get("extradata_hash", "")),
                start_time=_seconds(stream.get("start_time")),
                field_order=str(stream.get("field_order", "progressive")),
                color_transfer=str(stream.get("color_transfer", "")),
                color_primaries=str(stream.get("color_primaries", "")),
                color_space=str(stream.get("color_space", "")),
            )
        elif kind == "audio" and audio is None:
            audio = AudioInfo(
                codec=str(stream.get("codec_name", "")),
                sample_rate=int(stream.get("sample_rate", 0) or 0),
                channels=int(stream.get("channels", 0) or 0),
                channel_layout=str(stream.get("channel_layout", "")),
                duration=_float(stream.get("duration")),
                start_time=_seconds(stream.get("start_time")),
            )
    if video is None and audio is None:
        raise InputMediaError(input_path, "no audio or video stream")
    duration = _float(fmt.get("duration")) or max(
        (d for d in (video.duration if video else None, audio.duration if audio else None) if d), default=0.0
    )
    if duration <= 0:
        raise InputMediaError(input_path, "media has zero duration")
    if duration > MAX_DURATION_S:
        raise InputRefusedError(input_path, f"{duration:.0f} s long; at most {MAX_DURATION_S:.0f} s is accepted")
    if video is not None and max(video.width, video.height) > MAX_DIMENSION:
        raise InputRefusedError(
            input_path, f"{video.width}x{video.height}; at most {MAX_DIMENSION} pixels a side is accepted"
        )
    return MediaInfo(
        path=path,
        format_name=str(fmt.get("format_name", "")),
        duration=duration,
        size_bytes=int(fmt.get("size", 0) or 0),
        video=video,
        audio=audio,
        start_time=_seconds(fmt.get("start_time")),
    )


# Files that name other files or hosts (playlists, concat lists, manifests): refused on
# sight, before any demuxer could follow what they point at.
REFERENCE_SIGNATURES: tuple[bytes, ...] = (
    b"#EXTM3U",
    b"#EXTINF",
    b"ffconcat",
    b"file '",
    b'file "',
    b"<?xml",
    b"<MPD",
    b"[playlist]",
    b"<smil",
    b"<asx",
)


ACCEPTED_CONTAINERS = (
    "MP4/MOV (.mp4 .mov .m4a .3gp), Matroska/WebM, WAV, W64, AIFF, CAF, MP3, AAC (ADTS), FLAC, Ogg, AVI, MPEG-TS"
)
# Containers people do use that the renderer does not read (yet): named, with the accepted
# list, instead of ffprobe's "Invalid argument" from the demuxer whitelist.
UNACCEPTED_SIGNATURES: tuple[tuple[int, bytes, str], ...] = (
    (0, b"GIF87a", "GIF"),
    (0, b"GIF89a", "GIF"),
    (8, b"WEBP", "WebP"),
    (0, bytes.fromhex("060e2b34020501010d0102"), "MXF"),
    (0, b"\x89PNG", "PNG"),
    (0, b"\xff\xd8\xff", "JPEG"),
)


def refuse_reference_files(path: Path, input_path: str) -> None:
    """Refuse, on the first bytes, lists that name other media and containers not accepted."""
    with open(path, "rb") as fh:
        raw = fh.read(512)
    for offset, magic, name in UNACCEPTED_SIGNATURES:
        if raw[offset : offset + len(magic)] == magic:
            raise InputRefusedError(
                input_path, f"the container is {name}, which is not accepted; accepted: {ACCEPTED_CONTAINERS}"
            )
    head = raw.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    for signature in REFERENCE_SIGNATURES:
        if head.startswith(signature.lower()):
            raise InputRefusedError(input_path, "playlists, lists and manifests that reference other media are refused")


def probe(path: Path, *, input_path: str, ffprobe: str = "ffprobe") -> MediaInfo:
    """Probe one local file; errors name ``input_path`` (``segments[2].url``)."""
    refuse_reference_files(path, input_path)
    return read_probe(path, probe_data(path, input_path=input_path, ffprobe=ffprobe), input_path)


def read_probe(path: Path, data: dict[str, Any], input_path: str) -> MediaInfo:
    """``parse_probe``, and for an MP4/MOV how much of each stream the file really holds.

    ffprobe reports an MP4's lengths from its header, which a file cut mid-``mdat`` keeps
    whole: its sample table is checked against the file's size (``mp4.readable_lengths``,
    milliseconds, no decode), so a short file is refused instead of padded out.
    """
    info = parse_probe(path, data, input_path)
    if not set(info.format_name.split(",")) & {"mov", "mp4"}:
        return info
    readable = mp4.readable_lengths(path)
    if readable is None:
        return info

    def short(have: float | None, header: float | None) -> float | None:
        return have if have is not None and header is not None and have < header - 0.001 else None

    return replace(
        info,
        readable_video=short(readable.video_s, info.video.duration if info.video else None),
        readable_audio=short(readable.audio_s, info.audio.duration if info.audio else None),
    )


def probe_data(path: Path, *, input_path: str, ffprobe: str = "ffprobe", url: str | None = None) -> dict[str, Any]:
    """What ``ffprobe -of json`` says of one local file (call ``refuse_reference_files`` first)."""
    cmd = probe_command(ffprobe, path)
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=PROBE_TIMEOUT_S, check=False)
    except FileNotFoundError as exc:
        raise InputMediaError(input_path, f"ffprobe not found ({ffprobe}); install ffmpeg") from exc
    except subprocess.TimeoutExpired as exc:
        raise InputMediaError(input_path, f"probing took longer than {PROBE_TIMEOUT_S} s") from exc
    if done.returncode != 0:
        reason = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "ffprobe failed"
        # ffprobe names the file it was given: a link in the private dir, which means nothing to the user.
        reason = reason.removeprefix(f"{path}: ").replace(str(path), path.name)
        raise InputMediaError(input_path, f"not usable media ({reason})", url=url)
    try:
        data: dict[str, Any] = json.loads(done.stdout)
    except ValueError as exc:
        raise InputMediaError(input_path, "ffprobe returned no readable description") from exc
    return data
