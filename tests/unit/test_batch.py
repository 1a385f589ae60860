"""Batch files and the batch document's aggregate, without the cloud."""

from __future__ import annotations

import json

import pytest

from scenerender.errors import SpecError
from scenerender.messages import JobDocument
from scenerender.pipeline.batch import is_batch, parse_batch, scene_spec, summarize

SCENE = {"version": 1, "project_id": "p", "scene_id": "s", "segments": [{"id": "a", "url": "gs://m/a.mp4"}]}


def test_a_batch_fans_out_into_scene_jobs_of_the_batch() -> None:
    raw = json.dumps({"version": 1, "batch_id": "b-1", "owner_uid": "u", "scenes": [SCENE, {**SCENE, "job_id": "x"}]})
    assert is_batch(raw.encode()) and not is_batch(json.dumps(SCENE).encode())
    batch = parse_batch(raw.encode())
    first, second = scene_spec(batch, 0), scene_spec(batch, 1)
    assert (first.job_id, first.batch_id, first.owner_uid) == ("b-1-001", "b-1", "u")
    assert second.job_id == "x"


def test_batch_errors_are_located_in_their_scene() -> None:
    bad = {
        "version": 1,
        "batch_id": "b-1",
        "scenes": [SCENE, {**SCENE, "segments": [{"id": "a", "url": "x", "volume": 9}]}],
    }
    with pytest.raises(SpecError) as info:
        parse_batch(json.dumps(bad).encode())
    assert [d.path for d in info.value.details] == ["scenes[1].segments[0].volume"]
    dup = {"version": 1, "batch_id": "b", "scenes": [{**SCENE, "job_id": "j"}, {**SCENE, "job_id": "j"}]}
    with pytest.raises(SpecError, match=r"scenes\[1\]\.job_id"):
        parse_batch(json.dumps(dup).encode())


def test_the_aggregate_weights_progress_by_scene_length_and_lists_failures() -> None:
    stored = [
        {"job_id": "a", "status": "COMPLETED", "weight_s": 30.0},
        {"job_id": "b", "status": "RUNNING", "progress": 0.5, "weight_s": 10.0},
        {"job_id": "c", "status": "FAILED", "weight_s": 10.0},
    ]
    jobs = [JobDocument.model_validate(j) for j in stored]
    doc = summarize(jobs, created_at=100.0, now=150.0, expected=["a", "b", "c", "d"])
    assert doc.counts == {"QUEUED": 1, "RUNNING": 1, "COMPLETED": 1, "FAILED": 1} and doc.total == 4
    assert doc.progress == pytest.approx((30 + 5 + 10) / 51, abs=1e-4)
    assert doc.status == "RUNNING" and doc.failed == ["c"]
    assert doc.eta_s == pytest.approx(50 * 6 / 45, rel=0.01)
    ended = summarize([JobDocument.model_validate({**j, "status": "COMPLETED"}) for j in stored], created_at=0, now=1)
    assert ended.status == "COMPLETED" and ended.eta_s is None and ended.progress == 1.0
    # Written with its null ETA: clients read the key.
    assert ended.wire() == {
        "status": "COMPLETED",
        "counts": {"QUEUED": 0, "RUNNING": 0, "COMPLETED": 3, "FAILED": 0},
        "total": 3,
        "progress": 1.0,
        "eta_s": None,
        "failed": [],
    }


def test_a_scenes_end_by_report_or_dead_letter_ends_its_batch_and_a_lost_summary_is_redelivered() -> None:
    """The refresh after the last scene's end is the only thing that ends the batch: the
    dead-letter path does it too, and a refresh that fails there raises (the event comes
    back) instead of leaving the batch RUNNING for ever."""
    from scenerender.errors import RenderError, TransientError
    from scenerender.messages import DeadLetter, ErrorBlock, RenderReport
    from scenerender.pipeline import steps as pipeline
    from scenerender.settings import Settings
    from tests.unit.cloud_fakes import FakeBlobs, FakeJobs

    jobs, settings = FakeJobs(), Settings()
    for job_id in ("b-001", "b-002"):
        jobs.create_job(job_id, JobDocument.model_validate({"status": "RUNNING", "batch_id": "b", "weight_s": 5.0}))
    pipeline.refresh_batch(jobs, "b")
    assert jobs.batches["b"]["status"] == "RUNNING"
    report = RenderReport.failed("b-001", 1, ErrorBlock.of(RenderError("x")))
    pipeline.record_report(report, settings=settings, blobs=FakeBlobs(), jobs=jobs)
    assert jobs.batches["b"]["counts"]["FAILED"] == 1 and jobs.batches["b"]["status"] == "RUNNING"
    assert pipeline.record_dead_letter(DeadLetter(job_id="b-002"), jobs=jobs, stale_after_s=45.0)
    assert jobs.batches["b"]["status"] == "FAILED" and jobs.batches["b"]["failed"] == ["b-001", "b-002"]

    def contended(*args: object, **kwargs: object) -> None:
        raise TransientError("batch b: 20 conflicting writes in a row")

    jobs.save_batch = contended  # type: ignore[method-assign]
    with pytest.raises(TransientError):
        pipeline.record_report(report, settings=settings, blobs=FakeBlobs(), jobs=jobs)
    pipeline.refresh_batch(jobs, "b")  # on the way (a worker's progress): logged, not raised
