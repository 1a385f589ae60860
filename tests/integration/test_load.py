"""50 specs dropped at once with two workers: 50 COMPLETED, none lost, none rendered twice."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from scenerender.cloud.clients import Clients
from scenerender.messages import JobDocument, JobStatus
from scenerender.settings import Settings
from tests.unit.cloud_fakes import output_of

pytestmark = [pytest.mark.integration, pytest.mark.emulators]
JOBS = 50


def test_fifty_specs_at_once(stores: Clients, settings: Settings, scene_media: dict[str, str]) -> None:
    ids = [f"it-load-{i:02d}" for i in range(JOBS)]
    started = time.monotonic()
    for job_id in ids:
        spec: dict[str, Any] = {
            "version": 1,
            "job_id": job_id,
            "project_id": "p",
            "scene_id": "s",
            "owner_uid": "load-user",
            "output": {"resolution": "640x360", "preview": True},
            "segments": [{"id": "a", "url": scene_media["a.mp4"]}],
        }
        stores.blobs.write_bytes(
            f"gs://{settings.spec_bucket}/jobs/{job_id}.json",
            json.dumps(spec).encode(),
            content_type="application/json",
        )
    jobs = stores.jobs
    pending = set(ids)
    docs: dict[str, JobDocument] = {}
    deadline = time.monotonic() + 300
    while pending:
        assert time.monotonic() < deadline, f"{len(pending)} jobs did not end: {sorted(pending)[:5]}"
        for job_id in list(pending):
            doc = jobs.get(job_id)
            if doc is not None and doc.status.ended:
                docs[job_id] = doc
                pending.discard(job_id)
        time.sleep(0.5)
    elapsed = time.monotonic() - started
    statuses = [d.status for d in docs.values()]
    assert statuses.count(JobStatus.COMPLETED) == JOBS, [d.error for d in docs.values() if d.status != "COMPLETED"]
    assert all(d.attempt == 1 for d in docs.values())  # none rendered twice
    outputs = [
        o for o in stores.blobs.list_uris(f"gs://{settings.render_bucket}/renders/it-load-") if o.endswith(".mp4")
    ]
    assert sorted(outputs) == sorted(output_of(d).uri for d in docs.values())  # one object per job
    assert all(output_of(d).uri.endswith(f"/{d.job_id}/{d.run_id}/{d.job_id}.mp4") for d in docs.values())
    print(f"\n{JOBS} jobs, 2 workers: all COMPLETED in {elapsed:.1f} s")
