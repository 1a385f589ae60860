"""The mix split by role: what each role (dialogue, narration, music, sfx, the segments' own
sound) contributes to the scene, made with the very chains of the mix (``scenerender.core.plan``).

The mix is a plain sum (``amix normalize=0``), so the roles' signals add up to it exactly,
before the loudness gain. One ffmpeg decodes each input once and writes every role asked
for: float WAV stems, and 8 kHz mono for the quality report's level measurements.
"""

from __future__ import annotations

import re
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from scenerender.core import plan
from scenerender.core.plan.audio_mix import clip_sound, mix_tail, segment_bed
from scenerender.core.timeline import Timeline

LEVEL_RATE = 8000  # the rate the quality report measures levels at


@dataclass(frozen=True)
class Role:
    name: str
    types: frozenset[str]  # clip types
    bed: bool = False  # the segments' own sound (segment volume > 0)


STEM_ROLES = (
    Role("dialogue", frozenset({"dialogue"})),
    Role("narration", frozenset({"narration"})),
    Role("music", frozenset({"music"})),
    Role("sfx", frozenset({"sfx"}), bed=True),  # the picture's own sound counts as effects
    Role("me", frozenset({"music", "sfx"}), bed=True),  # music and effects: everything but speech
)
SPEECH = Role("speech", frozenset({"dialogue", "narration"}))
MUSIC = Role("music", frozenset({"music"}))
EVERYTHING = Role("mix", frozenset({"dialogue", "narration", "music", "sfx"}), bed=True)


@dataclass(frozen=True)
class RoleOutput:
    role: Role
    path: Path
    levels: bool  # 8 kHz mono raw float (level measurements) instead of 48 kHz stereo float WAV


def roles_command(timeline: Timeline, outputs: list[RoleOutput], script: Path, *, scan: bool = False) -> plan.Command:
    """One pass writing each role of ``outputs``; with ``scan``, the whole mix's EBU R128
    summary (before the loudness gain) ends the stderr."""
    roles = {o.role.name: o.role for o in outputs}
    if scan:
        roles[EVERYTHING.name] = EVERYTHING
    uses: dict[str, list[str]] = {}  # a clip's or the bed's label -> the roles it feeds
    for role in roles.values():
        for clip in timeline.clips:
            if clip.type in role.types:
                uses.setdefault(f"c{clip.index}", []).append(role.name)
        if role.bed and any(seg.volume > 0 and seg.has_audio for seg in timeline.segments):
            uses.setdefault("bed", []).append(role.name)
    inputs: list[str] = []
    chains: list[str] = []
    n = 0
    if "bed" in uses:
        bed_inputs, bed_chains, n = segment_bed(timeline, 0)
        inputs += bed_inputs
        chains += bed_chains
    for clip in timeline.clips:
        if f"c{clip.index}" not in uses:
            continue
        clip_inputs, chain = clip_sound(clip, f"c{clip.index}", n, timeline)  # as the mix hears it
        inputs += clip_inputs
        chains.append(chain)
        n += 1
    feeds: dict[str, list[str]] = {name: [] for name in roles}
    for label, names in uses.items():
        if len(names) == 1:
            feeds[names[0]].append(f"[{label}]")
        else:
            copies = [f"[{label}_{name}]" for name in names]
            chains.append(f"[{label}]asplit={len(names)}{''.join(copies)}")
            for name, copy in zip(names, copies, strict=True):
                feeds[name].append(copy)
    tail = mix_tail(timeline)
    for name, labels in feeds.items():
        if not labels:
            chains.append(f"anullsrc=r={plan.SAMPLE_RATE}:cl=stereo,{','.join(tail)}[r_{name}]")
        elif len(labels) == 1:
            chains.append(f"{labels[0]}{','.join(tail)}[r_{name}]")
        else:
            mix = f"amix=inputs={len(labels)}:duration=longest:normalize=0:dropout_transition=0"
            chains.append(f"{''.join(labels)}{mix},{','.join(tail)}[r_{name}]")
    # A role written twice (levels and a stem) is split: a filter output is mapped once.
    wanted = [o.role.name for o in outputs] + ([EVERYTHING.name] if scan else [])
    mapped: dict[str, list[str]] = {}
    for name in dict.fromkeys(wanted):
        count = wanted.count(name)
        if count == 1:
            mapped[name] = [f"[r_{name}]"]
        else:
            mapped[name] = [f"[r_{name}_{i}]" for i in range(count)]
            chains.append(f"[r_{name}]asplit={count}{''.join(mapped[name])}")
    args: list[str] = []
    for out in outputs:
        label = mapped[out.role.name].pop(0)
        if out.levels:
            args += ["-map", label, "-c:a", "pcm_f32le", "-ar", str(LEVEL_RATE), "-ac", "1"]
            args += ["-f", "f32le", str(out.path)]
        else:
            args += ["-map", label, "-c:a", "pcm_f32le", "-ar", str(plan.SAMPLE_RATE), "-ac", "2"]
            args += ["-rf64", "auto", "-f", "wav", str(out.path)]
    if scan:
        chains.append(f"{mapped[EVERYTHING.name].pop(0)}{plan.EBUR128_SCAN}[scanned]")
        args += ["-map", "[scanned]", "-f", "null", "-"]
    argv = ["ffmpeg", "-y", *inputs, "-filter_complex_script", str(script), *args]
    return plan.Command(
        argv=argv, output=outputs[0].path, duration_s=float(timeline.duration), files={script: ";\n".join(chains)}
    )


