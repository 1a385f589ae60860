"""The sync certificate: where every segment boundary and sound onset landed in the output,
measured on the output file against the timeline (CONTRACT.md section 2, issue #21).

Measured on the file, not taken from the plan:

- **Boundaries**, from the output's sample table, without decoding. The output's picture is
  a copy-join of parts (the sources themselves on the copy path, the encoded pieces
  otherwise), so each part's first samples are in the output byte for byte. They are looked
  for near the sample the timeline puts them at (the same run of sample sizes, the same
  picture data); their presentation time in the output is where that boundary landed. The
  picture's end is the output's video track's end. A part whose first frame is not there at
  all fails the render.
- **Onsets**, from a decode of the output's sound (8 kHz mono) and a plain decode of the
  start of each clip and of each segment's own sound. Of the output, only the stretches
  where some reference's first sound can be looked for are decoded (``output_spans``: each
  read from a seek ``WARM_UP_S`` earlier, on the 8 kHz grid, which gives the same samples
  as a decode from the file's start), unless they cover most of it; a 2-hour scene's
  certificate decodes its onsets' surroundings, not 2 hours of sound. What to decode is
  known from the timeline (``Measurement``), so the references are read while the render
  runs, and on the copy path the stretches come from the final mux itself, decoded from
  the packets it writes (``packet_decode``; checked sample for sample against a decode of
  the file): after the MP4 only the matching is left (``Certifier``). Each reference's
  first sound is found in its own decode; its energy envelope (2 ms steps, 50 ms before
  the onset to 150 ms after) is matched against the output's within ±``SEARCH_S`` of where
  the timeline puts it (Pearson correlation; the best lag refined between steps). A match
  weaker than ``MIN_CORRELATION`` (the sound masked by louder sound, or without an edge to
  find: a steady tone running on from the segment before) is listed as not measured rather
  than guessed; so is a reference silent in its first ``REFERENCE_S`` seconds.
- ``av_drift_ms``: the output's audio track's length minus its video track's.

Computed, not measured: the planned times themselves (``scenerender.timeline``). Not
checked here: which source frame each output frame shows (the tests read frame stamps for
that).

Size: this docstring is the method; the rest is one measurement read top to bottom
(``Certifier``, then boundaries, then onsets, then their arithmetic); other modules use only
``Certifier``.
"""

from __future__ import annotations

import math
import operator
from array import array
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, overload

from scenerender.core import plan
from scenerender.core.ffmpeg import FFmpegRunner, write_files
from scenerender.core.mp4 import SampleTable, read_movie, video_sample_table
from scenerender.core.probe import DEMUXER_WHITELIST
from scenerender.core.timeline import Timeline
from scenerender.errors import ErrorDetail, OutOfSyncError, RenderError

RATE = 8000  # the sound is compared at this rate: an envelope needs no more
STEP = 16  # samples per envelope step (2 ms)
STEP_S = STEP / RATE
BEFORE = 25  # envelope steps of a reference before its onset (50 ms)...
AFTER = 75  # ...and after it (150 ms)
SEARCH_S = 0.5  # an onset is looked for this far either side of its planned time
REFERENCE_S = 3.0  # a reference's first sound is looked for in this much of it
ONSET_LEVEL = 0.1  # a reference's onset: its first step at this fraction of its loudest step
SILENT = 1e-4  # a reference whose loudest step is under this has nothing to find
MIN_CORRELATION = 0.6  # an envelope match weaker than this is no candidate...
MIN_WAVE_CORRELATION = 0.5  # ...and a waveform match weaker than this no measurement
CANDIDATES = 3  # envelope matches tried on the waveform, best first
# Waveform matches this close to the best are the same sound (a click or a beat that repeats
# in the next segment; a codec's noise tells them apart by less): the nearest to the plan is it.
SAME_SOUND = 0.05
WAVE_BEFORE = 160  # samples of a reference's waveform before its onset (20 ms)...
WAVE_AFTER = 1200  # ...and after it (150 ms)
FINE = 16  # the waveform is matched this many samples either side of an envelope match
FADE_EDGE_S = 0.05  # a clip that fades in over longer has no edge to find
HEAD_SAMPLES = 8  # a part is recognised in the output by this many sample sizes...
HEAD_BYTES = 4096  # ...and its first sample's last bytes
PARAMETER_SETS_MAX = 4096  # bytes a copy-join may add before a part's first keyframe
MAX_LISTED = 20  # offenders and unmeasured onsets named, at most
# The output is decoded in stretches (``output_spans``): each from this much earlier (an AAC
# decode from a seek is exact from its second frame on; measured: bit for bit the samples of
# a decode from the start after 50 ms), stretches this close together joined, and the whole
# output decoded when they would cover more than WHOLE_SHARE of it or number over MAX_SPANS.
WARM_UP_S = 0.1
JOIN_GAP_S = 2.0
WHOLE_SHARE = 0.5
MAX_SPANS = 32


