"""The cost model and the schedule: what each encode costs, whether cutting long segments
finishes sooner (``plan_pieces``), and how many encodes run at once (``parallel_jobs``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from scenerender.core.plan.pieces import Piece, seek_ahead, segment_pieces
from scenerender.core.plan.video import EncodeSettings
from scenerender.core.timeline import PlacedSegment, Timeline

# An x264 start and its lookahead, and one more keyframe, per piece: 1-2 % of a piece's
# encode in isolation, 10 % for a busy picture whose two halves ran at once (measured).
PIECE_OVERHEAD = 0.04
# A normalising ffmpeg decodes and scales in one thread beside x264's frame threads: with
# two threads it finished in 0.53-0.67 of one thread's time (measured on 10 s of 1080p).
FRAME_THREAD_LOSS = 0.25
# CPU-seconds of decoding a source megapixel-frame of a flat picture (what a piece decodes
# for nothing between the keyframe its seek lands on and its start: 0.62 s for 250 frames of
# a busy 720p picture, measured).
DECODE_S_PER_MEGAPIXEL_FRAME = 0.0013


def plan_pieces(
    timeline: Timeline,
    enc: EncodeSettings,
    keyframes: Mapping[int, Sequence[float]],
    *,
    cores: int,
    jobs_for: Callable[[int], tuple[int, int]],
) -> list[Piece]:
    """The segments whole, or the long ones cut, whichever should finish soonest.

    Cutting pays when whole segments leave cores idle (three long ones on two cores: the
    third runs on one; one on two: frame threads do less than two encodes) and costs its
    overhead where they pack well anyway (a busy one beside two flat ones). Two ways to
    cut are weighed: evenly, and at the source's keyframes (``keyframes``: segment index ->
    keyframe times, ``mp4.keyframe_times``), where a piece's seek lands right before it
    instead of decoding from an earlier keyframe for nothing. A segment whose keyframes are
    not known is not cut. ``jobs_for`` gives (encodes at once, threads each) for a number
    of jobs (``parallel_jobs``).
    """
    layouts = [segment_pieces(timeline, enc, {})]
    for reach in (0, 1):  # even cuts; cuts moved onto keyframes up to a piece away
        cut = segment_pieces(timeline, enc, keyframes, reach=reach)
        if cut not in layouts:
            layouts.append(cut)

    def wall(pieces: list[Piece]) -> float:
        workers, threads = jobs_for(len(pieces))
        costs = [piece_cost(p, timeline, keyframes.get(p.segment.index, ())) for p in pieces]
        return estimated_wall(costs, workers, threads, audio_cost(timeline), queued=workers >= cores, cores=cores)

    return min(layouts, key=wall)  # the first of equals: the fewest pieces


def piece_cost(piece: Piece, timeline: Timeline, keyframes: Sequence[float]) -> float:
    """Rough CPU-seconds of one piece: its encode, what starting apart costs, and the decode
    from the keyframe its seek lands on up to its start."""
    seg = piece.segment
    cost = encode_cost(seg, piece.frames, (timeline.width, timeline.height))
    if piece.frames == seg.frames:
        return cost
    video = seg.source.video
    lead_s = 0.0
    if piece.first_frame and video is not None and video.fps > 0:
        seek = seg.trim_start + float(seek_ahead(piece, timeline.fps))
        lead_s = seek - max((k for k in keyframes if k <= seek), default=0.0)
        lead_s *= video.width * video.height / 1e6 * float(video.fps) * DECODE_S_PER_MEGAPIXEL_FRAME
        lead_s *= 1 + _bits_per_pixel(seg) / DETAIL_BPP
    return cost * (1 + PIECE_OVERHEAD) + lead_s


def estimated_wall(costs: list[float], workers: int, threads: int, audio: float, *, queued: bool, cores: int) -> float:
    """Seconds until the last job ends: dearest first, each to the worker free first (the
    render's own order), a job of ``threads`` frame threads taking that much less time. The
    audio is one of the jobs (``queued``) or runs beside them, taking its share of the cores."""
    speedup = threads / (1 + FRAME_THREAD_LOSS * (threads - 1))
    jobs = [cost / speedup for cost in costs] + ([audio] if queued else [])
    loads = [0.0] * max(1, workers)
    for job in sorted(jobs, reverse=True):
        loads[loads.index(min(loads))] += job
    return max(loads) + (0.0 if queued else audio / max(1, cores))


ENCODER_BASE_MB = 60  # ffmpeg's own libraries and buffers
# A full render's x264 holds about this many frames (lookahead, B-frames, references,
# half-pel planes), and more with each extra frame thread. Fitted at 1080p (192 MiB with one
# thread, 243 with two); measured 3 % under at 720p (122 MiB), 14 % over at 2160p (515 MiB).
ENCODER_FRAMES = 44
ENCODER_FRAMES_PER_EXTRA_THREAD = 17
MEMORY_HEADROOM = 0.75  # the rest of a budget is for Python, the audio pass and copies


def encoder_mb(width: int, height: int, threads: int) -> float:
    """Resident memory of one normalising ffmpeg at this output size."""
    frame_mb = width * height * 1.5 / 2**20
    return ENCODER_BASE_MB + frame_mb * (ENCODER_FRAMES + ENCODER_FRAMES_PER_EXTRA_THREAD * (threads - 1))


# Source bits per pixel at which x264's detail-dependent work equals its fixed work per frame
# (veryfast, 720p25 -> 1080p30, the benchmark's patterns: 2.2-2.8 CPU-s per 5 s segment at
# 0.006 bpp, 5.0-6.0 at 0.11 bpp).
DETAIL_BPP = 0.1
# CPU-seconds of a full-settings encode per output megapixel-frame of a flat picture (5 s of
# 720p25 test pattern to 1080p30: 1.75-1.97 s), and of the audio pass per second of scene (the
# mix and its scan, one AAC encoder, the scan of its output: 1.8 s for a 30 s scene, 2.3 s for
# 50 s). Both are this machine's; only their ratio matters: where the audio goes in the queue
# of encodes, and whether cutting long segments should finish sooner (``plan_pieces``).
ENCODE_S_PER_MEGAPIXEL_FRAME = 0.0058
AUDIO_S_PER_SCENE_S = 0.05


def encode_cost(seg: PlacedSegment, frames: int | None = None, frame_size: tuple[int, int] = (1920, 1080)) -> float:
    """Rough CPU-seconds of encoding ``frames`` of a segment (all of it by default) at ``frame_size``.

    Encodes started in order of the spec can leave the dearest for last, one core busy with
    it while the others idle. x264 spends a fixed part per frame and a part that grows with
    the picture's detail; the source's bits per pixel stand for the detail (a busy picture
    takes more bits at any quality). Only the order of the work depends on it.
    """
    megapixels = frame_size[0] * frame_size[1] / 1e6
    count = seg.frames if frames is None else frames
    return count * megapixels * ENCODE_S_PER_MEGAPIXEL_FRAME * (1 + _bits_per_pixel(seg) / DETAIL_BPP)


def _bits_per_pixel(seg: PlacedSegment) -> float:
    video, source = seg.source.video, seg.source
    pixel_rate = video.width * video.height * float(video.fps) if video is not None else 0.0
    return source.size_bytes * 8 / (source.duration * pixel_rate) if pixel_rate > 0 and source.duration > 0 else 0.0


def audio_cost(timeline: Timeline) -> float:
    """Rough CPU-seconds of the audio pass on one core, in the units of ``encode_cost``."""
    return AUDIO_S_PER_SCENE_S * float(timeline.duration)


def parallel_jobs(
    configured: int, pieces: int, cores: int, *, memory_mb: int = 0, frame_size: tuple[int, int] = (0, 0)
) -> tuple[int, int]:
    """(segments encoded at once, encoder threads each): one process per core, no oversubscription.

    ``cores`` is what this render may use (``RenderOptions.cores``, the one place that
    decides it: a container's CPU limit, which ``os.cpu_count`` does not see, or a share of
    the machine among several local workers). With a ``memory_mb`` budget, fewer processes
    with more threads each when one process per core would not fit: a little slower (frame
    threads start and drain with every segment), never killed for memory.
    """
    cores = max(1, cores)
    workers = max(1, min(configured or cores, pieces))
    if memory_mb and all(frame_size):
        budget = memory_mb * MEMORY_HEADROOM
        while workers > 1 and workers * encoder_mb(*frame_size, max(1, cores // workers)) > budget:
            workers -= 1
    return workers, max(1, cores // workers)
