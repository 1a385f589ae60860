"""The pipeline's steps (CONTRACT.md section 4), apart from the doors that call them.

    spec object in the spec bucket ──► accept_spec ──► job QUEUED + render request
    render request ──► run_render_request (worker) ──► MP4 in the render bucket + report
    report ──► record_report ──► job COMPLETED with a signed URL | FAILED with its error

Each step takes the stores it uses, so the Cloud Functions, the worker and the tests hand
in the real clients (on the emulators or on GCP) or, in a unit test, a fake.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from scenerender.batch import is_batch, parse_batch, scene_spec, scene_weight, spec_hash, summarize
from scenerender.cache import BlobSegmentCache
from scenerender.errors import SceneRenderError, SpecError
from scenerender.inputs import FetchPolicy, InputResolver
from scenerender.jobs import beat_is_fresh, keep_beating
from scenerender.launcher import Launcher, LaunchRecords, current_execution, launch, launcher_for
from scenerender.render import RenderOptions, render
from scenerender.settings import Settings
from scenerender.spec import JobSpec, default_job_id, parse_spec
from scenerender.workitems import ItemStore, JobSegmentClaims, worker_id

log = logging.getLogger(__name__)

SPEC_PREFIX = "jobs/"
FINALIZE = "OBJECT_FINALIZE"
TERMINAL = frozenset({"COMPLETED", "FAILED"})


class Blobs(Protocol):
    def read_bytes(self, uri: str) -> bytes: ...
    def download(self, uri: str, dest: Path, *, max_bytes: int | None = None) -> None: ...
    def upload_file(self, src: Path, uri: str, *, content_type: str) -> None: ...
    def signed_url(self, uri: str, ttl_s: int) -> tuple[str, Any]: ...


class Jobs(LaunchRecords, Protocol):
    def create_job(self, job_id: str, fields: dict[str, Any]) -> bool: ...
    def get(self, job_id: str) -> dict[str, Any] | None: ...
    def mark_running(self, job_id: str, worker: str = "", execution: str = "") -> int: ...
    def heartbeat(self, job_id: str) -> None: ...
    def claim_publish(self, job_id: str, generation: str) -> bool: ...
    def release_publish(self, job_id: str) -> None: ...
    def requeue(self, job_id: str, fields: dict[str, Any]) -> bool: ...
    def note(self, job_id: str, fields: dict[str, Any]) -> None: ...
    def unfinished(self) -> list[dict[str, Any]]: ...
    def batch_jobs(self, batch_id: str) -> list[dict[str, Any]]: ...
    def save_batch(
        self, batch_id: str, fields: dict[str, Any], summary: Callable[[float, dict[str, Any]], dict[str, Any]]
    ) -> None: ...
    def set_progress(self, job_id: str, stage: str, progress: float) -> None: ...
    def complete(self, job_id: str, output: dict[str, Any]) -> bool: ...
    def fail(self, job_id: str, error: dict[str, Any]) -> bool: ...


class Bus(Protocol):
    def publish(self, topic_name: str, payload: dict[str, Any], **attributes: str) -> str: ...
    def publish_many(self, topic_name: str, payloads: list[dict[str, Any]], **attributes: str) -> None: ...


@dataclass(frozen=True)
class SpecEvent:
    """A GCS object notification, as its Pub/Sub attributes carry it."""

    bucket: str
    name: str
    generation: str
    event_type: str

    @classmethod
    def from_attributes(cls, attributes: dict[str, str]) -> SpecEvent:
        return cls(
            bucket=attributes.get("bucketId", ""),
            name=attributes.get("objectId", ""),
            generation=attributes.get("objectGeneration", ""),
            event_type=attributes.get("eventType", ""),
        )

    @property
    def uri(self) -> str:
        return f"gs://{self.bucket}/{self.name}"

    @property
    def starts_a_job(self) -> bool:
        return self.event_type == FINALIZE and self.name.startswith(SPEC_PREFIX) and self.name.endswith(".json")


def accept_spec(
    event: SpecEvent, *, settings: Settings, blobs: Blobs, jobs: Jobs, bus: Bus, launcher: Launcher | None = None
) -> str | None:
    """Validate a dropped spec; queue its job (or record it FAILED). Returns the job id, if any.

    Redelivery of the same (bucket, object, generation) does nothing new: the job document
    is created create-only and records the spec's object and generation, and whether its
    render request was published.
    """
    if not event.starts_a_job or event.bucket != settings.spec_bucket:
        log.info("ignored object %s (%s)", event.uri, event.event_type)
        return None
    fallback_id = default_job_id(event.name)
    try:
        raw = blobs.read_bytes(event.uri)
    except FileNotFoundError:
        log.warning("spec %s vanished before it was read", event.uri)
        return None
    base: dict[str, Any] = {"spec_uri": event.uri, "spec_generation": event.generation}
    if is_batch(raw):
        return accept_batch(event, raw, settings=settings, jobs=jobs, bus=bus, launcher=launcher)
    try:
        spec = parse_spec(raw, max_bytes=settings.max_spec_bytes)
    except SpecError as exc:
        job_id = _job_id_from_raw(raw) or fallback_id
        jobs.create_job(
            job_id, {**base, "status": "FAILED", "stage": "validate", "progress": 0.0, "error": exc.to_dict()}
        )
        log.info("job %s: invalid spec: %s", job_id, exc.message)
        return job_id
    job_id = spec.job_id or fallback_id
    queued = {
        **base,
        "status": "QUEUED",
        "stage": "queued",
        "progress": 0.0,
        "attempt": 0,
        "project_id": spec.project_id,
        "scene_id": spec.scene_id,
        "owner_uid": spec.owner_uid,
        "batch_id": spec.batch_id,
    }
    if not jobs.create_job(job_id, queued):
        existing = jobs.get(job_id) or {}
        same_spec = existing.get("spec_uri") == event.uri and existing.get("spec_generation") == event.generation
        if same_spec:
            if existing.get("status") != "QUEUED" or existing.get("request_published"):
                # The request is out; its launch may have failed (jobs.run: 403, 429, 5xx). Launching
                # is its own recorded step: done only if no execution is recorded yet.
                launch_requests([job_id], jobs=jobs, settings=settings, launcher=launcher)
                log.info("job %s: event redelivered; nothing new", job_id)
                return job_id
            # An earlier delivery of this event created the job but died before publishing.
        elif not jobs.requeue(job_id, queued):
            # A new spec while the job still runs: refused, and the reason is on the job for its user.
            jobs.note(
                job_id,
                {
                    "resubmission_refused": {
                        "spec_uri": event.uri,
                        "spec_generation": event.generation,
                        "reason": f"job {job_id} is still {existing.get('status')}",
                    }
                },
            )
            log.info("job %s: re-submission refused while %s", job_id, existing.get("status"))
            return job_id
    if not jobs.claim_publish(job_id, event.generation):
        log.info("job %s: another delivery of this event sends its request", job_id)
        return job_id
    publish_request(jobs, bus, settings, job_id, render_request(job_id, event, spec))
    launch_requests([job_id], jobs=jobs, settings=settings, launcher=launcher)
    log.info("job %s queued from %s", job_id, event.uri)
    if spec.batch_id:
        refresh_batch(jobs, spec.batch_id)
    return job_id


def accept_batch(
    event: SpecEvent, raw: bytes, *, settings: Settings, jobs: Jobs, bus: Bus, launcher: Launcher | None = None
) -> str:
    """Fan a batch file out into one job per scene. Dropped again, it re-runs only the scenes
    that failed (or changed); completed and running scenes are left alone."""
    try:
        batch = parse_batch(raw)
    except SpecError as exc:
        batch_id = _job_id_from_raw(raw, key="batch_id") or default_job_id(event.name)
        jobs.save_batch(
            batch_id,
            {"spec_uri": event.uri, "error": exc.to_dict()},
            lambda _, __: {"status": "FAILED", "counts": {}, "total": 0, "progress": 0.0, "eta_s": None, "failed": []},
        )
        log.info("batch %s: invalid: %s", batch_id, exc.message)
        return batch_id
    # The batch knows its scenes before any job exists, so no view of it counts fewer.
    scene_ids = [str(scene_spec(batch, i).job_id) for i in range(len(batch.scenes))]
    refresh_batch(
        jobs,
        batch.batch_id,
        {"spec_uri": event.uri, "owner_uid": batch.owner_uid, "error": None, "scenes": scene_ids},
    )
    for index in range(len(batch.scenes)):
        spec = scene_spec(batch, index)
        job_id = str(spec.job_id)
        fields = {
            "spec_uri": event.uri,
            "spec_generation": event.generation,
            "status": "QUEUED",
            "stage": "queued",
            "progress": 0.0,
            "attempt": 0,
            "project_id": spec.project_id,
            "scene_id": spec.scene_id,
            "owner_uid": spec.owner_uid,
            "batch_id": batch.batch_id,
            "spec_hash": spec_hash(spec),
            "weight_s": scene_weight(spec),
        }
        if not jobs.create_job(job_id, fields):
            existing = jobs.get(job_id) or {}
            rerun = existing.get("status") == "FAILED" or (
                existing.get("status") == "COMPLETED" and existing.get("spec_hash") != fields["spec_hash"]
            )
            if not rerun or not jobs.requeue(job_id, fields):
                continue
        if not jobs.claim_publish(job_id, event.generation):
            continue
        publish_request(
            jobs,
            bus,
            settings,
            job_id,
            {
                "job_id": job_id,
                "spec_uri": event.uri,
                "spec_generation": event.generation,
                "spec": spec.model_dump(mode="json"),
            },
        )
    # Every scene whose request is out and has no execution yet, this delivery's or an earlier
    # one's whose launch failed: one execution, a task per scene up to launch_parallelism.
    launch_requests(scene_ids, jobs=jobs, settings=settings, launcher=launcher)
    refresh_batch(jobs, batch.batch_id)
    log.info("batch %s: %d scenes from %s", batch.batch_id, len(batch.scenes), event.uri)
    return batch.batch_id


def publish_request(jobs: Jobs, bus: Bus, settings: Settings, job_id: str, request: dict[str, Any]) -> None:
    """Send a claimed render request; on failure give the claim back so a redelivery sends it."""
    try:
        bus.publish(settings.render_topic, request, job_id=job_id)
    except Exception:
        jobs.release_publish(job_id)
        raise


def launch_requests(job_ids: list[str], *, jobs: Jobs, settings: Settings, launcher: Launcher | None) -> None:
    """Launch an execution for these jobs' published requests, unless one was launched already
    (``scenerender.launcher``). A failed launch raises: the event is redelivered and tries again."""
    launch(job_ids, jobs=jobs, launcher=launcher or launcher_for(settings), settings=settings)


def refresh_batch(jobs: Jobs, batch_id: str, fields: dict[str, Any] | None = None) -> None:
    """Recompute the batch document from its jobs (counts, weighted progress, ETA, status).

    A failed refresh is logged, never raised: the next event of any scene refreshes it again,
    and a job's own work must not fail because its batch's summary could not be written.
    """
    try:
        jobs.save_batch(
            batch_id,
            fields or {},
            lambda created, doc: summarize(jobs.batch_jobs(batch_id), created_at=created, expected=doc.get("scenes")),
        )
    except SceneRenderError as exc:
        log.warning("batch %s: summary not refreshed: %s", batch_id, exc.message)


def _job_id_from_raw(raw: bytes, key: str = "job_id") -> str | None:
    """The id an invalid spec asked for, when it is readable and valid, so its user finds the job."""
    try:
        data = json.loads(raw)
        candidate = data.get(key) if isinstance(data, dict) else None
        if isinstance(candidate, str) and default_job_id(candidate) == candidate:
            return candidate
    except (ValueError, RecursionError):
        pass
    return None


def render_request(job_id: str, event: SpecEvent, spec: JobSpec) -> dict[str, Any]:
    return {
        "job_id": job_id,
        "spec_uri": event.uri,
        "spec_generation": event.generation,
        "spec": spec.model_dump(mode="json"),
    }


def output_uri(settings: Settings, job_id: str, spec: JobSpec) -> str:
    # Outputs go to the render bucket, never the spec bucket, so they cannot start jobs.
    return f"gs://{settings.render_bucket}/renders/{job_id}/{spec.output.filename or job_id + '.mp4'}"


@dataclass
class WorkOutcome:
    """What the worker does with the message: ack it, or leave it for redelivery."""

    ack: bool
    status: str


def run_render_request(
    request: dict[str, Any],
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
    them with the other workers (``scenerender.workitems``).

    Permanent errors are reported as FAILED and acknowledged; transient ones leave the
    message for redelivery, up to ``settings.max_attempts``.
    """
    job_id = str(request["job_id"])
    current = jobs.get(job_id)
    if current is None or current.get("status") in TERMINAL:
        log.info("job %s is %s; request dropped", job_id, current and current.get("status"))
        return WorkOutcome(ack=True, status=str(current and current.get("status")))
    attempt = jobs.mark_running(job_id, worker=worker_id(), execution=current_execution())
    if attempt < 0:
        # Another worker is alive on this job (a duplicate request): let this copy come back
        # later, when that render has ended (then it is dropped) or its worker is gone.
        return WorkOutcome(ack=False, status="BUSY")
    if attempt == 0:
        return WorkOutcome(ack=True, status="skipped")
    write_job = progress_writer or (lambda stage, value: jobs.set_progress(job_id, stage, value))
    batch_id = (request.get("spec") or {}).get("batch_id")
    if batch_id:
        refresh_batch(jobs, str(batch_id))

    last_refresh = [time.monotonic()]

    def write_progress(stage: str, value: float) -> None:
        write_job(stage, value)
        # The batch summary reads every job of the batch: refreshed every few seconds, not at
        # each progress write (the job's end refreshes it anyway).
        if batch_id and time.monotonic() - last_refresh[0] >= settings.batch_refresh_s:
            last_refresh[0] = time.monotonic()
            refresh_batch(jobs, str(batch_id))

    report: dict[str, Any] = {"job_id": job_id, "attempt": attempt}
    with heartbeat(jobs, job_id, settings.heartbeat_s):
        return _render_and_report(
            request,
            job_id,
            attempt,
            report,
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
    request: dict[str, Any],
    job_id: str,
    attempt: int,
    report: dict[str, Any],
    *,
    settings: Settings,
    blobs: Blobs,
    jobs: Jobs,
    bus: Bus,
    progress_writer: Callable[[str, float], None],
    gs_download: Callable[[str, Path, int], None] | None,
    items: ItemStore | None,
) -> WorkOutcome:
    try:
        spec = parse_spec(json.dumps(request["spec"]).encode(), max_bytes=settings.max_spec_bytes)
        policy = FetchPolicy.from_settings(settings)
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
                ),
                progress=lambda stage, value: write(stage, min(0.99, value)),
            )
            uri = output_uri(settings, job_id, spec)
            write("upload", 0.99)
            blobs.upload_file(local, uri, content_type="video/mp4")
        report.update(status="COMPLETED", output_uri=uri, result=result.to_dict())
    except SceneRenderError as exc:
        if exc.retryable and attempt < settings.max_attempts:
            log.warning("job %s attempt %d: %s; left for redelivery", job_id, attempt, exc.message)
            jobs.note(job_id, {"last_error": exc.to_dict()})
            return WorkOutcome(ack=False, status="RETRY")
        report.update(status="FAILED", error=exc.to_dict())
    except Exception as exc:  # a bug or an unforeseen failure: recorded, never silent
        log.exception("job %s attempt %d: internal error", job_id, attempt)
        if attempt < settings.max_attempts:
            jobs.note(
                job_id, {"last_error": {"code": "INTERNAL", "message": f"{type(exc).__name__}: {exc}", "details": []}}
            )
            return WorkOutcome(ack=False, status="RETRY")
        report.update(
            status="FAILED", error={"code": "INTERNAL", "message": f"{type(exc).__name__}: {exc}", "details": []}
        )
    bus.publish(settings.completion_topic, report, job_id=job_id, status=report["status"])
    return WorkOutcome(ack=True, status=report["status"])


