"""The spec function's step: a dropped spec becomes a QUEUED job and its render request.

    spec object in the spec bucket ──► accept_spec ──► job QUEUED + render request + launch
                                        (a batch file ──► accept_batch: one job per scene)

And the doors' way in: ``submit_spec_bytes`` validates a spec and writes it where a dropped
one goes, so the CLI and the API take the same path as a bucket drop.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from typing import Any

from scenerender.cloud.launcher import Launcher
from scenerender.core.spec import default_job_id, parse_spec
from scenerender.core.tenancy import check_spec, job_id_from_object, require_owner
from scenerender.errors import InputRefusedError, LimitExceededError, SpecError
from scenerender.messages import ErrorBlock, JobStatus, ResubmissionRefused, may_take
from scenerender.pipeline.batch import is_batch, summarize
from scenerender.pipeline.steps.accept_batch import accept_batch
from scenerender.pipeline.steps.events import (
    SpecEvent,
    id_from_raw,
    is_stale,
    object_job_id,
    queued_document,
    read_spec_object,
    same_event,
    spec_object_name,
)
from scenerender.pipeline.steps.refusals import refuse, refuse_conflict
from scenerender.pipeline.steps.requests import launch_requests, publish_request, refresh_batch, render_request
from scenerender.ports import Blobs, Bus, Jobs
from scenerender.settings import Settings

log = logging.getLogger(__name__)


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
    named_id = object_job_id(event.name)
    try:
        raw = read_spec_object(event, settings, blobs)
    except FileNotFoundError:
        log.info("spec %s generation %s is gone before it was read (replaced or deleted)", event.uri, event.generation)
        return None
    except LimitExceededError as exc:
        refuse(event, jobs, job_id=named_id, owner_uid=None, error=ErrorBlock.of(exc))
        log.info("spec %s: refused unread: %s", event.uri, exc.message)
        return named_id
    if is_batch(raw):
        return accept_batch(event, raw, settings=settings, jobs=jobs, bus=bus, launcher=launcher)
    job_id = id_from_raw(raw) or named_id
    owner: str | None = id_from_raw(raw, key="owner_uid")
    try:
        spec = parse_spec(raw, max_bytes=settings.max_spec_bytes)
        job_id = spec.job_id or job_id_from_object(event.name)
        owner = require_owner(spec)
        check_spec(spec, settings, owner_uid=owner)
    except (SpecError, InputRefusedError) as exc:
        refuse(event, jobs, job_id=job_id, owner_uid=owner, error=ErrorBlock.of(exc))
        log.info("job %s: refused: %s", job_id, exc.message)
        return job_id
    queued = queued_document(event, spec, owner_uid=owner, batch_id=spec.batch_id)
    run_id = queued.run_id
    joined = summarize([], created_at=time.time(), expected=[job_id])
    if spec.batch_id and jobs.claim_batch(spec.batch_id, owner, {}, joined) is not None:
        refuse_conflict(event, jobs, job_id=job_id, owner_uid=owner, batch_id=spec.batch_id, what="batch")
        return job_id
    if not jobs.create_job(job_id, queued):
        existing = jobs.get(job_id)
        if not may_take(existing, owner):
            refuse_conflict(event, jobs, job_id=job_id, owner_uid=owner, batch_id=spec.batch_id, what="job")
            return job_id
        if existing is not None and same_event(existing, event):
            if existing.status != JobStatus.QUEUED or existing.request_published:
                # The request is out; its launch may have failed (jobs.run: 403, 429, 5xx). Launching
                # is its own recorded step: done only if no execution is recorded yet.
                launch_requests([job_id], jobs=jobs, settings=settings, launcher=launcher)
                log.info("job %s: event redelivered; nothing new", job_id)
                return job_id
            # An earlier delivery of this event created the job but died before publishing.
            run_id = existing.run_id or run_id
        elif is_stale(existing, event):
            log.info("job %s: generation %s is older than the accepted one; nothing new", job_id, event.generation)
            return job_id
        elif not jobs.requeue(job_id, queued):
            status = existing.status.value if existing is not None else "gone"
            if not may_take(jobs.get(job_id), owner):  # taken by another owner in between
                refuse_conflict(event, jobs, job_id=job_id, owner_uid=owner, batch_id=spec.batch_id, what="job")
                return job_id
            # A new spec while the job still runs: refused, and the reason is on the job for its user.
            refused = ResubmissionRefused(
                spec_uri=event.uri, spec_generation=event.generation, reason=f"job {job_id} is still {status}"
            )
            jobs.note(job_id, {"resubmission_refused": refused.wire()})
            log.info("job %s: re-submission refused while %s", job_id, status)
            return job_id
    if not jobs.claim_publish(job_id, event.generation):
        log.info("job %s: another delivery of this event sends its request", job_id)
        return job_id
    publish_request(jobs, bus, settings, render_request(job_id, event, spec, run_id))
    launch_requests([job_id], jobs=jobs, settings=settings, launcher=launcher)
    log.info("job %s queued from %s", job_id, event.uri)
    if spec.batch_id:
        refresh_batch(jobs, spec.batch_id)
    return job_id


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
