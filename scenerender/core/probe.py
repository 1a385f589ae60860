"""What an input really is, read with ``ffprobe -of json`` (never by scraping stderr).

Size: one concern, an input's probe turned into ``MediaInfo``: the table of accepted
containers and codecs (docs/media.md is printed from it), the JSON parse and the packet scan
that corrects a stream's length. A new format touches all three, so they are read together.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import threading
from collections.abc import Iterable
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

from scenerender.core import mp4, wav
from scenerender.errors import InputMediaError, InputRefusedError

# What the renderer reads: one table, which the probe enforces and docs/media.md prints
# (tests/unit/test_probe.py checks the page against it). Anything else (playlists, concat
# lists, image sequences, raw protocols) could make ffmpeg open other files or hosts on the
# spec author's behalf, and is never handed to a demuxer.


@dataclass(frozen=True)
class Container:
    """One accepted container: how users call it, ffmpeg's demuxer and ffprobe's names for it."""

    name: str
    extensions: str
    demuxer: str  # for -format_whitelist; empty for a format no demuxer of ffmpeg's reads (animated WebP)
    format_names: frozenset[str]  # the parts of ffprobe's format_name
    # Its header states a length that a file cut short keeps (Matroska's Duration, MP3's Xing
    # frame count, FLAC's STREAMINFO, AIFF's and MXF's sizes): the packets are read to find
    # how much is really there. MP4/MOV is checked on its sample table instead (mp4.py); the
    # others' lengths come from their packets already.
    length_in_header: bool = False
    note: str = ""


CONTAINERS: tuple[Container, ...] = (
    Container(
        "MP4/MOV",
        ".mp4 .mov .m4a .m4v .3gp",
        "mov",
        frozenset({"mov", "mp4", "m4a", "3gp", "3g2", "mj2"}),
        note="the only container the copy path takes; a cut file is found on its sample table",
    ),
    Container(
        "Matroska/WebM",
        ".mkv .webm",
        "matroska",
        frozenset({"matroska", "webm"}),
        length_in_header=True,
        note="written as a stream (a live muxer, a browser's MediaRecorder: no Duration), as long as its packets",
    ),
    Container("MPEG-TS", ".ts .m2ts .mts", "mpegts", frozenset({"mpegts"})),
    Container(
        "MXF",
        ".mxf",
        "mxf",
        frozenset({"mxf"}),
        length_in_header=True,
        note="a mono track per channel (broadcast): the first two are heard as left and right, the others not; "
        "otherwise its first audio track is heard",
    ),
    Container(
        "AVI",
        ".avi",
        "avi",
        frozenset({"avi"}),
        note="chunk n is frame slot n (an empty chunk repeats the frame before); with B-frames (Xvid/DivX) the "
        "first frame is at the stream's start, as its sound expects; trimmed in the filter on the file's clock, a far "
        "trim read from a keyframe ahead of it",
    ),
    Container(
        "WebP (animated)",
        ".webp",
        "",  # never opened by ffmpeg, whose 5.1 cannot decode its frames: see core/webp.py
        frozenset(),
        note="decoded by libwebp (Pillow's), each frame composited and kept losslessly at its own time, "
        "played once; a frame of 10 ms or less is shown for 100 ms, as browsers do; transparent pixels are "
        "black; no sound; its decoded size (every frame at 4.5 bytes a pixel) is counted against the memory "
        "budget and the input size limit from its header, before a frame is decoded; `validate --probe` reads "
        "its length from its header",
    ),
    Container(
        "GIF (animated)",
        ".gif",
        "gif",
        frozenset({"gif"}),
        note="each frame shown for its own delay, played once; transparent pixels are black; no sound",
    ),
    Container("WAV", ".wav", "wav", frozenset({"wav"})),
    Container("W64", ".w64", "w64", frozenset({"w64"})),
    Container("AIFF", ".aif .aiff", "aiff", frozenset({"aiff"}), length_in_header=True),
    Container("CAF", ".caf", "caf", frozenset({"caf"})),
    Container("MP3", ".mp3", "mp3", frozenset({"mp3"}), length_in_header=True),
    Container("AAC (ADTS)", ".aac", "aac", frozenset({"aac"})),
    Container("FLAC", ".flac", "flac", frozenset({"flac"}), length_in_header=True),
    Container("Ogg", ".ogg .oga .opus", "ogg", frozenset({"ogg"})),
)
ALLOWED_FORMATS: frozenset[str] = frozenset().union(*(c.format_names for c in CONTAINERS))
# The demuxers ffprobe/ffmpeg may use on an input (-format_whitelist): no playlist, list or
# manifest demuxer can be picked by content sniffing.
DEMUXER_WHITELIST = ",".join(c.demuxer for c in CONTAINERS if c.demuxer)
ACCEPTED_CONTAINERS = ", ".join(c.name for c in CONTAINERS)

# Codecs, by ffprobe's codec_name: what Debian's ffmpeg decodes and users' tools write. A
# stream in another codec is refused by name at probe time, not as an ffmpeg failure mid-render.
VIDEO_CODECS: dict[str, str] = {
    "h264": "H.264",
    "hevc": "HEVC",
    "vp8": "VP8",
    "vp9": "VP9",
    "av1": "AV1",
    "prores": "ProRes",
    "dnxhd": "DNxHD/HR",
    "mpeg4": "MPEG-4 Part 2",
    "mpeg2video": "MPEG-2",
    "mpeg1video": "MPEG-1",
    "mjpeg": "Motion JPEG",
    "h263": "H.263",
    "theora": "Theora",
    "ffv1": "FFV1",
    "dvvideo": "DV",
    "qtrle": "QuickTime Animation",
    "gif": "GIF",
}
AUDIO_CODECS: dict[str, str] = {
    "aac": "AAC",
    "mp3": "MP3",
    "mp2": "MP2",
    "opus": "Opus",
    "vorbis": "Vorbis",
    "flac": "FLAC",
    "alac": "ALAC",
    "ac3": "AC-3",
    "eac3": "E-AC-3",
    "pcm": "PCM (any sample format)",  # pcm_s16le, pcm_s24le, pcm_f32le, pcm_s16be, ...
}


def _codec_key(codec: str) -> str:
    return "pcm" if codec.startswith("pcm_") else codec


@dataclass(frozen=True)
class Refused:
    """A format people do use that is not read, recognised by its first bytes and named."""

    name: str
    signatures: tuple[tuple[int, bytes], ...]
    why: str


REFUSED: tuple[Refused, ...] = (
    # A still one: an animated WebP (its VP8X header's animation flag) is accepted (core/webp.py).
    Refused("WebP", ((8, b"WEBP"),), "a still image; segments are video"),
    Refused("PNG", ((0, b"\x89PNG"),), "a still image; segments are video"),
    Refused("JPEG", ((0, b"\xff\xd8\xff"),), "a still image; segments are video"),
    Refused("HEIF/AVIF", ((4, b"ftypheic"),), "a still image; segments are video"),
    Refused("HEIF/AVIF", ((4, b"ftypmif1"),), "a still image; segments are video"),
    Refused("HEIF/AVIF", ((4, b"ftypavif"),), "a still image; segments are video"),
    Refused("ASF/WMV", ((0, bytes.fromhex("3026b2758e66cf11")),), "convert it to MP4 (H.264, AAC)"),
    Refused("FLV", ((0, b"FLV\x01"),), "convert it to MP4 (H.264, AAC)"),
    Refused("MPEG program stream (.mpg/.vob)", ((0, bytes.fromhex("000001ba")),), "convert it to MP4 (H.264, AAC)"),
)


def _animated_webp(raw: bytes) -> bool:
    # VP8X flags byte (offset 20): bit 1 is "animation" (as webp.is_animated_webp reads a file).
    return raw[8:16] == b"WEBPVP8X" and len(raw) > 20 and bool(raw[20] & 0x02)


def refusal_of(raw: bytes) -> tuple[str, str] | None:
    """(name, why) of a refused format these first bytes are, or None."""
    for refused in REFUSED:
        if all(raw[offset : offset + len(magic)] == magic for offset, magic in refused.signatures):
            if refused.name == "WebP" and _animated_webp(raw):
                continue
            return refused.name, refused.why
    return None


def formats_markdown() -> str:
    """The accepted and refused formats as docs/media.md shows them (kept equal by a test)."""
    lines = ["| Container | Extensions | Notes |", "|---|---|---|"]
    for c in CONTAINERS:
        notes = [c.note] if c.note else []
        if c.length_in_header:
            notes.append("its length is read from its packets (a cut file keeps its header's)")
        lines.append(f"| {c.name} | {c.extensions} | {'; '.join(notes)} |")
    lines += [
        "",
        "Video codecs: " + ", ".join(VIDEO_CODECS.values()) + ".",
        "",
        "Audio codecs: " + ", ".join(AUDIO_CODECS.values()) + ".",
        "",
        "| Refused | Why |",
        "|---|---|",
    ]
    seen: set[str] = set()
    for refused in REFUSED:
        if refused.name not in seen:
            seen.add(refused.name)
            lines.append(f"| {refused.name} | {refused.why} |")
    return "\n".join(lines) + "\n"


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
    index: int = 0  # the stream's, in the file
    # How much later than its container slot ffmpeg's decode puts each frame: an AVI keeps no
    # presentation times, and with B-frames (has_b_frames, Xvid/DivX style) ffmpeg times each
    # frame by the packet after it. AVI's own rule (chunk n is slot n, frames in display order)
    # puts the first frame at the stream's start, in step with its sound.
    decode_delay: float = 0.0

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
    index: int = 0
    # Seconds its sound is to be heard later than its timestamps say: a known muxer error
    # (``lavf_opus_error``), undone where the segment's sound is placed.
    delay: float = 0.0
    # Broadcast MXF puts each channel on its own mono track, left then right: the ordinal
    # (among the file's audio streams) of the track heard on the right, the first on the left.
    right_track: int | None = None
    # Seconds of encoder priming a plain decode keeps because nothing in the file says to drop
    # it: AAC in ADTS has no edit list, and every AAC-LC encoder primes at least 1024 samples
    # (ffmpeg's exactly; Apple's 2112). Dropped where a clip is read.
    priming: float = 0.0
    # The stream's timestamps' unit: a seek into it lands exactly only on a multiple of it
    # (an AVI's MP3 counts whole frames, 24 ms at 48 kHz; see plan.sound_seek). 0: not known.
    time_base: Fraction = Fraction(0)


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
    def priming(self) -> float:
        """Seconds at the start of its decoded sound that are the encoder's, not the sound's."""
        return self.audio.priming if self.audio is not None else 0.0

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


def _check_codec(input_path: str, kind: str, codec: str, accepted: dict[str, str]) -> None:
    if _codec_key(codec) not in accepted:
        names = ", ".join(accepted.values())
        raise InputRefusedError(
            input_path, f"the {kind} codec is {codec or 'unknown'!r}, which is not accepted; accepted: {names}"
        )


def parse_probe(path: Path, data: dict[str, Any], input_path: str) -> MediaInfo:
    """Turn ffprobe's JSON into ``MediaInfo``; pure, so it is unit-tested without ffprobe."""
    fmt = data.get("format") or {}
    format_names = set(str(fmt.get("format_name", "")).split(","))
    if not format_names & ALLOWED_FORMATS:
        raise InputRefusedError(input_path, _not_accepted(repr(fmt.get("format_name", "?"))))
    streams = data.get("streams", [])
    if len(streams) > MAX_STREAMS:
        raise InputRefusedError(input_path, f"{len(streams)} streams; at most {MAX_STREAMS} are accepted")
    video: VideoInfo | None = None
    audio: AudioInfo | None = None
    for stream in streams:
        kind = stream.get("codec_type")
        if kind == "video" and video is None and not stream.get("disposition", {}).get("attached_pic"):
            _check_codec(input_path, "video", str(stream.get("codec_name", "")), VIDEO_CODECS)
            fps = _fraction(stream.get("avg_frame_rate")) or _fraction(stream.get("r_frame_rate"))
            frames = stream.get("nb_frames")
            delayed = int(stream.get("has_b_frames", 0) or 0) if "avi" in format_names and fps > 0 else 0
            video = VideoInfo(
                index=int(stream.get("index", 0)),
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
                decode_delay=float(delayed / fps) if delayed else 0.0,
            )
        elif kind == "audio" and audio is None:
            _check_codec(input_path, "audio", str(stream.get("codec_name", "")), AUDIO_CODECS)
            audio = AudioInfo(
                index=int(stream.get("index", 0)),
                codec=str(stream.get("codec_name", "")),
                sample_rate=int(stream.get("sample_rate", 0) or 0),
                channels=int(stream.get("channels", 0) or 0),
                channel_layout=str(stream.get("channel_layout", "")),
                duration=_float(stream.get("duration")),
                start_time=_seconds(stream.get("start_time")),
                time_base=_fraction(stream.get("time_base")),
            )
    if video is None and audio is None:
        raise InputMediaError(input_path, "no audio or video stream")
    if audio is not None and audio.codec == "aac" and format_names & {"aac"} and audio.sample_rate > 0:
        audio = replace(audio, priming=ADTS_AAC_PRIMING / audio.sample_rate)
    if audio is not None and format_names & {"mxf"}:
        audio = replace(audio, right_track=_right_track([s for s in streams if s.get("codec_type") == "audio"]))
    duration = _float(fmt.get("duration")) or max(
        (d for d in (video.duration if video else None, audio.duration if audio else None) if d), default=0.0
    )
    ends = data.get(PACKET_ENDS)
    if duration <= 0 and isinstance(ends, dict):
        # A Matroska a live or streaming muxer wrote (to a pipe) has no Duration: its packets say.
        start = _seconds(fmt.get("start_time"))
        duration = max((_stream_length(ends, int(i), start) for i in ends if str(i).isdigit()), default=0.0)
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


