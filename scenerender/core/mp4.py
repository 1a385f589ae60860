"""What a finished MP4 says about itself, read from its boxes (ISO/IEC 14496-12).

The render's result is measured on the file it wrote. Reading the few boxes that hold
the answer takes a millisecond in this process; an ffprobe of the output took 70-130 ms
on the render's critical path (most of it the start of a process that links 215 shared
libraries). Inputs are probed by ffprobe (``scenerender.core.probe``); of an input, only the
times of its keyframes are read here, as a hint of where a long segment is best cut
(``keyframe_times``): nothing the render produces depends on them being right.

Size: one box reader; every public function walks the same parsed sample tables.
"""

from __future__ import annotations

import itertools
import struct
from collections import Counter
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO

from scenerender.errors import RenderError

_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts"}
_MOOV_MAX_BYTES = 64 << 20  # our moov is ~1 kB per second of scene; this bounds a damaged size field
_MAX_KEYFRAMES = 100_000  # an hour of all-intra 25 fps; a hint needs no more
# An input's moov, read for its keyframes: an hour of 60 fps video with a composition offset
# per frame takes about 3 MB. Inputs are not ours: a larger one is not read (no hint), so a
# hostile file cannot make the planner hold its tables (tens of bytes of Python per entry).
_INPUT_MOOV_MAX_BYTES = 4 << 20


@dataclass
class Track:
    handler: str = ""  # "vide", "soun", ...
    timescale: int = 0  # of the media (mdhd)
    media_duration: int = 0  # in the media's timescale
    edit_duration: int | None = None  # presented duration in the movie's timescale (edit list), if any
    width: int = 0  # coded size from the first visual sample entry
    height: int = 0
    decode_runs: list[tuple[int, int]] = field(default_factory=list)  # stts: (samples, delta), in order
    offset_runs: list[tuple[int, int]] = field(default_factory=list)  # ctts: (samples, composition offset)
    sync_samples: list[int] | None = None  # stss: 1-based numbers of the keyframes; None: every sample is one
    media_start: int = 0  # the first presented edit's media time: where presentation time 0 is
    sample_size: int = 0  # stsz: the size of every sample, or 0 when each has its own (sample_sizes)
    sample_count: int = 0
    sample_sizes: list[int] = field(default_factory=list)
    chunk_runs: list[tuple[int, int]] = field(default_factory=list)  # stsc: (first chunk, samples per chunk)
    chunk_offsets: list[int] = field(default_factory=list)  # stco/co64

    @property
    def sample_deltas(self) -> Counter[int]:
        """stts as delta -> sample count."""
        deltas: Counter[int] = Counter()
        for samples, delta in self.decode_runs:
            deltas[delta] += samples
        return deltas


@dataclass(frozen=True)
class TrackInfo:
    duration_s: float  # as presented: the edit list's duration when there is one
    width: int
    height: int
    frame_rate: Fraction  # the most common sample duration's rate; 0 for none


@dataclass(frozen=True)
class MovieInfo:
    duration_s: float
    video: TrackInfo
    audio: TrackInfo


def read_movie(path: Path) -> MovieInfo:
    """Duration, and the first video and audio track of an MP4; ``RenderError`` if they are not there."""
    try:
        with path.open("rb") as f:
            size = f.seek(0, 2)
            moov = _find_moov(f, size)
            timescale, duration, tracks = _parse_moov(moov)
    except (OSError, struct.error, ValueError, ZeroDivisionError) as exc:
        raise RenderError(f"the output could not be read as MP4: {exc}") from exc
    video = next((t for t in tracks if t.handler == "vide"), None)
    audio = next((t for t in tracks if t.handler == "soun"), None)
    if video is None or audio is None or timescale <= 0:
        raise RenderError("the output lacks a video or an audio track")
    return MovieInfo(duration / timescale, _info(video, timescale), _info(audio, timescale))


