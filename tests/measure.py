"""Measurements on real outputs: probes, decoded samples, onsets, band levels, loudness, geometry,
picture quality."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

SAMPLE_RATE = 48000
Samples = npt.NDArray[np.float32]


def ffprobe_json(path: Path, *args: str) -> dict[str, Any]:
    done = subprocess.run(
        ["ffprobe", "-v", "error", "-of", "json", *args, str(path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def probe(path: Path) -> dict[str, Any]:
    return ffprobe_json(path, "-show_streams", "-show_format")


def frame_times(path: Path) -> list[float]:
    """Each picture frame's own time (seconds), in the order they are shown."""
    frames = ffprobe_json(path, "-select_streams", "v:0", "-show_entries", "frame=pts_time")["frames"]
    return [float(f["pts_time"]) for f in frames]


def count_frames(path: Path) -> int:
    found = ffprobe_json(path, "-select_streams", "v:0", "-count_packets", "-show_entries", "stream=nb_read_packets")
    return int(found["streams"][0]["nb_read_packets"])


def decode_audio(path: Path, *, sample_rate: int = SAMPLE_RATE) -> Samples:
    """The first audio stream as mono float32 samples."""
    done = subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-v",
            "error",
            "-i",
            str(path),
            "-map",
            "0:a:0",
            "-ac",
            "1",
            "-ar",
            str(sample_rate),
            "-f",
            "f32le",
            "-",
        ],
        capture_output=True,
        check=True,
        timeout=300,
    )
    return np.frombuffer(done.stdout, dtype=np.float32)


def _band_amplitude(samples: Samples, freq: float, start: int, length: int, sample_rate: int) -> float:
    """Amplitude of one frequency in ``samples[start:start+length]`` (a single DFT bin, Hann-windowed)."""
    chunk = samples[start : start + length].astype(np.float64)
    if len(chunk) < length:
        chunk = np.pad(chunk, (0, length - len(chunk)))
    window = np.hanning(length)
    phasor = np.exp(-2j * np.pi * freq * np.arange(length) / sample_rate)
    return float(2 * abs(np.dot(chunk * window, phasor)) / window.sum())


def band_level_db(samples: Samples, *, freq: float, start: float, end: float, sample_rate: int = SAMPLE_RATE) -> float:
    """Level (dBFS amplitude) of ``freq`` in the window [start, end) seconds."""
    a, b = int(start * sample_rate), int(end * sample_rate)
    return 20 * float(np.log10(_band_amplitude(samples, freq, a, b - a, sample_rate) + 1e-9))


def onset_time(
    samples: Samples, *, freq: float, after: float = 0.0, threshold_db: float = -20.0, sample_rate: int = SAMPLE_RATE
) -> float:
    """When ``freq`` starts sounding: the first point where its envelope crosses ``threshold_db`` below its peak.

    Short Hann windows (5 ms) every 0.5 ms; the window's centre is the time reported, so a
    sharp onset is found to within about a millisecond.
    """
    window, hop = int(0.005 * sample_rate), int(0.0005 * sample_rate)
    first = int(after * sample_rate)
    starts = np.arange(first, len(samples) - window, hop)
    levels = np.array([_band_amplitude(samples, freq, int(s), window, sample_rate) for s in starts])
    if len(levels) == 0 or levels.max() <= 0:
        raise AssertionError(f"no {freq} Hz found after {after} s")
    crossing = int(np.argmax(levels >= levels.max() * 10 ** (threshold_db / 20)))
    return float((starts[crossing] + window / 2) / sample_rate)


_SUMMARY = re.compile(r"I:\s+(-?[\d.]+) LUFS.*?Peak:\s+(-?[\d.]+|-inf) dBFS", re.S)


def loudness(path: Path) -> tuple[float, float]:
    """(integrated LUFS, true peak dBTP) by ffmpeg's EBU R128 meter."""
    done = subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-nostats",
            "-i",
            str(path),
            "-map",
            "0:a:0",
            "-af",
            "ebur128=peak=true:framelog=verbose",
            "-f",
            "null",
            "-",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    found = _SUMMARY.search(done.stderr[done.stderr.rfind("Summary:") :])
    assert found, done.stderr[-1000:]
    return float(found[1]), float(found[2])


def is_faststart(path: Path) -> bool:
    """True when the moov box comes before mdat (a browser can start playing at once)."""
    data = path.read_bytes()
    offset, order = 0, []
    while offset + 8 <= len(data):
        size = int.from_bytes(data[offset : offset + 4], "big")
        kind = data[offset + 4 : offset + 8].decode("latin-1")
        if size == 1:
            size = int.from_bytes(data[offset + 8 : offset + 16], "big")
        order.append(kind)
        if size < 8:
            break
        offset += size
    return "moov" in order and "mdat" in order and order.index("moov") < order.index("mdat")


def gray_frame(path: Path, at: float) -> npt.NDArray[np.uint8]:
    info = next(s for s in probe(path)["streams"] if s["codec_type"] == "video")
    width, height = int(info["width"]), int(info["height"])
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
            "-frames:v",
            "1",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "gray",
            "-",
        ],
        capture_output=True,
        check=True,
        timeout=60,
    )
    return np.frombuffer(done.stdout, dtype=np.uint8).reshape(height, width)


