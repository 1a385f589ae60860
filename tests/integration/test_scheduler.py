"""The local cloud's Cloud Scheduler: ``DevStack`` runs ``scenerender.scheduler``, which calls
the sweeper function on a schedule, so a job stranded locally is swept with no worker alive
and no test or person calling the sweeper (issue 22: the sweep does not live in a worker)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from scenerender.cloud.launcher import LocalLauncher
from scenerender.dev.devstack import DevStack
from scenerender.dev.procs import record_alive
from tests.integration.conftest import FAST_RECOVERY, LocalCloud, local_cloud
from tests.integration.test_launch import ended, queue_request, spec, wait_for
from tests.mediagen import make_video

pytestmark = [pytest.mark.integration, pytest.mark.emulators]

EVERY_S = 2


@pytest.fixture(scope="module")
def scheduled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCloud]:
    overrides = {
        **FAST_RECOVERY,
        "sweep_interval_s": float(EVERY_S),
        "launch_grace_s": 2.0,
        "idle_exit_s": 5.0,
        "split_min_segments": 0,
        "work_dir": str(tmp_path_factory.mktemp("sched-worker-tmp")),
    }
    with local_cloud(tmp_path_factory.mktemp("sched-devstack"), overrides, executions=True) as made:
        yield made


@pytest.fixture(scope="module")
def stack(scheduled: LocalCloud) -> DevStack:
    return scheduled.stack


def test_a_stranded_queued_job_is_swept_on_schedule_with_no_worker_alive(
    scheduled: LocalCloud, stack: DevStack, tmp_path_factory: pytest.TempPathFactory
) -> None:
    (scheduler,) = [p for p in stack.state.processes if p.name == "scheduler"]
    assert record_alive(scheduler) and str(stack.ports.function_port("sweep")) in " ".join(scheduler.argv)
    path = make_video(tmp_path_factory.mktemp("sched-media") / "a.mp4", width=320, height=180, fps=25, duration=1.0)
    stores = scheduled.stores
    uri = f"gs://{stores.settings.media_bucket}/users/director-1/sched/a.mp4"
    stores.blobs.upload_file(path, uri, content_type="video/mp4")
    launcher = LocalLauncher(stack.executions_dir)
    # Nothing renders here: no long-running workers, and no execution was ever started.
    assert stack.workers == 0 and not list(stack.executions_dir.glob("local-*.json"))
    # The spec function published the request, then every launch failed and it gave up
    # (jobs.run answering 429 until its retries ran out): the job of issue 22, stranded.
    failure = {"code": "INTERNAL", "message": "HTTP 429 quota exceeded", "details": []}
    queue_request(stores, "it-sched", spec("it-sched", uri), {"launch_state": "failed", "launch_error": failure})
    doc = wait_for(stores, "it-sched", ended, 120)
    assert doc.status == "COMPLETED", doc.error
    # Launched once, by a sweep nobody but the scheduler called.
    assert doc.launches == 1 and doc.execution.startswith("local-") and doc.attempt == 1
    assert launcher.execution(doc.execution).state in ("RUNNING", "SUCCEEDED")
    lines = [json.loads(line) for line in Path(scheduler.log).read_text().splitlines() if line.startswith("{")]
    sweeps = [line["message"] for line in lines if line["message"].startswith("sweep:")]
    assert any("it-sched" in message and "launched local-" in message for message in sweeps), sweeps[-5:]


def test_the_scheduler_keeps_calling_and_stops_with_the_stack(stack: DevStack) -> None:
    (scheduler,) = [p for p in stack.state.processes if p.name == "scheduler"]

    def ticks() -> int:
        return Path(scheduler.log).read_text().count('"sweep: ')

    first, deadline = ticks(), time.monotonic() + EVERY_S * 15
    while ticks() < first + 2:  # two more calls, nobody else asking
        assert time.monotonic() < deadline, Path(scheduler.log).read_text()[-2000:]
        time.sleep(0.2)
    assert stack.status()["running"], stack.status()
    stack.down()
    assert not record_alive(scheduler)
