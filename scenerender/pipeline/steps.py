"""The pipeline's steps (CONTRACT.md section 4), apart from the doors that call them.

    spec object in the spec bucket ──► accept_spec ──► job QUEUED + render request
    render request ──► run_render_request (worker) ──► MP4 in the render bucket + report
    report ──► record_report ──► job COMPLETED with a signed URL | FAILED with its error

Each step takes the stores it uses, so the Cloud Functions, the worker and the tests hand
in the real clients (on the emulators or on GCP) or, in a unit test, a fake.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import logging
import os
import secrets
import tempfile
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from scenerender.cloud.jobs import beat_is_fresh, keep_beating, may_take
from scenerender.cloud.launcher import Launcher, LaunchRecords, current_execution, launch, launcher_for
from scenerender.core.cache import BlobSegmentCache
from scenerender.core.inputs import FetchPolicy, InputResolver
from scenerender.core.render import RenderOptions, render
from scenerender.core.spec import JobSpec, default_job_id, parse_spec
from scenerender.core.tenancy import (
    MediaScope,
    SceneLimits,
    check_spec,
    job_id_from_object,
    object_size_refusal,
    require_owner,
    valid_job_id,
)
from scenerender.errors import ErrorDetail, InputRefusedError, LimitExceededError, SceneRenderError, SpecError
from scenerender.pipeline.batch import BatchSpec, is_batch, parse_batch, scene_spec, scene_weight, spec_hash, summarize
from scenerender.pipeline.budget import check_memory
from scenerender.pipeline.workitems import ItemStore, JobSegmentClaims, worker_id
from scenerender.settings import Settings

log = logging.getLogger(__name__)

SPEC_PREFIX = "jobs/"
FINALIZE = "OBJECT_FINALIZE"
TERMINAL = frozenset({"COMPLETED", "FAILED"})


class Blobs(Protocol):
    def read_bytes(self, uri: str, *, generation: str | None = None, max_bytes: int | None = None) -> bytes: ...
    def size(self, uri: str, *, generation: str | None = None) -> int: ...
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
    def get_batch(self, batch_id: str) -> dict[str, Any] | None: ...
    def claim_batch(
        self, batch_id: str, owner_uid: str | None, fields: dict[str, Any], initial: dict[str, Any] | None = None
    ) -> str | None: ...
    def record_refusal(self, refusal_id: str, fields: dict[str, Any]) -> None: ...
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
    """Validate a dropped spec; queue its job (or record why not). Returns the job id, if any.

    The object is read at exactly the event's generation, after its size is read from its
    metadata: a replaced generation is gone (its successor has its own event) and an
    oversized object is refused unread. Redelivery of the same (bucket, object, generation)
    does nothing new: the job document is created create-only and records the spec's object
    and generation, and whether its render request was published.

    A job belongs to its first owner (CONTRACT.md section 5): another owner's spec for it
    changes nothing and is recorded in the refusals collection, which that job's owner never
    reads; the same goes for a batch id. Limits and media scope are checked before any work.
    """
    if not event.starts_a_job or event.bucket != settings.spec_bucket:
        log.info("ignored object %s (%s)", event.uri, event.event_type)
        return None
    named_id = _object_job_id(event.name)
    try:
        raw = read_spec_object(event, settings, blobs)
    except FileNotFoundError:
        log.info("spec %s generation %s is gone before it was read (replaced or deleted)", event.uri, event.generation)
        return None
    except LimitExceededError as exc:
        _refuse(event, jobs, job_id=named_id, owner_uid=None, error=exc.to_dict())
        log.info("spec %s: refused unread: %s", event.uri, exc.message)
        return named_id
    if is_batch(raw):
        return accept_batch(event, raw, settings=settings, jobs=jobs, bus=bus, launcher=launcher)
    job_id = _job_id_from_raw(raw) or named_id
    owner: str | None = _job_id_from_raw(raw, key="owner_uid")
    try:
        spec = parse_spec(raw, max_bytes=settings.max_spec_bytes)
        job_id = spec.job_id or job_id_from_object(event.name)
        owner = require_owner(spec)
        check_spec(spec, settings, owner_uid=owner)
    except (SpecError, InputRefusedError) as exc:
        _refuse(event, jobs, job_id=job_id, owner_uid=owner, error=exc.to_dict())
        log.info("job %s: refused: %s", job_id, exc.message)
        return job_id
    run_id = new_run_id()
    queued: dict[str, Any] = {
        "spec_uri": event.uri,
        "spec_generation": event.generation,
        "status": "QUEUED",
        "stage": "queued",
        "progress": 0.0,
        "attempt": 0,
        "project_id": spec.project_id,
        "scene_id": spec.scene_id,
        "owner_uid": owner,
        "batch_id": spec.batch_id,
        "run_id": run_id,
    }
    joined = summarize([], created_at=time.time(), expected=[job_id])
    if spec.batch_id and jobs.claim_batch(spec.batch_id, owner, {}, joined) is not None:
        _refuse_conflict(event, jobs, job_id=job_id, owner_uid=owner, batch_id=spec.batch_id, what="batch")
        return job_id
    if not jobs.create_job(job_id, queued):
        existing = jobs.get(job_id) or {}
        if not may_take(existing, owner):
            _refuse_conflict(event, jobs, job_id=job_id, owner_uid=owner, batch_id=spec.batch_id, what="job")
            return job_id
        if _same_event(existing, event):
            if existing.get("status") != "QUEUED" or existing.get("request_published"):
                # The request is out; its launch may have failed (jobs.run: 403, 429, 5xx). Launching
                # is its own recorded step: done only if no execution is recorded yet.
                launch_requests([job_id], jobs=jobs, settings=settings, launcher=launcher)
                log.info("job %s: event redelivered; nothing new", job_id)
                return job_id
            # An earlier delivery of this event created the job but died before publishing.
            run_id = str(existing.get("run_id") or run_id)
        elif _is_stale(existing, event):
            log.info("job %s: generation %s is older than the accepted one; nothing new", job_id, event.generation)
            return job_id
        elif not jobs.requeue(job_id, queued):
            if not may_take(jobs.get(job_id) or {}, owner):  # taken by another owner in between
                _refuse_conflict(event, jobs, job_id=job_id, owner_uid=owner, batch_id=spec.batch_id, what="job")
                return job_id
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
    publish_request(jobs, bus, settings, job_id, render_request(job_id, event, spec, run_id))
    launch_requests([job_id], jobs=jobs, settings=settings, launcher=launcher)
    log.info("job %s queued from %s", job_id, event.uri)
    if spec.batch_id:
        refresh_batch(jobs, spec.batch_id)
    return job_id


def accept_batch(
    event: SpecEvent, raw: bytes, *, settings: Settings, jobs: Jobs, bus: Bus, launcher: Launcher | None = None
) -> str | None:
    """Fan a batch file out into one job per scene. Dropped again, it re-runs only the scenes
    that failed (or changed); completed and running scenes are left alone.

    The batch id and each scene's job id belong to their first owner: a batch of another
    owner's id is refused whole, and a scene whose job is another owner's is refused alone.
    """
    batch_id = _job_id_from_raw(raw, key="batch_id") or _object_job_id(event.name)
    owner: str | None = _job_id_from_raw(raw, key="owner_uid")
    try:
        batch = parse_batch(raw)
        owner = _batch_owner(batch)
        for index in range(len(batch.scenes)):
            _check_scene(scene_spec(batch, index), index, settings, owner)
    except (SpecError, InputRefusedError) as exc:
        _refuse_batch(event, jobs, batch_id=batch_id, owner_uid=owner, error=exc.to_dict())
        log.info("batch %s: refused: %s", batch_id, exc.message)
        return batch_id
    existing = jobs.get_batch(batch.batch_id)
    if existing is not None and may_take(existing, owner) and _is_stale(existing, event):
        log.info("batch %s: generation %s is older than the accepted one", batch.batch_id, event.generation)
        return batch.batch_id
    # The batch knows its scenes before any job exists, so no view of it counts fewer.
    scene_ids = [str(scene_spec(batch, i).job_id) for i in range(len(batch.scenes))]
    batch_fields = {"spec_uri": event.uri, "spec_generation": event.generation, "error": None, "scenes": scene_ids}
    # A new batch document counts every scene QUEUED from its first write: no view of it counts fewer.
    initial = summarize([], created_at=time.time(), expected=scene_ids)
    if jobs.claim_batch(batch.batch_id, owner, batch_fields, initial) is not None:
        _refuse_conflict(event, jobs, job_id=None, owner_uid=owner, batch_id=batch.batch_id, what="batch")
        return batch.batch_id
    refresh_batch(jobs, batch.batch_id)
    mine: list[str] = []
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
            "owner_uid": owner,
            "batch_id": batch.batch_id,
            "spec_hash": spec_hash(spec),
            "weight_s": scene_weight(spec),
            "run_id": new_run_id(),
        }
        run_id = str(fields["run_id"])
        if jobs.create_job(job_id, fields):
            mine.append(job_id)
        else:
            existing_job = jobs.get(job_id) or {}
            if not may_take(existing_job, owner):
                _refuse_conflict(event, jobs, job_id=job_id, owner_uid=owner, batch_id=batch.batch_id, what="job")
                continue
            mine.append(job_id)
            if _same_event(existing_job, event):
                # Redelivered: only a scene whose request was never sent is sent now.
                if existing_job.get("status") != "QUEUED" or existing_job.get("request_published"):
                    continue
                run_id = str(existing_job.get("run_id") or run_id)
            else:
                rerun = existing_job.get("status") == "FAILED" or (
                    existing_job.get("status") == "COMPLETED" and existing_job.get("spec_hash") != fields["spec_hash"]
                )
                if not rerun or _is_stale(existing_job, event) or not jobs.requeue(job_id, fields):
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
                "run_id": run_id,
                "spec_uri": event.uri,
                "spec_generation": event.generation,
                "spec": spec.model_dump(mode="json"),
            },
        )
    # Every scene of this owner whose request is out and has no execution yet, this delivery's
    # or an earlier one's whose launch failed: one execution, a task per scene up to
    # launch_parallelism.
    launch_requests(mine, jobs=jobs, settings=settings, launcher=launcher)
    refresh_batch(jobs, batch.batch_id)
    log.info("batch %s: %d scenes from %s", batch.batch_id, len(batch.scenes), event.uri)
    return batch.batch_id


def read_spec_object(event: SpecEvent, settings: Settings, blobs: Blobs) -> bytes:
    """The event's generation of the spec object, its size read from the metadata first.

    A batch may be larger than a spec, and which one it is shows only in its bytes: an
    object over the larger limit is never read; one over the spec limit is refused when it
    turns out not to be a batch (``parse_spec``). Raises FileNotFoundError when that
    generation is no longer there, ``LimitExceededError`` when it is too large.
    """
    limit = max(settings.max_spec_bytes, settings.max_batch_bytes)
    setting = "max_batch_bytes" if settings.max_batch_bytes >= settings.max_spec_bytes else "max_spec_bytes"
    generation = event.generation or None
    size = blobs.size(event.uri, generation=generation)
    refused = object_size_refusal(size, limit, setting, "the spec object")
    if refused is not None:
        raise refused
    raw = blobs.read_bytes(event.uri, generation=generation, max_bytes=limit)
    refused = object_size_refusal(len(raw), limit, setting, "the spec object")
    if refused is not None:  # grew past its metadata: never trusted further than the limit
        raise refused
    if is_batch(raw):
        refused = object_size_refusal(len(raw), settings.max_batch_bytes, "max_batch_bytes", "the batch file")
        if refused is not None:
            raise refused
    return raw


def new_run_id() -> str:
    """Names one run of a job (its outputs' folder), so an old URL never serves a newer render."""
    return secrets.token_hex(6)


def _same_event(doc: dict[str, Any], event: SpecEvent) -> bool:
    return doc.get("spec_uri") == event.uri and str(doc.get("spec_generation")) == str(event.generation)


def _is_stale(doc: dict[str, Any], event: SpecEvent) -> bool:
    """An older generation of the object whose newer generation the document was made from."""
    if doc.get("spec_uri") != event.uri:
        return False
    try:
        return int(str(doc.get("spec_generation"))) > int(event.generation)
    except ValueError:
        return False


def _object_job_id(name: str) -> str | None:
    try:
        return job_id_from_object(name)
    except SpecError:
        return None


def _batch_owner(batch: BatchSpec) -> str:
    """The batch's owner, which every scene shares: one batch, one owner."""
    if not batch.owner_uid:
        problem = "required: a batch dropped in the bucket names its owner"
        raise SpecError.from_details([ErrorDetail("owner_uid", problem)])
    details = [
        ErrorDetail(f"scenes[{i}].owner_uid", "a scene's owner is the batch's owner (leave it out)")
        for i, scene in enumerate(batch.scenes)
        if scene.owner_uid not in (None, batch.owner_uid)
    ]
    if details:
        raise SpecError.from_details(details)
    return batch.owner_uid


def _check_scene(spec: JobSpec, index: int, settings: Settings, owner: str) -> None:
    """``check_spec`` for one scene of a batch; its errors located under ``scenes[index]``."""
    try:
        check_spec(spec, settings, owner_uid=owner)
    except (SpecError, InputRefusedError) as exc:
        located = copy.copy(exc)
        located.details = [ErrorDetail(f"scenes[{index}].{d.path}".rstrip("."), d.message) for d in exc.details]
        located.message = f"scenes[{index}].{exc.message}"
        raise located from None


def _refusal_id(event: SpecEvent, job_id: str | None) -> str:
    key = f"{event.bucket}/{event.name}#{event.generation}#{job_id or ''}"
    return hashlib.sha256(key.encode()).hexdigest()[:40]


def _record_refusal(
    event: SpecEvent,
    jobs: Jobs,
    *,
    job_id: str | None,
    owner_uid: str | None,
    error: dict[str, Any],
    batch_id: str | None = None,
) -> None:
    jobs.record_refusal(
        _refusal_id(event, job_id),
        {
            "spec_uri": event.uri,
            "spec_generation": event.generation,
            "job_id": job_id,
            "batch_id": batch_id,
            "owner_uid": owner_uid,
            "error": error,
        },
    )


def _refuse(event: SpecEvent, jobs: Jobs, *, job_id: str | None, owner_uid: str | None, error: dict[str, Any]) -> None:
    """A spec that will not run: on a new job, its FAILED document tells why; on the owner's
    own job, a note; anywhere else, a refusal record, and the existing job is untouched."""
    if job_id is not None:
        failed = {
            "spec_uri": event.uri,
            "spec_generation": event.generation,
            "status": "FAILED",
            "stage": "validate",
            "progress": 0.0,
            "owner_uid": owner_uid,
            "error": error,
        }
        if jobs.create_job(job_id, failed):
            return
        existing = jobs.get(job_id) or {}
        if _same_event(existing, event):
            return  # redelivered
        if owner_uid and existing.get("owner_uid") == owner_uid:
            refused = {"spec_uri": event.uri, "spec_generation": event.generation, "reason": error.get("message")}
            jobs.note(job_id, {"resubmission_refused": {**refused, "error": error}})
            return
    _record_refusal(event, jobs, job_id=job_id, owner_uid=owner_uid, error=error)


def _refuse_batch(
    event: SpecEvent, jobs: Jobs, *, batch_id: str | None, owner_uid: str | None, error: dict[str, Any]
) -> None:
    """An invalid batch file: on its own (or a new) batch document, the error; else a refusal record."""
    if batch_id is not None:
        fields = {"spec_uri": event.uri, "spec_generation": event.generation, "error": error, "status": "FAILED"}
        if jobs.claim_batch(batch_id, owner_uid, fields) is None:
            return
    _record_refusal(event, jobs, job_id=None, owner_uid=owner_uid, error=error, batch_id=batch_id)


def _refuse_conflict(
    event: SpecEvent, jobs: Jobs, *, job_id: str | None, owner_uid: str | None, batch_id: str | None, what: str
) -> None:
    """Another owner's job or batch: nothing of it is touched; the refusal is recorded apart."""
    name = batch_id if what == "batch" else job_id
    message = f"{what} {name} belongs to another owner; nothing was changed"
    error = {"code": "CONFLICT", "message": message, "details": [{"path": f"{what}_id", "problem": message}]}
    _record_refusal(event, jobs, job_id=job_id, owner_uid=owner_uid, error=error, batch_id=batch_id)
    log.warning("spec %s (generation %s) refused: %s", event.uri, event.generation, message)


def publish_request(jobs: Jobs, bus: Bus, settings: Settings, job_id: str, request: dict[str, Any]) -> None:
    """Send a claimed render request; on failure give the claim back so a redelivery sends it."""
    try:
        bus.publish(settings.render_topic, request, job_id=job_id)
    except Exception:
        jobs.release_publish(job_id)
        raise


def launch_requests(job_ids: list[str], *, jobs: Jobs, settings: Settings, launcher: Launcher | None) -> None:
    """Launch an execution for these jobs' published requests, unless one was launched already
    (``scenerender.cloud.launcher``). A failed launch raises: the event is redelivered and tries again."""
    launch(job_ids, jobs=jobs, launcher=launcher or launcher_for(settings), settings=settings)


def refresh_batch(jobs: Jobs, batch_id: str, fields: dict[str, Any] | None = None, *, final: bool = False) -> None:
    """Recompute the batch document from its jobs (counts, weighted progress, ETA, status).

    A failed refresh on the way is logged, never raised: a later event of a scene refreshes
    it again, and a job's own work must not fail because its batch's summary could not be
    written. The refresh after a job's end (``final``) raises: it may be the batch's last
    event, and nothing else would end the batch, so the event is redelivered instead.
    """
    try:
        jobs.save_batch(
            batch_id,
            fields or {},
            lambda created, doc: summarize(jobs.batch_jobs(batch_id), created_at=created, expected=doc.get("scenes")),
        )
    except SceneRenderError as exc:
        if final:
            raise
        log.warning("batch %s: summary not refreshed: %s", batch_id, exc.message)


def _job_id_from_raw(raw: bytes, key: str = "job_id") -> str | None:
    """The id an invalid spec asked for (or its owner), when it is readable and valid, so its user finds the job."""
    try:
        data = json.loads(raw)
        candidate = data.get(key) if isinstance(data, dict) else None
        if isinstance(candidate, str) and valid_job_id(candidate):
            return candidate
    except (ValueError, RecursionError):
        pass
    return None


def render_request(job_id: str, event: SpecEvent, spec: JobSpec, run_id: str) -> dict[str, Any]:
    return {
        "job_id": job_id,
        "run_id": run_id,
        "spec_uri": event.uri,
        "spec_generation": event.generation,
        "spec": spec.model_dump(mode="json"),
    }


def output_uri(settings: Settings, job_id: str, run_id: str, spec: JobSpec) -> str:
    # Outputs go to the render bucket, never the spec bucket, so they cannot start jobs; each
    # run has its own folder, so a URL signed for one run never serves a later run's file.
    return f"gs://{settings.render_bucket}/renders/{job_id}/{run_id}/{spec.output.filename or job_id + '.mp4'}"


@dataclass
class WorkOutcome:
    """What the worker does with the message: ack it, or leave it for redelivery (after
    ``retry_after_s``; 0: at once)."""

    ack: bool
    status: str
    retry_after_s: float = 0.0


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
    them with the other workers (``scenerender.pipeline.workitems``).

    Permanent errors, and exceptions outside the error tree (bugs), are reported as FAILED
    and acknowledged at once; only ``retryable`` ones (``TransientError``) leave the message
    for redelivery, up to ``settings.max_attempts``.
    """
    job_id = str(request["job_id"])
    current = jobs.get(job_id)
    if current is None or current.get("status") in TERMINAL:
        log.info("job %s is %s; request dropped", job_id, current and current.get("status"))
        return WorkOutcome(ack=True, status=str(current and current.get("status")))
    attempt = jobs.mark_running(job_id, worker=worker_id(), execution=current_execution())
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

    # One output folder per run, named when the run was queued: a redelivery or a retry after
    # a crash writes the same object; a later run of the job never does.
    run_id = str(request.get("run_id") or current.get("run_id") or request.get("spec_generation") or "run")
    report: dict[str, Any] = {"job_id": job_id, "attempt": attempt}
    with heartbeat(jobs, job_id, settings.heartbeat_s):
        return _render_and_report(
            {**request, "run_id": run_id},
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
        # The spec function checked the spec; checked again here, as the request may come from elsewhere.
        check_spec(spec, settings, owner_uid=spec.owner_uid)
        policy = FetchPolicy.from_settings(settings, media_scope=MediaScope.from_settings(settings, spec.owner_uid))
        # /tmp is memory on Cloud Run: a render that cannot fit is refused with the numbers before
        # anything is fetched, and no input may be larger than what the rest leaves.
        need = check_memory(spec, settings, lambda url: _object_size(blobs, url))
        if need is not None:
            largest = max((_object_size(blobs, url) or 0 for _, url in spec.inputs()), default=0)
            policy = dataclasses.replace(policy, max_bytes=min(policy.max_bytes, max(need.input_cap, largest)))
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
            uri = output_uri(settings, job_id, str(request["run_id"]), spec)
            write("upload", 0.99)
            blobs.upload_file(local, uri, content_type="video/mp4")
            sidecar_uris = upload_sidecars(blobs, local, uri, result.sidecars)
        report.update(status="COMPLETED", output_uri=uri, sidecar_uris=sidecar_uris, result=result.to_dict())
    except SceneRenderError as exc:
        if exc.retryable and attempt < settings.max_attempts:
            log.warning("job %s attempt %d: %s; left for redelivery", job_id, attempt, exc.message)
            jobs.note(job_id, {"last_error": exc.to_dict()})
            return WorkOutcome(ack=False, status="RETRY")
        report.update(status="FAILED", error=exc.to_dict())
    except Exception as exc:
        # A bug, or a failure nobody translated: redelivery would meet it again, so it is not
        # retried as if transient; the job ends FAILED at once, with the exception named.
        log.exception("job %s attempt %d: internal error", job_id, attempt)
        report.update(status="FAILED", error=SceneRenderError(f"{type(exc).__name__}: {exc}").to_dict())
    bus.publish(settings.completion_topic, report, job_id=job_id, status=report["status"])
    return WorkOutcome(ack=True, status=report["status"])


def upload_sidecars(blobs: Blobs, local: Path, uri: str, sidecars: dict[str, str]) -> dict[str, str]:
    """Captions, stills and stems beside the MP4 under the run's prefix (``<name>.vtt`` next to
    ``<name>.mp4``); kind -> URI. docs/deliverables.md."""
    from scenerender.core.deliverables import SUFFIXES, content_type

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


def record_report(report: dict[str, Any], *, settings: Settings, blobs: Blobs, jobs: Jobs) -> bool:
    """Write the renderer's report on the job: COMPLETED with a signed URL, or FAILED."""
    job_id = str(report["job_id"])
    if report.get("status") == "COMPLETED":
        uri = str(report["output_uri"])
        url, expires = blobs.signed_url(uri, settings.signed_url_ttl_s)
        output = {"uri": uri, "url": url, "url_expires_at": expires, **report.get("result", {})}
        # Each sidecar with its own signed URL (the result names only its file).
        signed: dict[str, dict[str, Any]] = {}
        for kind, sidecar_uri in (report.get("sidecar_uris") or {}).items():
            sidecar_url, sidecar_expires = blobs.signed_url(str(sidecar_uri), settings.signed_url_ttl_s)
            signed[str(kind)] = {"uri": sidecar_uri, "url": sidecar_url, "url_expires_at": sidecar_expires}
        output["sidecars"] = signed
        changed = jobs.complete(job_id, output)
    else:
        error = report.get("error") or {"code": "INTERNAL", "message": "renderer reported no error", "details": []}
        changed = jobs.fail(job_id, error)
    _refresh_after_end(jobs, job_id)
    return changed