ADTS_AAC_PRIMING = 1024  # samples: an AAC-LC frame, the least any encoder puts before the sound


def _right_track(tracks: list[dict[str, Any]]) -> int | None:
    """1 when the first two audio tracks are mono at one rate (an MXF's left and right), else None."""
    if len(tracks) < 2 or any(int(t.get("channels", 0) or 0) != 1 for t in tracks[:2]):
        return None
    if tracks[0].get("sample_rate") != tracks[1].get("sample_rate"):
        return None
    return 1


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


def _not_accepted(name: str, why: str = "") -> str:
    because = f" ({why})" if why else ""
    return f"the container is {name}, which is not accepted{because}; accepted: {ACCEPTED_CONTAINERS}"


def refuse_reference_files(path: Path, input_path: str) -> None:
    """Refuse, on the first bytes, lists that name other media and containers not accepted."""
    with open(path, "rb") as fh:
        raw = fh.read(512)
    refused = refusal_of(raw)
    if refused is not None:
        raise InputRefusedError(input_path, _not_accepted(refused[0], refused[1]))
    head = raw.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    for signature in REFERENCE_SIGNATURES:
        if head.startswith(signature.lower()):
            raise InputRefusedError(input_path, "playlists, lists and manifests that reference other media are refused")


def probe(path: Path, *, input_path: str, ffprobe: str = "ffprobe") -> MediaInfo:
    """Probe one local file; errors name ``input_path`` (``segments[2].url``)."""
    refuse_reference_files(path, input_path)
    return read_probe(path, probe_data(path, input_path=input_path, ffprobe=ffprobe), input_path)


