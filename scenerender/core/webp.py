"""Animated WebP made readable: Debian's ffmpeg (5.1) has no decoder for its frames
(ANIM/ANMF chunks), so libwebp's own animation decoder (bundled in Pillow's wheel) composites
each frame, and ffmpeg keeps the frames losslessly (FFV1 in MOV) at their own times.

The result is an ordinary input for the rest of the render: a MOV beside the WebP in the
job's private dir, whose frame k starts at the sum of the durations before it and whose
last frame lasts its own duration (it is written twice, the copy a millisecond before the
end, since ffmpeg gives a piped frame one tick). The conversion is bit-exact, so another
worker that converts the same WebP (a shared segment encode) gets the same bytes and the
same cache address.

Its cost is known before a frame is decoded: the header gives the canvas and every frame's
duration (``read_header``), so the MOV's size is bounded (``Header.decoded_bytes``) and a
file whose frames would not fit is refused before the conversion starts; ``describe``
gives ``validate --probe`` the MOV's description without making it.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shlex
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import IO, Any

from scenerender.core.probe import MediaInfo, VideoInfo
from scenerender.errors import ErrorDetail, InputMediaError, InputRefusedError, LimitExceededError

log = logging.getLogger(__name__)

# A frame of 10 ms or less is shown for 100 ms, as browsers show animated images (a 0 ms
# frame would otherwise share its time with the next and never be seen).
SHORTEST_MS = 10
INSTEAD_MS = 100
CONVERT_TIMEOUT_S = 600.0
MAX_DIMENSION = 8192  # as probe.MAX_DIMENSION: a canvas beyond it is refused before a frame is decoded
# FFV1 keeps a frame of noise at up to ~1.11x its raw bytes (measured: RGBA 1.109x of 4 bytes
# a pixel, RGB 1.107x of 3); a frame at 4.5 bytes a pixel bounds any frame's, alpha or not.
BOUND_BYTES_PER_PIXEL = 4.5
MOV_OVERHEAD_BYTES = 64 * 1024  # the header and sample table: a few bytes a frame beyond this
MIB = 1024 * 1024
FRAMES_SUFFIX = ".frames.mov"  # convert's MOV, beside the WebP it was made of


def is_animated_webp(path: Path) -> bool:
    """A RIFF WebP whose VP8X header has the animation flag (bit 1 of its flags byte)."""
    with open(path, "rb") as fh:
        return is_animated_head(fh.read(21))


def is_animated_head(head: bytes) -> bool:
    """``is_animated_webp`` of a file's first 21 bytes."""
    return head[:4] == b"RIFF" and head[8:16] == b"WEBPVP8X" and len(head) > 20 and bool(head[20] & 0x02)


def shown_ms(durations: list[int]) -> list[int]:
    """How long each frame is shown: its own duration, 100 ms for one of 10 ms or less."""
    return [d if d > SHORTEST_MS else INSTEAD_MS for d in durations]


def pts_expression(durations: list[int]) -> str:
    """A ``setpts`` expression giving frame N its start in milliseconds (the sum of the
    durations before it), for a stream whose time base is 1 ms.

    Frames of equal duration are one run, a line ``start + d*(N - first)``; the runs are
    chosen among by a balanced tree of ``if(lt(N, ...))``, so each frame costs a few
    comparisons even when every duration differs from the one before (a 24 fps animation
    kept in whole milliseconds alternates 42, 41, 42).
    """
    runs: list[tuple[int, int, int]] = []  # (first frame, its start ms, duration ms)
    start = 0
    for n, d in enumerate(durations):
        if not runs or runs[-1][2] != d:
            runs.append((n, start, d))
        start += d

    def tree(lo: int, hi: int) -> str:
        if hi - lo == 1:
            first, at, d = runs[lo]
            return f"{at}+{d}*(N-{first})"
        mid = (lo + hi) // 2
        return f"if(lt(N,{runs[mid][0]}),{tree(lo, mid)},{tree(mid, hi)})"

    return tree(0, len(runs))


@dataclass(frozen=True)
class Decoded:
    """An animated WebP converted: the MOV, its frames and its length (ms, as shown)."""

    path: Path
    frames: int
    duration_ms: int


