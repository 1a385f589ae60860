"""Sending a claimed render request, launching an execution for it, and the batch summary."""

from __future__ import annotations

import logging

from scenerender.cloud.launcher import Launcher, launch, launcher_for
from scenerender.core.spec import JobSpec
from scenerender.errors import SceneRenderError
from scenerender.messages import RenderRequest
from scenerender.pipeline.batch import summarize
from scenerender.pipeline.steps.events import SpecEvent
from scenerender.ports import Bus, Jobs
from scenerender.settings import Settings

log = logging.getLogger(__name__)


def render_request(job_id: str, event: SpecEvent, spec: JobSpec, run_id: str) -> RenderRequest:
    """The request of one run of a job, from the spec the event's object holds."""
    return RenderRequest(
        job_id=job_id,
        run_id=run_id,
        spec_uri=event.uri,
        spec_generation=event.generation,
        spec=spec.model_dump(mode="json"),
    )


def publish_request(jobs: Jobs, bus: Bus, settings: Settings, request: RenderRequest) -> None:
    """Send a claimed render request; on failure give the claim back so a redelivery sends it."""
    try:
        bus.publish(settings.render_topic, request.wire(), job_id=request.job_id)
    except Exception:
        jobs.release_publish(request.job_id)
        raise


def launch_requests(job_ids: list[str], *, jobs: Jobs, settings: Settings, launcher: Launcher | None) -> None:
    """Launch an execution for these jobs' published requests, unless one was launched already
    (``scenerender.cloud.launcher``). A failed launch raises: the event is redelivered and tries again."""
    launch(job_ids, jobs=jobs, launcher=launcher or launcher_for(settings), settings=settings)


def refresh_batch(jobs: Jobs, batch_id: str, *, final: bool = False) -> None:
    """Recompute the batch document from its jobs (counts, weighted progress, ETA, status).

    A failed refresh on the way is logged, never raised: a later event of a scene refreshes
    it again, and a job's own work must not fail because its batch's summary could not be
    written. The refresh after a job's end (``final``) raises: it may be the batch's last
    event, and nothing else would end the batch, so the event is redelivered instead.
    """
    try:
        jobs.save_batch(
            batch_id,
            lambda created, doc: summarize(
                jobs.batch_jobs(batch_id), created_at=created, expected=doc.scenes if doc is not None else None
            ),
        )
    except SceneRenderError as exc:
        if final:
            raise
        log.warning("batch %s: summary not refreshed: %s", batch_id, exc.message)