def read_probe(path: Path, data: dict[str, Any], input_path: str) -> MediaInfo:
    """``parse_probe``, and how much of each stream the file really holds when its header may say more.

    ffprobe reports some containers' lengths from their header, which a file cut short keeps
    whole. An MP4/MOV's sample table is checked against the file's size
    (``mp4.readable_lengths``, no decode); for the other containers that state a length
    (``Container.length_in_header``) ``probe_data`` read the packets' ends
    (``PACKET_ENDS``). A short file is then refused instead of padded out.
    """
    info = parse_probe(path, data, input_path)
    if info.audio is not None and (error := lavf_opus_error(path, data)):
        info = replace(info, audio=replace(info.audio, delay=error))
    names = set(info.format_name.split(","))
    if names & {"mov", "mp4"}:
        readable = mp4.readable_lengths(path)
        if readable is None:
            return info
        video_s, audio_s = readable.video_s, readable.audio_s
    elif isinstance(ends := data.get(PACKET_ENDS), dict):
        return _with_packet_lengths(info, ends)
    else:
        return info

    def short(have: float | None, header: float | None) -> float | None:
        return have if have is not None and header is not None and have < header - 0.001 else None

    return replace(
        info,
        readable_video=short(video_s, info.video.duration if info.video else None),
        readable_audio=short(audio_s, info.audio.duration if info.audio else None),
    )


