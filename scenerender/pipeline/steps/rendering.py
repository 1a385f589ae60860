"""The worker's step: one render request becomes an MP4 in the render bucket and a report.

render request ──► run_render_request ──► job RUNNING, progress ──► MP4 (+ sidecars)
                                                                ──► RenderReport published
"""

from __future__ import annotations

import dataclasses
import json
import logging
import tempfile
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

from scenerender.cloud.launcher import current_execution
from scenerender.cloud.liveness import keep_beating
from scenerender.core.cache import BlobSegmentCache
from scenerender.core.deliverables import SUFFIXES, content_type
from scenerender.core.inputs import FetchPolicy, InputResolver
from scenerender.core.render import RenderOptions, render
from scenerender.core.spec import JobSpec, parse_spec
from scenerender.core.tenancy import MediaScope, SceneLimits, check_spec
from scenerender.errors import SceneRenderError
from scenerender.messages import ErrorBlock, RenderReport, RenderRequest, RenderResultBlock
from scenerender.pipeline.budget import animated_webp_frames, check_memory
from scenerender.pipeline.steps.requests import refresh_batch
from scenerender.pipeline.workitems import ItemStore, JobSegmentClaims, worker_id
from scenerender.ports import Blobs, Bus, Jobs
from scenerender.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class WorkOutcome:
    """What the worker does with the message: ack it, or leave it for redelivery (after
    ``retry_after_s``; 0: at once). ``status`` says why, for the log: the job's final status,
    or BUSY, RETRY, skipped."""

    ack: bool
    status: str
    retry_after_s: float = 0.0


def output_uri(settings: Settings, job_id: str, run_id: str, spec: JobSpec) -> str:
    # Outputs go to the render bucket, never the spec bucket, so they cannot start jobs; each
    # run has its own folder, so a URL signed for one run never serves a later run's file.
    return f"gs://{settings.render_bucket}/renders/{job_id}/{run_id}/{spec.output.filename or job_id + '.mp4'}"


def run_render_request(
    request: RenderRequest,
    *,
    settings: Settings,
    blobs: Blobs,
    jobs: Jobs,
    bus: Bus,
    progress_writer: Callable[[str, float], None] | None = None,
    gs_download: Callable[[str, Path, int], None] | None = None,
    items: ItemStore | None = None,
) -> WorkOutcome:
    """Render one request: RUNNING, progress, MP4 uploaded, report published.

    With ``items`` (and the segment cache on), a scene with many segments to encode shares
    them with the other workers (``scenerender.pipeline.workitems``).

    Permanent errors, and exceptions outside the error tree (bugs), are reported as FAILED
    and acknowledged at once; only ``retryable`` ones (``TransientError``) leave the message
    for redelivery, up to ``settings.max_attempts``.
    """
    job_id = request.job_id
    current = jobs.get(job_id)
    if current is None or current.status.ended:
        status = current.status.value if current is not None else None
        log.info("job %s is %s; request dropped", job_id, status)
        return WorkOutcome(ack=True, status=str(status))
    attempt = jobs.mark_running(job_id, worker=worker_id(settings), execution=current_execution(settings))
    if attempt < 0:
        # Another worker is alive on this job (a duplicate request, or the request of a worker
        # killed moments ago): let this copy come back once that worker's heartbeat would be
        # stale, when its render has ended (then it is dropped) or its worker is known gone.
        # Given back at once, it would come straight back to an idle worker, BUSY again, and
        # use up the subscription's delivery attempts in seconds: dead-lettered, the job
        # would end FAILED although its worker had died and a take-over was due.
        return WorkOutcome(ack=False, status="BUSY", retry_after_s=settings.heartbeat_stale_s)
    if attempt == 0:
        return WorkOutcome(ack=True, status="skipped")
    write_job = progress_writer or (lambda stage, value: jobs.set_progress(job_id, stage, value))
    batch_id = request.batch_id
    if batch_id:
        refresh_batch(jobs, batch_id)

    last_refresh = [time.monotonic()]

    def write_progress(stage: str, value: float) -> None:
        write_job(stage, value)
        # The batch summary reads every job of the batch: refreshed every few seconds, not at
        # each progress write (the job's end refreshes it anyway).
        if batch_id and time.monotonic() - last_refresh[0] >= settings.batch_refresh_s:
            last_refresh[0] = time.monotonic()
            refresh_batch(jobs, batch_id)

    # One output folder per run, named when the run was queued: a redelivery or a retry after
    # a crash writes the same object; a later run of the job never does.
    run_id = request.run_id or current.run_id or request.spec_generation or "run"
    with heartbeat(jobs, job_id, settings.heartbeat_s):
        return _render_and_report(
            request.model_copy(update={"run_id": run_id}),
            attempt,
            settings=settings,
            blobs=blobs,
            jobs=jobs,
            bus=bus,
            progress_writer=write_progress,
            gs_download=gs_download,
            items=items,
        )


def heartbeat(jobs: Jobs, job_id: str, every_s: float) -> AbstractContextManager[None]:
    """Beat on the job while the block runs, so a stuck-job sweep can tell a live worker from a dead one."""
    return keep_beating(lambda: jobs.heartbeat(job_id), every_s, f"heartbeat-{job_id}")


