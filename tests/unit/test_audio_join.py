"""The join of chunk encodes (``scenerender.audio._join``) on frames built here: order, and memory let go."""

from __future__ import annotations

import io
from concurrent.futures import Future
from typing import cast

from scenerender import adts, audio, plan
from tests.unit.test_adts import frame


def encoded(chunk: plan.AudioChunk, encoder: int) -> audio._Frames:
    """What one chunk's encoder would write: each frame names its encoder and global index."""
    frames = [frame(f"{encoder}:{chunk.first_frame + j:06d}".encode()) for j in range(chunk.frames)]
    output = audio._Frames(io.BytesIO(b"".join(frames)))
    output.read_all()
    return output


def test_the_joined_stream_takes_each_frame_once_and_lets_written_frames_go() -> None:
    total = 40 * plan.SAMPLE_RATE
    chunks = plan.audio_chunks(total, 2)
    outputs = [encoded(chunk, i) for i, chunk in enumerate(chunks)]
    done: Future[str] = Future()
    done.set_result("")
    sink = io.BytesIO()

    assert audio._join(chunks, outputs, [done, done], cast(io.BufferedWriter, sink))

    names = [f[adts.ADTS_HEADER + 2 :].decode() for f in adts.read_frames(io.BytesIO(sink.getvalue()))]
    assert [int(n.split(":")[1]) for n in names] == list(range(adts.packet_count(total)))
    join = chunks[1].join_candidates[0]  # every frame windowed alike: the first candidate is clean
    assert all(n.startswith("0:") for n in names[:join]) and all(n.startswith("1:") for n in names[join:])
    # Written frames are not kept (a two-hour scene's audio is not held in memory): what is
    # left is a few frames about the join, however long the chunks.
    kept = [sum(1 for f in output.frames if f) for output in outputs]
    assert kept[0] <= plan.AUDIO_TAIL_FRAMES + plan.AUDIO_JOIN_SEARCH_FRAMES + 1 and kept[1] <= 1, kept
    assert len(outputs[0].frames) > 700  # ...of a chunk this long