@dataclass(frozen=True)
class Reference:
    """Sound that should start at a known output time: a clip, or a segment's own sound."""

    where: str  # "audio.clips[2] (dialogue)", "segments[4] ('s4') sound"
    path: Path
    offset_s: float  # where the reference starts on the source's decoded clock (>= 0)
    planned_s: float  # where that sample belongs in the output
    until_s: float  # heard until here in the output
    fade_in_s: float = 0.0
    # A segment's sound is read as the render reads it: on the file's clock (first_pts=0),
    # from ``seek_s`` (``plan.sound_seek``); a clip's from its first decoded sample.
    timestamped: bool = False
    seek_s: float = 0.0
    right_track: int | None = None  # heard as the render hears it (``plan.track_pads``)


@dataclass
class SyncReport:
    """``sync`` of the result (CONTRACT.md section 2)."""

    max_boundary_error_ms: float
    max_onset_error_ms: float | None  # None: no onset could be measured
    boundaries_measured: int
    onsets_measured: int
    onsets_not_measured: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "max_boundary_error_ms": self.max_boundary_error_ms,
            "max_onset_error_ms": self.max_onset_error_ms,
            "boundaries_measured": self.boundaries_measured,
            "onsets_measured": self.onsets_measured,
            "onsets_not_measured": self.onsets_not_measured[:MAX_LISTED],
        }


@dataclass(frozen=True)
class Landing:
    where: str
    planned_s: float
    measured_s: float

    @property
    def error_s(self) -> float:
        return self.measured_s - self.planned_s


