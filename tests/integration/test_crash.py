"""A worker killed with SIGKILL mid-render: the request comes back, another worker finishes the job
on attempt 2, and no partial MP4 is ever visible under renders/."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from scenerender.cloud.clients import Clients
from scenerender.settings import Settings
from tests import measure
from tests.integration.conftest import LocalCloud
from tests.mediagen import make_video

pytestmark = [pytest.mark.integration, pytest.mark.emulators]


def test_a_killed_worker_is_replaced_and_the_job_completes_once(
    stores: Clients, local: LocalCloud, settings: Settings, tmp_path: Path
) -> None:
    source = make_video(tmp_path / "long.mp4", width=640, height=360, fps=25, duration=2.0)
    uri = f"gs://{settings.media_bucket}/users/crash-user/long.mp4"
    stores.blobs.upload_file(source, uri, content_type="video/mp4")
    spec = {
        "version": 1,
        "job_id": "it-crash",
        "project_id": "p",
        "scene_id": "s",
        "owner_uid": "crash-user",
        "output": {"resolution": "1080p", "fps": 30},
        "segments": [{"id": f"s{i}", "url": uri} for i in range(10)],
    }
    stores.blobs.write_bytes(
        f"gs://{settings.spec_bucket}/jobs/it-crash.json", json.dumps(spec).encode(), content_type="application/json"
    )
    jobs = stores.jobs
    deadline = time.monotonic() + 60
    while True:
        doc = jobs.get("it-crash")
        if doc is not None and doc.status == "RUNNING" and doc.progress >= 0.1 and doc.worker:
            break
        assert (doc is None or doc.status != "COMPLETED") and time.monotonic() < deadline, doc
        time.sleep(0.1)
    victim = int(doc.worker.rsplit(":", 1)[1])
    os.killpg(victim, signal.SIGKILL)  # the worker and its ffmpeg children, as a crashed container
    local.stack.start_process(
        "worker-replacement",
        [sys.executable, "-m", "scenerender.pipeline.worker", "--serve"],
        local.env(),
        lambda: True,
    )

    renders = f"gs://{settings.render_bucket}/renders/it-crash/"
    seen_before_end: list[str] = []
    deadline = time.monotonic() + 120
    while True:
        doc = jobs.get("it-crash")
        if doc is not None and doc.status.ended:
            break
        seen_before_end += stores.blobs.list_uris(renders)
        assert time.monotonic() < deadline, doc
        time.sleep(0.2)
    assert doc.status == "COMPLETED" and doc.attempt == 2 and doc.output is not None, doc
    assert doc.worker != f"{doc.worker.rsplit(':', 1)[0]}:{victim}"
    objects = stores.blobs.list_uris(renders)
    videos = [o for o in objects if o.endswith(".mp4")]  # beside it, the run's sidecars (poster, sheet)
    assert videos == [f"{renders}{doc.run_id}/it-crash.mp4"]  # one MP4: the run's, written once
    assert all(o.startswith(f"{renders}{doc.run_id}/") for o in objects)  # all under the finished run
    assert set(seen_before_end) <= set(objects)  # nothing else (no partial or temp object) ever appeared
    out = tmp_path / "out.mp4"
    out.write_bytes(stores.blobs.read_bytes(videos[0]))
    assert measure.count_frames(out) == 600 and doc.output.size_bytes == out.stat().st_size
