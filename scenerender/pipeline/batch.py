"""Batches: many scenes as one unit, each scene its own job (``render_batches/{batch_id}``).

A batch file is ``{"version": 1, "batch_id": ..., "scenes": [<job spec v1>, ...]}`` dropped
under ``jobs/`` like any spec. It fans out into one job per scene; the batch document
holds the counts per status, the overall progress weighted by each scene's length, an ETA,
and its own status, which ends when every scene has ended (failed scenes listed).
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Annotated, Literal

from pydantic import Field, ValidationError

from scenerender.core.spec import (
    MAX_SPEC_BYTES,
    Id,
    JobSpec,
    _friendly,
    _merge_details,
    _Model,
    cross_reference_errors,
    json_path,
    load_json,
)
from scenerender.errors import ErrorDetail, SpecError
from scenerender.messages import TERMINAL, BatchSummary, JobDocument, JobStatus

UNKNOWN_SEGMENT_S = 5.0  # weight of a segment whose length the spec does not give


class BatchSpec(_Model):
    version: Literal[1]
    batch_id: Id
    owner_uid: Id | None = None
    scenes: Annotated[list[JobSpec], Field(min_length=1, max_length=200)]


def is_batch(raw: bytes) -> bool:
    """A batch file is a JSON object with ``scenes`` (anything else is parsed as one spec)."""
    try:
        data = json.loads(raw.decode("utf-8", errors="replace").removeprefix("\ufeff"))
    except (ValueError, RecursionError):
        return False
    return isinstance(data, dict) and "scenes" in data


def parse_batch(raw: bytes, *, max_bytes: int = 200 * MAX_SPEC_BYTES) -> BatchSpec:
    """Validate a batch file; every problem, typed or cross-reference, carries its path
    (``scenes[2].segments[0].url``), all in one round."""
    data = load_json(raw, max_bytes=max_bytes, what="batch")
    if not isinstance(data, dict):
        raise SpecError.from_details([ErrorDetail("", "batch must be a JSON object")])
    scenes = data.get("scenes")
    cross = [
        ErrorDetail(f"scenes[{i}].{d.path}", d.message)
        for i, scene in enumerate(scenes if isinstance(scenes, list) else [])
        if isinstance(scene, dict)
        for d in cross_reference_errors(scene)
    ]
    try:
        batch = BatchSpec.model_validate(data)
    except ValidationError as exc:
        typed = [ErrorDetail(json_path(e["loc"]), _friendly(dict(e), BatchSpec)) for e in exc.errors()]
        raise SpecError.from_details(_merge_details(typed, cross)) from None
    except RecursionError as exc:
        raise SpecError.from_details([ErrorDetail("", "batch is nested too deeply")]) from exc
    details = list(cross)
    ids = [scene_job_id(batch, i) for i in range(len(batch.scenes))]
    details += [
        ErrorDetail(f"scenes[{i}].job_id", f'duplicate job id "{j}"') for i, j in enumerate(ids) if j in ids[:i]
    ]
    if details:
        raise SpecError.from_details(details)
    return batch


def scene_job_id(batch: BatchSpec, index: int) -> str:
    return batch.scenes[index].job_id or f"{batch.batch_id}-{index + 1:03d}"


def scene_spec(batch: BatchSpec, index: int) -> JobSpec:
    """The scene as a job of the batch (its id, the batch id, the batch's owner unless it has one)."""
    scene = batch.scenes[index]
    return scene.model_copy(
        update={
            "job_id": scene_job_id(batch, index),
            "batch_id": batch.batch_id,
            "owner_uid": scene.owner_uid or batch.owner_uid,
        }
    )


def spec_hash(spec: JobSpec) -> str:
    return hashlib.sha256(json.dumps(spec.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()


def scene_runs(existing: JobDocument | None, spec: JobSpec) -> bool:
    """Whether a dropped batch file runs this scene (``spec``, as ``scene_spec`` gives it) given its
    job's document: a new scene, or one whose job failed or completed from another spec. A
    completed unchanged scene is left alone, and so is one still QUEUED or RUNNING."""
    if existing is None:
        return True
    changed = existing.spec_hash != spec_hash(spec)
    return existing.status == JobStatus.FAILED or (existing.status == JobStatus.COMPLETED and changed)


def scene_weight(spec: JobSpec) -> float:
    return sum(s.duration if s.duration is not None else UNKNOWN_SEGMENT_S for s in spec.segments)


def summarize(
    jobs: list[JobDocument], *, created_at: float, now: float | None = None, expected: list[str] | None = None
) -> BatchSummary:
    """The batch document's aggregate fields, from its jobs' documents.

    ``expected`` (a batch file's scene job ids) counts scenes whose job does not exist yet as QUEUED.
    """
    now = time.time() if now is None else now
    present = {j.job_id for j in jobs}
    jobs = [*jobs, *(JobDocument(job_id=j, status=JobStatus.QUEUED) for j in (expected or []) if j not in present)]
    counts = {s.value: 0 for s in JobStatus}
    total_weight = done_weight = 0.0
    for job in jobs:
        counts[job.status.value] += 1
        weight = job.weight_s or 1.0
        total_weight += weight
        fraction = 1.0 if job.status.ended else job.progress
        done_weight += weight * fraction
    progress = done_weight / total_weight if total_weight else 0.0
    ended = sum(counts[s] for s in TERMINAL) == len(jobs) and jobs
    if ended:
        summary = JobStatus.FAILED if counts[JobStatus.FAILED] else JobStatus.COMPLETED
    else:
        started = counts[JobStatus.RUNNING] or counts[JobStatus.COMPLETED] or counts[JobStatus.FAILED]
        summary = JobStatus.RUNNING if started else JobStatus.QUEUED
    elapsed = max(0.0, now - created_at)
    eta = None if ended or progress <= 0.01 else round(elapsed * (1 - progress) / progress, 1)
    return BatchSummary(
        status=summary,
        counts=counts,
        total=len(jobs),
        progress=round(progress, 4),
        eta_s=eta,
        failed=sorted(j.job_id for j in jobs if j.status == JobStatus.FAILED),
    )
