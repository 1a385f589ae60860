"""The video stage of a render that encodes: its segments planned as pieces, every distinct
encode run once — here, taken from the segment cache, or left to a helper worker that
claims it — dearest first, with the audio pass queued among them by its own cost.

    plan_video        pieces, their commands, encodes at once and threads each
    group_encodes     pieces with the same cache address share one ``Encode``
    EncodeQueue       runs the encodes on ``workers`` threads (and the audio job)
    normalize_segments  the three together, as ``render`` calls them

Size: one path, from the pieces' commands to their files, that the cache and the claims run
through; the queue is most of it, and it needs the plan's and the grouping's types.
"""

from __future__ import annotations

import functools
import os
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from scenerender.core import plan, webp
from scenerender.core.cache import Digests, SegmentCache, materialize, segment_key, segment_template
from scenerender.core.ffmpeg import FFmpegRunner
from scenerender.core.mp4 import keyframe_times
from scenerender.core.timeline import PlacedSegment, Timeline

Outcome = Literal["reused", "encoded", "helper"]


@dataclass(frozen=True)
class SegmentTask:
    """One encode another worker may take: everything it needs, nothing of this machine."""

    key: str
    index: int
    source_url: str
    input_path: str
    source_digest: str
    template: list[str]
    duration_s: float


class SegmentClaims(Protocol):
    """Who encodes which segment of one render, across workers (``scenerender.pipeline.workitems``)."""

    def offer(self, tasks: list[SegmentTask]) -> None:
        """Make the tasks visible to other workers."""

    def claim(self, key: str) -> Literal["mine", "done", "held"]:
        """Take the task, unless it is done or another live worker holds it."""

    def holding(self, key: str) -> AbstractContextManager[None]:
        """Show the claim is alive while the block runs."""

    def done(self, key: str) -> None: ...

    def release(self, key: str) -> None: ...


@dataclass
class SegmentCounts:
    encoded: int = 0  # segments made by an encode of this render (here or by a helper)
    reused: int = 0  # taken from the cache, encoded by an earlier render
    from_helpers: int = 0  # of ``encoded``, those another worker encoded

    @classmethod
    def of(cls, pieces: Iterable[tuple[int, Outcome]]) -> SegmentCounts:
        """Counts by segment from how each piece was made: (segment index, outcome).

        A segment is reused when all of its pieces were, and came from helpers when any did."""
        made: dict[int, set[str]] = {}
        for index, outcome in pieces:
            made.setdefault(index, set()).add(outcome)
        return cls(
            encoded=sum(outcomes != {"reused"} for outcomes in made.values()),
            reused=sum(outcomes == {"reused"} for outcomes in made.values()),
            from_helpers=sum("helper" in outcomes for outcomes in made.values()),
        )


@dataclass(frozen=True)
class VideoPlan:
    """The pieces to encode, the command of each, and how many encodes run at once."""

    pieces: list[plan.Piece]
    commands: list[plan.Command]
    workers: int
    threads: int
    frame_size: tuple[int, int]  # the output's


def plan_video(
    timeline: Timeline, out_dir: Path, *, parallelism: int, cores: int, memory_mb: int, captions: Path | None = None
) -> VideoPlan:
    """The segments whole or cut into pieces (``plan.plan_pieces``), each with its command."""
    enc = plan.EncodeSettings.for_timeline(timeline)
    limit = plan.piece_limit(enc, timeline.fps)
    keyframes_of = functools.cache(keyframe_times)  # a source used by several segments is read once
    keyframes = {
        seg.index: times
        for seg in timeline.segments
        if seg.frames > limit and (times := keyframes_of(seg.source.path)) is not None
    }

    size = (timeline.width, timeline.height)

    def jobs_for(count: int) -> tuple[int, int]:
        return plan.parallel_jobs(parallelism, count, cores, memory_mb=memory_mb, frame_size=size)

    pieces = plan.plan_pieces(timeline, enc, keyframes, cores=cores, jobs_for=jobs_for)
    workers, threads = jobs_for(len(pieces))
    commands = [
        plan.normalize_command(p, timeline, out_dir / f"{p.segment.index:04d}-{n:03d}.mp4", enc, captions=captions)
        for n, p in enumerate(pieces)
    ]
    return VideoPlan(pieces, commands, workers, threads, size)


@dataclass
class Encode:
    """One distinct encode (one cache address) and the pieces it serves; the first is run."""

    key: str
    template: list[str]
    source_digest: str
    indices: list[int] = field(default_factory=list)  # into the plan's pieces
    outcome: Outcome | None = None


def source_digests(timeline: Timeline, file_digests: Digests, *, cached: bool) -> dict[Path, str]:
    """Each source's content address. Without a cache, identical paths are identical content
    for the length of this render, and the path is enough."""
    digests: dict[Path, str] = {}
    for seg in timeline.segments:
        source = seg.source.path.resolve()
        if source not in digests:
            digests[source] = file_digests(source) if cached else str(source)
    return digests


