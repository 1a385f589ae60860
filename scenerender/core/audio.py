"""The audio stream of a render: mix, bring to the loudness target, encode, measure.

One mix pass writes the float WAV and measures it (EBU R128); the encode applies the gain
(and, for a peaky mix, a limiter) and makes AAC-LC in an M4A, measured as it is made. With
cores to spare — the video only copied — the encode is shared by one encoder per core, each
on a stretch of the mix with a lead-in, and their frames are joined into one stream
(``scenerender.core.adts``) that goes, as it comes, to the final mux the render hands over
(``joined_into``): the MP4 is made while the audio is encoded. Otherwise the render muxes
the M4A beside the video (``plan.assemble_command``). This stage never builds the MP4's command.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import itertools
import os
import threading
from array import array
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, overload

from scenerender.core import adts, plan
from scenerender.core.cache import Digests, SegmentCache
from scenerender.core.ffmpeg import FFmpegRunner, write_files
from scenerender.core.timeline import Timeline
from scenerender.errors import RenderError

AUDIO_CACHE_VERSION = "1"  # bump when the audio plan's output changes for the same inputs

FractionFn = Callable[[float], None]
JoinedInto = Callable[[int], plan.Command]  # the command the joined ADTS frames on pipe:fd go to
WRITE_BATCH_FRAMES = 32  # frames waited for before a write to the mux...
WRITE_MAX_FRAMES = 256  # ...and at most this many in one (a waiting chunk's backlog goes in pieces)


def audio_key(mix: plan.Mix, timeline: Timeline, work: Path, file_digests: Digests) -> str:
    """Content address of the encoded audio: every input's bytes, the whole mix and the loudness target.

    Nothing in it depends on the picture, so a full render finds the audio of its preview.
    """
    parts = [AUDIO_CACHE_VERSION, repr(timeline.loudness), repr(timeline.duration)]
    for arg in mix.inputs:
        path = Path(arg)
        if path.is_absolute() and path.is_file():
            parts.append(file_digests(path))
        else:
            parts.append(arg.replace(str(work), "<work>"))
    parts += [text.replace(str(work), "<work>") for text in mix.chains]
    return "audio-" + hashlib.sha256("\n".join(parts).encode()).hexdigest()


@dataclass(frozen=True)
class AudioMade:
    scan: plan.LoudnessScan  # EBU R128 scan of the encoded audio
    reused: bool = False  # taken from the cache
    encoders: int = 0  # AAC encoders that shared the encode (0: reused)
    gain: plan.MixGain | None = None  # what brought the mix to the loudness target (None: reused, or none)
    joined_into: bool = False  # the joined frames went into the caller's ``joined_into`` command: nothing left to mux


def make_audio(
    timeline: Timeline,
    work: Path,
    audio_out: Path,
    runner: FFmpegRunner,
    on_fraction: FractionFn,
    cache: SegmentCache | None = None,
    file_digests: Digests | None = None,
    *,
    cores: int = 1,
    joined_into: JoinedInto | None = None,
) -> AudioMade:
    """Mix, bring to the loudness target, encode to ``audio_out`` (M4A), or take it all from the cache.

    ``cores``: how many the audio may use (1 while the video is being encoded). With more
    than one, the encoded audio is measured by a second process as it is made. With
    ``joined_into`` too (the copy path's final mux, ``plan.assemble_command`` of a pipe), the
    encode is shared among them (``plan.audio_chunks``) and their joined frames go to the
    command ``joined_into(fd)`` builds as they come: it reads them as ADTS from ``pipe:fd``,
    writes them to ``audio_out`` too, and its stderr ends with the EBU R128 scan of what it
    read. So the MP4 is made while the audio is encoded (``AudioMade.joined_into``); when
    the frames cannot be joined, one encoder writes ``audio_out`` for the caller to mux.
    """
    mix = plan.plan_mix(timeline)
    key = audio_key(mix, timeline, work, file_digests or Digests()) if cache is not None else None
    if cache is not None and key is not None and cache.fetch(key, audio_out):
        # Measured again rather than remembered: the result describes these very bytes.
        return AudioMade(plan.parse_ebur128(runner.capture_stderr(plan.loudness_scan_command(audio_out))), reused=True)
    wav = work / "mix.wav"
    scan = _mix_and_scan(mix, wav, timeline, work, runner, on_fraction, cores)
    chunks = plan.audio_chunks(plan.total_samples(timeline), cores) if joined_into is not None else []

    def encode(correction: plan.LevelCorrection) -> plan.LoudnessScan:
        # The output's audio is this stream, copied bit for bit by the mux: measuring it here,
        # while the video is still being made, is measuring the output.
        nonlocal chunks
        if chunks and joined_into is not None:
            joined = _encode_in_chunks(wav, timeline, scan, correction, runner, on_fraction, chunks, joined_into)
            if joined is not None:
                return joined
            chunks = []  # no clean join in this mix: one encoder from now on
        if cores > 1:
            return _encode_and_scan(wav, timeline, scan, audio_out, correction, runner, on_fraction)
        single = plan.audio_encode_command(wav, timeline, scan, audio_out, correction=correction)
        runner.run(single.argv, duration_s=single.duration_s, on_progress=lambda f: on_fraction(0.5 + 0.4 * f))
        return plan.parse_ebur128(runner.capture_stderr(plan.loudness_scan_command(audio_out)))

    correction = plan.NO_CORRECTION
    result = encode(correction)
    for _ in range(plan.LEVEL_CORRECTIONS):  # re-encodes while the result misses the target
        following = plan.next_correction(timeline.loudness, result, correction)
        if following is None:
            break
        correction = following
        result = encode(correction)
    if cache is not None and key is not None:
        cache.store(key, audio_out)
    gain = plan.mix_gain(timeline, scan, correction)
    return AudioMade(result, encoders=max(1, len(chunks)), gain=gain, joined_into=bool(chunks))


def _mix_and_scan(
    mix: plan.Mix,
    wav: Path,
    timeline: Timeline,
    work: Path,
    runner: FFmpegRunner,
    on_fraction: FractionFn,
    cores: int,
) -> plan.LoudnessScan | None:
    """The mix pass; with a core to spare, its loudness is scanned there, from a pipe, as it is made."""
    script = work / "mix.filtergraph"
    if cores < 2:
        command = plan.audio_mix_command(mix, wav, script)
        write_files(command.files)
        log = runner.run(command.argv, duration_s=command.duration_s, on_progress=lambda f: on_fraction(0.5 * f))
        return plan.parse_ebur128(log) if timeline.loudness is not None else None
    scan_fd, mix_fd = os.pipe()
    command = plan.audio_mix_command(mix, wav, script, scan_fd=mix_fd)
    write_files(command.files)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="scan") as scan_pool:
        scanning = scan_pool.submit(runner.capture_stderr, plan.mix_scan_command(scan_fd), handover_fds=(scan_fd,))
        runner.run(
            command.argv,
            duration_s=command.duration_s,
            on_progress=lambda f: on_fraction(0.5 * f),
            handover_fds=(mix_fd,),
        )
        log = scanning.result()
    return plan.parse_ebur128(log) if timeline.loudness is not None else None


def _encode_and_scan(
    wav: Path,
    timeline: Timeline,
    scan: plan.LoudnessScan | None,
    audio_out: Path,
    correction: plan.LevelCorrection,
    runner: FFmpegRunner,
    on_fraction: FractionFn,
) -> plan.LoudnessScan:
    """Encode, and scan the encoder's packets as they come (through a pipe) in a second process."""
    scan_fd, encode_fd = os.pipe()
    encode = plan.audio_encode_command(wav, timeline, scan, audio_out, correction=correction, scan_fd=encode_fd)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="scan") as scan_pool:
        # Each process closes our copy of its end once it has its own, so when the encoder
        # ends (or fails) the scan reads the end of its input and ends too.
        scanning = scan_pool.submit(runner.capture_stderr, plan.encoded_scan_command(scan_fd), handover_fds=(scan_fd,))
        runner.run(
            encode.argv,
            duration_s=encode.duration_s,
            on_progress=lambda f: on_fraction(0.5 + 0.4 * f),
            handover_fds=(encode_fd,),
        )
        return plan.parse_ebur128(scanning.result())