@dataclass(frozen=True)
class Header:
    """What an animated WebP's chunk headers say, no pixel decoded: its canvas and each frame's
    duration as shown (``shown_ms``)."""

    width: int
    height: int
    durations: list[int]
    alpha: bool = True  # the VP8X alpha flag: its frames are decoded as RGBA, else RGB

    @property
    def duration_ms(self) -> int:
        return sum(self.durations)

    @property
    def decoded_bytes(self) -> int:
        """At most the bytes its MOV takes: every frame (the last one twice) at the bound a pixel."""
        pixels = (len(self.durations) + 1) * self.width * self.height
        return int(pixels * BOUND_BYTES_PER_PIXEL) + MOV_OVERHEAD_BYTES + 16 * len(self.durations)


def read_header(path: Path, input_path: str) -> Header:
    """The canvas (VP8X: 24-bit width - 1 and height - 1 at bytes 24 and 27) and the frames'
    durations (``frame_durations``); errors name ``input_path``."""
    with open(path, "rb") as fh:
        return _header(fh, input_path)


def header_of(data: bytes, input_path: str) -> Header:
    """``read_header`` of a WebP's bytes (read from its bucket before it is fetched)."""
    return _header(io.BytesIO(data), input_path)


def _header(fh: IO[bytes], input_path: str) -> Header:
    head = fh.read(30)
    if len(head) < 30 or head[12:16] != b"VP8X":
        raise InputMediaError(input_path, "not a readable animated WebP (no VP8X header)")
    width = int.from_bytes(head[24:27], "little") + 1
    height = int.from_bytes(head[27:30], "little") + 1
    durations = shown_ms(_durations(fh))
    declared, held = 8 + int.from_bytes(head[4:8], "little"), fh.seek(0, io.SEEK_END)
    if held < declared:
        # Cut by an interrupted download or copy: its frames' chunks end early, and what they
        # would show is not known (libwebp refuses the file). Said before any frame is decoded.
        whole = _whole_frames(fh, held)
        raise InputMediaError(
            input_path,
            f"the file is cut: its header says {declared:,} bytes, it holds {held:,}; "
            f"{len(whole)} frames ({sum(shown_ms(whole)) / 1000:.3f} s) are whole; copy or export it again",
        )
    if not durations:
        raise InputMediaError(input_path, "an animated WebP without a readable frame")
    if max(width, height) > MAX_DIMENSION:
        raise InputRefusedError(input_path, f"{width}x{height}; at most {MAX_DIMENSION} pixels a side is accepted")
    return Header(width, height, durations, alpha=bool(head[20] & 0x10))


class DecodedBudget:
    """What a render's memory budget leaves for its inputs' decoded frames (the MOVs animated
    WebPs become), shared by the render's fetches; ``left`` None: no memory budget, each MOV
    is held to the largest input instead (``max_bytes``)."""

    def __init__(self, left: int | None, max_bytes: int) -> None:
        self.left = left
        self.max_bytes = max_bytes
        self._lock = threading.Lock()

    def take(self, header: Header, input_path: str) -> None:
        """Reserve ``header``'s decoded bytes, or refuse it before a frame is decoded: past the
        memory budget ``LIMIT_EXCEEDED`` (as the whole render's budget is); without one, past
        the input size limit ``INPUT_REFUSED`` (as a file that large is)."""
        need = header.decoded_bytes
        frames = f"its {len(header.durations)} frames of {header.width}x{header.height}"
        what = f"{frames} take up to {need / MIB:,.0f} MiB decoded"
        with self._lock:
            if self.left is not None and need > self.left:
                raise LimitExceededError(
                    f"memory_mb: {input_path} is an animated WebP whose frames take up to {need / MIB:,.0f} MiB "
                    f"decoded, and the render's memory budget leaves {max(0, self.left) / MIB:,.0f} MiB for them "
                    "(its /tmp is memory on Cloud Run)",
                    details=[ErrorDetail(input_path, f"{what}; {max(0, self.left) / MIB:,.0f} MiB left")],
                )
            # With a memory budget that is the limit (the input size cap it sets is for fetches).
            if self.left is None and need > self.max_bytes:
                raise InputRefusedError(input_path, f"{what}; the largest input is {self.max_bytes:,} bytes")
            if self.left is not None:
                self.left -= need


