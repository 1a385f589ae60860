"""No stranded work, on a local cloud whose renderer runs as executions (``DevStack(executions=True)``).

Nothing renders here unless something launches it: the spec function launches an execution
(``launcher.LocalLauncher``: worker processes in job mode that exit when idle, as a Cloud Run
job's tasks), and the sweeper function, called as Cloud Scheduler calls it, launches for
requests no live execution serves and ends jobs whose executions died.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from scenerender.cloud.clients import Clients
from scenerender.cloud.launcher import LocalLauncher
from scenerender.core.spec import parse_spec
from scenerender.dev.devstack import DevStack
from scenerender.messages import BatchDocument, JobDocument, JobStatus
from scenerender.pipeline.budget import MB as MIB
from scenerender.pipeline.budget import MemoryNeed, memory_need
from scenerender.settings import Settings
from tests.integration.conftest import FAST_RECOVERY, NO_SCHEDULER, LocalCloud, local_cloud
from tests.mediagen import make_video
from tests.unit.cloud_fakes import error_of, output_of

pytestmark = [pytest.mark.integration, pytest.mark.emulators]

STACK_SETTINGS: dict[str, Any] = {
    **FAST_RECOVERY,
    **NO_SCHEDULER,
    # Tasks wait longer than a lease (10 s) before they leave, so a request a killed task held
    # comes back to a task still there; an idle execution still ends within seconds.
    "idle_exit_s": 12.0,
    "launch_parallelism": 2,
    "launch_grace_s": 2.0,
    "split_min_segments": 0,
}


@pytest.fixture(scope="module")
def executions(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCloud]:
    overrides = {**STACK_SETTINGS, "work_dir": str(tmp_path_factory.mktemp("exec-worker-tmp"))}
    with local_cloud(tmp_path_factory.mktemp("exec-devstack"), overrides, executions=True) as made:
        yield made


# This module's own stack, and its settings and clients in place of the session's.
@pytest.fixture(scope="module")
def stack(executions: LocalCloud) -> DevStack:
    return executions.stack


@pytest.fixture(scope="module")
def settings(executions: LocalCloud) -> Settings:
    return executions.settings


@pytest.fixture(scope="module")
def stores(executions: LocalCloud) -> Clients:
    return executions.stores


@pytest.fixture(scope="module")
def media(stores: Clients, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("exec-media")
    out = {}
    for name, seconds in (("short.mp4", 1.0), ("long.mp4", 2.0)):
        path = make_video(folder / name, width=640, height=360, fps=25, duration=seconds)
        uri = f"gs://{stores.settings.media_bucket}/users/director-1/launch/{name}"
        stores.blobs.upload_file(path, uri, content_type="video/mp4")
        out[name] = uri
    return out


def spec(job_id: str, url: str, segments: int = 1, **output: Any) -> dict[str, Any]:
    return {
        "version": 1,
        "job_id": job_id,
        "project_id": "p",
        "owner_uid": "director-1",
        "scene_id": "s",
        "output": {"resolution": "640x360", **output},
        "segments": [{"id": f"s{i}", "url": url} for i in range(segments)],
    }


def drop(stores: Clients, name: str, body: dict[str, Any]) -> None:
    stores.blobs.write_bytes(
        f"gs://{stores.settings.spec_bucket}/jobs/{name}.json",
        json.dumps(body).encode(),
        content_type="application/json",
    )


def wait_for(stores: Clients, job_id: str, done: Callable[[JobDocument], bool], timeout_s: float = 120) -> JobDocument:
    deadline = time.monotonic() + timeout_s
    while True:
        doc = stores.jobs.get(job_id)
        if doc is not None and done(doc):
            return doc
        assert time.monotonic() < deadline, doc
        time.sleep(0.3)


def wait_for_batch(
    stores: Clients, batch_id: str, done: Callable[[BatchDocument], bool], timeout_s: float
) -> BatchDocument:
    deadline = time.monotonic() + timeout_s
    while True:
        doc = stores.jobs.get_batch(batch_id)
        if doc is not None and done(doc):
            return doc
        assert time.monotonic() < deadline, doc
        time.sleep(0.2)


def ended(doc: JobDocument | None) -> bool:
    return doc is not None and doc.status.ended


def status(stores: Clients, job_id: str) -> str | None:
    doc = stores.jobs.get(job_id)
    return doc.status.value if doc is not None else None


def sweep(stack: DevStack) -> dict[str, Any]:
    """What Cloud Scheduler does: POST to the sweeper function."""
    url = f"http://127.0.0.1:{stack.ports.function_port('sweep')}/"
    with urllib.request.urlopen(urllib.request.Request(url, data=b"{}", method="POST"), timeout=60) as response:
        report: dict[str, Any] = json.loads(response.read())
    return report


def queue_request(stores: Clients, job_id: str, body: dict[str, Any], fields: dict[str, Any]) -> None:
    """A job as accept_spec leaves it (QUEUED, its request published), with ``fields`` on top."""
    settings = stores.settings
    uri = f"gs://{settings.spec_bucket}/jobs/{job_id}.json"
    doc = {
        "status": "QUEUED",
        "stage": "queued",
        "progress": 0.0,
        "attempt": 0,
        "spec_uri": uri,
        "spec_generation": "1",
        "request_published": True,
        **fields,
    }
    assert stores.jobs.create_job(job_id, JobDocument.model_validate(doc))
    request = {"job_id": job_id, "spec_uri": uri, "spec_generation": "1", "spec": body}
    stores.bus.publish(settings.render_topic, request, job_id=job_id)


def render_objects(stores: Clients) -> list[str]:
    """Every object in the render bucket (outputs under renders/, cached segments under cache/)."""
    return sorted(stores.blobs.list_uris(f"gs://{stores.settings.render_bucket}/"))


def quiet(stack: DevStack) -> None:
    """Wait until every execution the earlier tests launched has ended (their idle tasks leave)."""
    launcher = LocalLauncher(stack.executions_dir)
    names = [p.stem for p in stack.executions_dir.glob("local-*.json")]
    deadline = time.monotonic() + 60
    while any(launcher.execution(n).alive for n in names):
        assert time.monotonic() < deadline
        time.sleep(0.5)


def idle_execution(stack: DevStack) -> str:
    """An execution that found nothing to do and ended (SUCCEEDED), as a real one would."""
    launcher = LocalLauncher(stack.executions_dir)
    name = launcher.run(1)
    deadline = time.monotonic() + 60
    while launcher.execution(name).alive:
        assert time.monotonic() < deadline
        time.sleep(0.5)
    assert launcher.execution(name).state == "SUCCEEDED"
    return name


def test_a_launch_that_fails_is_retried_and_the_job_completes(
    stores: Clients, stack: DevStack, media: dict[str, str]
) -> None:
    """The stranded job of issue 22: jobs.run fails after the request is published. The event is
    redelivered and, the launch being its own recorded step, launched again."""
    executions = stack.executions_dir
    saved = executions.with_name("executions.saved")
    # The launcher breaks (its directory becomes a file: starting an execution fails, as a
    # jobs.run answering 500 or 429 does), and mends a little later.
    shutil.move(executions, saved)
    executions.write_text("not a directory")
    try:
        drop(stores, "it-launch-retry", spec("it-launch-retry", media["short.mp4"]))
        doc = wait_for(stores, "it-launch-retry", lambda d: d.launch_state == "failed", 60)
        assert doc.status == "QUEUED" and doc.request_published and not doc.execution
        assert doc.launch_error is not None and "could not start local execution" in doc.launch_error.message
        time.sleep(3)  # nothing renders it meanwhile: no execution exists
        assert status(stores, "it-launch-retry") == "QUEUED"
    finally:
        executions.unlink()
        shutil.move(saved, executions)
    doc = wait_for(stores, "it-launch-retry", ended)
    assert output_of(doc) and doc.execution.startswith("local-") and doc.launches == 1 and doc.attempt == 1
    assert doc.launch_state == "launched" and doc.launch_error is None


def test_the_sweeper_launches_for_queued_requests_no_execution_serves(
    stores: Clients, stack: DevStack, media: dict[str, str]
) -> None:
    ended_execution = idle_execution(stack)
    # One job whose execution ended before it took the request; one whose every launch failed
    # (the spec function gave up retrying).
    queue_request(
        stores,
        "it-sweep-dead",
        spec("it-sweep-dead", media["short.mp4"]),
        {"launch_state": "launched", "execution": ended_execution, "launches": 1},
    )
    failure = {"code": "INTERNAL", "message": "HTTP 429 quota", "details": []}
    queue_request(
        stores,
        "it-sweep-never",
        spec("it-sweep-never", media["short.mp4"]),
        {"launch_state": "failed", "launch_error": failure},
    )
    time.sleep(3)
    assert all(status(stores, j) == "QUEUED" for j in ("it-sweep-dead", "it-sweep-never"))
    report = sweep(stack)
    assert set(report["launched_for"]) >= {"it-sweep-dead", "it-sweep-never"}, report
    assert "SUCCEEDED" in report["launched_for"]["it-sweep-dead"]
    assert "HTTP 429 quota" in report["launched_for"]["it-sweep-never"]
    for job_id, launches in (("it-sweep-dead", 2), ("it-sweep-never", 1)):
        doc = wait_for(stores, job_id, ended)
        assert output_of(doc) and doc.execution == report["launched"] and doc.launches == launches
    assert sweep(stack)["launched"] is None  # nothing left to launch for


def test_tasks_killed_mid_batch_are_swept_relaunched_and_the_batch_completes(
    stores: Clients, settings: Settings, stack: DevStack, media: dict[str, str]
) -> None:
    # The earlier tests' executions wait idle_exit_s before they leave: one still pulling would
    # take a scene, and its task is not among those killed here.
    quiet(stack)
    scenes = [spec(f"it-kill-{i}", media["long.mp4"], segments=5, resolution="1280x720") for i in range(3)]
    for scene in scenes:
        del scene["job_id"]
    drop(stores, "it-kill", {"version": 1, "batch_id": "it-kill", "owner_uid": "director-1", "scenes": scenes})
    ids = [f"it-kill-{i:03d}" for i in range(1, 4)]
    jobs = stores.jobs
    first = wait_for(stores, ids[0], lambda d: bool(d.execution), 60).execution
    launcher = LocalLauncher(stack.executions_dir)
    assert len(launcher.tasks(first)) == 2  # three scenes, launch_parallelism 2: two tasks
    deadline = time.monotonic() + 90
    while not any((d := jobs.get(j)) is not None and d.status == "RUNNING" and d.progress >= 0.1 for j in ids):
        assert time.monotonic() < deadline, [jobs.get(j) for j in ids]
        time.sleep(0.1)
    # The whole execution dies, as a node lost with its tasks. Its tasks are frozen first
    # (SIGSTOP), so what they had done when they died is read exactly, however late this test
    # runs on a loaded machine: a scene whose MP4 was already uploaded may have its report on
    # the way (the upload comes before it) and end in this execution; every other scene RUNNING
    # in it was killed mid-render.
    tasks = launcher.tasks(first)
    for task in tasks:
        os.killpg(int(task["pid"]), signal.SIGSTOP)
    try:
        render_prefix = f"gs://{settings.render_bucket}/renders/it-kill-"
        uploaded = {uri.split("/")[4] for uri in stores.blobs.list_uris(render_prefix) if uri.endswith(".mp4")}
        at_kill = {j: jobs.get(j) for j in ids}
    finally:
        for task in tasks:
            os.killpg(int(task["pid"]), signal.SIGKILL)
    # The scenes the killed tasks held mid-render: RUNNING in the execution that died (a worker
    # records its execution on the job when it takes it), their MP4 not yet written.
    killed = [j for j, d in at_kill.items() if d is not None and d.status == "RUNNING" and d.execution == first]
    killed = [j for j in killed if j not in uploaded]
    assert killed, (uploaded, at_kill)
    deadline = time.monotonic() + 240
    relaunched: set[str] = set()
    while not all(ended(jobs.get(j)) for j in ids):
        assert time.monotonic() < deadline, [jobs.get(j) for j in ids]
        report = sweep(stack)
        relaunched |= set(report["launched_for"])
        time.sleep(2)
    assert launcher.execution(first).state == "FAILED"
    assert relaunched  # the sweeper launched the execution that finished the batch
    for job_id in ids:
        doc = jobs.get(job_id)
        assert output_of(doc) and doc is not None
        if job_id in killed:  # taken over by another execution: the second attempt
            assert doc.execution != first and doc.attempt == 2, doc
        elif job_id not in uploaded:  # never reached by the dead execution's tasks
            assert doc.execution != first, doc
    outputs = [
        o for o in stores.blobs.list_uris(f"gs://{settings.render_bucket}/renders/it-kill-") if o.endswith(".mp4")
    ]
    # One MP4 per scene, the one on its job: nothing partial from the killed tasks.
    assert sorted(outputs) == sorted(output_of(jobs.get(j)).uri for j in ids)
    # The report function refreshes the batch's summary after it writes the job's end, so the
    # last scene's job may be seen COMPLETED a moment before its batch.
    batch = wait_for_batch(stores, "it-kill", lambda b: b.status != JobStatus.RUNNING, 30)
    assert batch.status == JobStatus.COMPLETED and batch.counts[JobStatus.COMPLETED] == 3, batch


def test_jobs_whose_executions_died_for_good_end_failed_with_the_reason(
    stores: Clients, settings: Settings, stack: DevStack, media: dict[str, str]
) -> None:
    launcher = LocalLauncher(stack.executions_dir)
    dead = launcher.run(1)
    for task in launcher.tasks(dead):
        os.killpg(int(task["pid"]), signal.SIGKILL)
    while launcher.execution(dead).alive:
        time.sleep(0.2)
    stale = datetime.now(UTC) - timedelta(seconds=30)
    jobs = stores.jobs
    jobs.create_job(
        "it-dead-running",
        JobDocument.model_validate(
            {
                "status": "RUNNING",
                "attempt": settings.max_attempts,
                "heartbeat_at": stale,
                "request_published": True,
                "execution": dead,
                "launches": 1,
            }
        ),
    )
    jobs.create_job(
        "it-dead-queued",
        JobDocument.model_validate(
            {
                "status": "QUEUED",
                "attempt": 0,
                "request_published": True,
                "execution": dead,
                "launches": settings.max_launches,
                "launched_at": stale,
            }
        ),
    )
    report = sweep(stack)
    assert {"it-dead-running", "it-dead-queued"} <= set(report["failed"]), report
    running = error_of(jobs.get("it-dead-running"))
    assert running.code == "TIMEOUT"
    message = running.message
    assert f"execution {dead} is FAILED" in message and "task(s) 0 ended without exiting cleanly" in message
    assert f"attempt {settings.max_attempts} of {settings.max_attempts}" in message and "no attempts left" in message
    queued = error_of(jobs.get("it-dead-queued"))
    assert queued.code == "TIMEOUT"
    assert f"{settings.max_launches} executions launched and none took the request" in queued.message


def test_a_task_without_time_for_a_render_hands_it_back_and_another_execution_renders_it(
    stores: Clients, stack: DevStack, media: dict[str, str]
) -> None:
    quiet(stack)  # so only the late execution's task is there to take the request
    launcher = LocalLauncher(stack.executions_dir)
    # An execution whose tasks have 8 s in all (jobs.run's override, as a task near its
    # timeout): a render estimated at 10 s or more does not fit.
    late = launcher.run(1, env={Settings.env_name("task_timeout_s"): "8"})
    body = spec("it-late", media["long.mp4"], segments=2)
    queue_request(stores, "it-late", body, {"launch_state": "launched", "execution": late, "launches": 1})
    doc = wait_for(stores, "it-late", ended, 120)
    handed = doc.handed_back
    assert output_of(doc) and handed is not None
    assert handed.execution == late and handed.estimate_s > handed.task_left_s
    assert doc.execution != late and doc.launches == 2 and doc.attempt == 1
    deadline = time.monotonic() + 30
    while launcher.execution(late).alive:  # the late task took nothing more and left
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert launcher.execution(late).state == "SUCCEEDED"


def test_a_render_bigger_than_the_renderers_memory_is_refused_with_the_numbers_before_any_fetch(
    stores: Clients, settings: Settings, stack: DevStack, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """/tmp is memory on Cloud Run: a spec whose inputs and intermediates exceed the memory the
    job is given ends FAILED/LIMIT_EXCEEDED with the numbers, and nothing is fetched.

    The job template gets the memory as Terraform writes it (renderer.memory = "2Gi" gives
    SCENERENDER_MEMORY_MB = 2048). The scene is sized so that its intermediates and working
    memory fit and its input, 96 MiB by the bucket's metadata, tips it over. The input is
    not a video: a render that fetched and probed it would end with an input error instead.
    """
    quiet(stack)
    memory_mb, cpus, input_mib = 2048, 2, 96
    big = tmp_path_factory.mktemp("exec-big") / "big.mp4"
    big.write_bytes(bytes(input_mib * MIB))
    uri = f"gs://{settings.media_bucket}/users/director-1/launch/big.mp4"
    stores.blobs.upload_file(big, uri, content_type="video/mp4")
    task = Settings(memory_mb=memory_mb, cpus=cpus)

    def scene(duration: float) -> dict[str, Any]:
        body = spec("it-memory", uri, resolution="1280x720", fps=30)
        body["segments"][0]["duration"] = duration
        return body

    def need(duration: float, input_bytes: int) -> MemoryNeed:
        return memory_need(parse_spec(json.dumps(scene(duration)).encode()), task, lambda url: input_bytes)

    # The longest scene whose intermediates and working memory leave half the input's room.
    low, high = 1.0, 1800.0
    while high - low > 1:
        mid = (low + high) / 2
        low, high = (mid, high) if need(mid, 0).total + input_mib * MIB // 2 <= task.memory_mb * MIB else (low, mid)
    duration = round(low)
    assert need(duration, 0).total <= memory_mb * MIB < need(duration, input_mib * MIB).total

    template_path = stack.executions_dir / LocalLauncher.TEMPLATE_ENV
    template = template_path.read_text()
    given = {Settings.env_name("memory_mb"): str(memory_mb), Settings.env_name("cpus"): str(cpus)}
    template_path.write_text(json.dumps({**json.loads(template), **given}))
    work_dir = Path(settings.work_dir)
    before = {"work": sorted(work_dir.iterdir()), "renders": render_objects(stores)}
    try:
        drop(stores, "it-memory", scene(duration))
        doc = wait_for(stores, "it-memory", ended, 120)
    finally:
        template_path.write_text(template)
    # Nothing half-written: no temp dir left by the worker (quiet(): no other task is alive to
    # make one), no output, partial object or cached segment in the render bucket.
    assert sorted(work_dir.iterdir()) == before["work"]
    assert render_objects(stores) == before["renders"]
    error = error_of(doc)
    assert error.code == "LIMIT_EXCEEDED", error
    message = error.message
    assert message.startswith("memory_mb: the render needs about inputs 96 MiB + intermediates "), message
    assert "the renderer has 2,048 MiB of memory, and its /tmp is memory on Cloud Run" in message
    assert error.wire()["details"] == [{"path": "segments[0].url", "problem": "96 MiB to fetch"}]
    # Refused on its first attempt, before any stage of the render wrote progress.
    assert doc.attempt == 1 and doc.progress == 0.0 and doc.execution.startswith("local-")
