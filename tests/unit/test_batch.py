"""Batch files and the batch document's aggregate, without the cloud."""

from __future__ import annotations

import json

import pytest

from scenerender.errors import SpecError
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
    jobs = [
        {"job_id": "a", "status": "COMPLETED", "weight_s": 30.0},
        {"job_id": "b", "status": "RUNNING", "progress": 0.5, "weight_s": 10.0},
        {"job_id": "c", "status": "FAILED", "weight_s": 10.0},
    ]
    doc = summarize(jobs, created_at=100.0, now=150.0, expected=["a", "b", "c", "d"])
    assert doc["counts"] == {"QUEUED": 1, "RUNNING": 1, "COMPLETED": 1, "FAILED": 1} and doc["total"] == 4
    assert doc["progress"] == pytest.approx((30 + 5 + 10) / 51, abs=1e-4)
    assert doc["status"] == "RUNNING" and doc["failed"] == ["c"]
    assert doc["eta_s"] == pytest.approx(50 * 6 / 45, rel=0.01)
    ended = summarize([{**j, "status": "COMPLETED"} for j in jobs], created_at=0.0, now=1.0)
    assert ended["status"] == "COMPLETED" and ended["eta_s"] is None and ended["progress"] == 1.0
