"""The poster and the contact sheet, from the picture's keyframes; the quality report's frames.

Where the keyframes are comes from the output's sample table (on the copy path, from its
sources' tables, before the output exists); one ffmpeg decodes those only (``picture_pass``)
and picks the ones it wants. The quality report's frames come from another decode
(``qc_frames_command``): every reference frame, small and grey.

The poster rule (docs/deliverables.md): ``output.poster_at`` when given (that exact
frame); otherwise, of the keyframes in the middle third of the scene (at most
``POSTER_CANDIDATES``, evenly chosen), the sharpest that is not black; when every one is
black, the same over all the scene's keyframes; with no keyframe in the middle third, the
keyframe nearest the middle. The sheet: one tile per segment, its keyframe nearest the
segment's middle, labelled with the segment id and its start and end in the scene.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from scenerender.core.timeline import Timeline

POSTER_CANDIDATES = 8
ANALYSIS_SIZE = (160, 90)  # candidates are compared at this size, in grey
QC_SIZE = (80, 45)  # the quality report's frames: the scene's every reference frame, in grey
BLACK_LUMA = 28.0  # mean luma (0-255, limited range: black is 16) under which a frame is black
LABEL_FONT = "DejaVu Sans"  # fonts-dejavu-core (scripts/setup.sh, the renderer image)


@dataclass(frozen=True)
class FrameStats:
    mean_luma: float
    sharpness: float  # mean absolute difference of neighbouring pixels, across and down

    @property
    def black(self) -> bool:
        return self.mean_luma < BLACK_LUMA


def frame_stats(grey: bytes, width: int, height: int) -> FrameStats:
    """Brightness and sharpness of one grey frame (``width * height`` bytes)."""
    mean = sum(grey) / len(grey)
    across = sum(map(abs, map(operator.sub, grey[1:], grey[:-1])))
    down = sum(map(abs, map(operator.sub, grey[width:], grey[:-width])))
    return FrameStats(mean, (across + down) / (2 * width * height))


def evenly(times: Sequence[float], count: int = POSTER_CANDIDATES) -> list[float]:
    """At most ``count`` of ``times``, evenly chosen."""
    if len(times) <= count:
        return list(times)
    step = len(times) / count
    return [times[int(i * step)] for i in range(count)]


def poster_candidates(keyframes: Sequence[float], duration: float) -> list[float]:
    """Keyframes in the middle third of the scene (at most ``POSTER_CANDIDATES``, evenly
    chosen); without one there, the keyframe nearest the middle."""
    middle = [t for t in keyframes if duration / 3 <= t < 2 * duration / 3]
    if not middle and keyframes:
        middle = [min(keyframes, key=lambda t: abs(t - duration / 2))]
    return evenly(middle)


def choose_poster(stats: Sequence[FrameStats]) -> int | None:
    """Index of the sharpest frame that is not black; None when all are black."""
    lit = [i for i, s in enumerate(stats) if not s.black]
    return max(lit, key=lambda i: stats[i].sharpness) if lit else None


def sheet_times(timeline: Timeline, keyframes: Sequence[float]) -> list[float]:
    """Per segment, its keyframe nearest its middle (every segment of our output starts on one)."""
    times: list[float] = []
    for seg in timeline.segments:
        start, end = float(seg.start), float(seg.start + seg.duration)
        inside = [t for t in keyframes if start - 1e-3 <= t < end - 1e-3] or list(keyframes)
        times.append(min(inside, key=lambda t: abs(t - (start + end) / 2)))
    return times


EXPRESSION_GROUP = 20  # ffmpeg's expression parser nests a call per term of a sum: it gives up near 100


def _near(times: Sequence[float], tolerance: float) -> str:
    """True (1) for a frame within ``tolerance`` of any of ``times``: sums of at most
    ``EXPRESSION_GROUP`` terms, grouped in brackets as often as needed."""
    terms = [f"lt(abs(t-{t:.6f}),{tolerance:.6f})" for t in times]
    while len(terms) > EXPRESSION_GROUP:
        terms = ["(" + "+".join(terms[i : i + EXPRESSION_GROUP]) + ")" for i in range(0, len(terms), EXPRESSION_GROUP)]
    return "+".join(terms)


@dataclass(frozen=True)
class SheetLayout:
    tile_width: int
    tile_height: int  # the picture; the label band is below it
    label_height: int
    columns: int
    rows: int

    @classmethod
    def for_timeline(cls, timeline: Timeline) -> SheetLayout:
        count = len(timeline.segments)
        tile_width = 320 if count <= 48 else 160
        tile_height = max(2, round(tile_width * timeline.height / timeline.width / 2) * 2)
        columns = min(count, max(1, math.ceil(math.sqrt(count * 1.5))))
        return cls(tile_width, tile_height, 24 if tile_width >= 320 else 16, columns, math.ceil(count / columns))


def _label(timeline: Timeline, index: int) -> str:
    seg = timeline.segments[index]
    # Segment ids are [A-Za-z0-9_.-]: nothing in the label is special to drawtext or the graph.
    return f"{seg.id}  {float(seg.start):.2f}-{float(seg.start + seg.duration):.2f} s"


def picture_input(mp4: Path) -> list[str]:
    """The input arguments that read a finished MP4's picture."""
    return ["-protocol_whitelist", "file", "-i", str(mp4)]


