"""What ``ffprobe -of json`` says of a plain PCM WAV, read from its header instead.

A render probes every input, and each ffprobe start costs 60-120 ms of CPU (Debian's build
loads 215 shared libraries) whatever the file: for a WAV (what TTS services and editors
export for dialogue and narration) that is the whole cost, for a header of 44 bytes. Only
the simplest WAV is read here — ``fmt `` of 8- or 16-bit PCM (no WAVE_FORMAT_EXTENSIBLE,
whose channel mask names a layout), followed by nothing but ``LIST``/``fact`` chunks and a
``data`` chunk that ends the file exactly — and described with the fields, names and
formatting ffprobe gives it (tests/integration/test_probe_wav.py compares the two on files
ffmpeg writes). Anything else (``None``) goes to ffprobe as before.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

# (format tag, bits per sample) -> ffmpeg's codec and sample format. Only what ffmpeg itself
# writes as a plain WAV (and the test compares with ffprobe): it writes deeper or float
# samples, and more than two channels, as WAVE_FORMAT_EXTENSIBLE.
_CODECS = {(1, 8): ("pcm_u8", "u8"), (1, 16): ("pcm_s16le", "s16")}
_SKIPPED_CHUNKS = {b"LIST", b"fact"}  # metadata ffprobe shows as tags at most; nothing of the stream
_MAX_HEADER = 1 << 16  # a header longer than this is no plain WAV


def describe(path: Path) -> dict[str, Any] | None:
    """ffprobe's ``-show_streams -show_format`` description of ``path``, or None when it is
    not a plain PCM WAV that ends with its ``data`` chunk."""
    try:
        with path.open("rb") as fh:
            head = fh.read(_MAX_HEADER)
        size = path.stat().st_size
    except OSError:
        return None
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    at, fmt = 12, None
    while at + 8 <= len(head):
        chunk, length = head[at : at + 4], struct.unpack_from("<I", head, at + 4)[0]
        body = at + 8
        if chunk == b"fmt " and fmt is None and length in (16, 18) and body + length <= len(head):
            fmt = struct.unpack_from("<HHIIHH", head, body)
        elif chunk == b"data":
            # The data runs to the end of the file (a pad byte at most): a file cut short, or
            # chunks after the sound, are ffprobe's to judge.
            if fmt is None or length == 0 or size - (body + length) not in (0, length % 2):
                return None
            return _description(path, fmt, length, size)
        elif chunk not in _SKIPPED_CHUNKS:
            return None
        at = body + length + length % 2
    return None


def _description(path: Path, fmt: tuple[int, ...], data_bytes: int, size: int) -> dict[str, Any] | None:
    tag, channels, rate, _, block_align, bits = fmt
    codec = _CODECS.get((tag, bits))
    if codec is None or channels < 1 or rate < 1 or block_align != channels * bits // 8:
        return None
    samples = data_bytes // block_align
    duration = f"{samples / rate:.6f}"
    bit_rate = rate * block_align * 8
    stream = {
        "index": 0,
        "codec_name": codec[0],
        "codec_type": "audio",
        "codec_tag_string": f"[{tag}][0][0][0]",
        "codec_tag": f"0x{tag:04x}",
        "sample_fmt": codec[1],
        "sample_rate": str(rate),
        "channels": channels,
        "bits_per_sample": bits,
        "r_frame_rate": "0/0",
        "avg_frame_rate": "0/0",
        "time_base": f"1/{rate}",
        "duration_ts": samples,
        "duration": duration,
        "bit_rate": str(bit_rate),
        "disposition": {"default": 0, "attached_pic": 0},
    }
    return {
        "streams": [stream],
        "format": {
            "filename": str(path),
            "nb_streams": 1,
            "nb_programs": 0,
            "format_name": "wav",
            "duration": duration,
            "size": str(size),
            "bit_rate": str(round(size * 8 / (samples / rate))) if samples else "0",
            "probe_score": 99,
        },
    }
