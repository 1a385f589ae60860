"""The AAC encode of the mix: in one encoder, or in chunks, one encoder per core, whose ADTS
frames are joined into one stream (``scenerender.core.adts``)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from scenerender.core import adts
from scenerender.core.plan.command import (
    SAMPLE_RATE,
    Command,
    input_args,
    to_samples,
)
from scenerender.core.plan.loudness import (
    NO_CORRECTION,
    LevelCorrection,
    LoudnessScan,
    loudness_chain,
)
from scenerender.core.timeline import Timeline

AUDIO_BITRATE = "192k"


def _tee_escape(path: Path) -> str:
    """A file name as the tee muxer's slave list reads it (backslash before anything special)."""
    return re.sub(r"([^A-Za-z0-9/._-])", r"\\\1", str(path))


AAC_ENCODER = ["-c:a", "aac", "-profile:a", "aac_low", "-b:a", AUDIO_BITRATE, "-ar", str(SAMPLE_RATE), "-ac", "2"]


def audio_encode_command(
    wav: Path,
    timeline: Timeline,
    scan: LoudnessScan | None,
    out: Path,
    *,
    correction: LevelCorrection = NO_CORRECTION,
    scan_fd: int | None = None,
) -> Command:
    """Second pass: the mix brought to the loudness target, then AAC-LC 48 kHz stereo.

    ``correction`` is what a measurement of an earlier result asked for.
    With ``scan_fd``, the encoded packets also go, as ADTS, to ``pipe:scan_fd`` (one
    encode, two muxers) for ``encoded_scan_command``.
    """
    total = to_samples(timeline.duration)
    chain = [*loudness_chain(timeline, scan, correction), f"apad=whole_len={total}", f"atrim=end_sample={total}"]
    argv = [
        "ffmpeg",
        "-y",
        *input_args(wav),
        "-af",
        ",".join(chain),
        *AAC_ENCODER,
        *(
            ["-f", "mp4", str(out)]
            if scan_fd is None
            else ["-map", "0:a:0", "-f", "tee", f"[f=mp4]{_tee_escape(out)}|[f=adts]pipe:{scan_fd}"]
        ),
    ]
    return Command(argv=argv, output=out, duration_s=float(timeline.duration))


# Encoding the audio in chunks, one encoder per core, joined frame by frame (scenerender.core.adts).
AUDIO_CHUNK_MIN_S = 8.0  # shorter chunks spend too much of their time on the lead-in
AUDIO_LEAD_IN_FRAMES = 48  # ~1 s encoded before a chunk's first usable frame: its rate control settles
AUDIO_JOIN_SEARCH_FRAMES = 16  # the join may move this far either way to find matching windows
AUDIO_TAIL_FRAMES = AUDIO_JOIN_SEARCH_FRAMES + 8  # an encode's last frames are windowed for its end: unused
# The first chunk's share of the audio against each other chunk's. The final mux (which
# also measures the joined stream) takes the first chunk's frames as they come and every
# later chunk's only after it: with equal chunks it would be left a half of the audio to
# catch up on once the encoders are done; with a shorter first chunk it catches up while
# the later encoders still run.
AUDIO_FIRST_CHUNK_WEIGHT = 0.7


@dataclass(frozen=True)
class AudioChunk:
    """One encoder's share of the audio: input samples [start, end) on the 1024-sample frame grid.

    Its frame ``j`` is frame ``first_frame + j`` of a single encode of the whole mix. It is used
    from one of ``join_candidates`` (global frame indices, best first; empty for the first
    chunk) up to where the next chunk takes over.
    """

    start_sample: int
    end_sample: int
    join_candidates: tuple[int, ...] = ()

    @property
    def first_frame(self) -> int:
        return self.start_sample // adts.FRAME_SAMPLES

    @property
    def frames(self) -> int:
        return adts.packet_count(self.end_sample - self.start_sample)

    @property
    def duration_s(self) -> float:
        return (self.end_sample - self.start_sample) / SAMPLE_RATE


def audio_chunks(total_samples: int, cores: int) -> list[AudioChunk]:
    """How to share the AAC encode of ``total_samples`` among ``cores`` encoders; [] for one encode."""
    count = min(cores, int(total_samples / SAMPLE_RATE // AUDIO_CHUNK_MIN_S))
    if count < 2:
        return []
    frames = total_samples // adts.FRAME_SAMPLES
    weight = AUDIO_FIRST_CHUNK_WEIGHT + count - 1
    joins = [round(frames * (AUDIO_FIRST_CHUNK_WEIGHT + i - 1) / weight) * adts.FRAME_SAMPLES for i in range(1, count)]
    search = AUDIO_JOIN_SEARCH_FRAMES
    chunks: list[AudioChunk] = []
    for i in range(count):
        start = 0 if i == 0 else joins[i - 1] - (AUDIO_LEAD_IN_FRAMES + search) * adts.FRAME_SAMPLES
        end = total_samples if i == count - 1 else joins[i] + AUDIO_TAIL_FRAMES * adts.FRAME_SAMPLES
        candidates: tuple[int, ...] = ()
        if i > 0:
            # Frame k of one encode holds samples from before k * 1024 (the encoder delay): the
            # join nearest the boundary sample is frame boundary/1024 + 1.
            nominal = joins[i - 1] // adts.FRAME_SAMPLES + 1
            candidates = tuple(
                sorted(range(nominal - search, nominal + search + 1), key=lambda k: (abs(k - nominal), k))
            )
        chunks.append(AudioChunk(start, end, candidates))
    return chunks


def audio_chunk_command(
    wav: Path,
    timeline: Timeline,
    scan: LoudnessScan | None,
    chunk: AudioChunk,
    fd: int,
    *,
    correction: LevelCorrection = NO_CORRECTION,
) -> Command:
    """One chunk of ``audio_encode_command``'s work: the same samples, gain and encoder, as ADTS on ``pipe:fd``."""
    total = to_samples(timeline.duration)
    length = chunk.end_sample - chunk.start_sample
    chain = [
        f"apad=whole_len={total}",
        f"atrim=start_sample={chunk.start_sample}:end_sample={chunk.end_sample}",
        "asetpts=N/SR/TB",
        *loudness_chain(timeline, scan, correction),
        f"apad=whole_len={length}",
        f"atrim=end_sample={length}",
    ]
    argv = [
        "ffmpeg",
        "-y",
        *input_args(wav),
        "-af",
        ",".join(chain),
        *AAC_ENCODER,
        "-map",
        "0:a:0",
        "-f",
        "adts",
        f"pipe:{fd}",
    ]
    return Command(argv=argv, output=Path(f"pipe:{fd}"), duration_s=chunk.duration_s)


def adts_timestamps(total_samples: int) -> str:
    """Timestamps for ADTS frames (which carry none), set as one encode of the mix sets them.

    The first frame is the encoder delay (pts -1024, which the MP4 edit list skips) and the
    last frame lasts only as many samples as are real.
    """
    step = adts.FRAME_SAMPLES
    last = adts.packet_count(total_samples) - 1
    # Commas inside the expression are escaped: -bsf:a takes a comma-separated list of filters.
    duration = f"if(eq(N\\,{last})\\,{adts.last_packet_samples(total_samples)}\\,{step})"
    return f"setts=time_base=1/{SAMPLE_RATE}:pts=N*{step}-{step}:dts=N*{step}-{step}:duration={duration}"
