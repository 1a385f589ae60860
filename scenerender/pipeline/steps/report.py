"""The completion and dead-letter functions' steps: a job ends, COMPLETED or FAILED.

RenderReport ──► record_report ──► job COMPLETED with signed URLs | FAILED with its error
DeadLetter   ──► record_dead_letter ──► job FAILED with the last error a worker met
"""

from __future__ import annotations

import logging
from typing import Any

from scenerender.cloud.liveness import beat_is_fresh
from scenerender.messages import DeadLetter, ErrorBlock, JobStatus, RenderReport
from scenerender.pipeline.steps.requests import refresh_batch
from scenerender.ports import Blobs, Jobs
from scenerender.settings import Settings

log = logging.getLogger(__name__)


def record_report(report: RenderReport, *, settings: Settings, blobs: Blobs, jobs: Jobs) -> bool:
    """Write the renderer's report on the job: COMPLETED with a signed URL, or FAILED."""
    job_id = report.job_id
    if report.status == JobStatus.COMPLETED and report.output_uri:
        uri = report.output_uri
        url, expires = blobs.signed_url(uri, settings.signed_url_ttl_s)
        output: dict[str, Any] = {"uri": uri, "url": url, "url_expires_at": expires, **(report.result or {})}
        # Each sidecar with its own signed URL (the result names only its file).
        signed: dict[str, dict[str, Any]] = {}
        for kind, sidecar_uri in (report.sidecar_uris or {}).items():
            sidecar_url, sidecar_expires = blobs.signed_url(sidecar_uri, settings.signed_url_ttl_s)
            signed[kind] = {"uri": sidecar_uri, "url": sidecar_url, "url_expires_at": sidecar_expires}
        output["sidecars"] = signed
        changed = jobs.complete(job_id, output)
    else:
        error = report.error or ErrorBlock.internal("the renderer reported no error and no output")
        changed = jobs.fail(job_id, error)
    _refresh_after_end(jobs, job_id)
    return changed


def _refresh_after_end(jobs: Jobs, job_id: str) -> None:
    """The job ended (now, or at an earlier delivery of this event): its batch's summary, which
    this may end, is written before the event is acknowledged."""
    batch_id = (jobs.get(job_id) or {}).get("batch_id")
    if batch_id:
        refresh_batch(jobs, str(batch_id), final=True)


def record_dead_letter(letter: DeadLetter, *, jobs: Jobs, stale_after_s: float) -> bool:
    """A render request Pub/Sub gave up on: its job ends FAILED with the last error seen.

    Without this a request that exhausted its deliveries would leave its job QUEUED or
    RUNNING for ever.
    """
    job_id = letter.job_id
    if not job_id:
        log.error("dead-lettered message without a job id dropped")
        return False
    doc = jobs.get(job_id) or {}
    if doc.get("status") == JobStatus.RUNNING and beat_is_fresh(doc.get("heartbeat_at"), stale_after_s):
        # A worker is alive on the job: what ran out of deliveries was a duplicate copy.
        log.info("job %s: dead-lettered duplicate of a running job dropped", job_id)
        return False
    last = ErrorBlock.model_validate(doc["last_error"]) if doc.get("last_error") else None
    changed = jobs.fail(job_id, letter.error(last))
    _refresh_after_end(jobs, job_id)
    return changed