def sources_input(concat_list: Path) -> list[str]:
    """The input arguments that read a copy-path output's picture before it is made: its
    sources joined by the concat demuxer, packet for packet what the output will hold."""
    return ["-f", "concat", "-safe", "0", "-protocol_whitelist", "file", "-i", str(concat_list)]


def picture_pass(
    source: Sequence[str],
    timeline: Timeline,
    *,
    poster_times: Sequence[float],
    tile_times: Sequence[float],
    work: Path,
) -> tuple[list[str], dict[Path, str]]:
    """One decode of the picture's keyframes only (``-skip_frame nokey``): the poster
    candidates (keyframes at ``poster_times``) as JPEGs (``cand-NN.jpg``) and as small grey
    frames (``cand.grey``); the labelled contact sheet (``sheet.jpg``) of the keyframes at
    ``tile_times``. ``source``: ``picture_input`` or ``sources_input``.

    Returns the command and the files to write before it (its filter script).
    """
    tolerance = 0.5 / float(timeline.fps)
    chains = []
    outputs: list[str] = []
    branches = [name for name, wanted in (("poster", poster_times), ("sheet", tile_times)) if wanted]
    # Times from the first frame shown (a keyframe, the scene's 0): the concat demuxer's start
    # where the first file's first timestamp is, a B-frame delay after it.
    chains.append("[0:v]setpts=PTS-STARTPTS" + (f",split={len(branches)}" if len(branches) > 1 else ""))
    chains[-1] += "".join(f"[for{name}]" for name in branches) if len(branches) > 1 else "[forall]"

    def entry(name: str) -> str:
        return f"[for{name}]" if len(branches) > 1 else "[forall]"

    if poster_times:
        width, height = ANALYSIS_SIZE
        chains.append(f"{entry('poster')}select='{_near(poster_times, tolerance)}',split=2[pj][pa]")
        chains.append(f"[pa]scale={width}:{height},format=gray[pg]")
        outputs += [
            "-map",
            "[pj]",
            "-fps_mode",
            "passthrough",
            "-q:v",
            "2",
            "-f",
            "image2",
            str(work / "cand-%02d.jpg"),
        ]
        outputs += ["-map", "[pg]", "-fps_mode", "passthrough", "-f", "rawvideo", str(work / "cand.grey")]
    if tile_times:
        layout = SheetLayout.for_timeline(timeline)
        w, h, band = layout.tile_width, layout.tile_height, layout.label_height
        labels = [
            f"drawtext=font='{LABEL_FONT}':text='{_label(timeline, i)}':x=6:y={h + (band - band * 2 // 3) // 2}:"
            f"fontsize={band * 2 // 3}:fontcolor=white:enable='lt(abs(t-{t:.6f}),{tolerance:.6f})'"
            for i, t in enumerate(tile_times)
        ]
        chains.append(
            f"{entry('sheet')}select='{_near(sorted(set(tile_times)), tolerance)}',"
            f"scale={w}:{h}:force_original_aspect_ratio=decrease:force_divisible_by=2,"
            f"pad={w}:{h + band}:(ow-iw)/2:(oh-{band}-ih)/2:color=black,"
            + ",".join(labels)
            + f",tile=layout={layout.columns}x{layout.rows}:padding=4:margin=4:color=0x202020[sheet]"
        )
        outputs += ["-map", "[sheet]", "-frames:v", "1", "-q:v", "3", "-update", "1", str(work / "sheet.jpg")]
    script = work / "stills.filtergraph"
    # One decoding thread: a 1080p decoder's frame threads cost more CPU here (a frame or
    # ten decoded) than the decoding itself (0.35 -> 0.21 s on the reference scene).
    argv = [
        "ffmpeg",
        "-y",
        "-threads",
        "1",
        "-skip_frame",
        "nokey",
        *source,
        "-filter_complex_script",
        str(script),
        *outputs,
    ]
    return argv, {script: ";\n".join(chains)}


