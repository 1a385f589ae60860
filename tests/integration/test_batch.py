"""A batch of five scenes on the local cloud: the batch document seen live, one broken scene,
and a retry that renders only that scene."""

from __future__ import annotations

import json
import queue
import time
from pathlib import Path
from typing import Any

import pytest

from scenerender.cloud.clients import Clients
from scenerender.errors import UnreadableDocumentError
from scenerender.messages import BatchDocument
from scenerender.settings import Settings
from tests.integration.conftest import SHARED_PREFIX

pytestmark = [pytest.mark.integration, pytest.mark.emulators]


def batch_file(settings: Settings, media: dict[str, str], missing: str) -> bytes:
    scenes: list[dict[str, Any]] = []
    for i in range(5):
        url = missing if i == 2 else media["a.mp4" if i % 2 else "b.mp4"]
        scenes.append(
            {
                "version": 1,
                "project_id": "p",
                "scene_id": f"scene-{i}",
                "output": {"resolution": "640x360"},
                "segments": [{"id": "s", "url": url, "duration": 1.0}],
            }
        )
    return json.dumps({"version": 1, "batch_id": "it-batch", "owner_uid": "director-1", "scenes": scenes}).encode()


def wait_batch_end(
    seen: queue.Queue[BatchDocument | UnreadableDocumentError | None], timeout_s: float = 120
) -> list[BatchDocument]:
    docs: list[BatchDocument] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            doc = seen.get(timeout=1)
        except queue.Empty:
            continue
        if isinstance(doc, UnreadableDocumentError):
            raise doc
        if doc:
            docs.append(doc)
            if doc.status.ended:
                return docs
    raise AssertionError(f"batch did not end: {docs[-1:]}")


def test_a_batch_reports_live_and_a_retry_renders_only_the_failed_scene(
    stores: Clients, settings: Settings, scene_media: dict[str, str], tmp_path: Path
) -> None:
    missing = f"gs://{settings.media_bucket}/{SHARED_PREFIX}it/later.mp4"
    spec_uri = f"gs://{settings.spec_bucket}/jobs/it-batch.json"
    jobs = stores.jobs
    seen: queue.Queue[BatchDocument | UnreadableDocumentError | None] = queue.Queue()
    watch = jobs.watch_batch("it-batch", seen.put)
    try:
        stores.blobs.write_bytes(spec_uri, batch_file(settings, scene_media, missing), content_type="application/json")
        docs = wait_batch_end(seen)
    finally:
        watch.unsubscribe()
    for doc in docs:
        assert sum(doc.counts.values()) == doc.total == 5, doc
    progress = [d.progress for d in docs]
    assert progress == sorted(progress)
    final = docs[-1]
    assert final.status == "FAILED" and final.failed == ["it-batch-003"]
    assert final.counts == {"QUEUED": 0, "RUNNING": 0, "COMPLETED": 4, "FAILED": 1}
    failed = jobs.get("it-batch-003")
    assert failed is not None and failed.error is not None and failed.owner_uid == "director-1"
    assert failed.error.code == "INPUT_UNREACHABLE"

    # The broken input is fixed and the same batch dropped again: only that scene renders.
    stores.blobs.upload_file(Path(scene_media["dir"]) / "a.mp4", missing, content_type="video/mp4")
    seen = queue.Queue()
    watch = jobs.watch_batch("it-batch", seen.put)
    try:
        stores.blobs.write_bytes(spec_uri, batch_file(settings, scene_media, missing), content_type="application/json")
        time.sleep(1)
        docs = wait_batch_end(seen)
        while docs[-1].status != "COMPLETED":
            docs += wait_batch_end(seen)
    finally:
        watch.unsubscribe()
    assert docs[-1].counts["COMPLETED"] == 5 and docs[-1].failed == []
    retried = jobs.get("it-batch-003")
    assert retried is not None and retried.status == "COMPLETED" and len(retried.history) == 1
    for job_id in ("it-batch-001", "it-batch-002", "it-batch-004", "it-batch-005"):
        scene = jobs.get(job_id)
        assert scene is not None and scene.status == "COMPLETED" and scene.attempt == 1 and not scene.history, job_id