def _info(track: Track, movie_timescale: int) -> TrackInfo:
    if track.timescale <= 0:
        raise RenderError(f"the output's {track.handler} track has no timescale")
    if track.edit_duration is not None:
        seconds = track.edit_duration / movie_timescale
    else:
        seconds = track.media_duration / track.timescale
    rate = Fraction(0)
    if deltas := track.sample_deltas:
        delta, _ = deltas.most_common(1)[0]
        rate = Fraction(track.timescale, delta) if delta else Fraction(0)
    return TrackInfo(seconds, track.width, track.height, rate)


def _box_header(head: bytes, pos: int, room: int) -> tuple[bytes, int, int]:
    """(type, header length, size) of the box whose first 8-16 bytes are ``head``, with
    ``room`` bytes from its start to the end of what holds it (size 0: all of that)."""
    size, kind = struct.unpack_from(">I4s", head)
    header = 8
    if size == 1:
        (size,) = struct.unpack_from(">Q", head, 8)
        header = 16
    elif size == 0:
        size = room
    if size < header or size > room:
        raise ValueError(f"box {kind!r} at {pos} has size {size}")
    return kind, header, size


def _find_moov(f: BinaryIO, file_size: int, max_bytes: int = _MOOV_MAX_BYTES) -> bytes:
    pos = 0
    while pos + 8 <= file_size:
        f.seek(pos)
        kind, header, size = _box_header(f.read(16), pos, file_size - pos)
        if kind == b"moov":
            if size > max_bytes:
                raise ValueError(f"moov of {size} bytes")
            f.seek(pos + header)
            return f.read(size - header)
        pos += size
    raise ValueError("no moov box")


def _boxes(data: bytes, start: int = 0, end: int | None = None) -> list[tuple[bytes, bytes]]:
    end = len(data) if end is None else end
    found = []
    pos = start
    while pos + 8 <= end:
        kind, header, size = _box_header(data[pos : pos + 16], pos, end - pos)
        found.append((kind, data[pos + header : pos + size]))
        pos += size
    return found


def _parse_moov(moov: bytes) -> tuple[int, int, list[Track]]:
    timescale = duration = 0
    tracks: list[Track] = []
    for kind, body in _boxes(moov):
        if kind == b"mvhd":
            timescale, duration = _timescale_and_duration(body)
        elif kind == b"trak":
            track = Track()
            _parse_into(track, body)
            tracks.append(track)
    return timescale, duration, tracks


def _parse_into(track: Track, data: bytes) -> None:
    for kind, body in _boxes(data):
        if kind in _CONTAINERS:
            _parse_into(track, body)
        elif kind == b"mdhd":
            track.timescale, track.media_duration = _timescale_and_duration(body)
        elif kind == b"hdlr" and body[4:8] != b"dhlr":
            # A QuickTime .mov has a second hdlr, the data handler ("dhlr" "alis"), after the
            # media's: taken as the track's, it hid every MOV's tracks (a cut .mov was copied).
            track.handler = body[8:12].decode("latin-1")
        elif kind == b"elst" and track.edit_duration is None:
            version = body[0]
            (count,) = struct.unpack_from(">I", body, 4)
            fmt, step = (">Qq", 20) if version == 1 else (">Ii", 12)  # duration, media time, then rate (4)
            edits = [struct.unpack_from(fmt, body, 8 + step * i) for i in range(count)]
            # An empty edit (media time -1) delays the start; it presents none of the track's media.
            presented = [duration for duration, media_time in edits if media_time >= 0]
            if presented:
                track.edit_duration = sum(presented)
                track.media_start = next(media_time for _, media_time in edits if media_time >= 0)
        elif kind == b"stts":
            (count,) = struct.unpack_from(">I", body, 4)
            for i in range(count):
                samples, delta = struct.unpack_from(">II", body, 8 + 8 * i)
                track.decode_runs.append((samples, delta))
        elif kind == b"ctts":
            (count,) = struct.unpack_from(">I", body, 4)
            fmt = ">Ii" if body[0] == 1 else ">II"  # version 1: signed offsets
            track.offset_runs = [struct.unpack_from(fmt, body, 8 + 8 * i) for i in range(count)]
        elif kind == b"stss":
            (count,) = struct.unpack_from(">I", body, 4)
            track.sync_samples = list(struct.unpack_from(f">{count}I", body, 8))
        elif kind == b"stsz":
            track.sample_size, track.sample_count = struct.unpack_from(">II", body, 4)
            if not track.sample_size:  # one size for all is kept once (PCM has a sample per audio sample)
                track.sample_sizes = list(struct.unpack_from(f">{track.sample_count}I", body, 12))
        elif kind == b"stsc":
            (count,) = struct.unpack_from(">I", body, 4)
            track.chunk_runs = [struct.unpack_from(">II", body, 8 + 12 * i) for i in range(count)]
        elif kind in (b"stco", b"co64"):
            (count,) = struct.unpack_from(">I", body, 4)
            track.chunk_offsets = list(struct.unpack_from(f">{count}{'I' if kind == b'stco' else 'Q'}", body, 8))
        elif kind == b"stsd" and track.handler == "vide" and not track.width:
            # Full box (4) + entry count (4), then the first entry: box header (8), sample
            # entry (8), pre-defined and reserved (16), width (2), height (2).
            track.width, track.height = struct.unpack_from(">HH", body, 8 + 8 + 8 + 16)


