"""AAC in ADTS frames: reading them off a stream, and where two encodes of one signal may be joined.

Pure functions over bytes; ``scenerender.core.audio`` runs the encoders.

Why joining works: an AAC-LC frame of 1024 samples is decoded by overlap-adding its inverse
MDCT with the previous frame's, and every frame is self-contained in the bitstream (no bit
reservoir reaches across frames). Two encoders fed the same samples on the same 1024-sample
grid therefore make interchangeable frames, provided the window the previous frame ended
with is the one the next frame begins with: the splice is placed after a frame both
encoders coded with the same window sequence and shape, so the frame that follows it (from
the second encoder) overlaps a window its own encoder also assumed.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import BinaryIO

from scenerender.errors import RenderError

FRAME_SAMPLES = 1024
ADTS_HEADER = 7  # without CRC; ffmpeg writes protection_absent=1
CPE = 1  # channel pair element: the first element of every stereo frame
ONLY_LONG, LONG_START, EIGHT_SHORT, LONG_STOP = range(4)


def frame_length(header: bytes) -> int:
    """The whole ADTS frame's length in bytes, from its header."""
    if len(header) < ADTS_HEADER or header[0] != 0xFF or header[1] & 0xF6 != 0xF0:
        raise RenderError("the AAC encoder wrote something that is not an ADTS frame")
    return ((header[3] & 0x03) << 11) | (header[4] << 3) | (header[5] >> 5)


READ_SIZE = 1 << 14  # about 30 frames of 192 kb/s stereo


def read_frame_runs(stream: BinaryIO) -> Iterator[tuple[bytes, list[int]]]:
    """Whole ADTS frames as they arrive on ``stream``: each time, every complete frame read so
    far, back to back, with their lengths.

    The encoder writes its frames to the pipe one by one; a frame at a time, the reader would
    wake (and take the GIL from the render's other threads) some 50 times per second of audio.
    A buffered stream's ``read`` waits for ``READ_SIZE`` bytes instead (or the end), and the
    frames come in runs of a few dozen: what the join writes to the mux at once anyway.
    """
    read = stream.read
    pending = b""
    while True:
        data = read(READ_SIZE)
        if not data:
            if pending:
                raise RenderError("the AAC encoder's output ended in the middle of a frame")
            return
        pending += data
        lengths: list[int] = []
        offset = 0
        while len(pending) - offset >= ADTS_HEADER:
            length = frame_length(pending[offset : offset + ADTS_HEADER])
            if length <= ADTS_HEADER:
                raise RenderError(f"ADTS frame of impossible length {length}")
            if len(pending) - offset < length:
                break
            lengths.append(length)
            offset += length
        if lengths:
            yield pending[:offset], lengths
            pending = pending[offset:]


@dataclass(frozen=True)
class Window:
    """How a stereo frame was windowed (ISO/IEC 14496-3, ics_info), when both channels agree."""

    sequence: int
    shape: int


def frame_window(frame: bytes) -> Window | None:
    """The window of a stereo frame whose channels share it (``common_window``); else None.

    Layout after the 7-byte header: id_syn_ele (3 bits), element_instance_tag (4),
    common_window (1), then ics_info: ics_reserved_bit (1), window_sequence (2), window_shape (1).
    Without a common window the second channel's ics_info sits behind the first channel's
    whole spectral data, so such a frame is simply not used as a splice point.
    """
    if frame[1] & 0x01 == 0:  # protection_absent = 0: a CRC follows the header
        return None
    if len(frame) < ADTS_HEADER + 2:
        return None
    bits = int.from_bytes(frame[ADTS_HEADER : ADTS_HEADER + 2], "big")
    element, common_window = bits >> 13, (bits >> 8) & 1
    if element != CPE or not common_window:
        return None
    return Window(sequence=(bits >> 5) & 0x03, shape=(bits >> 4) & 1)


def choose_splice(
    earlier: Sequence[bytes], earlier_first: int, later: Sequence[bytes], later_first: int, candidates: list[int]
) -> int | None:
    """The first of ``candidates`` (global frame indices, best first) where the join is clean.

    ``earlier``/``later`` are the two encoders' frames, starting at global frame
    ``earlier_first``/``later_first``. A candidate ``k`` means: frames before ``k`` from the
    earlier encoder, ``k`` onwards from the later one. It is clean when both encoders coded
    frame ``k - 1`` with the same window, and both have the frames the join needs.
    """
    for k in candidates:
        a, b = k - 1 - earlier_first, k - 1 - later_first
        if not (0 <= a < len(earlier) and b >= 0 and b + 1 < len(later)):
            continue
        window = frame_window(earlier[a])
        if window is not None and window == frame_window(later[b]):
            return k
    return None


def packet_count(samples: int) -> int:
    """Frames ffmpeg's AAC encoder makes for ``samples`` samples (one frame of priming first)."""
    return -(-(samples + FRAME_SAMPLES) // FRAME_SAMPLES)


def last_packet_samples(samples: int) -> int:
    """How many samples of the last frame are real (the MP4 edit list ends the track there)."""
    return samples + FRAME_SAMPLES - (packet_count(samples) - 1) * FRAME_SAMPLES
