"""The sweeper: no job is left QUEUED or RUNNING with nothing working on it.

Cloud Scheduler calls it (``functions/main.py`` ``on_sweep``; terraform/sweeper.tf) every
few minutes, whether or not any execution is alive. For each QUEUED or RUNNING job it asks
the launcher about the execution recorded on the job (Cloud Run's ``executions.get``
locally: the worker processes of ``LocalLauncher``) and decides (``judge``)::

    QUEUED, request published
      no execution recorded      launch (unless a launch is in flight or the job is brand new)
      execution alive, started   leave: its tasks drain the queue
      execution alive, pending   leave; FAILED/TIMEOUT past start_deadline_s (quota, image)
      execution ended            launch another
    RUNNING, heartbeat stale (heartbeat_stale_s)
      execution alive            leave: its lease runs out and a task takes the job over
      execution ended            launch another (the request comes back after its lease and
                                 the new execution takes the job over, attempt + 1)
      attempts or launches spent FAILED/TIMEOUT, saying which execution ended how
    RUNNING, no heartbeat for stuck_after_s: FAILED/TIMEOUT, whatever the execution says

Every job that needs an execution this round gets the same one, with a task per job up to
``launch_parallelism``; ``max_launches`` executions per job at most, then FAILED/TIMEOUT.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from scenerender.cloud.launcher import Execution, Launcher, launch
from scenerender.errors import RenderTimeoutError, SceneRenderError
from scenerender.messages import ErrorBlock, JobDocument, JobStatus, SweepReport
from scenerender.pipeline.steps import refresh_batch
from scenerender.ports import Jobs
from scenerender.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Verdict:
    action: Literal["leave", "launch", "fail"]
    reason: str = ""


def _age(value: datetime | None, now: datetime) -> float | None:
    return (now - value).total_seconds() if isinstance(value, datetime) else None


def judge(doc: JobDocument, execution: Execution | None, settings: Settings, now: datetime) -> Verdict:
    """What the sweeper does with one QUEUED or RUNNING job (see the module's docstring)."""
    launches = doc.launches
    if doc.status == JobStatus.QUEUED:
        return _judge_queued(doc, execution, settings, now, launches)
    if doc.status == JobStatus.RUNNING:
        return _judge_running(doc, execution, settings, now, launches)
    return Verdict("leave")


def _judge_queued(
    doc: JobDocument, execution: Execution | None, settings: Settings, now: datetime, launches: int
) -> Verdict:
    if not doc.request_published:
        return Verdict("leave", "request not published yet")
    if execution is None:
        asked = _age(doc.launch_requested_at, now)
        if doc.launch_state == "requested" and asked is not None and asked < settings.launch_grace_s:
            return Verdict("leave", "a launch is in flight")
        created = _age(doc.created_at, now)
        if not doc.launch_state and created is not None and created < settings.launch_grace_s:
            return Verdict("leave", "the spec function is still launching")
        last = doc.launch_error.message if doc.launch_error else None
        reason = "no execution was ever started" + (f"; the last launch failed: {last}" if last else "")
        if launches >= settings.max_launches:
            return Verdict("fail", f"{reason}; {launches} launches, the limit is {settings.max_launches}")
        return Verdict("launch", reason)
    if execution.alive:
        launched = _age(doc.launched_at, now)
        if not execution.started and launched is not None and launched > settings.start_deadline_s:
            return Verdict(
                "fail", f"{execution.describe()}: launched {launched:.0f} s ago and never started (quota? image?)"
            )
        return Verdict("leave", execution.describe())
    reason = f"queued, but {execution.describe()}"
    if launches >= settings.max_launches:
        return Verdict("fail", f"{reason}; {launches} executions launched and none took the request")
    return Verdict("launch", reason)


def _judge_running(
    doc: JobDocument, execution: Execution | None, settings: Settings, now: datetime, launches: int
) -> Verdict:
    beat = _age(doc.heartbeat_at or doc.started_at or doc.updated_at, now)
    if beat is None or beat < settings.heartbeat_stale_s:
        return Verdict("leave", "its worker is alive")
    if beat >= settings.stuck_after_s:
        where = f"; {execution.describe()}" if execution is not None else ""
        return Verdict("fail", f"worker lost: no heartbeat for {beat:.0f} s{where}")
    if execution is not None and execution.alive:
        return Verdict("leave", f"no heartbeat for {beat:.0f} s, but {execution.describe()}")
    ended = execution.describe() if execution is not None else "no execution recorded"
    attempt = doc.attempt
    reason = f"{ended}; the worker's last heartbeat was {beat:.0f} s ago (attempt {attempt} of {settings.max_attempts})"
    if attempt >= settings.max_attempts or launches >= settings.max_launches:
        return Verdict("fail", f"{reason}; no attempts left")
    return Verdict("launch", reason)


def sweep(*, settings: Settings, jobs: Jobs, launcher: Launcher, now: datetime | None = None) -> SweepReport:
    """One round over every unfinished job; what it launched and failed, and why."""
    now = now or datetime.now(UTC)
    report = SweepReport()
    states: dict[str, Execution] = {}
    to_launch: dict[str, str] = {}
    batches: set[str] = set()
    for doc in jobs.unfinished():
        report.checked += 1
        job_id = doc.job_id
        name = doc.execution
        try:
            if name and name not in states:
                states[name] = launcher.execution(name)
        except SceneRenderError as exc:
            report.errors.append(f"{job_id}: {exc.message}")  # asked again at the next round
            continue
        verdict = judge(doc, states.get(name), settings, now)
        if verdict.action == "fail":
            if jobs.fail(job_id, ErrorBlock.of(RenderTimeoutError(verdict.reason))):
                log.warning("job %s: FAILED/TIMEOUT: %s", job_id, verdict.reason)
                report.failed[job_id] = verdict.reason
                if doc.batch_id:
                    batches.add(doc.batch_id)
        elif verdict.action == "launch":
            to_launch[job_id] = name
            report.launched_for[job_id] = verdict.reason
    if to_launch:
        try:
            report.launched = launch(
                list(to_launch), jobs=jobs, launcher=launcher, settings=settings, expected=to_launch
            )
        except SceneRenderError as exc:
            report.errors.append(f"launch: {exc.message}")  # recorded on the jobs; retried next round
    for batch_id in sorted(batches):
        refresh_batch(jobs, batch_id)
    log.info(
        "sweep: %d unfinished, launched %s for %d, failed %d",
        report.checked,
        report.launched,
        len(to_launch),
        len(report.failed),
    )
    return report