def group_encodes(video: VideoPlan, digests: dict[Path, str]) -> dict[str, Encode]:
    """Pieces with the same address (same source bytes, same parameters) share one encode."""
    encodes: dict[str, Encode] = {}
    for i, (piece, command) in enumerate(zip(video.pieces, video.commands, strict=True)):
        source = piece.segment.source.path
        template = segment_template(command.argv, source, command.output)
        digest = digests[source.resolve()]
        key = segment_key(digest, template)
        encodes.setdefault(key, Encode(key, template, digest)).indices.append(i)
    return encodes


class EncodeQueue:
    """Runs a render's encodes on ``workers`` threads, dearest first; reports their progress.

    With ``claims``, the encodes are offered to other workers too, and each is settled by
    whoever claims it; one held elsewhere is looked at again once the rest have been tried.
    """

    def __init__(
        self,
        video: VideoPlan,
        encodes: dict[str, Encode],
        runner: FFmpegRunner,
        *,
        cache: SegmentCache | None,
        claims: SegmentClaims | None,
        claim_poll_s: float,
        on_fraction: Callable[[float], None],
    ) -> None:
        self.video = video
        self.encodes = encodes
        self.runner = runner
        self.cache = cache
        self.claims = claims
        self.claim_poll_s = claim_poll_s
        self.on_fraction = on_fraction
        self._total_s = sum(c.duration_s for c in video.commands)
        self._done_s: dict[int, float] = {}
        self._lock = threading.Lock()
        self._queue: deque[Callable[[], None]] = deque()
        self._waiting_rounds = 0
        self._failed = threading.Event()

    # -- one encode

    def output(self, encode: Encode) -> Path:
        return self.video.commands[encode.indices[0]].output

    def cost(self, encode: Encode) -> float:
        piece = self.video.pieces[encode.indices[0]]
        return plan.encode_cost(piece.segment, piece.frames, self.video.frame_size)

    def report(self, encode: Encode, fraction: float) -> None:
        with self._lock:
            for i in encode.indices:
                self._done_s[i] = fraction * self.video.commands[i].duration_s
            self.on_fraction(sum(self._done_s.values()) / self._total_s)

    def fetch(self, encode: Encode) -> bool:
        """Whether the cache had it (now in place)."""
        return self.cache is not None and self.cache.fetch(encode.key, self.output(encode))

    def run_encode(self, encode: Encode) -> None:
        i = encode.indices[0]
        argv = materialize(
            encode.template,
            ffmpeg="ffmpeg",
            source=self.video.pieces[i].segment.source.path,
            output=self.output(encode),
            threads=self.video.threads,
        )
        command = self.video.commands[i]
        self.runner.run(argv, duration_s=command.duration_s, on_progress=lambda f: self.report(encode, f))

    def settle(self, encode: Encode) -> None:
        """Encode it here, or take it from whoever did."""
        claims = self.claims
        if claims is None:
            self.run_encode(encode)
            if self.cache is not None:
                self.cache.store(encode.key, self.output(encode))
            encode.outcome = "encoded"
            return
        state = claims.claim(encode.key)
        if state == "done" and self.fetch(encode):
            encode.outcome = "helper"
            self.report(encode, 1.0)
            return
        if state == "held":
            self._look_again_later(encode)
            return
        with self._lock:
            self._waiting_rounds = 0
        try:
            with claims.holding(encode.key):
                self.run_encode(encode)
        except BaseException:
            claims.release(encode.key)
            raise
        if self.cache is not None and self.cache.store(encode.key, self.output(encode)):
            claims.done(encode.key)
        else:
            claims.release(encode.key)
        encode.outcome = "encoded"

    def _look_again_later(self, encode: Encode) -> None:
        """Another worker is encoding it: back of the queue; a whole round of nothing but
        waiting sleeps a poll interval before the next."""
        with self._lock:
            self._queue.append(functools.partial(self.settle, encode))
            self._waiting_rounds += 1
            idle = self._waiting_rounds >= len(self._queue)
            if idle:
                self._waiting_rounds = 0
        if idle:
            time.sleep(self.claim_poll_s)

    # -- the queue

    def run(
        self, pending: list[Encode], audio_job: Callable[[], None], *, audio_cost_s: float, audio_beside: bool
    ) -> None:
        """Settle ``pending`` (dearest first) on ``workers`` threads, and run the audio job: as
        one more job of the queue, placed by its cost, or on a thread of its own beside them.

        The first failure stops the rest: no thread takes another job and the running
        encodes are cancelled; it is raised here.
        """
        self._queue.extend(functools.partial(self.settle, encode) for encode in pending)
        workers = self.video.workers
        if not audio_beside:
            self._queue.insert(sum(self.cost(encode) > audio_cost_s for encode in pending), audio_job)
        with ThreadPoolExecutor(max_workers=workers + audio_beside) as pool:
            drains = [pool.submit(self._drain) for _ in range(workers)]
            if audio_beside:
                drains.append(pool.submit(audio_job))
            try:
                # The first failure is the cause: the others are only stopped because of it.
                first = wait(drains, return_when=FIRST_EXCEPTION).done
                cause = next((f.exception() for f in first if f.exception() is not None), None)
                if cause is not None:
                    raise cause
            except BaseException:
                # Ctrl-C/SIGTERM here, or one job failed: the other drains take nothing more and
                # their encodes stop now, or leaving the pool would wait for the whole queue.
                self._failed.set()
                self.runner.cancel()
                raise

    def _next_job(self) -> Callable[[], None] | None:
        with self._lock:
            return self._queue.popleft() if self._queue and not self._failed.is_set() else None

    def _drain(self) -> None:
        try:
            while (job := self._next_job()) is not None:
                job()
        except BaseException:
            self._failed.set()  # the render is lost: the other threads take nothing more
            raise