def letterbox_bars(path: Path, at: float, *, black: int = 20) -> tuple[int, int, int, int]:
    """Black bars (top, bottom, left, right) in pixels of the frame at ``at`` seconds."""
    frame = gray_frame(path, at)
    rows = frame.max(axis=1) > black
    cols = frame.max(axis=0) > black
    top = int(np.argmax(rows))
    bottom = int(np.argmax(rows[::-1]))
    left = int(np.argmax(cols))
    right = int(np.argmax(cols[::-1]))
    return top, bottom, left, right


_SSIM = re.compile(r"SSIM .*All:([0-9.]+)")
_PSNR = re.compile(r"PSNR .*average:([0-9.]+|inf)")


def picture_quality(path: Path, sources: list[Path], *, width: int, height: int, fps: str) -> tuple[float, float]:
    """(PSNR dB, SSIM) of ``path``'s picture against its ``sources`` played back to back,
    each letterboxed to ``width`` x ``height`` at ``fps`` by ffmpeg's scaler with no encode in
    between: what the encodes lost, and nothing that the scaling itself changes."""
    chains = [
        f"[{i + 1}:v]scale={width}:{height}:force_original_aspect_ratio=decrease:force_divisible_by=2,"
        f"pad={width}:{height}:(ow-iw)/2:(oh-ih)/2,setsar=1,fps={fps},format=yuv420p[s{i}]"
        for i in range(len(sources))
    ]
    chains.append("".join(f"[s{i}]" for i in range(len(sources))) + f"concat=n={len(sources)}:v=1:a=0,split[r1][r2]")
    chains.append("[0:v]split[o1][o2];[o1][r1]ssim;[o2][r2]psnr")
    inputs = [arg for source in [path, *sources] for arg in ("-i", str(source))]
    done = subprocess.run(
        ["ffmpeg", "-nostdin", "-nostats", *inputs, "-filter_complex", ";".join(chains), "-f", "null", "-"],
        capture_output=True,
        text=True,
        check=True,
        timeout=900,
    )
    ssim, psnr = _SSIM.search(done.stderr), _PSNR.search(done.stderr)
    assert ssim and psnr, done.stderr[-1000:]
    return float(psnr[1]), float(ssim[1])


def frame_stamps(path: Path, *, bits: int = 12) -> list[int]:
    """The source frame number stamped on every frame of ``path`` (``tests.mediagen.stamp_filter``),
    in presentation order: each output frame's top sixth averaged into ``bits`` cells."""
    done = subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-v",
            "error",
            "-i",
            str(path),
            "-map",
            "0:v:0",
            "-vf",
            f"crop=iw:ih/6:0:0,scale={bits}:1:flags=area",
            "-fps_mode",
            "passthrough",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "gray",
            "-",
        ],
        capture_output=True,
        check=True,
        timeout=600,
    )
    cells = np.frombuffer(done.stdout, dtype=np.uint8).reshape(-1, bits)
    weights = 1 << np.arange(bits)
    return [int(v) for v in ((cells > 128) * weights).sum(axis=1)]


def click_onsets(
    samples: Samples, *, threshold: float = 0.2, gap: float = 0.05, sample_rate: int = SAMPLE_RATE
) -> list[float]:
    """Where each click starts (seconds), to the sample: the first sample over ``threshold``
    of full scale after at least ``gap`` seconds under it."""
    loud = np.flatnonzero(np.abs(samples) > threshold)
    if len(loud) == 0:
        return []
    starts = loud[np.concatenate(([True], np.diff(loud) > gap * sample_rate))]
    return [float(s / sample_rate) for s in starts]


def stream_durations(path: Path) -> tuple[float, float]:
    """(video, audio) stream durations as ffprobe reports them."""
    streams = probe(path)["streams"]
    video = next(float(s["duration"]) for s in streams if s["codec_type"] == "video")
    audio = next(float(s["duration"]) for s in streams if s["codec_type"] == "audio")
    return video, audio


def envelope_db(samples: Samples, *, window_s: float = 0.005, sample_rate: int = SAMPLE_RATE) -> Samples:
    """RMS level (dBFS) of consecutive windows of ``window_s`` seconds."""
    size = int(window_s * sample_rate)
    count = len(samples) // size
    frames = samples[: count * size].astype(np.float64).reshape(count, size)
    return (10 * np.log10(np.mean(frames**2, axis=1) + 1e-12)).astype(np.float32)


def sound_onset(
    samples: Samples, *, after: float, before: float, threshold_db: float = -30.0, sample_rate: int = SAMPLE_RATE
) -> float:
    """When broadband sound (speech) starts in [after, before): the start of the first 5 ms window
    within ``threshold_db`` of the loudest window there."""
    window = 0.005
    levels = envelope_db(samples, window_s=window, sample_rate=sample_rate)
    first, last = int(after / window), min(len(levels), int(before / window))
    span = levels[first:last]
    if len(span) == 0 or span.max() < -80:
        raise AssertionError(f"no sound in [{after}, {before})")
    return float((first + int(np.argmax(span >= span.max() + threshold_db))) * window)


_IDET = re.compile(r"Multi frame detection: TFF:\s*(\d+) BFF:\s*(\d+) Progressive:\s*(\d+)")


def interlace_detection(path: Path) -> tuple[int, int]:
    """(frames ffmpeg's idet finds interlaced, frames it finds progressive)."""
    done = subprocess.run(
        ["ffmpeg", "-nostdin", "-nostats", "-i", str(path), "-map", "0:v:0", "-vf", "idet", "-f", "null", "-"],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    found = _IDET.findall(done.stderr)
    assert found, done.stderr[-1000:]
    tff, bff, progressive = map(int, found[-1])
    return tff + bff, progressive