class Certifier:
    """One render's certificate: started before the render (``start``: its references read
    while the render runs), given to the copy path's final mux (``mux_outputs``), finished on
    the output (``certify``). ``close`` ends it whatever happened."""

    def __init__(self, timeline: Timeline, runner: FFmpegRunner, work: Path) -> None:
        self.timeline = timeline
        self.measurement = Measurement.of(timeline)
        self._runner = runner
        self._work = work
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sync")
        self._onsets: Future[dict[SourceKey, Onset | str]] | None = None
        self._muxed: PacketDecode | None = None

    def start(self) -> None:
        """Read the references now, on a thread (their ffmpeg is the runner's: a cancel stops it)."""
        if self._onsets is None:
            self._onsets = self._pool.submit(reference_onsets, self.measurement, self._runner, self._work)

    def mux_outputs(self, source: int) -> PacketDecode | None:
        """What a final mux reading the encoded AAC as ADTS (input ``source``) adds to decode
        the output's stretches as it writes them (``packet_decode``); the last one asked for is used."""
        self._muxed = packet_decode(self.measurement, source, self._work)
        return self._muxed

    def certify(self, out: Path, parts: Sequence[plan.VideoPart], *, muxed: bool) -> SyncReport:
        """Measure ``out``; ``muxed``: its sound went through ``mux_outputs``' command, whose decode is read."""
        self.start()
        assert self._onsets is not None
        packets = self._muxed if muxed else None
        output = output_sound(out, self.measurement, self._runner, self._work, muxed=packets)
        return certify(out, self.timeline, parts, self.measurement, output, self._onsets.result())

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def certify(
    out: Path,
    timeline: Timeline,
    parts: Sequence[plan.VideoPart],
    measurement: Measurement,
    output: Sequence[float],
    onsets: dict[SourceKey, Onset | str],
) -> SyncReport:
    """Measure ``out`` (the joined, muxed render; ``output`` its decoded stretches) against
    ``timeline``; ``OutOfSyncError`` when picture and sound disagree by more than one output
    frame anywhere."""
    frame_s = 1 / float(timeline.fps)
    boundaries = boundary_landings(out, timeline, parts)
    movie = read_movie(out)
    onsets_landed, unmeasured = onset_landings(measurement, output, onsets)
    wrong = [b for b in boundaries if abs(b.error_s) > frame_s + 1e-6]
    wrong += [o for o in onsets_landed if abs(o.error_s) > frame_s + 1e-6]
    details = [
        ErrorDetail(x.where, f"at {x.measured_s:.3f} s in the output, planned {x.planned_s:.3f} s ({_late(x.error_s)})")
        for x in sorted(wrong, key=lambda x: x.planned_s)  # where it first goes wrong first
    ]
    drift = movie.audio.duration_s - movie.video.duration_s
    if abs(drift) > frame_s + 1e-6:
        details.append(
            ErrorDetail(
                "output",
                f"the sound is {movie.audio.duration_s:.3f} s long and the picture {movie.video.duration_s:.3f} s",
            )
        )
    if details:
        raise OutOfSyncError(
            f"picture and sound are out of sync by more than one frame ({frame_s * 1000:.1f} ms): {details[0]}"
            + (f" (and {len(details) - 1} more)" if len(details) > 1 else ""),
            details=details[:MAX_LISTED],
        )
    return SyncReport(
        max_boundary_error_ms=_ms(max((abs(b.error_s) for b in boundaries), default=0.0)),
        max_onset_error_ms=_ms(max(abs(o.error_s) for o in onsets_landed)) if onsets_landed else None,
        boundaries_measured=len(boundaries),
        onsets_measured=len(onsets_landed),
        onsets_not_measured=unmeasured,
    )


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def _late(error_s: float) -> str:
    return f"{abs(error_s) * 1000:.1f} ms {'late' if error_s > 0 else 'early'}"


# ---------------------------------------------------------------------------- boundaries


def boundary_landings(out: Path, timeline: Timeline, parts: Sequence[plan.VideoPart]) -> list[Landing]:
    """Where each part's first frame and the picture's end landed in ``out``."""
    try:
        table = video_sample_table(out)
    except ValueError as exc:
        raise RenderError(f"the output's sample table could not be read: {exc}") from exc
    heads: dict[Path, tuple[SampleTable, bytes]] = {}
    landings: list[Landing] = []
    planned = Fraction(0)
    expected = 0  # the output sample the part's first frame should be
    with out.open("rb") as output:
        for n, part in enumerate(parts):
            frames = round(part.duration * timeline.fps)
            where = part.label or f"video part {n}"
            if part.path not in heads:
                try:
                    head = video_sample_table(part.path, first=HEAD_SAMPLES, max_moov_bytes=64 << 20)
                except ValueError as exc:
                    raise RenderError(f"{where}: its sample table could not be read: {exc}") from exc
                with part.path.open("rb") as f:
                    f.seek(head.offsets[0])
                    heads[part.path] = (head, _last_unit(f.read(head.sizes[0]))[-HEAD_BYTES:])
            head, tail = heads[part.path]
            found = _find_part(table, output, head, tail, expected, frames)
            if found is None:
                raise OutOfSyncError(
                    f"{where}: its first frame is not in the output near {float(planned):.3f} s",
                    details=[ErrorDetail(where, f"first frame not found near {float(planned):.3f} s")],
                )
            width = min(HEAD_SAMPLES, frames, len(table) - found)
            landings.append(Landing(where, float(planned), min(table.times[found : found + width])))
            planned += part.duration
            expected += frames
    movie = read_movie(out)
    landings.append(Landing("the end of the picture", float(timeline.duration), movie.video.duration_s))
    return landings