class _Frames(Sequence[bytes]):
    """The ADTS frames one chunk's encoder has written so far, read off its pipe by a thread.

    They are kept in a spill file, not in memory: a later chunk's frames wait until every
    earlier chunk is written, and in a long scene that is most of its audio (70 MB for two
    hours). In memory there is one offset per frame.
    """

    def __init__(self, stream: BinaryIO, spill: Path) -> None:
        self._stream = stream
        self._fd = os.open(spill, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        self._offsets = array("Q", [0])  # frame i is bytes [offsets[i], offsets[i + 1]) of the spill file
        self._ended = False
        self._error: BaseException | None = None
        self._changed = threading.Condition()

    def read_all(self) -> None:
        try:
            for run, lengths in adts.read_frame_runs(self._stream):
                written = 0
                while written < len(run):  # unbuffered: readable (pread) as soon as it is counted
                    written += os.write(self._fd, run[written:])
                ends = list(itertools.accumulate(lengths, initial=self._offsets[-1]))[1:]
                with self._changed:
                    self._offsets.extend(ends)
                    self._changed.notify_all()
        except BaseException as exc:
            self._error = exc
        finally:
            self._stream.close()
            with self._changed:
                self._ended = True
                self._changed.notify_all()

    def close(self) -> None:
        os.close(self._fd)

    def __len__(self) -> int:
        return len(self._offsets) - 1

    @overload
    def __getitem__(self, index: int) -> bytes: ...

    @overload
    def __getitem__(self, index: slice) -> list[bytes]: ...

    def __getitem__(self, index: int | slice) -> bytes | list[bytes]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if not -len(self) <= index < len(self):
            raise IndexError(index)
        index %= len(self)
        return self.span(index, index + 1)

    def span(self, start: int, stop: int) -> bytes:
        """Frames ``start`` to ``stop`` (exclusive), back to back: one read."""
        first = self._offsets[start]
        return os.pread(self._fd, self._offsets[stop] - first, first)

    def wait_for(self, count: int) -> int:
        """Block until ``count`` frames are here or the encoder's output ended; how many are here."""
        with self._changed:
            self._changed.wait_for(lambda: len(self) >= count or self._ended)
            if self._error is not None:
                raise self._error
            return len(self)


def _encode_in_chunks(
    wav: Path,
    timeline: Timeline,
    scan: plan.LoudnessScan | None,
    correction: plan.LevelCorrection,
    runner: FFmpegRunner,
    on_fraction: FractionFn,
    chunks: list[plan.AudioChunk],
    consumer: JoinedInto,
) -> plan.LoudnessScan | None:
    """One encoder per chunk at once; their frames joined and sent to ``consumer``'s command
    (which writes and measures them) as they come.

    Returns the scan of the joined stream, or None when some join found no frame where both
    encoders windowed alike (the caller then encodes in one piece; what was written here is
    overwritten).
    """
    fractions = [0.0] * len(chunks)
    lock = threading.Lock()

    def report(index: int, fraction: float) -> None:
        with lock:
            fractions[index] = fraction
            on_fraction(0.5 + 0.4 * sum(fractions) / len(fractions))

    encoder_pipes = [os.pipe() for _ in chunks]
    mux_read, mux_write = os.pipe()
    outputs = [
        _Frames(os.fdopen(read, "rb"), wav.with_name(f"chunk-{i}.aac")) for i, (read, _) in enumerate(encoder_pipes)
    ]
    sink = os.fdopen(mux_write, "wb")
    mux = consumer(mux_read)
    write_files(mux.files)
    try:
        with ThreadPoolExecutor(max_workers=2 * len(chunks) + 1, thread_name_prefix="aac") as pool:
            encoders = [
                pool.submit(
                    runner.run,
                    plan.audio_chunk_command(wav, timeline, scan, chunk, write, correction=correction).argv,
                    duration_s=chunk.duration_s,
                    on_progress=lambda f, i=i: report(i, f),  # type: ignore[misc]
                    handover_fds=(write,),
                )
                for i, (chunk, (_, write)) in enumerate(zip(chunks, encoder_pipes, strict=True))
            ]
            for output in outputs:
                pool.submit(output.read_all)
            muxing = pool.submit(runner.run, mux.argv, duration_s=mux.duration_s, handover_fds=(mux_read,))
            try:
                joined = _join(chunks, outputs, encoders, sink)
            except RenderError as exc:
                # A mux that stopped reading failed first: its own error says why.
                if isinstance(exc.__cause__, BrokenPipeError) and (mux_error := muxing.exception()) is not None:
                    raise mux_error from None
                raise
            finally:
                with contextlib.suppress(OSError):  # a mux that failed has closed its end
                    sink.close()
            for encoder in encoders:
                encoder.result()
            if not joined:
                # Let the mux finish on what it got; what it wrote is overwritten.
                with contextlib.suppress(RenderError):
                    muxing.result()
                return None
            return plan.parse_ebur128(muxing.result())
    finally:
        for output in outputs:
            output.close()


def _join(
    chunks: list[plan.AudioChunk],
    outputs: list[_Frames],
    encoders: list[Future[str]],
    sink: io.BufferedWriter,
) -> bool:
    """Write the joined stream to ``sink`` as the frames arrive; False when a join found no clean frame."""
    position = 0  # the global index of the next frame to write

    def write_until(index: int, end: int) -> None:
        nonlocal position
        chunk, output = chunks[index], outputs[index]
        while position < end:
            start, stop = position - chunk.first_frame, end - chunk.first_frame
            # A few dozen frames at a time: fewer, larger writes to the mux.
            have = output.wait_for(min(start + WRITE_BATCH_FRAMES, stop))
            if have <= start:
                _ended_early(index, chunk, have, encoders[index])
            upto = min(have, stop, start + WRITE_MAX_FRAMES)
            try:
                sink.write(output.span(start, upto))
                sink.flush()
            except BrokenPipeError as exc:
                raise RenderError("the audio mux stopped reading the joined frames") from exc
            position += upto - start

    for index, chunk in enumerate(chunks):
        if index + 1 == len(chunks):
            write_until(index, chunk.first_frame + chunk.frames)
            break
        following = chunks[index + 1]
        write_until(index, min(following.join_candidates))  # these frames are ours whatever the join
        if outputs[index].wait_for(chunk.frames) < chunk.frames:
            _ended_early(index, chunk, len(outputs[index]), encoders[index])
        needed = max(following.join_candidates) + 1 - following.first_frame
        if outputs[index + 1].wait_for(needed) < needed:
            _ended_early(index + 1, following, len(outputs[index + 1]), encoders[index + 1])
        join = adts.choose_splice(
            outputs[index],
            chunk.first_frame,
            outputs[index + 1],
            following.first_frame,
            list(following.join_candidates),
        )
        if join is None:
            return False
        write_until(index, join)
    expected = adts.packet_count(chunks[-1].end_sample)
    if position != expected:
        raise RenderError(f"the joined audio has {position} frames where one encode has {expected}")
    return True


def _ended_early(index: int, chunk: plan.AudioChunk, have: int, encoder: Future[str]) -> None:
    encoder.result()  # the encoder's own error, if it failed
    raise RenderError(f"audio chunk {index} ended after {have} of {chunk.frames} AAC frames")
