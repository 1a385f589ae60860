"""Specs and batches that will not run, and where the reason is written.

On a new job its FAILED document tells why; on the owner's own job, a note; on another
owner's job or batch, nothing of it is touched and a refusal record is kept apart, in a
collection that job's owner never reads (CONTRACT.md section 5).
"""

from __future__ import annotations

import hashlib
import logging

from scenerender.errors import ConflictError, ErrorDetail
from scenerender.messages import ErrorBlock, JobDocument, JobStatus, ResubmissionRefused
from scenerender.pipeline.steps.events import SpecEvent, same_event
from scenerender.ports import Jobs

log = logging.getLogger(__name__)


def _refusal_id(event: SpecEvent, job_id: str | None) -> str:
    key = f"{event.bucket}/{event.name}#{event.generation}#{job_id or ''}"
    return hashlib.sha256(key.encode()).hexdigest()[:40]


def record_refusal(
    event: SpecEvent,
    jobs: Jobs,
    *,
    job_id: str | None,
    owner_uid: str | None,
    error: ErrorBlock,
    batch_id: str | None = None,
) -> None:
    """A refusal record, once per event (its id is made from the event)."""
    jobs.record_refusal(
        _refusal_id(event, job_id),
        {
            "spec_uri": event.uri,
            "spec_generation": event.generation,
            "job_id": job_id,
            "batch_id": batch_id,
            "owner_uid": owner_uid,
            "error": error.wire(),
        },
    )


def refuse(event: SpecEvent, jobs: Jobs, *, job_id: str | None, owner_uid: str | None, error: ErrorBlock) -> None:
    """A spec that will not run: on a new job, its FAILED document tells why; on the owner's
    own job, a note; anywhere else, a refusal record, and the existing job is untouched."""
    if job_id is not None:
        failed = JobDocument.refused(
            spec_uri=event.uri, spec_generation=event.generation, owner_uid=owner_uid, error=error
        )
        if jobs.create_job(job_id, failed):
            return
        existing = jobs.get(job_id)
        if same_event(existing, event):
            return  # redelivered
        if owner_uid and existing is not None and existing.owner_uid == owner_uid:
            refused = ResubmissionRefused(
                spec_uri=event.uri, spec_generation=event.generation, reason=error.message, error=error
            )
            jobs.note(job_id, {"resubmission_refused": refused.wire()})
            return
    record_refusal(event, jobs, job_id=job_id, owner_uid=owner_uid, error=error)


def refuse_batch(
    event: SpecEvent, jobs: Jobs, *, batch_id: str | None, owner_uid: str | None, error: ErrorBlock
) -> None:
    """An invalid batch file: on its own (or a new) batch document, the error; else a refusal record."""
    if batch_id is not None:
        fields = {
            "spec_uri": event.uri,
            "spec_generation": event.generation,
            "error": error.wire(),
            "status": JobStatus.FAILED.value,
        }
        if jobs.claim_batch(batch_id, owner_uid, fields) is None:
            return
    record_refusal(event, jobs, job_id=None, owner_uid=owner_uid, error=error, batch_id=batch_id)


def refuse_conflict(
    event: SpecEvent, jobs: Jobs, *, job_id: str | None, owner_uid: str | None, batch_id: str | None, what: str
) -> None:
    """Another owner's job or batch: nothing of it is touched; the refusal is recorded apart."""
    name = batch_id if what == "batch" else job_id
    message = f"{what} {name} belongs to another owner; nothing was changed"
    error = ErrorBlock.of(ConflictError(message, details=[ErrorDetail(f"{what}_id", message)]))
    record_refusal(event, jobs, job_id=job_id, owner_uid=owner_uid, error=error, batch_id=batch_id)
    log.warning("spec %s (generation %s) refused: %s", event.uri, event.generation, message)
