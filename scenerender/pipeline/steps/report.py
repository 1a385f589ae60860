"""The completion and dead-letter functions' steps: a job ends, COMPLETED or FAILED.

RenderReport ──► record_report ──► job COMPLETED with signed URLs | FAILED with its error
DeadLetter   ──► record_dead_letter ──► job FAILED with the last error a worker met
"""

from __future__ import annotations

import logging

from scenerender.cloud.liveness import beat_is_fresh
from scenerender.messages import DeadLetter, ErrorBlock, JobOutput, JobStatus, RenderReport, SignedObject
from scenerender.pipeline.steps.requests import refresh_batch
from scenerender.ports import Blobs, Jobs
from scenerender.settings import Settings

log = logging.getLogger(__name__)


def record_report(report: RenderReport, *, settings: Settings, blobs: Blobs, jobs: Jobs) -> bool:
    """Write the renderer's report on the job: COMPLETED with a signed URL, or FAILED."""
    job_id = report.job_id
    if report.status == JobStatus.COMPLETED and report.output_uri and report.result is not None:
        # The MP4 and each sidecar with its own signed URL (the result names only their files).
        signed = {
            kind: _signed(blobs, sidecar_uri, settings.signed_url_ttl_s)
            for kind, sidecar_uri in (report.sidecar_uris or {}).items()
        }
        output = JobOutput.of(_signed(blobs, report.output_uri, settings.signed_url_ttl_s), report.result, signed)
        changed = jobs.complete(job_id, output)
    else:
        error = report.error or ErrorBlock.internal("the renderer reported no error and no output or no result")
        changed = jobs.fail(job_id, error)
    _refresh_after_end(jobs, job_id)
    return changed


def _signed(blobs: Blobs, uri: str, ttl_s: int) -> SignedObject:
    url, expires = blobs.signed_url(uri, ttl_s)
    return SignedObject(uri=uri, url=url, url_expires_at=expires)


def _refresh_after_end(jobs: Jobs, job_id: str) -> None:
    """The job ended (now, or at an earlier delivery of this event): its batch's summary, which
    this may end, is written before the event is acknowledged."""
    doc = jobs.get(job_id)
    if doc is not None and doc.batch_id:
        refresh_batch(jobs, doc.batch_id, final=True)


def record_dead_letter(letter: DeadLetter, *, jobs: Jobs, stale_after_s: float) -> bool:
    """A render request Pub/Sub gave up on: its job ends FAILED with the last error seen.

    Without this a request that exhausted its deliveries would leave its job QUEUED or
    RUNNING for ever.
    """
    job_id = letter.job_id
    if not job_id:
        log.error("dead-lettered message without a job id dropped")
        return False
    doc = jobs.get(job_id)
    if doc is not None and doc.status == JobStatus.RUNNING and beat_is_fresh(doc.heartbeat_at, stale_after_s):
        # A worker is alive on the job: what ran out of deliveries was a duplicate copy.
        log.info("job %s: dead-lettered duplicate of a running job dropped", job_id)
        return False
    changed = jobs.fail(job_id, letter.error(doc.last_error if doc is not None else None))
    _refresh_after_end(jobs, job_id)
    return changed
