"""The sync certificate's measuring parts on signals made here (no ffmpeg): onsets found
where they are, other sounds' edges not taken for them, and frames recognised by their data."""

from __future__ import annotations

import math
import random
from array import array
from pathlib import Path

import pytest

from scenerender.core import sync
from scenerender.errors import RenderError

RATE = sync.RATE


def burst(at: float, total: float, freq: float = 1000.0, length: float = 0.01, level: float = 0.8) -> list[float]:
    """Silence with a tone burst at ``at`` seconds (its phase from its own start, as a clip's is)."""
    first, stop = round(at * RATE), round((at + length) * RATE)
    tone = [level * math.sin(2 * math.pi * freq * k / RATE) for k in range(stop - first)]
    return [0.0] * first + tone + [0.0] * (round(total * RATE) - stop)


def mixed(*signals: list[float]) -> list[float]:
    return [sum(values) for values in zip(*signals, strict=True)]


def onset_of(reference: list[float]) -> sync.Onset:
    found = sync._reference_onset(reference + [0.0] * (round(sync.REFERENCE_S * RATE) - len(reference)))
    assert isinstance(found, sync.Onset)
    return found


@pytest.mark.parametrize("late_ms", [0.0, 0.5, 12.0, -30.0, 80.0, 400.0])
def test_an_onset_is_placed_to_the_sample(late_ms: float) -> None:
    reference = burst(0.05, 0.5)
    onset = onset_of(reference)
    assert onset.step * sync.STEP_S == pytest.approx(0.05, abs=sync.STEP_S)
    planned = 2.0 + onset.step * sync.STEP_S
    output = burst(2.05 + late_ms / 1000, 4.0)
    error = sync._locate(output, onset, planned)
    assert error is not None and error * 1000 == pytest.approx(late_ms, abs=0.2)


def test_an_onset_under_a_louder_bed_is_still_found() -> None:
    rng = random.Random(7)
    noise = [0.3 * (rng.random() - 0.5) for _ in range(4 * RATE)]
    onset = onset_of(burst(0.0, 0.5, freq=700, length=0.2))
    error = sync._locate(mixed(burst(2.03, 4.0, freq=700, length=0.2), noise), onset, 2.0)
    assert error is not None and error * 1000 == pytest.approx(30.0, abs=0.5)


def test_another_sounds_edge_is_not_taken_for_the_clip() -> None:
    # The clip (a 300 Hz tone) is not in the output at all; a 1 kHz burst starts near its
    # planned time. The envelope has the shape; the waveform does not.
    onset = onset_of(burst(0.0, 0.5, freq=300, length=0.3))
    assert sync._locate(burst(2.1, 4.0, freq=1000, length=0.3), onset, 2.0) is None


def test_the_same_sound_again_in_the_next_segment_is_not_taken_for_it() -> None:
    # A click train: the segment's click at its planned time, the next segment's identical
    # click 350 ms later, a little cleaner (a codec's noise on the first). The nearer is it.
    rng = random.Random(3)
    hiss = [0.004 * (rng.random() - 0.5) for _ in range(4 * RATE)]
    onset = onset_of(burst(0.1, 0.6))
    output = mixed(burst(2.0, 4.0), burst(2.35, 4.0), [h if k < round(2.2 * RATE) else 0.0 for k, h in enumerate(hiss)])
    error = sync._locate(output, onset, 2.0)
    assert error is not None and abs(error) < 0.001, error


def test_a_silent_reference_is_not_measured() -> None:
    assert sync._reference_onset([0.0] * round(sync.REFERENCE_S * RATE)) == "silent in its first 3 s"


def test_a_frame_is_recognised_by_its_last_unit() -> None:
    sei, slice_data = b"\x06" + b"s" * 20, b"\x65" + bytes(range(200))
    sample = len(sei).to_bytes(4, "big") + sei + len(slice_data).to_bytes(4, "big") + slice_data
    assert sync._last_unit(sample) == slice_data
    # Parameter sets put in band before the slice (a copy-join) leave the last unit alone.
    sps = b"\x67" + b"p" * 30
    joined = len(sei).to_bytes(4, "big") + sei + len(sps).to_bytes(4, "big") + sps + sample[4 + len(sei) :]
    assert sync._last_unit(joined) == slice_data
    assert sync._last_unit(b"\x00\x00\x01\x65garbage") == b"\x00\x00\x01\x65garbage"  # not length-prefixed


def reference(planned: float, until: float, fade_in: float = 0.0) -> sync.Reference:
    return sync.Reference("clip", Path("c.wav"), 0.0, planned, until, fade_in)


def test_the_output_is_decoded_where_onsets_are_looked_for() -> None:
    before, after = sync._reach()
    total = 600 * RATE
    spans = sync.output_spans([reference(100.0, 101.0), reference(300.0, 400.0), reference(301.0, 302.0)], total)
    # A short clip: from its planned start to its end; a long one: its first REFERENCE_S;
    # a clip starting inside another's stretch joins it.
    assert spans == [
        (100 * RATE - before - 1, 101 * RATE + after + 1),
        (300 * RATE - before - 1, round((300 + sync.REFERENCE_S) * RATE) + after + 1),
    ]
    # A clip that fades in has no edge to find: nothing decoded for it.
    assert sync.output_spans([reference(50.0, 60.0, fade_in=1.0)], total) == []


def test_stretches_covering_most_of_the_output_decode_it_all() -> None:
    total = 10 * RATE
    assert sync.output_spans([reference(1.0, 9.0), reference(6.0, 9.0)], total) == [(0, total)]
    many = [reference(10.0 * k, 10.0 * k + 0.5) for k in range(sync.MAX_SPANS + 1)]
    assert sync.output_spans(many, 1000 * RATE) == [(0, 1000 * RATE)]


def test_an_onset_is_located_in_stretches_as_in_the_whole() -> None:
    onset = onset_of(burst(0.05, 0.5))
    output = burst(12.063, 20.0)
    [(start, end)] = sync.output_spans([reference(12.0, 12.5)], len(output))
    spans = sync.Spans([(start, end)], array("f", output[start:end]), len(output))
    planned = 12.0 + onset.step * sync.STEP_S
    assert sync._locate(spans, onset, planned) == sync._locate(output, onset, planned)
    assert sync._locate(spans, onset, planned) == pytest.approx(0.013, abs=2e-4)  # 12.063 against 12.05
    # A read where nothing was decoded is a bug in the spans, not silence.
    with pytest.raises(RenderError, match="not decoded"):
        spans[start - 100 : start + 10]
