"""Test media made with ffmpeg's lavfi sources (and espeak-ng where present): small, fast, deterministic."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

# How a generator's segment is encoded: the copy path's profile (H.264 High yuv420p, AAC
# 48 kHz stereo). The tests and benchmarks/bench_render.py make their media with these.
H264_HIGH = ("-c:v", "libx264", "-preset", "veryfast", "-profile:v", "high", "-pix_fmt", "yuv420p")
AAC_STEREO_48K = ("-c:a", "aac", "-ar", "48000", "-ac", "2")


def run_ffmpeg(*args: str) -> None:
    done = subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-y", *args], capture_output=True, text=True, check=False, timeout=300
    )
    if done.returncode != 0:
        raise RuntimeError(f"ffmpeg {' '.join(args)} failed:\n{done.stderr[-2000:]}")


def make_video(
    path: Path,
    *,
    width: int,
    height: int,
    fps: str | float,
    duration: float,
    audio: bool = True,
    sample_rate: int = 48000,
    channels: int = 2,
    tone: float = 330.0,
    pattern: str = "testsrc2",
    grain: int = 0,
) -> Path:
    """H.264 High yuv420p (+ AAC) in MP4, like a generated segment; ``grain`` adds temporal
    noise of that strength (texture like real footage has, which flat patterns lack)."""
    picture = f"{pattern}=s={width}x{height}:r={fps}:d={duration}" + (f",noise=alls={grain}:allf=t" if grain else "")
    args = ["-f", "lavfi", "-i", picture]
    if audio:
        layout = "mono" if channels == 1 else "stereo"
        args += ["-f", "lavfi", "-i", f"sine=f={tone}:r={sample_rate}:d={duration},aformat=channel_layouts={layout}"]
    args += H264_HIGH
    args += ["-c:a", "aac", "-ar", str(sample_rate), "-ac", str(channels)] if audio else []
    run_ffmpeg(*args, "-t", str(duration), str(path))
    return path


def make_tone_burst(
    path: Path,
    *,
    freq: float,
    duration: float,
    lead_silence: float = 0.0,
    sample_rate: int = 48000,
    amplitude: float = 0.5,
    channels: int = 1,
) -> Path:
    """Silence, then a tone with a sharp onset (the format follows the suffix)."""
    graph = (
        f"aevalsrc={amplitude}*sin(2*PI*{freq}*t)*gte(t\\,{lead_silence}):s={sample_rate}:"
        f"d={lead_silence + duration}:c={'mono' if channels == 1 else 'stereo'}"
    )
    run_ffmpeg("-f", "lavfi", "-i", graph, str(path))
    return path


def make_music(path: Path, *, duration: float, freq: float = 220.0, amplitude: float = 0.3) -> Path:
    """A steady tone: a music bed whose level is easy to measure in its own band."""
    return make_tone_burst(path, freq=freq, duration=duration, amplitude=amplitude, channels=2)


def make_speech(path: Path, text: str, *, voice: str = "en") -> Path:
    """espeak-ng speech as WAV; a tone burst where espeak-ng is missing."""
    if shutil.which("espeak-ng"):
        subprocess.run(["espeak-ng", "-v", voice, "-w", str(path), text], check=True, capture_output=True, timeout=60)
        return path
    return make_tone_burst(path, freq=800, duration=max(0.5, len(text) / 15))


def make_not_media(path: Path) -> Path:
    path.write_text("this is a note, not a video\n")
    return path


# Frame stamps: the top sixth of the picture is a barcode of the frame's number in its source
# (STAMP_BITS columns, white = 1), so which source frame every output frame shows is read back
# exactly (``tests.measure.frame_stamps``), whatever was copied, re-encoded or scaled.
STAMP_BITS = 12


def stamp_filter(offset: int = 0) -> str:
    """geq drawing frame ``N + offset``'s barcode over the top sixth; chroma neutral."""
    bit = f"mod(floor((N+{offset})/pow(2\\,floor(X*{STAMP_BITS}/W)))\\,2)"
    return f"geq=lum='if(lt(Y\\,H/6)\\,255*{bit}\\,lum(X\\,Y))':cb=128:cr=128"


