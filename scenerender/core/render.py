"""The render flow: fetch -> probe -> timeline -> plan -> run -> measure.

This is the one function the CLI, the worker and the tests call; it knows nothing of
the cloud beyond the ``InputResolver`` it is handed.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from scenerender.core import deliverables, plan, sync
from scenerender.core.audio import AudioMade, make_audio
from scenerender.core.cache import Digests, SegmentCache
from scenerender.core.encode_queue import SegmentClaims, SegmentCounts, normalize_segments, segment_label
from scenerender.core.fetch import fetch_and_probe
from scenerender.core.ffmpeg import FFmpegRunner, publish_file, write_files
from scenerender.core.inputs import InputResolver
from scenerender.core.mp4 import read_movie
from scenerender.core.spec import JobSpec
from scenerender.core.tenancy import SceneLimits
from scenerender.core.timeline import build_timeline
from scenerender.errors import SceneRenderError
from scenerender.settings import Settings

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
    parallel_aac: bool = True  # the copy path's AAC encode shared among the cores (docs/performance.md)
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
                "parallel_aac": settings.parallel_aac,
                "timeout_s": float(settings.render_timeout_s),
                "work_dir": settings.work_dir or None,
                **overrides,
            }
        )


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
    try:
        path = Path(tempfile.mkdtemp(prefix="scenerender-", dir=base or None))
    except OSError as exc:
        # The deployment's folder, not the spec's: INTERNAL (exit 1), naming the setting to fix.
        where = (
            f"{base} ({Settings.env_name('work_dir')})" if base else f"the system temp folder ({tempfile.gettempdir()})"
        )
        raise SceneRenderError(
            f"no private work folder can be made in {where}: {exc.strerror or exc}; "
            "name an existing folder this process may write to"
        ) from None
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


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
            ffmpeg=opts.ffmpeg,
        )
        timeline = build_timeline(spec, probes)
        if opts.limits is not None:
            # Only probing tells how long a segment without a duration is: refused here, before
            # a single frame or sample is rendered (a 2,000 h scene would fill the disk first).
            opts.limits.check(float(timeline.duration), (timeline.width, timeline.height))
        tracker.finish("fetch")
        timings["fetch_probe_s"] = time.monotonic() - t0

        # Video and audio do not depend on each other, so they share the cores. With the video
        # only copied, its pieces are the sources themselves and the cores are the audio's (its
        # encode shared among them: ``parallel_aac``), and the final mux takes the joined frames
        # as they are encoded: no process more, nothing left to mux once the encoders end.
        # With segments to encode, the audio pass is one more job for the encoders' cores, not
        # a process beside one encoder per core: that would only add its memory to theirs at the peak.
        t1 = time.monotonic()
        audio_out = work / "audio.m4a"
        list_path = work / "video.ffconcat"
        part = out_path.with_name(f".{out_path.name}.part-{os.getpid()}")
        blockers = plan.copy_blockers(timeline)
        # Joined by their pictures' durations, not the files': the audio is the audio pass's.
        copied = [plan.VideoPart(s.source.path, s.duration, segment_label(s)) for s in timeline.segments]

        certifier = sync.Certifier(timeline, runner, work)

        def final_mux(fd: int) -> plan.Command:
            # The certificate's decode of the output's sound, made of the packets as they are muxed.
            decode = certifier.mux_outputs(1)
            measure = (decode.argv, decode.files) if decode is not None else ((), {})
            return plan.assemble_command(timeline, copied, list_path, fd, part, audio_copy=audio_out, measure=measure)

        made: list[AudioMade] = []
        # Normalised segments burn the captions in their own encodes; copied ones, after the render.
        burn_in_segments = spec.output.burn_captions and bool(blockers)
        maker = deliverables.Maker(spec, timeline, work, runner) if opts.deliverables else None
        if maker is not None and not blockers and not spec.output.burn_captions:
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
                    cores=1 if blockers else opts.cores,
                    joined_into=None if blockers or not opts.parallel_aac else final_mux,
                )
            )
            timings["audio_s"] = time.monotonic() - started

        try:
            if not blockers:
                # The certificate's references are read beside the audio: on this path the
                # render is over once its audio is.
                certifier.start()
                _run_alone(audio_job, runner)
                pieces, counts = copied, SegmentCounts()
            else:
                # Burned pieces are neither cached nor shared: their script is in this private
                # dir, so its path, which their cache address holds, names nothing another
                # render or worker could read.
                captions = deliverables.caption_script(spec, timeline, work) if burn_in_segments else None
                pieces, counts = normalize_segments(
                    timeline,
                    work,
                    runner,
                    urls=[seg.url for seg in spec.segments],
                    file_digests=digests,
                    audio_job=audio_job,
                    on_fraction=lambda f: tracker.stage("video", f),
                    parallelism=opts.parallelism,
                    cores=opts.cores,
                    memory_mb=opts.memory_mb,
                    cache=None if captions else opts.segment_cache,
                    claims=None if captions else opts.segment_claims,
                    split_min_segments=opts.split_min_segments,
                    claim_poll_s=opts.claim_poll_s,
                    captions=captions,
                )
                timings["video_s"] = time.monotonic() - t1
                certifier.start()  # beside the final mux: beside the encoders, it would add to their peak
            audio = made[0]
            tracker.finish("video")
            tracker.finish("audio")

            t2 = time.monotonic()
            if not audio.joined_into:
                mux = plan.assemble_command(timeline, pieces, list_path, audio_out, part)
                write_files(mux.files)
                runner.run(mux.argv, duration_s=mux.duration_s, on_progress=lambda f: tracker.stage("mux", f))
            tracker.finish("mux")
            timings["mux_s"] = time.monotonic() - t2
            # Before captions are burned over copied segments: the certificate finds each part's
            # frames by their bytes, which a burn re-encodes (frame for frame, so the timing it
            # measures stays). Normalised segments burned them in their own encodes.
            t_sync = time.monotonic()
            certificate = certifier.certify(part, pieces, muxed=audio.joined_into)
            timings["sync_s"] = time.monotonic() - t_sync
            missing_glyphs: frozenset[int] = frozenset()
            if spec.output.burn_captions and maker is not None:  # for the report (qc)
                missing_glyphs = deliverables.check_glyphs(spec, timeline, work, runner)
            if spec.output.burn_captions and not burn_in_segments:
                t_burn = time.monotonic()
                deliverables.burn_captions(spec, timeline, part, work, runner)
                timings["burn_captions_s"] = time.monotonic() - t_burn
            t3 = time.monotonic()
            result = measure_output(part, audio.scan)
            result.sync = certificate.to_dict()
            timings["measure_s"] = time.monotonic() - t3
            extras = (
                maker.finish(
                    part,
                    loudness_lufs=result.loudness_lufs,
                    true_peak_db=result.true_peak_db,
                    mix_gain=audio.gain,
                    missing_glyphs=missing_glyphs,
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
            certifier.close()
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


def _run_alone(job: Callable[[], None], runner: FFmpegRunner) -> None:
    """``job`` on a thread of its own, so that a stop (Ctrl-C, SIGTERM) reaching this thread
    cancels its ffmpeg processes at once instead of waiting for them to finish."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="audio") as pool:
        try:
            pool.submit(job).result()
        except BaseException:
            runner.cancel()
            raise


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