def shareable(video: VideoPlan, encode: Encode) -> bool:
    """Whether another worker may make ``encode``: not from an animated WebP's frames, which
    this render converted (within its memory budget) and another worker would decode all
    again, with no budget that counts them. The render makes those itself (its claim of an
    item nobody was offered is its own at once)."""
    return not webp.is_conversion(video.pieces[encode.indices[0]].segment.source.path)


def segment_task(video: VideoPlan, encode: Encode, urls: list[str]) -> SegmentTask:
    """What another worker needs to make ``encode``."""
    i = encode.indices[0]
    seg = video.pieces[i].segment
    return SegmentTask(
        key=encode.key,
        index=seg.index,
        source_url=urls[seg.index],
        input_path=f"segments[{seg.index}].url",
        source_digest=encode.source_digest,
        template=encode.template,
        duration_s=video.commands[i].duration_s,
    )


def normalize_segments(
    timeline: Timeline,
    work: Path,
    runner: FFmpegRunner,
    *,
    urls: list[str],
    file_digests: Digests,
    audio_job: Callable[[], None],
    on_fraction: Callable[[float], None],
    parallelism: int,
    cores: int,
    memory_mb: int,
    cache: SegmentCache | None,
    claims: SegmentClaims | None,
    split_min_segments: int,
    claim_poll_s: float,
    captions: Path | None = None,
) -> tuple[list[plan.VideoPart], SegmentCounts]:
    """Normalise every segment: each distinct (source, parameters) is encoded once, in parallel,
    or taken from the cache, or — when ``claims`` is given — by whichever worker claims it.
    ``captions``: an ASS script every piece burns in.

    ``audio_job`` (the audio pass, one core) runs on the same cores: as a job of the queue
    when the encodes fill every core, beside them when they leave one free. ``urls``: the
    segments' source URLs, for the workers that take an encode.
    """
    norm_dir = work / "normalized"
    norm_dir.mkdir()
    video = plan_video(timeline, norm_dir, parallelism=parallelism, cores=cores, memory_mb=memory_mb, captions=captions)
    encodes = group_encodes(video, source_digests(timeline, file_digests, cached=cache is not None))
    queue = EncodeQueue(
        video, encodes, runner, cache=cache, claims=None, claim_poll_s=claim_poll_s, on_fraction=on_fraction
    )
    # Cache lookups first, in parallel: what is left is the work to share out.
    with ThreadPoolExecutor(max_workers=max(video.workers, 4)) as pool:
        hits = dict(zip(encodes, pool.map(queue.fetch, encodes.values()), strict=True))
    # Dearest first: what is left at the end is short, and the cores finish together.
    pending = sorted((encodes[key] for key, hit in hits.items() if not hit), key=queue.cost, reverse=True)
    for key, hit in hits.items():
        if hit:
            encodes[key].outcome = "reused"
            queue.report(encodes[key], 1.0)
    if claims is not None and cache is not None and len(pending) >= split_min_segments > 0:
        claims.offer([segment_task(video, encode, urls) for encode in pending if shareable(video, encode)])
        queue.claims = claims
    # Dearest first, the audio pass among the encodes by its own cost. Queued last, the audio
    # ran alone after pieces of equal length that ended together (a 30 s scene of long
    # segments: 1.8 s on one core of two). With fewer encodes at once than cores (fewer
    # segments, or a memory budget), each has several threads (plan.parallel_jobs) and the
    # audio runs beside them rather than after them on one core.
    queue.run(pending, audio_job, audio_cost_s=plan.audio_cost(timeline), audio_beside=video.workers < cores)
    for encode in encodes.values():
        for i in encode.indices[1:]:
            _link(queue.output(encode), video.commands[i].output)
    parts = [
        plan.VideoPart(
            command.output,
            (piece.frames + piece.hold_frames) / timeline.fps,
            segment_label(piece.segment) + (f" from its frame {piece.first_frame}" if piece.first_frame else ""),
        )
        for piece, command in zip(video.pieces, video.commands, strict=True)
    ]
    made = {
        (video.pieces[i].segment.index, encode.outcome)
        for encode in encodes.values()
        for i in encode.indices
        if encode.outcome is not None
    }
    return parts, SegmentCounts.of(made)


def segment_label(seg: PlacedSegment) -> str:
    """How the sync certificate names where a video part comes from: ``segments[3] ('s3')``."""
    return f"segments[{seg.index}] ({seg.id!r})"


def _link(src: Path, dest: Path) -> None:
    try:
        os.link(src, dest)
    except OSError:
        shutil.copyfile(src, dest)