def _find_part(
    table: SampleTable, output: Any, head: SampleTable, tail: bytes, expected: int, frames: int
) -> int | None:
    """The output sample where a part whose first samples are ``head`` begins, nearest ``expected``.

    Copy-joining may put the parameter sets in band before a part's first keyframe (the
    concat demuxer's Annex B round trip: 39 bytes for 1080p H.264), so that sample is
    matched by its end (the picture's slice data) and a size no smaller than the part's.
    """
    width = min(HEAD_SAMPLES, len(head), frames)
    reach = max(1, frames // 2)
    rest = head.sizes[1:width]
    for distance in range(reach + 1):
        for at in {expected - distance, expected + distance}:
            if not 0 <= at <= len(table) - width or table.sizes[at + 1 : at + width] != rest:
                continue
            size = table.sizes[at]
            if head.sizes[0] <= size <= head.sizes[0] + PARAMETER_SETS_MAX:
                output.seek(table.offsets[at] + size - len(tail))
                if output.read(len(tail)) == tail:
                    return at
    return None


def _last_unit(sample: bytes) -> bytes:
    """The last NAL unit of a length-prefixed (MP4) H.264 sample: the picture's slice data,
    which a copy-join leaves as it is (parameter sets may be put in before it). The whole
    sample when it does not parse as 4-byte length prefixes."""
    at, last = 0, sample
    while at + 4 <= len(sample):
        length = int.from_bytes(sample[at : at + 4], "big")
        if length == 0 or at + 4 + length > len(sample):
            return sample
        last, at = sample[at + 4 : at + 4 + length], at + 4 + length
    return last if at == len(sample) else sample


# ---------------------------------------------------------------------------- onsets


def references(timeline: Timeline) -> list[Reference]:
    """Every sound the timeline places: each clip heard, each segment's own sound."""
    found: list[Reference] = []
    scene_end = float(timeline.duration)
    for clip in timeline.clips:
        if clip.volume > 0:
            until = min(clip.end, scene_end)
            where = f"{clip.path} ({clip.type})"
            offset = clip.trim_start + clip.source.priming
            found.append(Reference(where, clip.source.path, offset, clip.start, until, clip.fade_in))
    for seg in timeline.segments:
        video, audio = seg.source.video, seg.source.audio
        if seg.volume <= 0 or video is None or audio is None:
            continue
        # Decoded on the file's clock, as a player places it (Opus in Matroska starts a
        # pre-skip after its first packet's time): the segment starts at its picture's
        # first frame, ``trim_start`` into it; sound a muxer wrote early is heard later.
        seek, first = plan.sound_seek(seg)
        offset, planned = first / plan.SAMPLE_RATE, float(seg.start)
        if offset < 0:  # the sound starts after the segment's first frame
            planned, offset = planned - offset, 0.0
        until = float(seg.start + seg.duration)
        where = f"segments[{seg.index}] ({seg.id!r}) sound"
        found.append(
            Reference(
                where,
                seg.source.path,
                offset,
                planned,
                until,
                timestamped=True,
                seek_s=seek / plan.SAMPLE_RATE,
                right_track=audio.right_track,
            )
        )
    return found


def _reach() -> tuple[int, int]:
    """How far (output samples) ``_locate`` reads before and after the sample it is given."""
    reach = round(SEARCH_S / STEP_S) * STEP
    return (BEFORE * STEP + reach, max(AFTER * STEP, WAVE_AFTER + FINE) + reach)


def output_spans(refs: Sequence[Reference], output_samples: int) -> list[tuple[int, int]]:
    """The stretches of the output (samples at ``RATE``, [start, end)) that the references'
    onsets are looked for in, joined where close; one span for the whole output when they
    would cover most of it.

    A reference's first sound is somewhere in its first ``REFERENCE_S`` seconds and before
    it stops being heard; ``_locate`` reads ``_reach`` around each place that can be.
    """
    before, after = _reach()
    wanted = sorted(
        (
            max(0, round(ref.planned_s * RATE) - before - 1),
            min(output_samples, round(min(ref.planned_s + REFERENCE_S, ref.until_s) * RATE) + after + 1),
        )
        for ref in refs
        if ref.fade_in_s <= FADE_EDGE_S
    )
    spans: list[tuple[int, int]] = []
    for start, end in wanted:
        if spans and start - spans[-1][1] <= JOIN_GAP_S * RATE:
            spans[-1] = (spans[-1][0], max(spans[-1][1], end))
        elif start < end:
            spans.append((start, end))
    if len(spans) > MAX_SPANS or sum(end - start for start, end in spans) > WHOLE_SHARE * output_samples:
        return [(0, output_samples)]
    return spans


class Spans(Sequence[float]):
    """The output's decoded stretches, indexed by output sample as the whole decode would be.
    Only slices are read (``_envelope``, ``_window``); one outside every stretch is a bug in
    ``output_spans``, not silence."""

    def __init__(self, spans: Sequence[tuple[int, int]], samples: array[float], length: int) -> None:
        self._spans = list(spans)
        self._starts: list[int] = []
        at = 0
        for start, end in self._spans:
            self._starts.append(at)
            at += end - start
        self._samples = samples
        self._length = length

    def __len__(self) -> int:
        return self._length

    @overload
    def __getitem__(self, index: int) -> float: ...

    @overload
    def __getitem__(self, index: slice) -> array[float]: ...

    def __getitem__(self, index: int | slice) -> float | array[float]:
        if isinstance(index, int):
            return self[index : index + 1][0]
        start, stop, _ = index.indices(self._length)
        if stop <= start:
            return array("f")
        for (first, end), at in zip(self._spans, self._starts, strict=True):
            if first <= start and stop <= end:
                return self._samples[at + start - first : at + stop - first]
        raise RenderError(f"the sync measure read output samples {start}-{stop}, which were not decoded")


SourceKey = tuple[Path, float, bool, float]


def _source(ref: Reference) -> SourceKey:
    """What a reference decodes: references alike are decoded once (120 segments of one file)."""
    return ref.path, ref.offset_s, ref.timestamped, ref.seek_s


@dataclass(frozen=True)
class Measurement:
    """What the certificate decodes, known from the timeline before anything is rendered: so
    the references are read while the render runs (``reference_onsets``), and the copy
    path's output stretches are decoded by the process that muxes the output's sound
    (``packet_decode``). What is left after the MP4 is the matching."""

    refs: list[Reference]
    sources: list[Reference]  # one per distinct source and offset (``_source``)
    spans: list[tuple[int, int]]  # the output's stretches to decode (``output_spans``)
    output_samples: int

    @classmethod
    def of(cls, timeline: Timeline) -> Measurement:
        refs = [r for r in references(timeline) if r.planned_s < r.until_s]
        distinct = list(dict.fromkeys(_source(r) for r in refs))
        sources = [
            Reference("", path, offset, 0.0, 0.0, timestamped=t, seek_s=seek) for path, offset, t, seek in distinct
        ]
        output_samples = math.ceil(float(timeline.duration) * RATE)
        return cls(refs, sources, output_spans(refs, output_samples) if refs else [], output_samples)

    @property
    def decoded(self) -> int:
        """Output samples in the stretches."""
        return sum(end - start for start, end in self.spans)


MONO = "aformat=sample_fmts=flt:channel_layouts=mono"


def _raw_output(label: str, dest: Path) -> list[str]:
    return ["-map", label, "-c:a", "pcm_f32le", "-f", "f32le", str(dest)]


def reference_command(sources: Sequence[Reference], dest: Path, script: Path) -> plan.Command:
    """One ffmpeg: each reference's first ``REFERENCE_S`` seconds at ``RATE`` mono, back to
    back in one raw float stream, ``REFERENCE_S`` each."""
    ref_samples = round(REFERENCE_S * RATE)
    inputs: list[str] = []
    chains: list[str] = []
    for k, ref in enumerate(sources):
        first = round(ref.offset_s * RATE)
        # Read no further than needed (-t on the input); a plain decode, as any player makes it.
        seek = ["-ss", f"{ref.seek_s:.6f}"] if ref.seek_s else []
        inputs += [*seek, "-t", f"{ref.offset_s + REFERENCE_S + 0.5:.6f}", "-protocol_whitelist", "file"]
        inputs += ["-format_whitelist", DEMUXER_WHITELIST, "-i", str(ref.path)]
        clock = ":first_pts=0" if ref.timestamped else ""
        chains.append(
            f"{plan.track_pads(k, ref.right_track)}aresample={RATE}{clock},{MONO},"
            f"atrim=start_sample={first},asetpts=N/SR/TB,"
            f"apad=whole_len={ref_samples},atrim=end_sample={ref_samples}[r{k}]"
        )
    chains.append("".join(f"[r{k}]" for k in range(len(sources))) + f"concat=n={len(sources)}:v=0:a=1[all]")
    argv = ["ffmpeg", "-y", *inputs, "-filter_complex_script", str(script), *_raw_output("[all]", dest)]
    return plan.Command(
        argv=argv, output=dest, duration_s=REFERENCE_S * len(sources), files={script: ";\n".join(chains)}
    )


def reference_onsets(measurement: Measurement, runner: FFmpegRunner, work: Path) -> dict[SourceKey, Onset | str]:
    """Each reference's first sound (or why it has none), from one decode of them all."""
    if not measurement.sources:
        return {}
    command = reference_command(measurement.sources, work / "sync-references.f32", work / "sync-references.filtergraph")
    write_files(command.files)
    runner.run(command.argv)
    ref_samples = round(REFERENCE_S * RATE)
    samples = _read_samples([command.output], ref_samples * len(measurement.sources), "references")
    return {
        _source(ref): _reference_onset(samples[k * ref_samples : (k + 1) * ref_samples])
        for k, ref in enumerate(measurement.sources)
    }


def output_command(
    out: Path, spans: Sequence[tuple[int, int]], output_samples: int, dest: Path, script: Path
) -> plan.Command:
    """One ffmpeg: the output file's sound in ``spans`` at ``RATE`` mono, back to back."""
    inputs: list[str] = []
    chains: list[str] = []
    for n, (start, end) in enumerate(spans):
        # The seek lands on the 8 kHz grid (a whole number of 48 kHz samples too), so the
        # samples after the warm-up are those of a decode from the start, the resampler's
        # phase included; first_pts=0: a sound track that starts after the seek keeps its delay.
        at = max(0, start - round(WARM_UP_S * RATE))
        length = end - at
        inputs += ["-ss", f"{at / RATE:.6f}"] if at else []
        inputs += ["-t", f"{(length / RATE) + WARM_UP_S:.6f}"] if end < output_samples else []
        inputs += ["-protocol_whitelist", "file", "-i", str(out)]
        chains.append(
            f"[{n}:a:0]aresample={RATE}:first_pts=0,{MONO},apad=whole_len={length},"
            f"atrim=start_sample={start - at}:end_sample={length},asetpts=N/SR/TB[o{n}]"
        )
    chains.append("".join(f"[o{n}]" for n in range(len(spans))) + f"concat=n={len(spans)}:v=0:a=1[all]")
    argv = ["ffmpeg", "-y", *inputs, "-filter_complex_script", str(script), *_raw_output("[all]", dest)]
    decoded = sum(end - start for start, end in spans)
    return plan.Command(argv=argv, output=dest, duration_s=decoded / RATE, files={script: ";\n".join(chains)})


@dataclass(frozen=True)
class PacketDecode:
    """The output's stretches decoded by the process that muxes the output's sound: options
    it takes after its outputs (a filter graph on its ADTS input, one raw output a stretch),
    the script they read, and the files they write, in order."""

    argv: list[str]
    files: dict[Path, str]
    dests: list[Path]


def packet_decode(measurement: Measurement, source: int, work: Path) -> PacketDecode | None:
    """The copy path's final mux reads the joined AAC frames as ADTS (input ``source``); a
    decode of those very packets without the encoder delay is, sample for sample, a decode
    of the finished file (``plan.ENCODED_SCAN`` relies on the same), here at ``RATE`` and
    padded to the output's length, as ``output_command`` gives it. One output a stretch:
    joined in one (``concat``) the later stretches would wait in memory for the earlier."""
    spans = measurement.spans
    if not spans:
        return None
    script = work / "sync-muxed.filtergraph"
    dests = [work / f"sync-muxed-{n}.f32" for n in range(len(spans))]
    labels = "".join(f"[s{n}]" for n in range(len(spans)))
    chains = [
        f"[{source}:a:0]atrim=start_sample={plan.AAC_PRIMING_SAMPLES},asetpts=N/SR/TB,aresample={RATE},{MONO},"
        f"apad=whole_len={measurement.output_samples},atrim=end_sample={measurement.output_samples},"
        f"asplit={len(spans)}{labels}",
        *(f"[s{n}]atrim=start_sample={start}:end_sample={end}[o{n}]" for n, (start, end) in enumerate(spans)),
    ]
    argv = ["-filter_complex_script", str(script)]
    for n, dest in enumerate(dests):
        argv += _raw_output(f"[o{n}]", dest)
    return PacketDecode(argv, {script: ";\n".join(chains)}, dests)


def _read_samples(files: Sequence[Path], wanted: int, what: str) -> array[float]:
    samples = array("f")
    for path in files:
        samples.frombytes(path.read_bytes())
        path.unlink()
    if len(samples) != wanted:
        raise RenderError(f"the sync decode of the {what} gave {len(samples)} samples, not {wanted}")
    return samples


def output_sound(
    out: Path, measurement: Measurement, runner: FFmpegRunner, work: Path, *, muxed: PacketDecode | None = None
) -> Spans:
    """The output's stretches: read from what its mux decoded (``muxed``), or decoded from ``out``."""
    files = muxed.dests if muxed is not None else []
    if muxed is None and measurement.spans:
        command = output_command(
            out, measurement.spans, measurement.output_samples, work / "sync.f32", work / "sync.filtergraph"
        )
        write_files(command.files)
        runner.run(command.argv)
        files = [command.output]
    samples = _read_samples(files, measurement.decoded, "output") if files else array("f")
    return Spans(measurement.spans, samples, measurement.output_samples)


def onset_landings(
    measurement: Measurement, output: Sequence[float], onsets: dict[SourceKey, Onset | str]
) -> tuple[list[Landing], list[str]]:
    """Where each reference's first sound (``onsets``) landed in ``output``; and the
    references not measured, with why."""
    landings: list[Landing] = []
    unmeasured: list[str] = []
    for ref in measurement.refs:
        found = onsets[_source(ref)]
        if ref.fade_in_s > FADE_EDGE_S:
            found = f"fades in over {ref.fade_in_s:g} s (no edge to find)"
        if isinstance(found, str):
            unmeasured.append(f"{ref.where}: {found}")
            continue
        planned = ref.planned_s + found.step * STEP_S
        if planned >= ref.until_s:
            continue  # its first sound comes after it stops being heard
        lag = _locate(output, found, planned)
        if lag is None:
            unmeasured.append(f"{ref.where}: no match within {SEARCH_S:g} s of {planned:.3f} s (masked?)")
            continue
        landings.append(Landing(ref.where, planned, planned + lag))
    return landings, unmeasured


@dataclass(frozen=True)
class Onset:
    """A reference's first sound: its envelope step, the envelope around it, and its samples
    from ``WAVE_BEFORE`` before it to ``WAVE_AFTER`` after (zeros before the reference began)."""

    step: int
    pattern: list[float]
    wave: list[float]


def _envelope(samples: Sequence[float], start: int, steps: int) -> list[float]:
    """Mean magnitude of each ``STEP`` samples from ``start`` (outside the signal: silence)."""
    values = []
    for i in range(steps):
        a = start + i * STEP
        block = samples[max(0, a) : max(0, a + STEP)]
        values.append(sum(map(abs, block)) / STEP)
    return values


def _window(samples: Sequence[float], start: int, length: int) -> list[float]:
    """``length`` samples from ``start``; silence outside the signal."""
    inside = list(samples[max(0, start) : max(0, start + length)])
    before = [0.0] * min(length, max(0, -start))
    return before + inside + [0.0] * (length - len(before) - len(inside))


def _reference_onset(samples: Sequence[float]) -> Onset | str:
    """A reference's first sound, or why it has none to find."""
    steps = len(samples) // STEP
    env = _envelope(samples, 0, steps)
    loudest = max(env, default=0.0)
    if loudest < SILENT:
        return f"silent in its first {REFERENCE_S:g} s"
    onset = next(i for i, v in enumerate(env) if v >= ONSET_LEVEL * loudest)
    pattern = _window(env, onset - BEFORE, BEFORE + AFTER)
    wave = _window(samples, onset * STEP - WAVE_BEFORE, WAVE_BEFORE + WAVE_AFTER)
    return Onset(onset, pattern, wave)


def _pearson(signal: Sequence[float], centred: Sequence[float], norm: float, lags: range) -> list[float]:
    """Correlation of ``centred`` (mean removed, ``norm`` its length) with ``signal`` at each lag."""
    n = len(centred)
    sums, squares = [0.0], [0.0]
    for v in signal:
        sums.append(sums[-1] + v)
        squares.append(squares[-1] + v * v)
    scores = []
    for lag in lags:
        total = sums[lag + n] - sums[lag]
        var = squares[lag + n] - squares[lag] - total * total / n
        cov = sum(map(operator.mul, signal[lag : lag + n], centred))
        scores.append(cov / (norm * math.sqrt(var)) if var > 1e-12 else 0.0)
    return scores


def _centred(values: Sequence[float]) -> tuple[list[float], float]:
    mean = sum(values) / len(values)
    centred = [v - mean for v in values]
    return centred, math.sqrt(sum(v * v for v in centred))


def _locate(output: Sequence[float], onset: Onset, planned_s: float) -> float | None:
    """How late (seconds) ``onset`` sits in ``output`` against ``planned_s``; None when nothing
    within ``SEARCH_S`` matches it.

    The envelope finds candidates (an edge of the right shape); the waveform decides among
    them and places the best to the sample. An edge of some other sound has the shape, not
    the waveform.
    """
    reach = round(SEARCH_S / STEP_S)
    centred, norm = _centred(onset.pattern)
    wave, wave_norm = _centred(onset.wave)
    if norm == 0 or wave_norm == 0:
        return None
    anchor = round(planned_s * RATE)  # the output sample of the planned onset
    env = _envelope(output, anchor - (BEFORE + reach) * STEP, len(centred) + 2 * reach)
    scores = _pearson(env, centred, norm, range(2 * reach + 1))
    peaks = [
        i
        for i in range(len(scores))
        if scores[i] >= MIN_CORRELATION and scores[i] >= max(scores[max(0, i - 1) : i + 2])
    ]
    matches: list[tuple[float, int]] = []
    for i in sorted(peaks, key=lambda i: -scores[i])[:CANDIDATES]:
        at = anchor + (i - reach) * STEP  # the candidate onset, an output sample
        signal = _window(output, at - WAVE_BEFORE - FINE, len(wave) + 2 * FINE)
        fine = _pearson(signal, wave, wave_norm, range(2 * FINE + 1))
        j = max(range(len(fine)), key=fine.__getitem__)
        if fine[j] >= MIN_WAVE_CORRELATION:
            matches.append((fine[j], at + j - FINE))
    if not matches:
        return None
    best = max(score for score, _ in matches)
    landed = min((at for score, at in matches if score >= best - SAME_SOUND), key=lambda at: abs(at - anchor))
    return landed / RATE - planned_s