def stem_encode_command(wavs: list[Path], gain_db: float, outs: list[Path]) -> list[str]:
    """Each float WAV stem at the mix's loudness gain, as 24-bit FLAC."""
    argv = ["ffmpeg", "-y"]
    for wav in wavs:
        argv += ["-protocol_whitelist", "file", "-i", str(wav)]
    for i, out in enumerate(outs):
        argv += ["-map", f"{i}:a:0", "-af", f"volume={gain_db:.4f}dB", "-c:a", "flac", "-sample_fmt", "s32"]
        argv += ["-f", "flac", str(out)]
    return argv


def output_levels_command(mp4: Path, out: Path) -> list[str]:
    """The output's audio decoded once: its first channel at ``LEVEL_RATE`` as raw float in
    ``out``, and the extremes of every ``PEAK_WINDOW_S`` over every channel logged by
    ``astats`` (``parse_peaks``: clipping needs every sample, not a level)."""
    window = round(PEAK_WINDOW_S * plan.SAMPLE_RATE)
    graph = (
        f"[0:a:0]asplit=2[l][p];[l]pan=mono|c0=c0,aresample={LEVEL_RATE}[levels];"
        f"[p]asetnsamples=n={window}:p=0,"
        "astats=metadata=1:reset=1:measure_perchannel=none:measure_overall=Min_level+Max_level,"
        "ametadata=mode=print[peaks]"
    )
    return [
        "ffmpeg",
        "-y",
        "-protocol_whitelist",
        "file",
        "-i",
        str(mp4),
        "-filter_complex",
        graph,
        "-map",
        "[levels]",
        "-c:a",
        "pcm_f32le",
        "-f",
        "f32le",
        str(out),
        "-map",
        "[peaks]",
        "-f",
        "null",
        "-",
    ]


_EXTREME = re.compile(r"lavfi\.astats\.Overall\.(Min|Max)_level=(-?[\d.]+|-?inf|nan)")


def parse_peaks(stderr: str) -> array[float]:
    """The peak of each window ``output_levels_command`` logged, in order."""
    peaks = array("f")
    low: float | None = None
    for kind, value in _EXTREME.findall(stderr):
        number = float(value) if value != "nan" else 0.0
        if kind == "Min":
            low = number
        else:
            peaks.append(max(number, -(low if low is not None else 0.0)))
            low = None
    return peaks


@dataclass
class Levels:
    """A signal reduced to what the report measures: samples at ``rate`` (one channel) and the
    peak of every ``PEAK_WINDOW_S`` of the full signal."""

    rate: int
    samples: array[float]
    peaks: array[float]


PEAK_WINDOW_S = 0.05


def _blocks(stream: BinaryIO, block_bytes: int) -> Iterator[bytes]:
    while True:
        block = stream.read(block_bytes)
        if not block:
            return
        yield block


def read_levels(path: Path, *, rate: int, channels: int, peaks: bool = True) -> Levels:
    """Read raw float samples in blocks (a long scene never sits in memory whole): keep the
    first channel at ``LEVEL_RATE`` (every n-th sample: a level, not a waveform, is wanted)
    and, with ``peaks``, the peak of each window over every channel."""
    step = max(1, rate // LEVEL_RATE)
    window = round(PEAK_WINDOW_S * rate) * channels  # floats per peak window
    block_floats = window * 20
    samples, extremes = array("f"), array("f")
    with path.open("rb") as stream:
        for block in _blocks(stream, block_floats * 4):
            values = array("f")
            values.frombytes(block[: len(block) // 4 * 4])
            samples.extend(values[0 :: step * channels])
            for i in range(0, len(values), window) if peaks else ():
                part = values[i : i + window]
                extremes.append(max(max(part), -min(part)))
    return Levels(rate=rate // step, samples=samples, peaks=extremes)