# ffmpeg's Matroska muxer up to Lavf 59.30 (ffmpeg 5.1, Debian 12's) wrote an Opus track's
# CodecDelay (its pre-skip, 6.5 ms) but not the audio blocks' offset that goes with it: the
# encoder's timestamps already count the pre-skip, and the demuxer subtracts CodecDelay
# again, so every such file's sound reads a CodecDelay early against its picture. Most WebM
# of those years is affected (VP9/AV1 + Opus exports, remuxed downloads); Ladybird's player
# corrects the same files (LadybirdBrowser/ladybird#6685). The amount is CodecDelay in the
# track's ticks, as the demuxer rounded it (7 ms for 6.5).
_LAVF_OPUS_FIXED = (59, 31)
_LAVF = re.compile(r"Lavf(\d+)\.(\d+)\.\d+")


def lavf_opus_error(path: Path, data: dict[str, Any]) -> float:
    """Seconds by which ``path``'s Opus sound reads early (0.0 for files not so written)."""
    fmt = data.get("format") or {}
    if not set(str(fmt.get("format_name", "")).split(",")) & {"matroska", "webm"}:
        return 0.0
    written = _LAVF.fullmatch(str((fmt.get("tags") or {}).get("ENCODER", "")))
    if written is None or (int(written[1]), int(written[2])) >= _LAVF_OPUS_FIXED:
        return 0.0
    streams = data.get("streams", [])
    if not any(s.get("codec_type") == "video" for s in streams):
        return 0.0  # sound alone: nothing to be early against
    audio = next((s for s in streams if s.get("codec_type") == "audio"), None)
    if audio is None or audio.get("codec_name") != "opus":
        return 0.0
    with open(path, "rb") as fh:  # CodecPrivate (OpusHead) sits in Tracks, at the file's start
        head = fh.read(1 << 16)
    at = head.find(b"OpusHead")
    if at < 0 or at + 12 > len(head):
        return 0.0
    pre_skip = int.from_bytes(head[at + 10 : at + 12], "little")  # in 48 kHz samples (RFC 7845)
    tick = _fraction(audio.get("time_base"), Fraction(1, 1000))
    # av_rescale_q rounds to nearest, halves away from zero
    ticks = math.floor(Fraction(pre_skip, 48000) / tick + Fraction(1, 2))
    return float(ticks * tick)