def qc_frames_command(sources: Sequence[Sequence[str]], out: Path) -> list[str]:
    """The reference frames (``-skip_frame bidir``) of each of ``sources`` (input arguments),
    in grey at ``QC_SIZE``, one source after the other in ``out``; each frame's time is
    logged by ``showinfo@i<n>`` for source n (``parse_frame_times``).

    One decoding thread each: the pass runs beside the audio, on the core it leaves idle;
    frame threads would add a sixth to its CPU time for a wall time nobody waits for.
    """
    width, height = QC_SIZE
    argv = ["ffmpeg", "-y"]
    chains = []
    for i, source in enumerate(sources):
        # No deblocking either: at 80x45 it changes nothing the checks see (10 % of the decode).
        argv += ["-threads", "1", "-skip_frame", "bidir", "-skip_loop_filter", "all", *source]
        # Area averaging: grain (temporal noise) averages out over the pixels each one covers,
        # so a grainy still compares as still and a grainy black as black.
        chains.append(f"[{i}:v]scale={width}:{height}:flags=area,format=gray,showinfo@i{i}[q{i}]")
    chains.append("".join(f"[q{i}]" for i in range(len(sources))) + f"concat=n={len(sources)}:v=1:a=0[qc]")
    graph = ";".join(chains)
    return [*argv, "-filter_complex", graph, "-map", "[qc]", "-fps_mode", "passthrough", "-f", "rawvideo", str(out)]


_SHOWINFO_TIME = re.compile(r"\[showinfo@i(\d+) @ [^\]]*\]\s*n:\s*\d+\s+pts:\s*-?\d+\s+pts_time:(-?[\d.]+)")


def parse_frame_times(stderr: str, sources: int) -> list[list[float]]:
    """The time of each frame ``qc_frames_command`` logged, in order, for each source."""
    times: list[list[float]] = [[] for _ in range(sources)]
    for index, value in _SHOWINFO_TIME.findall(stderr):
        times[int(index)].append(float(value))
    return times


def frame_command(source: Sequence[str], at: float, out: Path) -> list[str]:
    """The frame shown at ``at`` seconds as a JPEG (exact: decoded from the keyframe before it)."""
    return [
        "ffmpeg",
        "-y",
        "-threads",
        "1",
        "-ss",
        f"{at:.6f}",
        *source,
        "-frames:v",
        "1",
        "-q:v",
        "2",
        "-update",
        "1",
        str(out),
    ]