def _timescale_and_duration(body: bytes) -> tuple[int, int]:
    """mvhd and mdhd share the layout up to the duration (version 0: 32-bit times, 1: 64-bit)."""
    if body[0] == 1:
        timescale, duration = struct.unpack_from(">IQ", body, 4 + 16)
    else:
        timescale, duration = struct.unpack_from(">II", body, 4 + 8)
    return int(timescale), int(duration)


def keyframe_times(path: Path) -> list[float] | None:
    """Presentation times (seconds) of the first video track's keyframes, ascending.

    None when the file cannot be read as MP4. A hint only: the caller's result must not
    depend on it being right.
    """
    try:
        with path.open("rb") as f:
            size = f.seek(0, 2)
            _, _, tracks = _parse_moov(_find_moov(f, size, _INPUT_MOOV_MAX_BYTES))
    except (OSError, struct.error, ValueError, ZeroDivisionError):
        return None
    video = next((t for t in tracks if t.handler == "vide"), None)
    if video is None or video.timescale <= 0:
        return None
    if video.sync_samples is None:  # no sync sample table: every sample is a keyframe
        samples = min(sum(count for count, _ in video.decode_runs), _MAX_KEYFRAMES)
        wanted = list(range(1, samples + 1))
    else:
        wanted = sorted(set(video.sync_samples))[:_MAX_KEYFRAMES]
    decode = _at_samples(video.decode_runs, wanted, cumulative=True)
    offsets = _at_samples(video.offset_runs, wanted, cumulative=False) if video.offset_runs else [0] * len(wanted)
    if len(decode) != len(wanted) or len(offsets) != len(wanted):
        return None  # a keyframe numbered past the last sample: the tables disagree
    return sorted((d + o - video.media_start) / video.timescale for d, o in zip(decode, offsets, strict=True))


def _at_samples(runs: list[tuple[int, int]], wanted: list[int], *, cumulative: bool) -> list[int]:
    """For each 1-based sample number in ascending ``wanted``: the run's value there, or the
    sum of the values of every sample before it (``cumulative``: stts deltas give decode times)."""
    found: list[int] = []
    first = 1  # number of the run's first sample
    before = 0  # sum of the values of the samples before the run
    it = iter(wanted)
    n = next(it, None)
    for count, value in runs:
        while n is not None and n < first + count:
            found.append(before + (n - first) * value if cumulative else value)
            n = next(it, None)
        if n is None:
            break
        first += count
        before += count * value
    return found


@dataclass(frozen=True)
class VideoSample:
    time_s: float  # presentation time
    size: int  # bytes
    key: bool