def _render_and_report(
    request: RenderRequest,
    attempt: int,
    *,
    settings: Settings,
    blobs: Blobs,
    jobs: Jobs,
    bus: Bus,
    progress_writer: Callable[[str, float], None],
    gs_download: Callable[[str, Path, int], None] | None,
    items: ItemStore | None,
) -> WorkOutcome:
    job_id = request.job_id
    try:
        # ``max_spec_bytes`` is the limit of the user's file, checked where it came in. This is
        # the spec function's dump of it, every default written out, which may be larger (a
        # spec of many clips) without the user's file having been: not measured against it.
        raw = json.dumps(request.spec, ensure_ascii=False, separators=(",", ":")).encode()
        spec = parse_spec(raw, max_bytes=len(raw))
        # The spec function checked the spec; checked again here, as the request may come from elsewhere.
        check_spec(spec, settings, owner_uid=spec.owner_uid)
        policy = FetchPolicy.from_settings(settings, media_scope=MediaScope.from_settings(settings, spec.owner_uid))
        # /tmp is memory on Cloud Run: a render that cannot fit is refused with the numbers before
        # anything is fetched, and no input may be larger than what the rest leaves.
        need = None
        if settings.memory_mb:
            # An animated WebP (a small file, many times larger decoded) is read and counted by
            # its frames before anything is fetched.
            frames = animated_webp_frames(
                spec,
                lambda url: _object_size(blobs, url),
                lambda url, cap: blobs.read_bytes(url, max_bytes=cap),
            )
            need = check_memory(spec, settings, lambda url: _object_size(blobs, url), frames)
        if need is not None:
            largest = max((_object_size(blobs, url) or 0 for _, url in spec.inputs()), default=0)
            # The WebPs counted above take their share again once fetched (with any WebP that
            # is not named so), from what the rest leaves.
            policy = dataclasses.replace(
                policy,
                max_bytes=min(policy.max_bytes, max(need.input_cap, largest)),
                memory_left=need.input_cap + need.decoded,
            )
        download = gs_download or (lambda uri, dest, cap: blobs.download(uri, dest, max_bytes=cap))
        write = progress_writer
        claims = (
            JobSegmentClaims(job_id, items, bus, settings)
            if items is not None and settings.segment_cache and settings.split_min_segments > 0
            else None
        )
        with tempfile.TemporaryDirectory(prefix="scenerender-out-", dir=settings.work_dir or None) as tmp:
            local = Path(tmp) / "render.mp4"
            result = render(
                spec,
                local,
                lambda d: InputResolver(d, policy, gs_download=download),
                options=RenderOptions.from_settings(
                    settings,
                    segment_cache=BlobSegmentCache(blobs, settings.render_bucket) if settings.segment_cache else None,
                    segment_claims=claims,
                    limits=SceneLimits.from_settings(settings),
                ),
                progress=lambda stage, value: write(stage, min(0.99, value)),
            )
            uri = output_uri(settings, job_id, request.run_id, spec)
            write("upload", 0.99)
            blobs.upload_file(local, uri, content_type="video/mp4")
            sidecar_uris = upload_sidecars(blobs, local, uri, result.sidecars)
        # The core's result (also the CLI's --json) becomes the message's block here, once.
        block = RenderResultBlock.model_validate(result.to_dict())
        report = RenderReport.completed(job_id, attempt, output_uri=uri, sidecar_uris=sidecar_uris, result=block)
    except SceneRenderError as exc:
        if exc.retryable and attempt < settings.max_attempts:
            log.warning("job %s attempt %d: %s; left for redelivery", job_id, attempt, exc.message)
            jobs.note(job_id, {"last_error": ErrorBlock.of(exc).wire()})
            return WorkOutcome(ack=False, status="RETRY")
        report = RenderReport.failed(job_id, attempt, ErrorBlock.of(exc))
    except Exception as exc:
        # A bug, or a failure nobody translated: redelivery would meet it again, so it is not
        # retried as if transient; the job ends FAILED at once, with the exception named.
        log.exception("job %s attempt %d: internal error", job_id, attempt)
        report = RenderReport.failed(job_id, attempt, ErrorBlock.internal(f"{type(exc).__name__}: {exc}"))
    bus.publish(settings.completion_topic, report.wire(), job_id=job_id, status=report.status.value)
    return WorkOutcome(ack=True, status=report.status.value)


def upload_sidecars(blobs: Blobs, local: Path, uri: str, sidecars: dict[str, str]) -> dict[str, str]:
    """Captions, stills and stems beside the MP4 under the run's prefix (``<name>.vtt`` next to
    ``<name>.mp4``); kind -> URI. docs/deliverables.md."""
    stem = uri.removesuffix(".mp4")
    uris: dict[str, str] = {}
    for kind, name in sidecars.items():
        uris[kind] = stem + SUFFIXES[kind]
        blobs.upload_file(local.with_name(name), uris[kind], content_type=content_type(kind))
    return uris


def _object_size(blobs: Blobs, url: str) -> int | None:
    """A gs:// input's size from its metadata; None for others or a missing object (the fetch says so)."""
    if not url.startswith("gs://"):
        return None
    try:
        return blobs.size(url)
    except (FileNotFoundError, SceneRenderError):
        return None
