"""The audio mix: every clip placed, faded, looped and ducked, the segments' own sound as one
bed, summed to a float WAV (measured for loudness on the way)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from scenerender.core.plan.command import SAMPLE_RATE, Command, input_args, secs, sound_pads, to_samples
from scenerender.core.plan.loudness import EBUR128_SCAN
from scenerender.core.probe import MediaInfo
from scenerender.core.timeline import PlacedClip, PlacedSegment, Timeline

END_FADE_S = 0.5  # audio running past the scene end fades out over this long (contract)
DUCK_STEP_SAMPLES = 480  # 10 ms: the volume expression is evaluated once per frame of this size


def _duck_expression(timeline: Timeline) -> str | None:
    """Music gain as a function of scene time ``t``: lowered while anyone speaks.

    Driven by the timeline, not the signal: the ramp down starts ``attack`` seconds before
    the speech so the first syllable is already clear, and comes back over ``release``.
    """
    duck = timeline.ducking
    if duck is None or not timeline.speech or duck.music_db == 0:
        return None
    terms = []
    for start, end in timeline.speech:
        rise = (
            f"clip((t-{secs(start - duck.attack)})/{secs(duck.attack)},0,1)"
            if duck.attack > 0
            else f"gte(t,{secs(start)})"
        )
        fall = (
            f"clip(({secs(end + duck.release)}-t)/{secs(duck.release)},0,1)"
            if duck.release > 0
            else f"lte(t,{secs(end)})"
        )
        terms.append(f"min({rise},{fall})")
    envelope = f"min(1,{'+'.join(terms)})"
    # ffmpeg also evaluates the expression once when it configures the filter, before any
    # frame, with t = NaN; a NaN there is logged as "Invalid value NaN for volume, setting to
    # 0", which reads like muted music in the stderr tail of a failed render.
    return f"if(isnan(t),1,pow(10,{secs(duck.music_db)}*{envelope}/20))"


def clip_chain(clip: PlacedClip, label: str, pads: str, timeline: Timeline, looped_input: bool) -> str:
    """The clip heard, from ``pads`` (``sound_pads``: where its input's sound comes from) to ``[label]``."""
    # The clip's own fades sit at its natural end; the scene cut (with its fade) comes later, on the mix.
    play = clip.end - clip.start
    steps = [f"aresample={SAMPLE_RATE}", "aformat=sample_fmts=fltp:channel_layouts=stereo"]
    if not looped_input:
        start = clip.trim_start + clip.source.priming
        first, last = to_samples(start), to_samples(start + clip.length)
        steps.append(f"atrim=start_sample={first}:end_sample={last}")
    steps.append("asetpts=N/SR/TB")
    if clip.loop and not looped_input:
        steps.append(f"aloop=loop=-1:size={to_samples(clip.length)}")
    steps.append(f"atrim=end_sample={to_samples(play)}")
    if clip.volume != 1:
        steps.append(f"volume={secs(clip.volume)}")
    if clip.fade_in > 0:
        steps.append(f"afade=t=in:st=0:d={secs(clip.fade_in)}")
    if clip.fade_out > 0:
        steps.append(f"afade=t=out:st={secs(max(0.0, play - clip.fade_out))}:d={secs(clip.fade_out)}")
    steps.append(f"adelay=delays={to_samples(clip.start)}S:all=1")
    expr = _duck_expression(timeline) if clip.type == "music" else None
    if expr is not None:
        steps += [f"asetnsamples=n={DUCK_STEP_SAMPLES}:p=0", f"volume=volume='{expr}':eval=frame"]
    return f"{pads}{','.join(steps)}[{label}]"


# A segment's sound from further in than this is read from a seek, not decoded from the
# file's start (a 580 s trim: 0.6 s instead of 9.8 s). The seek goes SOUND_SEEK_MARGIN_S
# before the first sample needed, so the decoder is warm (AAC's overlap, Opus's pre-roll)
# when it gets there; ffmpeg's exact seek keeps the file's clock (tested to the sample).
SOUND_SEEK_FROM_S = 5.0
SOUND_SEEK_MARGIN_S = 1.0
# A seek lands on a whole number of the stream's time base units or not at all: ffmpeg
# takes the seek off every timestamp in the stream's own unit, rounded. An AVI's MP3 counts
# whole frames (1152 samples, 24 ms at 48 kHz): a seek between two frame times shifted all
# its sound by up to half a frame (8 ms at 540 s on a 10-minute clip). A unit so coarse that
# no seek point within this lands on it reads the sound from the start instead.
SOUND_SEEK_MAX_STEP_S = 4.0


def seek_step(source: MediaInfo) -> int:
    """The grid (samples at 48 kHz) a seek into ``source``'s sound keeps to: whole
    milliseconds, whole microseconds (``-ss``), and a whole number of its time base units."""
    unit = source.audio.time_base if source.audio is not None else Fraction(0)
    ms = SAMPLE_RATE // 1000
    if unit <= 0:
        return ms
    units = math.lcm((unit * SAMPLE_RATE).denominator, (unit * 1_000_000).denominator)
    return math.lcm(ms, int(units * unit * SAMPLE_RATE))


def sound_seek(seg: PlacedSegment) -> tuple[int, int]:
    """Where a segment's sound is read from (``-ss``, in samples at 48 kHz: on ``seek_step``'s
    grid, 0 for no seek) and its first sample after that seek; negative: that many samples
    of silence come first (sound a muxer wrote early, ``AudioInfo.delay``).

    AVI too: its sound's seek is exact on that grid (its picture's is not: ``demuxer_seeks``),
    and the same samples as a decode from its start, bit for bit, on a 10-minute MP3 AVI."""
    delay = seg.source.audio.delay if seg.source.audio else 0.0
    first = to_samples(seg.trim_start + seg.source.video_lead) - to_samples(delay)
    step = seek_step(seg.source)
    if first < to_samples(SOUND_SEEK_FROM_S) or step > to_samples(SOUND_SEEK_MAX_STEP_S):
        return 0, first
    seek = (first - to_samples(SOUND_SEEK_MARGIN_S)) // step * step
    if seek <= 0:
        return 0, first
    return seek, first - seek


def segment_bed(timeline: Timeline, first_input: int) -> tuple[list[str], list[str], int]:
    """The segments' own sound as one stream: each piece cut or padded to its exact sample span.

    Concatenated rather than mixed, so 100 segments cost one pass, not 100 delayed inputs.
    Sample spans come from the frame-exact boundaries, so rounding never accumulates.
    """
    inputs: list[str] = []
    pieces: list[str] = []
    n = first_input
    for seg in timeline.segments:
        begin, end = to_samples(seg.start), to_samples(seg.start + seg.duration)
        length = end - begin
        if seg.volume > 0 and seg.has_audio:
            # The sound is placed by its own timestamps (first_pts=0: silence before a stream
            # that starts late, none of what comes before the file's time 0), and the segment
            # starts at the picture's first frame.
            seek, first = sound_seek(seg)
            inputs += input_args(seg.source.path, *(["-ss", secs(seek / SAMPLE_RATE)] if seek else []))
            late = f"adelay=delays={-first}S:all=1," if first < 0 else ""
            first = max(0, first)
            pieces.append(
                f"{sound_pads(seg.source, n)}aresample={SAMPLE_RATE}:first_pts=0,{late}"
                "aformat=sample_fmts=fltp:channel_layouts=stereo,"
                f"atrim=start_sample={first}:end_sample={first + length},asetpts=N/SR/TB,"
                f"apad=whole_len={length},volume={secs(seg.volume)}[p{seg.index}]"
            )
            n += 1
        else:
            pieces.append(f"anullsrc=r={SAMPLE_RATE}:cl=stereo,atrim=end_sample={length}[p{seg.index}]")
    labels = "".join(f"[p{seg.index}]" for seg in timeline.segments)
    pieces.append(f"{labels}concat=n={len(timeline.segments)}:v=0:a=1[bed]")
    return inputs, pieces, n - first_input


# Codecs whose every decode is the file's samples and nothing else. Others carry encoder
# priming and padding (AAC 1024+ samples, Opus its pre-skip, MP3 its LAME delay) that one
# decode trims (edit list, pre-skip, LAME tag) but a demuxer loop (-stream_loop) decodes again
# on every pass: 31 ms of silence per loop, the music 615 ms late after 30 loops. They are
# decoded once and looped in memory (aloop), which costs the clip's length in float samples.
_EXACT_LOOP_CODECS = ("pcm_", "flac")


def _loops_exactly(source: MediaInfo) -> bool:
    return source.audio is not None and source.audio.codec.startswith(_EXACT_LOOP_CODECS)


def mix_tail(timeline: Timeline) -> list[str]:
    """What ends the summed mix (and each of its roles): the scene's exact length in samples,
    faded out over its last ``END_FADE_S`` when sound runs past the scene end."""
    total = to_samples(timeline.duration)
    tail = [f"apad=whole_len={total}", f"atrim=end_sample={total}"]
    if timeline.overruns and float(timeline.duration) > END_FADE_S:
        tail.append(f"afade=t=out:st={secs(float(timeline.duration) - END_FADE_S)}:d={secs(END_FADE_S)}")
    return tail


def clip_sound(clip: PlacedClip, label: str, n: int, timeline: Timeline) -> tuple[list[str], str]:
    """A clip as the mix hears it: its ffmpeg input arguments (input number ``n``) and its
    chain to ``[label]``. Whatever else splits the mix (the stems, the report's levels) takes
    its clips from here, so they are placed, trimmed and looped to the sample as in the mix."""
    # Whole-file loops of exactly-decoding codecs are looped by the demuxer (constant memory);
    # others, and a trimmed loop (only that part repeats), are looped in memory by aloop.
    looped_input = (
        clip.loop
        and clip.trim_start == 0
        and clip.length >= clip.source.audio_duration - 1e-3
        and _loops_exactly(clip.source)
    )
    inputs = input_args(clip.source.path, *(["-stream_loop", "-1"] if looped_input else []))
    return inputs, clip_chain(clip, label, sound_pads(clip.source, n), timeline, looped_input)


@dataclass(frozen=True)
class Mix:
    """A timeline's mix as ffmpeg inputs and a filter graph that ends in ``[mix]``: what the
    mixed samples depend on (the audio cache's address), whatever is then done with them."""

    inputs: list[str]
    chains: list[str]
    duration_s: float


def plan_mix(timeline: Timeline) -> Mix:
    """Every clip placed at its sample, faded, looped and ducked; summed without rescaling."""
    inputs: list[str] = []
    chains: list[str] = []
    labels: list[str] = []
    n = 0
    if any(seg.volume > 0 and seg.has_audio for seg in timeline.segments):
        bed_inputs, bed_chains, n = segment_bed(timeline, 0)
        inputs += bed_inputs
        chains += bed_chains
        labels.append("[bed]")
    for clip in timeline.clips:
        clip_inputs, chain = clip_sound(clip, f"c{clip.index}", n, timeline)
        inputs += clip_inputs
        chains.append(chain)
        labels.append(f"[c{clip.index}]")
        n += 1
    tail = mix_tail(timeline)
    if not labels:
        chains.append(f"anullsrc=r={SAMPLE_RATE}:cl=stereo,{','.join(tail)}[mix]")
    else:
        mix = (
            f"amix=inputs={len(labels)}:duration=longest:normalize=0:dropout_transition=0"
            if len(labels) > 1
            else "anull"
        )
        chains.append(f"{''.join(labels)}{mix},{','.join(tail)}[mix]")
    return Mix(inputs, chains, float(timeline.duration))


def audio_mix_command(mix: Mix, out: Path, script_path: Path, *, scan_fd: int | None = None) -> Command:
    """The mix to a float WAV.

    The EBU R128 scan rides along on a copy of the mix (no second decode of the WAV): in
    this process, or — with ``scan_fd`` — as raw samples to ``pipe:scan_fd`` for
    ``mix_scan_command`` on another core.
    """
    scan = "[mix]asplit=2[out][scan]" + ("" if scan_fd is not None else f";[scan]{EBUR128_SCAN}[scanned]")
    graph = ";\n".join([*mix.chains, scan])
    argv = [
        "ffmpeg",
        "-y",
        *mix.inputs,
        "-filter_complex_script",
        str(script_path),
        "-map",
        "[out]",
        "-c:a",
        "pcm_f32le",
        "-ar",
        str(SAMPLE_RATE),
        "-ac",
        "2",
        "-rf64",
        "auto",
        "-f",
        "wav",
        str(out),
        *(
            ["-map", "[scanned]", "-f", "null", "-"]
            if scan_fd is None
            else ["-map", "[scan]", "-c:a", "pcm_f32le", "-f", "f32le", f"pipe:{scan_fd}"]
        ),
    ]
    return Command(argv=argv, output=out, duration_s=mix.duration_s, files={script_path: graph})


def mix_scan_command(fd: int) -> list[str]:
    """The EBU R128 scan of the raw mix ``audio_mix_command`` writes to ``pipe:fd``."""
    raw = ["-f", "f32le", "-ar", str(SAMPLE_RATE), "-ac", "2"]
    return ["ffmpeg", "-protocol_whitelist", "pipe", *raw, "-i", f"pipe:{fd}", "-af", EBUR128_SCAN, "-f", "null", "-"]