def describe(path: Path, header: Header) -> MediaInfo:
    """The description ``probe`` gives the MOV ``convert`` would make of it, without making it
    (``validate --probe``): its canvas, its frames (the last one twice) over its length."""
    frames = len(header.durations) + 1
    seconds = header.duration_ms / 1000
    video = VideoInfo(
        codec="ffv1",
        profile="",
        pix_fmt="bgra" if header.alpha else "bgr0",
        width=header.width,
        height=header.height,
        fps=Fraction(frames * 1000, header.duration_ms),
        time_base=Fraction(1, 1000),
        duration=seconds,
        frames=frames,
        rotation=0,
        sar=Fraction(1),
        extradata_hash="",
    )
    return MediaInfo(
        path=path,
        format_name="mov,mp4,m4a,3gp,3g2,mj2",
        duration=seconds,
        size_bytes=header.decoded_bytes,
        video=video,
        audio=None,
    )


def is_conversion(path: Path) -> bool:
    """Whether ``path`` is the MOV ``convert`` made of an animated WebP (a render's own file)."""
    return path.name.endswith(FRAMES_SUFFIX)


def frame_durations(path: Path) -> list[int]:
    """Each frame's duration in ms, from its ANMF chunk's header (no pixel decoded)."""
    with open(path, "rb") as fh:
        return _durations(fh)


def _whole_frames(fh: IO[bytes], held: int) -> list[int]:
    """The durations of the frames whose chunks end within the file's ``held`` bytes."""
    whole: list[int] = []
    fh.seek(12)
    while len(head := fh.read(8)) == 8:
        size = int.from_bytes(head[4:], "little")
        end = fh.tell() + size
        if end > held:
            break
        if head[:4] == b"ANMF" and size >= 16:
            whole.append(int.from_bytes(fh.read(16)[12:15], "little"))
        fh.seek(end + (size & 1))
    return whole


def _durations(fh: IO[bytes]) -> list[int]:
    durations: list[int] = []
    fh.seek(12)  # RIFF, its size, WEBP
    while len(head := fh.read(8)) == 8:
        size = int.from_bytes(head[4:], "little")
        if head[:4] == b"ANMF":
            frame = fh.read(16)  # X, Y, width-1, height-1, duration: 24 bits each; flags
            if len(frame) < 16:
                break
            durations.append(int.from_bytes(frame[12:15], "little"))
            size -= 16
        fh.seek(size + (size & 1), 1)  # chunks are padded to an even length
    return durations


def _frames(image: Any, input_path: str) -> Iterator[bytes]:
    """Each frame composited on the canvas (libwebp's animation decoder), in order."""
    for n in range(image.n_frames):
        try:
            image.seek(n)
            pixels: bytes = image.tobytes()
        except (OSError, ValueError) as exc:
            # A frame's bitstream is damaged although its headers were read (Pillow says
            # "failed to read next frame"): the user's file, not our fault.
            why = f"its frame {n + 1} of {image.n_frames} cannot be decoded ({exc})"
            raise InputMediaError(input_path, why) from exc
        yield pixels