def _refresh_after_end(jobs: Jobs, job_id: str) -> None:
    """The job ended (now, or at an earlier delivery of this event): its batch's summary, which
    this may end, is written before the event is acknowledged."""
    batch_id = (jobs.get(job_id) or {}).get("batch_id")
    if batch_id:
        refresh_batch(jobs, str(batch_id), final=True)


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
    changed = jobs.fail(job_id, error)
    _refresh_after_end(jobs, job_id)
    return changed


def spec_object_name(job_id: str) -> str:
    return f"{SPEC_PREFIX}{job_id}.json"


def submit_spec_bytes(
    raw: bytes,
    *,
    settings: Settings,
    write: Callable[[str, bytes], Any],
    name_hint: str = "",
    owner_uid: str | None = None,
) -> tuple[str, str]:
    """Validate a spec and write it under ``jobs/`` in the spec bucket: (job_id, uri).

    The spec takes the same path as a dropped file; validating first gives the client its
    errors at once instead of a FAILED job to look up: the same checks as the spec function
    (limits, media the owner may read). ``owner_uid``: the signed-in user, written into a
    spec that names none (a spec naming another is the caller's to refuse, before this).
    """
    spec = parse_spec(raw, max_bytes=settings.max_spec_bytes)
    owner = spec.owner_uid or owner_uid
    check_spec(spec, settings, owner_uid=owner)
    if owner and not spec.owner_uid:
        # A dropped spec must name its owner; the bytes written are the spec plus that field.
        raw = json.dumps({**json.loads(raw), "owner_uid": owner}).encode()
    # Without a job_id in the spec the pipeline derives it from the object name, so the
    # object is named after the id the client is told.
    job_id = spec.job_id or default_job_id(name_hint or f"job-{os.urandom(4).hex()}")
    uri = f"gs://{settings.spec_bucket}/{spec_object_name(job_id)}"
    write(uri, raw)
    return job_id, uri