# A file is cut short when its packets end this much before the length its header states
# (the header's own rounding and an MP3's padding stay well within it).
CUT_TOLERANCE_S = 0.05


def _with_packet_lengths(info: MediaInfo, ends: dict[str, Any]) -> MediaInfo:
    """Lengths from the packets: the streams' readable lengths when the file ends before its
    header says; otherwise the streams' own lengths where the container gives only its own
    (Matroska's Duration is the longest stream's: the picture is placed by the picture's)."""
    video_s = _stream_length(ends, info.video.index, info.start_time) if info.video else None
    audio_s = _stream_length(ends, info.audio.index, info.start_time) if info.audio else None
    file_end = max((x for x in (video_s, audio_s) if x is not None), default=0.0)
    if file_end < info.duration - CUT_TOLERANCE_S:
        return replace(info, readable_video=video_s, readable_audio=audio_s)
    video, audio = info.video, info.audio
    if video is not None and video.duration is None and video_s:
        video = replace(video, duration=video_s - max(0.0, video.start_time - info.start_time))
    if audio is not None and audio.duration is None and audio_s:
        audio = replace(audio, duration=audio_s - max(0.0, audio.start_time - info.start_time))
    return replace(info, video=video, audio=audio)


def _stream_length(ends: dict[str, Any], index: int, start: float) -> float:
    """Seconds from the file's time 0 (``start``) to the end of the stream's last packet."""
    end = ends.get(str(index))
    return max(0.0, float(end) - start) if isinstance(end, int | float) else 0.0


# Where ``probe_data`` keeps what the packet scan found, beside ffprobe's own JSON (so the
# probe cache keeps it too): {stream index: end of its last packet, seconds}.
PACKET_ENDS = "scenerender_packet_ends"