def convert(
    path: Path,
    *,
    input_path: str,
    ffmpeg: str = "ffmpeg",
    max_bytes: int = 2 * 1024**3,
    budget: DecodedBudget | None = None,
) -> Decoded:
    """``path`` (an animated WebP) as a lossless MOV beside it; errors name ``input_path``.

    Its decoded size is checked against ``budget`` (else ``max_bytes``) from its header,
    before a frame is decoded."""
    from PIL import Image  # only a render that meets an animated WebP needs libwebp's decoder

    budget = budget or DecodedBudget(None, max_bytes)
    header = read_header(path, input_path)
    budget.take(header, input_path)
    max_bytes = header.decoded_bytes  # ffmpeg's -fs below: a stop, should the bound ever be passed
    out = path.with_name(path.name + FRAMES_SUFFIX)
    # Written under another name and renamed when whole: a conversion that fails or is
    # stopped leaves no MOV that a later reader of ``out`` would take for the frames.
    part = path.with_name(path.name + ".frames.part")
    script = path.with_name(path.name + ".setpts")
    try:
        image = Image.open(path)
    except (OSError, ValueError) as exc:
        raise InputMediaError(input_path, f"not a readable animated WebP ({exc})") from exc
    with contextlib.closing(image):
        width, height = image.size
        if max(width, height) > MAX_DIMENSION:
            raise InputRefusedError(input_path, f"{width}x{height}; at most {MAX_DIMENSION} pixels a side is accepted")
        if image.mode not in ("RGB", "RGBA"):
            raise InputMediaError(input_path, f"an animated WebP in mode {image.mode}, not RGB(A)")
        durations = shown_ms(frame_durations(path))
        count = len(durations)
        frames = int(getattr(image, "n_frames", 1))
        if count == 0 or count != frames:
            raise InputMediaError(input_path, f"an animated WebP of {frames} frames, {count} of them readable")
        # The last frame twice: once at its time, once a tick before the end, so the stream
        # lasts to the end of its last frame (a piped frame lasts one tick).
        ticks = [*durations[:-1], durations[-1] - 1, 1]
        script.write_text(f"setpts='{pts_expression(ticks)}'", encoding="utf-8")
        alpha = image.mode == "RGBA"
        argv = [
            ffmpeg,
            "-nostdin",
            "-hide_banner",
            "-v",
            "error",
            "-y",
            *("-f", "rawvideo", "-pix_fmt", "rgba" if alpha else "rgb24", "-s", f"{width}x{height}"),
            *("-framerate", "1000", "-i", "pipe:0"),
            *("-filter_script:v", str(script), "-fps_mode", "passthrough"),
            *("-c:v", "ffv1", "-pix_fmt", "bgra" if alpha else "bgr0", "-video_track_timescale", "1000"),
            # Bit-exact: the same WebP gives the same bytes on every worker (cache address).
            *("-fflags", "+bitexact", "-flags:v", "+bitexact", "-map_metadata", "-1"),
            *("-fs", str(max_bytes), "-f", "mov", str(part)),
        ]
        log.info("animated WebP %s: %d frames, %d ms: %s", input_path, count, sum(durations), shlex.join(argv))
        try:
            whole = _feed(argv, image, input_path)
            if not whole or part.stat().st_size >= max_bytes:  # ffmpeg stopped without an error: -fs was reached
                raise InputRefusedError(
                    input_path, f"its {count} frames of {width}x{height} take more than {max_bytes} bytes decoded"
                )
            os.replace(part, out)
        finally:
            script.unlink(missing_ok=True)
            part.unlink(missing_ok=True)
    return Decoded(out, count, sum(durations))


def _feed(argv: list[str], image: Any, input_path: str) -> bool:
    """Run ``argv`` with every frame of ``image`` on its stdin (the last one twice); False
    when ffmpeg ended, without an error, before it took them all (its size limit)."""
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    except FileNotFoundError as exc:
        raise InputMediaError(input_path, f"ffmpeg not found ({argv[0]}); install ffmpeg") from exc
    with proc:  # closes its pipes, however this ends
        stdin: IO[bytes] | None = proc.stdin
        stderr: IO[bytes] | None = proc.stderr
        assert stdin is not None and stderr is not None
        err: list[bytes] = []
        reader = threading.Thread(target=lambda: err.append(stderr.read()), daemon=True)
        reader.start()
        timer = threading.Timer(CONVERT_TIMEOUT_S, proc.kill)
        timer.start()
        whole = False
        try:
            with contextlib.suppress(BrokenPipeError):  # ffmpeg stopped (-fs reached, killed): said below
                pixels = b""
                for pixels in _frames(image, input_path):
                    stdin.write(pixels)
                stdin.write(pixels)
                whole = True
            with contextlib.suppress(BrokenPipeError):
                stdin.close()
            code = proc.wait()
        except BaseException:
            proc.kill()
            raise
        finally:
            timer.cancel()
            reader.join()
    if code != 0:
        tail = b"".join(err).decode(errors="replace").strip().splitlines()[-1:] or ["killed"]
        if code < 0:
            tail = [f"stopped after {CONVERT_TIMEOUT_S:.0f} s"]
        raise InputMediaError(input_path, f"its frames could not be decoded ({tail[0]})")
    return whole
