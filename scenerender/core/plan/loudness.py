"""Loudness: the EBU R128 scans, what they print, and the policy that brings a mix to its
target under the true-peak ceiling: the gain (and limiter) of the encode, how close its
result must land, and what the next encode changes when it does not (``next_correction``)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from scenerender.core.plan.command import SAMPLE_RATE, adts_pipe_input, input_args
from scenerender.core.spec import Loudness
from scenerender.core.timeline import Timeline
from scenerender.errors import RenderError

TRUE_PEAK_MARGIN_DB = 0.5  # AAC encoding adds inter-sample peaks; aim this far under the ceiling
LOUDNESS_TOLERANCE_LU = 0.5  # an encoded result this close to the target is on it
LEVEL_CORRECTIONS = 4  # re-encodes allowed when the result is off the loudness target or over the peak ceiling
PEAK_STEP_DB = 0.2  # a peak over the ceiling is aimed this far under it on the next encode


EBUR128_SCAN = "ebur128=peak=true:framelog=verbose"


def loudness_scan_command(path: Path) -> list[str]:
    """EBU R128 scan (integrated, range, true peak) of a file's first audio stream."""
    return ["ffmpeg", *input_args(path), "-map", "0:a:0", "-af", EBUR128_SCAN, "-f", "null", "-"]


AAC_PRIMING_SAMPLES = 1024  # ffmpeg's AAC encoder delay; the MP4 edit list skips it, raw ADTS does not
ENCODED_SCAN = f"atrim=start_sample={AAC_PRIMING_SAMPLES},{EBUR128_SCAN}"


def encoded_scan_command(fd: int) -> list[str]:
    """The EBU R128 scan of the ADTS copy ``audio_encode_command`` writes to ``pipe:fd``.

    It decodes the very packets that go into the M4A; dropping the encoder delay leaves the
    samples a decode of the M4A gives, bit for bit, so this measures the output's audio
    while it is being encoded instead of in a pass after it.
    """
    return ["ffmpeg", *adts_pipe_input(fd), *encoded_scan_output()]


def encoded_scan_output(source: int = 0) -> list[str]:
    """The output options of a scan of encoded audio (input ``source``) read as ADTS: its summary ends stderr."""
    return ["-map", f"{source}:a:0", "-af", ENCODED_SCAN, "-f", "null", "-"]


@dataclass(frozen=True)
class LoudnessScan:
    integrated_lufs: float  # -70 or below: silence
    threshold_lufs: float
    range_lu: float
    true_peak_db: float

    @property
    def silent(self) -> bool:
        return self.integrated_lufs <= -70


_SUMMARY = re.compile(
    r"Integrated loudness:\s+I:\s+(?P<i>-?[\d.]+|-?inf) LUFS\s+Threshold:\s+(?P<thr>-?[\d.]+|-?inf) LUFS"
    r".*?LRA:\s+(?P<lra>-?[\d.]+) LU.*?True peak:\s+Peak:\s+(?P<tp>-?[\d.]+|-?inf) dBFS",
    re.S,
)


def parse_ebur128(stderr: str) -> LoudnessScan:
    """The summary ebur128 logs at the end (it has no JSON output; the block's layout is stable)."""
    found = _SUMMARY.search(stderr[stderr.rfind("Summary:") :] if "Summary:" in stderr else stderr)
    if found is None:
        raise RenderError("loudness scan printed no summary", stderr_tail=stderr[-2000:])
    return LoudnessScan(float(found["i"]), float(found["thr"]), float(found["lra"]), float(found["tp"]))


@dataclass(frozen=True)
class LevelCorrection:
    """What a measurement of an encoded result asks of the next encode.

    ``gain_db``: limiting a peak changes what EBU R128's gate counts, so the first result
    can land off the loudness target. ``headroom_db``: the encoder's rounding can lift a
    limited peak over the ceiling, so the limiter then aims this much lower.
    """

    gain_db: float = 0.0
    headroom_db: float = 0.0


NO_CORRECTION = LevelCorrection()


@dataclass(frozen=True)
class MixGain:
    """What ``loudness_chain`` does to the mix: this gain (dB, as the chain writes it), then,
    when ``limited``, a limiter (the stems take the gain: docs/deliverables.md)."""

    gain_db: float
    limited: bool


def mix_gain(timeline: Timeline, scan: LoudnessScan | None, correction: LevelCorrection) -> MixGain | None:
    """The gain that brings the mix to the loudness target; None when none is applied."""
    loud = timeline.loudness
    if loud is None or scan is None or scan.silent:
        return None
    ceiling = loud.true_peak_db - TRUE_PEAK_MARGIN_DB - correction.headroom_db
    gain = loud.target_lufs - scan.integrated_lufs + correction.gain_db
    return MixGain(round(gain, 2), scan.true_peak_db + gain > ceiling)


def loudness_chain(timeline: Timeline, scan: LoudnessScan | None, correction: LevelCorrection) -> list[str]:
    """The mix brought to the loudness target: one linear gain when it keeps the true peak
    under the ceiling; otherwise the same gain followed by a limiter working at 4x the rate
    (so it catches peaks between samples)."""
    gain = mix_gain(timeline, scan, correction)
    loud = timeline.loudness
    if gain is None or loud is None:
        return []
    chain = [f"volume={gain.gain_db:.2f}dB"]
    if gain.limited:
        ceiling = loud.true_peak_db - TRUE_PEAK_MARGIN_DB - correction.headroom_db
        limit = max(0.0625, 10 ** (ceiling / 20))
        # latency=true: the limiter's look-ahead (its attack) would otherwise delay the whole
        # mix by 0.5 ms against the picture and against the stems (which must null with it).
        chain += [
            f"aresample={4 * SAMPLE_RATE}",
            f"alimiter=limit={limit:.4f}:attack=0.5:release=20:level=false:latency=true",
            f"aresample={SAMPLE_RATE}",
            f"aformat=sample_fmts=fltp:sample_rates={SAMPLE_RATE}:channel_layouts=stereo",
        ]
    return chain


def next_correction(
    target: Loudness | None, result: LoudnessScan, correction: LevelCorrection
) -> LevelCorrection | None:
    """What the next encode changes after one that gave ``result`` with ``correction``;
    None when the result stands (on target and under the ceiling, silent, or no target)."""
    if target is None or result.silent:
        return None
    off_target = target.target_lufs - result.integrated_lufs
    over_ceiling = result.true_peak_db - target.true_peak_db
    if abs(off_target) <= LOUDNESS_TOLERANCE_LU and over_ceiling <= 0:
        return None
    return LevelCorrection(
        gain_db=correction.gain_db + (off_target if abs(off_target) > LOUDNESS_TOLERANCE_LU else 0.0),
        headroom_db=correction.headroom_db + (over_ceiling + PEAK_STEP_DB if over_ceiling > 0 else 0.0),
    )