def record_report(report: dict[str, Any], *, settings: Settings, blobs: Blobs, jobs: Jobs) -> bool:
    """Write the renderer's report on the job: COMPLETED with a signed URL, or FAILED."""
    job_id = str(report["job_id"])
    if report.get("status") == "COMPLETED":
        uri = str(report["output_uri"])
        url, expires = blobs.signed_url(uri, settings.signed_url_ttl_s)
        output = {"uri": uri, "url": url, "url_expires_at": expires, **report.get("result", {})}
        changed = jobs.complete(job_id, output)
    else:
        error = report.get("error") or {"code": "INTERNAL", "message": "renderer reported no error", "details": []}
        changed = jobs.fail(job_id, error)
    batch_id = (jobs.get(job_id) or {}).get("batch_id")
    if batch_id:
        refresh_batch(jobs, str(batch_id))
    return changed


def record_dead_letter(
    request: dict[str, Any], attributes: dict[str, str], *, jobs: Jobs, stale_after_s: float
) -> bool:
    """A render request Pub/Sub gave up on: its job ends FAILED with the last error seen.

    Without this a request that exhausted its deliveries would leave its job QUEUED or
    RUNNING for ever.
    """
    job_id = str(request.get("job_id", ""))
    if not job_id:
        log.error("dead-lettered message without a job id dropped")
        return False
    doc = jobs.get(job_id) or {}
    if doc.get("status") == "RUNNING" and beat_is_fresh(doc.get("heartbeat_at"), stale_after_s):
        # A worker is alive on the job: what ran out of deliveries was a duplicate copy.
        log.info("job %s: dead-lettered duplicate of a running job dropped", job_id)
        return False
    deliveries = attributes.get("CloudPubSubDeadLetterSourceDeliveryCount", "?")
    last = doc.get("last_error") or {}
    error = {
        "code": last.get("code") or "INTERNAL",
        "message": f"gave up after {deliveries} deliveries"
        + (f"; last error: {last.get('message')}" if last.get("message") else ""),
        "details": last.get("details") or [],
    }
    return jobs.fail(job_id, error)


def spec_object_name(job_id: str) -> str:
    return f"{SPEC_PREFIX}{job_id}.json"


def submit_spec_bytes(
    raw: bytes, *, settings: Settings, write: Callable[[str, bytes], Any], name_hint: str = ""
) -> tuple[str, str]:
    """Validate a spec and write it under ``jobs/`` in the spec bucket: (job_id, uri).

    The spec takes the same path as a dropped file; validating first gives the client its
    errors at once instead of a FAILED job to look up.
    """
    spec = parse_spec(raw, max_bytes=settings.max_spec_bytes)
    # Without a job_id in the spec the pipeline derives it from the object name, so the
    # object is named after the id the client is told.
    job_id = spec.job_id or default_job_id(name_hint or f"job-{os.urandom(4).hex()}")
    uri = f"gs://{settings.spec_bucket}/{spec_object_name(job_id)}"
    write(uri, raw)
    return job_id, uri
