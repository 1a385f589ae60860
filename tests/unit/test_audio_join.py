"""The join of chunk encodes (``scenerender.core.audio._join``) on frames built here: order, and memory."""

from __future__ import annotations

import io
import tracemalloc
from concurrent.futures import Future
from pathlib import Path
from typing import cast

from scenerender.core import adts, audio, plan
from tests.unit.test_adts import frame, read_frames


class CountingSink:
    """Stands for the mux's pipe: counts what it is sent, keeps none of it."""

    def __init__(self) -> None:
        self.size = 0

    def write(self, data: bytes) -> int:
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        pass


def streams(chunks: list[plan.AudioChunk], padding: int = 0) -> list[bytes]:
    """What each chunk's encoder would write: each frame names its encoder and global index."""
    return [
        b"".join(frame(f"{i}:{chunk.first_frame + j:07d}".encode() + b"\0" * padding) for j in range(chunk.frames))
        for i, chunk in enumerate(chunks)
    ]


def join(chunks: list[plan.AudioChunk], encoded: list[bytes], folder: Path, sink: object) -> int:
    """Read the encoders' output and join it into ``sink``; the peak bytes Python allocated meanwhile."""
    done: Future[str] = Future()
    done.set_result("")
    tracemalloc.start()
    outputs = [audio._Frames(io.BytesIO(data), folder / f"chunk-{i}.aac") for i, data in enumerate(encoded)]
    try:
        for output in outputs:
            output.read_all()
        assert audio._join(chunks, outputs, [done, done], cast(io.BufferedWriter, sink))
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        for output in outputs:
            output.close()


def test_the_joined_stream_takes_each_frame_once(tmp_path: Path) -> None:
    total = 40 * plan.SAMPLE_RATE
    chunks = plan.audio_chunks(total, 2)
    sink = io.BytesIO()
    join(chunks, streams(chunks), tmp_path, sink)
    names = [f[adts.ADTS_HEADER + 2 :].decode() for f in read_frames(io.BytesIO(sink.getvalue()))]
    assert [int(n.split(":")[1]) for n in names] == list(range(adts.packet_count(total)))
    at = chunks[1].join_candidates[0]  # every frame windowed alike: the first candidate is clean
    assert all(n.startswith("0:") for n in names[:at]) and all(n.startswith("1:") for n in names[at:])


def test_frames_waiting_for_their_turn_are_not_held_in_memory(tmp_path: Path) -> None:
    # An hour of audio in frames of about the size 192 kb/s makes. While the first chunk is
    # written the second one's frames wait: on disk, not in the process.
    chunks = plan.audio_chunks(3600 * plan.SAMPLE_RATE, 2)
    encoded = streams(chunks, padding=400)
    sink = CountingSink()
    peak = join(chunks, encoded, tmp_path, sink)
    assert sink.size == adts.packet_count(3600 * plan.SAMPLE_RATE) * len(frame(b"0:0000000" + b"\0" * 400))
    assert peak < sink.size / 20, (peak, sink.size)