def video_samples(path: Path) -> list[VideoSample]:
    """Every sample of the first video track in presentation order: time, size, keyframe.

    Read from the sample tables of a file this package wrote (the render's output), so the
    quality report can look for frozen or black stretches (runs of tiny frames) without
    decoding the picture. Empty when the tables cannot be read.
    """
    try:
        with path.open("rb") as f:
            size = f.seek(0, 2)
            _, _, tracks = _parse_moov(_find_moov(f, size))
    except (OSError, struct.error, ValueError):
        return []
    video = next((t for t in tracks if t.handler == "vide"), None)
    if video is None or video.timescale <= 0 or not video.sample_count:
        return []
    sizes = video.sample_sizes or [video.sample_size] * video.sample_count
    numbers = list(range(1, len(sizes) + 1))
    decode = _at_samples(video.decode_runs, numbers, cumulative=True)
    offsets = _at_samples(video.offset_runs, numbers, cumulative=False) if video.offset_runs else [0] * len(numbers)
    if len(decode) != len(numbers) or len(offsets) != len(numbers):
        return []
    keys = set(video.sync_samples) if video.sync_samples is not None else set(numbers)
    samples = [
        VideoSample((d + o - video.media_start) / video.timescale, size, n in keys)
        for n, d, o, size in zip(numbers, decode, offsets, sizes, strict=True)
    ]
    return sorted(samples, key=lambda s: s.time_s)


@dataclass(frozen=True)
class Readable:
    """How much of an input's first video and audio track the file really holds (seconds as
    presented); None for a track it has not. Less than the header says: the file was cut short."""

    video_s: float | None
    audio_s: float | None


def readable_lengths(path: Path) -> Readable | None:
    """What a decode of ``path`` can reach: each track's samples up to the first one whose bytes
    lie past the end of the file (a download or copy cut mid-``mdat``). None when the file
    cannot be read as MP4 here (another container, or a moov too large to read)."""
    try:
        with path.open("rb") as f:
            size = f.seek(0, 2)
            movie_timescale, _, tracks = _parse_moov(_find_moov(f, size, _INPUT_MOOV_MAX_BYTES))
    except (OSError, struct.error, ValueError, ZeroDivisionError):
        return None
    lengths = {}
    for handler in ("vide", "soun"):
        track = next((t for t in tracks if t.handler == handler), None)
        lengths[handler] = _readable_seconds(track, size, movie_timescale) if track is not None else None
    return Readable(lengths["vide"], lengths["soun"])


def missing_index(path: Path) -> str | None:
    """Why an MP4/MOV that ffprobe could not open has no index, read from its top-level boxes;
    None when it does not look like one, or has a moov.

    An export writes its sample table (moov) after the media data unless it is moved to the
    front: a copy cut short loses it whole, and so does a recording whose writer never finished.
    """
    try:
        with path.open("rb") as f:
            size = f.seek(0, 2)
            pos, kinds = 0, []
            while pos + 8 <= size:
                f.seek(pos)
                head = f.read(16)
                declared, kind = struct.unpack_from(">I4s", head)
                if declared == 1 and len(head) >= 16:
                    (declared,) = struct.unpack_from(">Q", head, 8)
                kinds.append(kind)
                if not pos and kind not in (b"ftyp", b"wide", b"free", b"skip", b"mdat"):
                    return None  # not an MP4/MOV
                if kind == b"moov":
                    return None
                if declared == 0:  # "to the end of the file": the writer never came back to size it
                    return "its media data was never closed (a recording or export that did not finish)"
                if declared < 8:
                    break
                if pos + declared > size:
                    return f"it ends at byte {size:,} inside its media data, which runs to byte {pos + declared:,}"
                pos += declared
    except (OSError, struct.error):
        return None
    return "it ends after its media data" if b"mdat" in kinds else None