def packet_scan_command(ffprobe: str, path: Path) -> list[str]:
    # Demux only, no decode: one line per packet, read as a stream (a long file has hundreds
    # of thousands; only each stream's latest end is kept), hence csv rather than json.
    return [
        ffprobe,
        "-v",
        "error",
        "-protocol_whitelist",
        "file",
        "-format_whitelist",
        DEMUXER_WHITELIST,
        "-show_entries",
        "packet=stream_index,pts_time,dts_time,duration_time",
        "-of",
        "csv=p=0",
        str(path),
    ]


def packet_ends(lines: Iterable[str]) -> dict[str, float]:
    """Each stream's latest packet end (pts, or dts where there is none, plus duration); pure."""
    ends: dict[str, float] = {}
    for line in lines:
        fields = line.strip().split(",")
        if len(fields) < 4:
            continue
        index, pts, dts, duration = fields[:4]
        at = _float(pts) if pts != "N/A" else _float(dts)
        if at is None:
            continue
        end = at + (_float(duration) or 0.0)
        if end > ends.get(index, -1.0):
            ends[index] = end
    return ends


def scan_packets(path: Path, *, input_path: str, ffprobe: str) -> dict[str, float]:
    cmd = packet_scan_command(ffprobe, path)
    try:
        with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) as proc:
            assert proc.stdout is not None
            timer = threading.Timer(PROBE_TIMEOUT_S, proc.kill)
            timer.start()
            try:
                ends = packet_ends(proc.stdout)
            finally:
                timer.cancel()
    except OSError as exc:
        raise InputMediaError(input_path, f"could not read its packets ({exc})") from exc
    if proc.returncode not in (0, 1):  # 1: the file ends early, which is what is measured here
        raise InputMediaError(input_path, f"reading its packets took longer than {PROBE_TIMEOUT_S} s")
    return ends


_NOT_ON_WHITELIST = re.compile(r"\[(\w+) @ [^\]]*\] Format not on whitelist")


def probe_data(path: Path, *, input_path: str, ffprobe: str = "ffprobe", url: str | None = None) -> dict[str, Any]:
    """What ``ffprobe -of json`` says of one local file (call ``refuse_reference_files`` first),
    with each stream's packet ends (``PACKET_ENDS``) where the container's header states its length.
    A plain PCM WAV is described from its header, as ffprobe would (``scenerender.core.wav``)."""
    if (described := wav.describe(path)) is not None:
        return described
    cmd = probe_command(ffprobe, path)
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=PROBE_TIMEOUT_S, check=False)
    except FileNotFoundError as exc:
        raise InputMediaError(input_path, f"ffprobe not found ({ffprobe}); install ffmpeg") from exc
    except subprocess.TimeoutExpired as exc:
        raise InputMediaError(input_path, f"probing took longer than {PROBE_TIMEOUT_S} s") from exc
    if done.returncode != 0:
        # The demuxer ffmpeg recognised, when it is not one we read: named, with the list.
        other = _NOT_ON_WHITELIST.search(done.stderr)
        if other is not None:
            raise InputRefusedError(input_path, _not_accepted(f"{other[1]!r} (ffmpeg's name)"), url=url)
        if "moov atom not found" in done.stderr and (why := mp4.missing_index(path)) is not None:
            raise InputMediaError(
                input_path,
                f"the file is cut: no index (moov) found; {why}. An interrupted download or copy? "
                "Copy or re-export it (exports that move the index to the front, 'faststart', keep a cut "
                "file's start readable)",
                url=url,
            )
        reason = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "ffprobe failed"
        # ffprobe names the file it was given: a link in the private dir, which means nothing to the user.
        reason = reason.removeprefix(f"{path}: ").replace(str(path), path.name)
        raise InputMediaError(input_path, f"not usable media ({reason})", url=url)
    try:
        data: dict[str, Any] = json.loads(done.stdout)
    except ValueError as exc:
        raise InputMediaError(input_path, "ffprobe returned no readable description") from exc
    names = set(str((data.get("format") or {}).get("format_name", "")).split(","))
    if any(c.length_in_header and names & c.format_names for c in CONTAINERS):
        data[PACKET_ENDS] = scan_packets(path, input_path=input_path, ffprobe=ffprobe)
    return data
