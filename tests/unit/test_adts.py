"""ADTS frames and where two encodes may be joined: pure functions, on frames built here."""

from __future__ import annotations

import io
from typing import Any, BinaryIO, cast

import pytest

from scenerender.core import adts
from scenerender.errors import RenderError


def frame(payload: bytes = b"\x00" * 10, *, window: tuple[int, int] | None = (0, 1), common: bool = True) -> bytes:
    """An ADTS frame whose first element is a channel pair with the given (sequence, shape)."""
    sequence, shape = window or (0, 0)
    # id_syn_ele=CPE(3) tag(4) common_window(1) | reserved(1) window_sequence(2) window_shape(1) pad(4)
    first = (adts.CPE << 13) | (int(common) << 8) | (sequence << 5) | (shape << 4)
    body = first.to_bytes(2, "big") + payload
    length = adts.ADTS_HEADER + len(body)
    header = bytes([0xFF, 0xF1, 0x4C, 0x80 | (length >> 11), (length >> 3) & 0xFF, ((length & 0x07) << 5) | 0x1F, 0xFC])
    return header + body


def read_frames(stream: BinaryIO) -> list[bytes]:
    """Every frame of ``stream``, one by one, cut from the runs ``read_frame_runs`` gives."""
    frames: list[bytes] = []
    for run, lengths in adts.read_frame_runs(stream):
        offset = 0
        for length in lengths:
            frames.append(run[offset : offset + length])
            offset += length
    return frames


def test_frames_are_read_one_by_one_from_a_stream() -> None:
    frames = [frame(b"a" * n) for n in (5, 300, 40)]
    assert read_frames(io.BytesIO(b"".join(frames))) == frames
    assert adts.frame_length(frames[1]) == len(frames[1])


class Dribble(io.RawIOBase):
    """A pipe that hands over ``sizes`` bytes per read, in turn: frames arrive cut anywhere."""

    def __init__(self, data: bytes, sizes: tuple[int, ...]) -> None:
        self._data, self._sizes, self._reads = data, sizes, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        take = min(len(buffer), self._sizes[self._reads % len(self._sizes)], len(self._data))
        self._reads += 1
        buffer[:take], self._data = self._data[:take], self._data[take:]
        return take


def test_frames_come_in_runs_of_whole_frames_however_the_pipe_cuts_them() -> None:
    frames = [frame(bytes([65 + i % 26]) * (3 + 37 * i % 400)) for i in range(400)]
    data = b"".join(frames)
    for sizes in ((1,), (3, 250), (7,), (4096,), (1 << 20,)):
        for stream in (Dribble(data, sizes), io.BufferedReader(Dribble(data, sizes))):
            runs = list(adts.read_frame_runs(cast(BinaryIO, stream)))
            assert b"".join(run for run, _ in runs) == data
            assert [n for _, lengths in runs for n in lengths] == [len(f) for f in frames]
            assert all(sum(lengths) == len(run) for run, lengths in runs)
        assert read_frames(cast(BinaryIO, Dribble(data, sizes))) == frames
    # Buffered (as the encoder's pipe is), a read waits for a run of READ_SIZE bytes, not one frame.
    runs = list(adts.read_frame_runs(cast(BinaryIO, io.BufferedReader(Dribble(data, (600,))))))
    assert len(runs) == -(-len(data) // adts.READ_SIZE)


def test_a_truncated_or_foreign_stream_is_an_error() -> None:
    with pytest.raises(RenderError, match="middle of a frame"):
        list(adts.read_frame_runs(cast(BinaryIO, Dribble(b"".join([frame(), frame()[:5]]), (4,)))))
    with pytest.raises(RenderError, match="middle of a frame"):
        read_frames(io.BytesIO(frame()[:-3]))
    with pytest.raises(RenderError, match="not an ADTS frame"):
        read_frames(io.BytesIO(b"RIFF" + b"\x00" * 20))


def test_the_window_is_read_from_a_common_window_pair() -> None:
    assert adts.frame_window(frame(window=(adts.EIGHT_SHORT, 0))) == adts.Window(adts.EIGHT_SHORT, 0)
    assert adts.frame_window(frame(window=(adts.ONLY_LONG, 1))) == adts.Window(adts.ONLY_LONG, 1)
    assert adts.frame_window(frame(common=False)) is None  # the second channel's window is out of reach


def test_the_join_goes_after_a_frame_both_encoders_windowed_alike() -> None:
    long, start, short = frame(window=(0, 1)), frame(window=(1, 1)), frame(window=(2, 0))
    # Global frames 100..109 from both; they disagree about frame 104, agree about 105.
    earlier = [long] * 4 + [start] + [long] * 5
    later = [long] * 4 + [short] + [long] * 5
    # Candidate 105 needs frame 104 alike: it is not; 106 needs 105 alike: it is.
    assert adts.choose_splice(earlier, 100, later, 100, [105, 106, 104]) == 106
    assert adts.choose_splice(earlier, 100, later, 100, [105]) is None
    # A candidate whose frames one encoder does not have is skipped, not guessed.
    assert adts.choose_splice(earlier, 100, later, 103, [103, 107]) == 107


def test_frame_counts_follow_ffmpegs_encoder() -> None:
    # 1024 samples of encoder delay come first; the last frame holds what is left.
    assert adts.packet_count(2_400_000) == 2345 and adts.last_packet_samples(2_400_000) == 768
    assert adts.packet_count(1024) == 2 and adts.last_packet_samples(1024) == 1024