def _readable_seconds(track: Track, file_size: int, movie_timescale: int) -> float | None:
    if track.timescale <= 0 or not track.chunk_offsets or not track.chunk_runs:
        return None
    presented = track.media_duration / track.timescale
    if track.edit_duration is not None and movie_timescale > 0:
        presented = track.edit_duration / movie_timescale
    readable = _samples_in_file(track, file_size)
    if readable >= sum(count for count, _ in track.decode_runs):
        return presented
    # The decode time of the first sample that is not there, on the presentation clock (within
    # a frame or two of reordering: enough to tell 2 s from the 4 s a header promises).
    (ticks,) = _at_samples(track.decode_runs, [readable + 1], cumulative=True)
    return min(presented, max(0, ticks - track.media_start) / track.timescale)


def _samples_in_file(track: Track, file_size: int) -> int:
    """How many of the track's samples, in decode order, lie wholly inside the file."""
    sample = 0
    runs = track.chunk_runs
    for run, (first_chunk, per_chunk) in enumerate(runs):
        last_chunk = runs[run + 1][0] - 1 if run + 1 < len(runs) else len(track.chunk_offsets)
        for chunk in range(first_chunk, min(last_chunk, len(track.chunk_offsets)) + 1):
            start = track.chunk_offsets[chunk - 1]
            count = min(per_chunk, track.sample_count - sample)
            if track.sample_size:
                inside = max(0, min(count, (file_size - start) // track.sample_size))
            else:
                ends = itertools.accumulate(track.sample_sizes[sample : sample + count], initial=start)
                inside = sum(1 for end in itertools.islice(ends, 1, None) if end <= file_size)
            sample += inside
            if inside < count or sample >= track.sample_count:
                return sample
    return sample


@dataclass(frozen=True)
class SampleTable:
    """The first video track's samples in decode order: when each is presented (seconds), how
    many bytes it has and where they start in the file."""

    times: list[float]
    sizes: list[int]
    offsets: list[int]

    def __len__(self) -> int:
        return len(self.sizes)


def video_sample_table(path: Path, *, first: int | None = None, max_moov_bytes: int = _MOOV_MAX_BYTES) -> SampleTable:
    """The sample table of ``path``'s first video track (its ``first`` samples, if given), read
    from the boxes without decoding; ``ValueError`` when the file is not MP4 or has no video."""
    try:
        with path.open("rb") as f:
            size = f.seek(0, 2)
            _, _, tracks = _parse_moov(_find_moov(f, size, max_moov_bytes))
    except (OSError, struct.error) as exc:
        raise ValueError(f"{path.name}: {exc}") from exc
    video = next((t for t in tracks if t.handler == "vide"), None)
    if video is None or video.timescale <= 0 or not video.sample_count:
        raise ValueError(f"{path.name}: no video samples")
    count = video.sample_count if first is None else min(first, video.sample_count)
    sizes = (video.sample_sizes or [video.sample_size] * video.sample_count)[:count]
    numbers = list(range(1, count + 1))
    decode = _at_samples(video.decode_runs, numbers, cumulative=True)
    offsets = _at_samples(video.offset_runs, numbers, cumulative=False) if video.offset_runs else [0] * count
    places = _sample_offsets(video, count)
    if len(decode) != count or len(offsets) != count or len(places) != count:
        raise ValueError(f"{path.name}: the sample tables disagree")
    times = [(d + o - video.media_start) / video.timescale for d, o in zip(decode, offsets, strict=True)]
    return SampleTable(times, sizes, places)


def _sample_offsets(track: Track, count: int) -> list[int]:
    """File offsets of the track's first ``count`` samples, from its chunk tables."""
    places: list[int] = []
    sizes = track.sample_sizes
    runs = track.chunk_runs
    for run, (first_chunk, per_chunk) in enumerate(runs):
        last_chunk = runs[run + 1][0] - 1 if run + 1 < len(runs) else len(track.chunk_offsets)
        for chunk in range(first_chunk, min(last_chunk, len(track.chunk_offsets)) + 1):
            at = track.chunk_offsets[chunk - 1]
            for _ in range(per_chunk):
                if len(places) >= count:
                    return places
                places.append(at)
                at += sizes[len(places) - 1] if sizes else track.sample_size
    return places