def click_train(times: list[float], *, duration: float, freq: float = 1000.0, sample_rate: int = 48000) -> str:
    """A lavfi source of silence with a 10 ms tone burst starting at each of ``times``."""
    gates = "+".join(f"between(t\\,{t}\\,{t + 0.01})" for t in times) or "0"
    return f"aevalsrc=0.8*sin(2*PI*{freq}*t)*({gates}):s={sample_rate}:d={duration}"


def make_stamped(
    path: Path,
    *,
    width: int = 320,
    height: int = 180,
    fps: str | float = 30,
    duration: float = 2.0,
    audio_duration: float | None = None,
    clicks: tuple[float, ...] = (0.1,),
    video_args: tuple[str, ...] = H264_HIGH,
    audio_args: tuple[str, ...] = ("-c:a", "aac"),
    output_args: tuple[str, ...] = (),
    base: str = "testsrc2",
) -> Path:
    """A frame-stamped segment; with ``audio_duration``, a sound track of that length (it may
    outlast the picture, as generator and phone exports do) with a click at each of ``clicks``."""
    picture = f"{base}=s={width}x{height}:r={fps}:d={duration},format=yuv420p,{stamp_filter()}"
    args = ["-f", "lavfi", "-i", picture]
    if audio_duration is not None:
        args += ["-f", "lavfi", "-i", click_train(list(clicks), duration=audio_duration)]
    args += [*video_args, *(audio_args if audio_duration is not None else ())]
    run_ffmpeg(*args, *output_args, str(path))
    return path


def make_clicks(path: Path, *, duration: float, clicks: tuple[float, ...], args: tuple[str, ...] = ()) -> Path:
    """Silence with a 10 ms 1 kHz burst at each of ``clicks`` (the format follows the suffix)."""
    run_ffmpeg("-f", "lavfi", "-i", click_train(list(clicks), duration=duration), *args, str(path))
    return path


def mux_offset(video: Path, audio: Path, out: Path, *, video_offset: float = 0.0, audio_offset: float = 0.0) -> Path:
    """Picture and sound copied into one MP4, either starting later than the other (``-itsoffset``,
    written as an edit list), as editors and phone apps do."""
    run_ffmpeg(
        *("-itsoffset", str(video_offset), "-i", str(video)),
        *("-itsoffset", str(audio_offset), "-i", str(audio)),
        *("-map", "0:v:0", "-map", "1:a:0", "-c", "copy", str(out)),
    )
    return out


def make_spoken_line(path: Path, text: str, *, lead_silence: float = 0.0, voice: str = "en") -> Path:
    """espeak-ng speech that starts sounding at its first sample (espeak's own lead-in cut),
    after ``lead_silence`` seconds of silence: a clip whose onset is known exactly."""
    raw = path.with_name(path.stem + ".raw.wav")
    make_speech(raw, text, voice=voice)
    delay = f",adelay={round(lead_silence * 1000)}:all=1" if lead_silence else ""
    run_ffmpeg(
        "-i",
        str(raw),
        "-af",
        f"silenceremove=start_periods=1:start_threshold=-45dB:start_silence=0{delay},aresample=48000",
        str(path),
    )
    raw.unlink()
    return path


def make_still_of_last_frame(source: Path, path: Path, *, duration: float, fps: int = 30) -> Path:
    """A video that only shows ``source``'s last frame (a generator that returned its input)."""
    frames = round(duration * fps)
    run_ffmpeg(
        "-i",
        str(source),
        "-vf",
        f"reverse,trim=end_frame=1,loop=loop={frames - 1}:size=1:start=0,setpts=N/{fps}/TB",
        "-frames:v",
        str(frames),
        *H264_HIGH,
        "-r",
        str(fps),
        "-an",
        str(path),
    )
    return path


def make_silence(path: Path, *, duration: float) -> Path:
    run_ffmpeg("-f", "lavfi", "-i", f"anullsrc=r=48000:cl=mono,atrim=end={duration}", str(path))
    return path


def pad_audio(source: Path, path: Path, *, trailing: float) -> Path:
    """``source`` with ``trailing`` seconds of silence after it (a TTS line with a long tail)."""
    run_ffmpeg("-i", str(source), "-af", f"apad=pad_dur={trailing}", str(path))
    return path
