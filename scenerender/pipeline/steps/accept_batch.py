"""A dropped batch file becomes one job per scene (``accept_spec`` hands it here).

Dropped again, it re-runs only the scenes that failed (or changed); completed and running
scenes are left alone. The batch id and each scene's job id belong to their first owner.
"""

from __future__ import annotations

import copy
import logging
import time

from scenerender.cloud.launcher import Launcher
from scenerender.core.spec import JobSpec
from scenerender.core.tenancy import check_spec
from scenerender.errors import ErrorDetail, InputRefusedError, SpecError
from scenerender.messages import ErrorBlock, JobStatus, may_take
from scenerender.pipeline.batch import (
    BatchSpec,
    parse_batch,
    scene_runs,
    scene_spec,
    scene_weight,
    spec_hash,
    summarize,
)
from scenerender.pipeline.steps.events import (
    SpecEvent,
    id_from_raw,
    is_stale,
    object_job_id,
    queued_document,
    same_event,
)
from scenerender.pipeline.steps.refusals import refuse_batch, refuse_conflict
from scenerender.pipeline.steps.requests import launch_requests, publish_request, refresh_batch, render_request
from scenerender.ports import Bus, Jobs
from scenerender.settings import Settings

log = logging.getLogger(__name__)


def accept_batch(
    event: SpecEvent, raw: bytes, *, settings: Settings, jobs: Jobs, bus: Bus, launcher: Launcher | None = None
) -> str | None:
    """Fan a batch file out into one job per scene. Dropped again, it re-runs only the scenes
    that failed (or changed); completed and running scenes are left alone.

    The batch id and each scene's job id belong to their first owner: a batch of another
    owner's id is refused whole, and a scene whose job is another owner's is refused alone.
    """
    batch_id = id_from_raw(raw, key="batch_id") or object_job_id(event.name)
    owner: str | None = id_from_raw(raw, key="owner_uid")
    try:
        batch = parse_batch(raw)
        owner = _batch_owner(batch)
        for index in range(len(batch.scenes)):
            _check_scene(scene_spec(batch, index), index, settings, owner)
    except (SpecError, InputRefusedError) as exc:
        refuse_batch(event, jobs, batch_id=batch_id, owner_uid=owner, error=ErrorBlock.of(exc))
        log.info("batch %s: refused: %s", batch_id, exc.message)
        return batch_id
    existing = jobs.get_batch(batch.batch_id)
    if existing is not None and may_take(existing, owner) and is_stale(existing, event):
        log.info("batch %s: generation %s is older than the accepted one", batch.batch_id, event.generation)
        return batch.batch_id
    # The batch knows its scenes before any job exists, so no view of it counts fewer.
    scene_ids = [str(scene_spec(batch, i).job_id) for i in range(len(batch.scenes))]
    batch_fields = {"spec_uri": event.uri, "spec_generation": event.generation, "error": None, "scenes": scene_ids}
    # A new batch document counts every scene QUEUED from its first write: no view of it counts fewer.
    initial = summarize([], created_at=time.time(), expected=scene_ids)
    if jobs.claim_batch(batch.batch_id, owner, batch_fields, initial) is not None:
        refuse_conflict(event, jobs, job_id=None, owner_uid=owner, batch_id=batch.batch_id, what="batch")
        return batch.batch_id
    refresh_batch(jobs, batch.batch_id)
    mine: list[str] = []
    for index in range(len(batch.scenes)):
        spec = scene_spec(batch, index)
        job_id = str(spec.job_id)
        queued = queued_document(
            event,
            spec,
            owner_uid=owner,
            batch_id=batch.batch_id,
            spec_hash=spec_hash(spec),
            weight_s=scene_weight(spec),
        )
        run_id = queued.run_id
        if jobs.create_job(job_id, queued):
            mine.append(job_id)
        else:
            existing_job = jobs.get(job_id)
            if not may_take(existing_job, owner):
                refuse_conflict(event, jobs, job_id=job_id, owner_uid=owner, batch_id=batch.batch_id, what="job")
                continue
            mine.append(job_id)
            if existing_job is not None and same_event(existing_job, event):
                # Redelivered: only a scene whose request was never sent is sent now.
                if existing_job.status != JobStatus.QUEUED or existing_job.request_published:
                    continue
                run_id = existing_job.run_id or run_id
            elif (
                not scene_runs(existing_job, spec) or is_stale(existing_job, event) or not jobs.requeue(job_id, queued)
            ):
                continue
        if not jobs.claim_publish(job_id, event.generation):
            continue
        publish_request(jobs, bus, settings, render_request(job_id, event, spec, run_id))
    # Every scene of this owner whose request is out and has no execution yet, this delivery's
    # or an earlier one's whose launch failed: one execution, a task per scene up to
    # launch_parallelism.
    launch_requests(mine, jobs=jobs, settings=settings, launcher=launcher)
    refresh_batch(jobs, batch.batch_id)
    log.info("batch %s: %d scenes from %s", batch.batch_id, len(batch.scenes), event.uri)
    return batch.batch_id


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
