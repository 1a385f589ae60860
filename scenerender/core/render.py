"""The render flow: fetch -> probe -> timeline -> plan -> run -> measure.

This is the one function the CLI, the worker and the tests call; it knows nothing of
the cloud beyond the ``InputResolver`` it is handed.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol

from scenerender.core import deliverables, plan, sync
from scenerender.core.audio import AudioMade, FinalMux, make_audio
from scenerender.core.cache import Digests, SegmentCache, materialize, segment_key, segment_template
from scenerender.core.ffmpeg import FFmpegRunner, publish_file, write_files
from scenerender.core.inputs import InputResolver
from scenerender.core.mp4 import keyframe_times, read_movie
from scenerender.core.probe import MediaInfo, probe_data, read_probe, refuse_reference_files
from scenerender.core.spec import JobSpec
from scenerender.core.tenancy import SceneLimits
from scenerender.core.timeline import PlacedSegment, Timeline, build_timeline
from scenerender.errors import InputError, SceneRenderError, collected
from scenerender.settings import Settings

PROBE_CACHE_VERSION = "2"  # bump when probe_command asks ffprobe for something else

ProgressFn = Callable[[str, float], None]
"""``(stage, overall fraction 0..1)``; fractions never decrease."""


@dataclass
class RenderResult:
    """CONTRACT.md section 2, measured on the output file."""

    duration_s: float
    width: int
    height: int
    fps: float
    size_bytes: int
    loudness_lufs: float | None
    true_peak_db: float | None
    av_drift_ms: float
    timings: dict[str, float] = field(default_factory=dict)
    fast_path: bool = False
    fast_path_blockers: list[str] = field(default_factory=list)
    segments_encoded: int = 0
    segments_copied: int = 0
    segments_reused: int = 0  # normalised segments taken from the segment cache
    segments_from_helpers: int = 0  # encoded for this render by other workers (a split scene)
    audio_reused: bool = False  # the encoded audio came from the cache (e.g. full render after its preview)
    audio_encoders: int = 0  # AAC encoders that shared the audio's encode (one per core when the video is copied)
    probes_reused: int = 0  # inputs whose ffprobe description came from the cache
    sidecars: dict[str, str] = field(default_factory=dict)  # kind -> file beside the MP4 (docs/deliverables.md)
    captions_burned: bool = False
    qc: dict[str, Any] = field(default_factory=dict)  # the quality report, measured on the output
    sync: dict[str, Any] = field(default_factory=dict)  # the sync certificate, measured on the output

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RenderOptions:
    ffmpeg: str = "ffmpeg"
    ffprobe: str = "ffprobe"
    parallelism: int = 0
    cpus: int = 0  # 0: every core of the machine
    memory_mb: int = 0  # 0: no budget
    timeout_s: float | None = None
    work_dir: str | None = None
    segment_cache: SegmentCache | None = None
    segment_claims: SegmentClaims | None = None  # share the encodes with other workers
    split_min_segments: int = 4  # fewer encodes than this are not worth sharing
    deliverables: bool = True  # sidecars and the QC report (docs/deliverables.md); burned captions regardless
    claim_poll_s: float = 0.5
    all_errors: bool = False  # every input's problem reported at once (the CLI), not only the first
    limits: SceneLimits | None = None  # the pipeline's cost limits, held to the probed timeline

    @property
    def cores(self) -> int:
        """The cores this render may use: ``cpus``, or every core of the machine."""
        return self.cpus or os.cpu_count() or 1

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> RenderOptions:
        """The options every door (CLI, worker) renders with; the door adds its cache and claims."""
        return cls(
            **{
                "ffmpeg": settings.ffmpeg,
                "ffprobe": settings.ffprobe,
                "parallelism": settings.parallelism,
                "cpus": settings.cpus,
                "memory_mb": settings.memory_mb,
                "split_min_segments": settings.split_min_segments,
                "deliverables": settings.deliverables,
                "timeout_s": float(settings.render_timeout_s),
                "work_dir": settings.work_dir or None,
                **overrides,
            }
        )


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


class _Progress:
    """Turns per-stage fractions into one overall fraction that never goes back.

    Stages may run at the same time (video and audio do), so each keeps its own fraction.
    """

    WEIGHTS: ClassVar[dict[str, float]] = {
        "fetch": 0.05,
        "video": 0.55,
        "audio": 0.25,
        "mux": 0.05,
        "measure": 0.10,
    }

    def __init__(self, report: ProgressFn | None) -> None:
        self._report = report
        self._fractions: dict[str, float] = {}
        self._last = 0.0
        self._lock = threading.Lock()

    def stage(self, name: str, fraction: float) -> None:
        with self._lock:
            self._fractions[name] = max(self._fractions.get(name, 0.0), min(1.0, max(0.0, fraction)))
            value = min(1.0, sum(self.WEIGHTS[s] * f for s, f in self._fractions.items()))
            if value > self._last and self._report is not None:
                self._last = value
                self._report(name, value)

    def finish(self, name: str) -> None:
        self.stage(name, 1.0)


@contextmanager
def private_dir(base: str | None) -> Iterator[Path]:
    """A temp dir only this process can read; removed afterwards whatever happens."""
    path = Path(tempfile.mkdtemp(prefix="scenerender-", dir=base or None))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _probe_cached(
    path: Path,
    input_path: str,
    ffprobe: str,
    cache: SegmentCache | None,
    digests: Digests,
    reused: list[str],
    url: str | None = None,
) -> MediaInfo:
    """Probe, or take ffprobe's description of these bytes from the cache (a full render after
    its preview)."""
    refuse_reference_files(path, input_path)  # on the bytes at hand, always

    def fresh() -> dict[str, Any]:
        return probe_data(path, input_path=input_path, ffprobe=ffprobe, url=url)

    if cache is None:
        return read_probe(path, fresh(), input_path)
    key = "probe-" + hashlib.sha256(f"{PROBE_CACHE_VERSION}\n{digests(path)}".encode()).hexdigest()
    with tempfile.TemporaryDirectory(prefix="scenerender-probe-") as tmp:
        entry = Path(tmp) / "probe.json"
        if cache.fetch(key, entry):
            try:
                data = json.loads(entry.read_text(encoding="utf-8"))
            except ValueError:
                data = None
            if isinstance(data, dict):
                reused.append(input_path)
                return read_probe(path, data, input_path)
        data = fresh()
        entry.write_text(json.dumps(data), encoding="utf-8")
        cache.store(key, entry)
    return read_probe(path, data, input_path)


def fetch_and_probe(
    spec: JobSpec,
    resolver: InputResolver,
    ffprobe: str,
    on_fraction: Callable[[float], None] | None = None,
    *,
    cache: SegmentCache | None = None,
    digests: Digests | None = None,
    reused: list[str] | None = None,
    all_errors: bool = False,
    problems: list[SceneRenderError] | None = None,
) -> dict[str, MediaInfo]:
    """Fetch and probe every distinct input the render will use, in parallel.

    With a cache, a file probed before (same bytes) is not probed again; ``reused`` lists them.
    ``all_errors``: an input that fails does not stop the others; every input's problem is
    raised together (a user at a terminal fixes them in one round; the pipeline stops at the first).
    ``problems``: as ``all_errors``, but they are added to this list and the inputs that could
    be probed are returned (``validate --probe`` goes on to place those).
    """
    all_errors = all_errors or problems is not None
    digests = digests or Digests()
    reused = reused if reused is not None else []
    wanted: dict[str, str] = {}
    for input_path, url in spec.inputs(muted_tracks=False):
        wanted.setdefault(url, input_path)
    lock = threading.Lock()
    done = 0
    # Several URLs may name one file (a reused sound, a link): it is probed once, and a
    # thread that wants a file another is probing waits for that probe instead of starting one.
    by_file: dict[Path, Future[MediaInfo]] = {}

    failed: list[tuple[int, InputError]] = []
    order = {url: n for n, url in enumerate(wanted)}

    def one_or_record(item: tuple[str, str]) -> tuple[str, MediaInfo | None]:
        try:
            return one(item)
        except InputError as exc:
            if not all_errors:
                raise
            with lock:
                if all(exc is not seen for _, seen in failed):  # one file behind several URLs: once
                    failed.append((order[item[0]], exc))
            return item[0], None

    def one(item: tuple[str, str]) -> tuple[str, MediaInfo]:
        nonlocal done
        url, input_path = item
        local = resolver.resolve(url, input_path)
        with lock:
            known = by_file.get(local)
            if known is None:
                mine: Future[MediaInfo] = Future()
                by_file[local] = mine
        if known is not None:
            info = known.result()
        else:
            try:
                info = _probe_cached(local, input_path, ffprobe, cache, digests, reused, url)
            except BaseException as exc:
                mine.set_exception(exc)
                raise
            mine.set_result(info)
        with lock:
            done += 1
            if on_fraction:
                on_fraction(done / len(wanted))
        return url, info

    # A few at a time: each probe is a process, and more than the cores only costs memory.
    pool = ThreadPoolExecutor(max_workers=min(4, len(wanted)))
    try:
        probed = dict(pool.map(one_or_record, wanted.items()))
        if failed:
            found: list[SceneRenderError] = [exc for _, exc in sorted(failed, key=lambda pair: pair[0])]
            if problems is None:
                raise collected(found)
            problems.extend(found)
        return {url: info for url, info in probed.items() if info is not None}
    except BaseException:
        # A failed input or a stop: downloads in flight end at their next chunk, and those not
        # started never start, so the error (or the exit) waits for no download of the rest.
        resolver.stop()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def render(
    spec: JobSpec,
    out_path: Path,
    resolver_factory: Callable[[Path], InputResolver],
    *,
    options: RenderOptions | None = None,
    progress: ProgressFn | None = None,
) -> RenderResult:
    """Render ``spec`` to ``out_path``; nothing appears there unless the whole render succeeds."""
    opts = options or RenderOptions()
    tracker = _Progress(progress)
    timings: dict[str, float] = {}
    runner = FFmpegRunner(opts.ffmpeg, timeout_s=opts.timeout_s)
    with private_dir(opts.work_dir) as work:
        inputs_dir = work / "inputs"
        inputs_dir.mkdir()
        t0 = time.monotonic()
        digests, probes_reused = Digests(), list[str]()
        probes = fetch_and_probe(
            spec,
            resolver_factory(inputs_dir),
            opts.ffprobe,
            lambda f: tracker.stage("fetch", f),
            cache=opts.segment_cache,
            digests=digests,
            reused=probes_reused,
            all_errors=opts.all_errors,
        )
        timeline = build_timeline(spec, probes)
        if opts.limits is not None:
            # Only probing tells how long a segment without a duration is: refused here, before
            # a single frame or sample is rendered (a 2,000 h scene would fill the disk first).
            opts.limits.check(float(timeline.duration), (timeline.width, timeline.height))
        tracker.finish("fetch")
        timings["fetch_probe_s"] = time.monotonic() - t0

        # Video and audio do not depend on each other, so they share the cores. With the video
        # only copied, its pieces are the sources themselves and the cores are the audio's: its
        # encode is shared among them and muxed into the output as it comes. With segments to
        # encode, the audio pass is one more job for the encoders' cores, not a process beside
        # one encoder per core: that would only add its memory to theirs at the peak.
        t1 = time.monotonic()
        audio_out = work / "audio.m4a"
        list_path = work / "video.ffconcat"
        part = out_path.with_name(f".{out_path.name}.part-{os.getpid()}")
        blockers = plan.copy_blockers(timeline)
        # Joined by their pictures' durations, not the files': the audio is the audio pass's.
        copied = [plan.VideoPart(seg.source.path, seg.duration, _label(seg)) for seg in timeline.segments]
        final = None if blockers else FinalMux(copied, list_path, part)
        audio_cores = 1 if blockers else opts.cores
        made: list[AudioMade] = []
        maker = deliverables.Maker(spec, timeline, work, runner) if opts.deliverables else None
        if maker is not None and final is not None and not spec.output.burn_captions:
            # Copied and not burned over: the output's picture is its sources' packets, so the
            # picture's sidecars and checks start now, on the cores the audio leaves idle.
            maker.start_from_sources()

        def audio_job() -> None:
            started = time.monotonic()
            made.append(
                make_audio(
                    timeline,
                    work,
                    audio_out,
                    runner,
                    lambda f: tracker.stage("audio", f),
                    opts.segment_cache,
                    digests,
                    cores=audio_cores,
                    final=final,
                )
            )
            timings["audio_s"] = time.monotonic() - started

        try:
            if final is not None:
                with ThreadPoolExecutor(max_workers=1, thread_name_prefix="audio") as audio_pool:
                    try:
                        audio_pool.submit(audio_job).result()
                    except BaseException:
                        # Ctrl-C/SIGTERM in this thread: the audio's encoders stop now, or
                        # leaving the pool would wait for them to finish.
                        runner.cancel()
                        raise
                pieces, counts = final.pieces, SegmentCounts()
            else:
                pieces, counts = _normalize_segments(
                    timeline, work, runner, opts, tracker, [seg.url for seg in spec.segments], digests, audio_job
                )
                timings["video_s"] = time.monotonic() - t1
            audio = made[0]
            tracker.finish("video")
            tracker.finish("audio")

            t2 = time.monotonic()
            if not audio.muxed:
                mux = plan.assemble_command(timeline, pieces, list_path, audio_out, part)
                write_files(mux.files)
                runner.run(mux.argv, duration_s=mux.duration_s, on_progress=lambda f: tracker.stage("mux", f))
            tracker.finish("mux")
            timings["mux_s"] = time.monotonic() - t2
            # Before captions are burned: the certificate finds each part's frames by their
            # bytes, which a burn re-encodes (frame for frame, so the timing it measures stays).
            t_sync = time.monotonic()
            certificate = sync.certify(part, timeline, pieces, runner, work)
            timings["sync_s"] = time.monotonic() - t_sync
            if spec.output.burn_captions:
                t_burn = time.monotonic()
                deliverables.burn_captions(spec, timeline, part, work, runner)
                timings["burn_captions_s"] = time.monotonic() - t_burn
            t3 = time.monotonic()
            result = measure_output(part, audio.scan)
            result.sync = certificate.to_dict()
            timings["measure_s"] = time.monotonic() - t3
            extras = (
                maker.finish(
                    part, loudness_lufs=result.loudness_lufs, true_peak_db=result.true_peak_db, mix_gain=audio.gain
                )
                if maker is not None
                else deliverables.Deliverables()
            )
            timings.update(extras.timings)
            publish_file(part, out_path)
            result.sidecars = extras.publish(out_path)
            result.qc = extras.qc
        except BaseException:
            runner.cancel()  # what the sidecars still run is moot now
            raise
        finally:
            if maker is not None:
                maker.close()
            part.unlink(missing_ok=True)
        tracker.finish("measure")
    timings["total_s"] = time.monotonic() - t0
    result.timings = {k: round(v, 3) for k, v in timings.items()}
    if spec.output.burn_captions:
        blockers = [*blockers, deliverables.BURN_BLOCKER]
        result.captions_burned = True
    result.fast_path = not blockers
    result.fast_path_blockers = blockers
    result.segments_encoded = counts.encoded
    result.segments_reused = counts.reused
    result.segments_from_helpers = counts.from_helpers
    result.audio_reused = audio.reused
    result.audio_encoders = audio.encoders
    result.probes_reused = len(probes_reused)
    result.segments_copied = 0 if blockers else len(timeline.segments)
    return result


@dataclass
class SegmentCounts:
    encoded: int = 0  # segments made by an encode of this render (here or by a helper)
    reused: int = 0  # taken from the cache, encoded by an earlier render
    from_helpers: int = 0  # of ``encoded``, those another worker encoded

    @classmethod
    def of(cls, pieces: set[tuple[int, str]]) -> SegmentCounts:
        """Counts by segment from how each piece was made: (segment index, "reused" | "encoded" | "helper").

        A segment is reused when all of its pieces were, and came from helpers when any did."""
        made: dict[int, set[str]] = {}
        for index, outcome in pieces:
            made.setdefault(index, set()).add(outcome)
        return cls(
            encoded=sum(outcomes != {"reused"} for outcomes in made.values()),
            reused=sum(outcomes == {"reused"} for outcomes in made.values()),
            from_helpers=sum("helper" in outcomes for outcomes in made.values()),
        )


def _normalize_segments(
    timeline: Timeline,
    work: Path,
    runner: FFmpegRunner,
    opts: RenderOptions,
    tracker: _Progress,
    urls: list[str],
    file_digests: Digests,
    audio_job: Callable[[], None],
) -> tuple[list[plan.VideoPart], SegmentCounts]:
    """Normalise every segment: each distinct (source, parameters) is encoded once, in parallel,
    or taken from the cache, or — when a ``SegmentClaims`` is given — by whichever worker claims it.

    ``audio_job`` (the audio pass, one core) runs on the same cores: as the last job of the
    queue when the encodes fill every core, beside them when they leave one free.
    """
    norm_dir = work / "normalized"
    norm_dir.mkdir()
    enc = plan.EncodeSettings.for_timeline(timeline)
    limit = plan.piece_limit(enc, timeline.fps)
    keyframes_of = functools.cache(keyframe_times)  # a source used by several segments is read once
    keyframes = {
        seg.index: times
        for seg in timeline.segments
        if seg.frames > limit and (times := keyframes_of(seg.source.path)) is not None
    }

    def jobs_for(count: int) -> tuple[int, int]:
        return plan.parallel_jobs(
            opts.parallelism, count, opts.cpus, memory_mb=opts.memory_mb, frame_size=(timeline.width, timeline.height)
        )

    pieces = plan.plan_pieces(timeline, enc, keyframes, cores=opts.cores, jobs_for=jobs_for)
    workers, threads = jobs_for(len(pieces))
    commands = [
        plan.normalize_command(piece, timeline, norm_dir / f"{piece.segment.index:04d}-{n:03d}.mp4", enc)
        for n, piece in enumerate(pieces)
    ]
    cache, claims = opts.segment_cache, opts.segment_claims
    digests: dict[Path, str] = {}
    for seg in timeline.segments:
        source = seg.source.path.resolve()
        if source not in digests:
            # Without a cache, identical paths are identical content for the length of this render.
            digests[source] = file_digests(source) if cache is not None else str(source)
    units: dict[str, list[int]] = {}  # one encode serves every piece with the same address
    templates: dict[str, list[str]] = {}
    for i, (piece, command) in enumerate(zip(pieces, commands, strict=True)):
        template = segment_template(command.argv, piece.segment.source.path, command.output)
        key = segment_key(digests[piece.segment.source.path.resolve()], template)
        units.setdefault(key, []).append(i)
        templates.setdefault(key, template)

    total = sum(c.duration_s for c in commands)
    done: dict[int, float] = {}
    lock = threading.Lock()
    outcomes: dict[str, Literal["reused", "encoded", "helper"]] = {}

    def report(key: str, fraction: float) -> None:
        with lock:
            for i in units[key]:
                done[i] = fraction * commands[i].duration_s
            tracker.stage("video", sum(done.values()) / total)

    def first_output(key: str) -> Path:
        return commands[units[key][0]].output

    def encode(key: str) -> None:
        i = units[key][0]
        argv = materialize(
            templates[key],
            ffmpeg="ffmpeg",
            source=pieces[i].segment.source.path,
            output=first_output(key),
            threads=threads,
        )
        runner.run(argv, duration_s=commands[i].duration_s, on_progress=lambda f: report(key, f))

    def cached(key: str) -> bool:
        return cache is not None and cache.fetch(key, first_output(key))

    def task(key: str) -> SegmentTask:
        i = units[key][0]
        seg = pieces[i].segment
        return SegmentTask(
            key=key,
            index=seg.index,
            source_url=urls[seg.index],
            input_path=f"segments[{seg.index}].url",
            source_digest=digests[seg.source.path.resolve()],
            template=templates[key],
            duration_s=commands[i].duration_s,
        )

    # Cache lookups first, in parallel: what is left is the work to share out.
    with ThreadPoolExecutor(max_workers=max(workers, 4)) as pool:
        hits = dict(zip(units, pool.map(cached, units), strict=True))

    def cost(key: str) -> float:
        piece = pieces[units[key][0]]
        return plan.encode_cost(piece.segment, piece.frames, (timeline.width, timeline.height))

    # Dearest first: what is left at the end is short, and the cores finish together.
    pending = sorted((key for key, hit in hits.items() if not hit), key=cost, reverse=True)
    for key, hit in hits.items():
        if hit:
            outcomes[key] = "reused"
            report(key, 1.0)
    shared = claims is not None and cache is not None and len(pending) >= opts.split_min_segments > 0
    if shared and claims is not None:
        claims.offer([task(key) for key in pending])
    waiting_rounds = 0

    def settle(key: str) -> None:
        """Encode ``key`` here, or take it from whoever did."""
        nonlocal waiting_rounds
        if not shared or claims is None:
            encode(key)
            if cache is not None:
                cache.store(key, first_output(key))
            outcomes[key] = "encoded"
            return
        state = claims.claim(key)
        if state == "done" and cached(key):
            outcomes[key] = "helper"
            report(key, 1.0)
            return
        if state == "held":
            # Another worker is encoding it: look again once the rest of the queue has been tried.
            with lock:
                queue.append(partial(settle, key))
                waiting_rounds += 1
                idle = waiting_rounds >= len(queue)
                if idle:
                    waiting_rounds = 0
            if idle:
                time.sleep(opts.claim_poll_s)
            return
        with lock:
            waiting_rounds = 0
        try:
            with claims.holding(key):
                encode(key)
        except BaseException:
            claims.release(key)
            raise
        if cache is not None and cache.store(key, first_output(key)):
            claims.done(key)
        else:
            claims.release(key)
        outcomes[key] = "encoded"

    # Dearest first, the audio pass among the encodes by its own cost: what is left at the end
    # is short, and the cores finish together. Queued last, the audio ran alone after pieces of
    # equal length that ended together (a 30 s scene of long segments: 1.8 s on one core of
    # two). With fewer encodes at once than cores (fewer segments, or a memory budget), each
    # has several threads (plan.parallel_jobs) and the audio runs beside them rather than
    # after them on one core.
    queue: deque[Callable[[], None]] = deque(partial(settle, key) for key in pending)
    beside = workers < opts.cores
    if not beside:
        audio_s = plan.audio_cost(timeline)
        queue.insert(sum(cost(key) > audio_s for key in pending), audio_job)
    failed = threading.Event()

    def next_job() -> Callable[[], None] | None:
        with lock:
            return queue.popleft() if queue and not failed.is_set() else None

    def drain() -> None:
        try:
            while (job := next_job()) is not None:
                job()
        except BaseException:
            failed.set()  # the render is lost: the other threads take nothing more
            raise

    with ThreadPoolExecutor(max_workers=workers + beside) as pool:
        drains = [pool.submit(drain) for _ in range(workers)] + ([pool.submit(audio_job)] if beside else [])
        try:
            # The first failure is the cause: the others are only stopped because of it.
            first = wait(drains, return_when=FIRST_EXCEPTION).done
            cause = next((f.exception() for f in first if f.exception() is not None), None)
            if cause is not None:
                raise cause
        except BaseException:
            # Ctrl-C/SIGTERM here, or one job failed: the other drains take nothing more and
            # their encodes stop now, or leaving the pool would wait for the whole queue.
            failed.set()
            runner.cancel()
            raise
    for key, indices in units.items():
        for i in indices[1:]:
            _link(first_output(key), commands[i].output)
    parts = [
        plan.VideoPart(
            c.output,
            (p.frames + p.hold_frames) / timeline.fps,
            _label(p.segment) + (f" from its frame {p.first_frame}" if p.first_frame else ""),
        )
        for p, c in zip(pieces, commands, strict=True)
    ]
    return parts, SegmentCounts.of(
        {(pieces[i].segment.index, outcomes[key]) for key, indices in units.items() for i in indices}
    )


def _label(seg: PlacedSegment) -> str:
    return f"segments[{seg.index}] ({seg.id!r})"


def _link(src: Path, dest: Path) -> None:
    try:
        os.link(src, dest)
    except OSError:
        shutil.copyfile(src, dest)


def measure_output(path: Path, scan: plan.LoudnessScan) -> RenderResult:
    """The result object, measured on the file itself (not taken from the plan)."""
    movie = read_movie(path)
    lufs = None if scan.silent else scan.integrated_lufs
    peak = None if scan.silent else scan.true_peak_db
    return RenderResult(
        duration_s=round(movie.duration_s, 3),
        width=movie.video.width,
        height=movie.video.height,
        fps=round(float(movie.video.frame_rate), 3),
        size_bytes=path.stat().st_size,
        loudness_lufs=lufs,
        true_peak_db=peak,
        av_drift_ms=round((movie.audio.duration_s - movie.video.duration_s) * 1000, 1),
    )
