"""Launching the renderer, as its own recorded step, and asking whether an execution lives.

A render request is published first (``request_published`` on the job), then launched: one
Cloud Run job execution whose tasks drain the render subscription and exit when idle. The
launch is recorded on every job it serves::

    launch_state         "requested" -> "launched" | "failed"
    launch_requested_at  when the latest launch was asked for
    execution            the execution it started (jobs.run's answer), "" before any
    launches             how many executions were started for this run of the job
    launch_error         why the latest launch failed (a redelivery or the sweeper retries it)

A launch that fails raises ``TransientError``: the spec event is redelivered and, since
``execution`` is still empty, launched again. The sweeper (``scenerender.pipeline.sweeper``) launches
for requests whose execution has died. Three launchers sit behind one interface:

- ``CloudRunLauncher``: the Cloud Run Admin API (``jobs.run`` with a ``taskCount`` override,
  ``executions.get``).
- ``LocalLauncher``: the local cloud's equivalent. An execution is ``task_count`` worker
  processes in job mode (each exits when idle), tracked in a directory; a task killed
  before it exits leaves the execution FAILED, as on Cloud Run.
- ``AlwaysOnWorkers``: ``scenerender dev up``'s long-running workers; nothing to launch.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from scenerender.errors import SceneRenderError, TransientError
from scenerender.messages import ErrorBlock
from scenerender.ports import LaunchRecords
from scenerender.settings import Settings, child_env

log = logging.getLogger(__name__)
RUN_API = "https://run.googleapis.com/v2"
LAUNCH_CLAIM_S = 60.0  # a launch "requested" longer ago than this died with its caller: claimable again


class ExecutionState(StrEnum):
    """Where a Cloud Run job execution (or a local one) is; not a job's status (``messages.JobStatus``)."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    NOT_FOUND = "NOT_FOUND"


ALIVE_STATES = frozenset({ExecutionState.PENDING, ExecutionState.RUNNING})


@dataclass(frozen=True)
class Execution:
    """What became of one execution."""

    name: str
    state: ExecutionState
    detail: str = ""

    @property
    def alive(self) -> bool:
        return self.state in ALIVE_STATES

    @property
    def started(self) -> bool:
        return self.state != ExecutionState.PENDING

    def describe(self) -> str:
        return f"execution {self.name} is {self.state}" + (f" ({self.detail})" if self.detail else "")


class Launcher(Protocol):
    def run(self, task_count: int, env: Mapping[str, str] | None = None) -> str:
        """Start an execution of ``task_count`` tasks; its name. ``TransientError`` if it could not."""
        ...

    def execution(self, name: str) -> Execution: ...


def launch(
    job_ids: list[str],
    *,
    jobs: LaunchRecords,
    launcher: Launcher,
    settings: Settings,
    expected: Mapping[str, str] | None = None,
) -> str | None:
    """Start one execution for these jobs' published requests and record it on each.

    Only jobs whose recorded execution is still ``expected[job_id]`` ("" if none: a first
    launch) and that are QUEUED or RUNNING with their request published are claimed, so a
    redelivered event or two sweeps never launch twice for the same loss. The execution gets
    a task per claimed job, up to ``settings.launch_parallelism``. Returns its name, or None
    if there was nothing to launch. A failed launch is recorded on the jobs and raised.
    """
    expected = expected or {}
    claimed = [j for j in job_ids if jobs.claim_launch(j, expected.get(j, ""), LAUNCH_CLAIM_S)]
    if not claimed:
        return None
    tasks = min(len(claimed), settings.launch_parallelism)
    try:
        name = launcher.run(tasks)
    except SceneRenderError as exc:
        for job_id in claimed:
            jobs.release_launch(job_id, ErrorBlock.of(exc))
        log.warning("launch for %d job(s) failed: %s", len(claimed), exc.message)
        raise
    for job_id in claimed:
        jobs.record_launch(job_id, name, tasks)
    log.info("launched %s (%d task(s)) for %s", name, tasks, ", ".join(claimed[:10]))
    return name


def current_execution(settings: Settings) -> str:
    """The execution this process is a task of (Cloud Run sets CLOUD_RUN_EXECUTION, and so does
    ``LocalLauncher``); "" outside one."""
    return settings.cloud_run_execution


def launcher_for(settings: Settings) -> Launcher:
    """The launcher this deployment uses: Cloud Run, local executions, or always-on workers."""
    if settings.renderer_job:
        return CloudRunLauncher(settings)
    if settings.local_executions_dir:
        return LocalLauncher(Path(settings.local_executions_dir))
    return AlwaysOnWorkers()


class AlwaysOnWorkers:
    """``scenerender dev up``'s long-running workers drain the queue: there is nothing to start,
    and they count as one execution that never ends."""

    NAME = "always-on-workers"

    def run(self, task_count: int, env: Mapping[str, str] | None = None) -> str:
        return self.NAME

    def execution(self, name: str) -> Execution:
        return Execution(name, ExecutionState.RUNNING, "long-running local workers")


class HttpSession(Protocol):
    def post(self, url: str, *, json: Any, timeout: float) -> Any: ...
    def get(self, url: str, *, timeout: float) -> Any: ...


class CloudRunLauncher:
    """The Cloud Run Admin API v2: ``jobs.run`` (taskCount override) and ``executions.get``.

    Its caller needs run.jobs.run, run.jobs.runWithOverrides and run.executions.get on the
    job (terraform/sweeper.tf grants them as one custom role).
    """

    def __init__(self, settings: Settings, session: HttpSession | None = None) -> None:
        self.job = f"projects/{settings.project_id}/locations/{settings.region}/jobs/{settings.renderer_job}"
        self._session = session

    @property
    def session(self) -> HttpSession:
        if self._session is None:
            import google.auth
            from google.auth.transport.requests import AuthorizedSession

            credentials, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
            self._session = AuthorizedSession(credentials)
        return self._session

    def run(self, task_count: int, env: Mapping[str, str] | None = None) -> str:
        overrides: dict[str, Any] = {"taskCount": task_count}
        if env:
            overrides["containerOverrides"] = [{"env": [{"name": k, "value": v} for k, v in env.items()]}]
        try:
            response = self.session.post(f"{RUN_API}/{self.job}:run", json={"overrides": overrides}, timeout=30)
        except Exception as exc:  # transport errors of requests/google-auth
            raise TransientError(f"could not start {self.job}: {exc}") from exc
        if response.status_code >= 400:
            # 403 (a missing grant), 429 (quota) and 5xx all succeed later once fixed or freed;
            # the request is queued meanwhile, so the launch is retried (redelivery, sweeper).
            raise TransientError(f"could not start {self.job}: HTTP {response.status_code} {response.text[:300]}")
        operation = response.json()
        # jobs.run answers with a long-running Operation whose metadata is the new Execution.
        name = str((operation.get("metadata") or {}).get("name") or "")
        if not name:
            raise TransientError(f"jobs.run on {self.job} named no execution: {str(operation)[:300]}")
        return name

    def execution(self, name: str) -> Execution:
        try:
            response = self.session.get(f"{RUN_API}/{name}", timeout=30)
        except Exception as exc:
            raise TransientError(f"could not read {name}: {exc}") from exc
        if response.status_code == 404:
            return Execution(name, ExecutionState.NOT_FOUND)
        if response.status_code >= 400:
            raise TransientError(f"could not read {name}: HTTP {response.status_code} {response.text[:300]}")
        return execution_from_resource(name, response.json())


def execution_from_resource(name: str, resource: dict[str, Any]) -> Execution:
    """An ``Execution`` from the Cloud Run v2 Execution resource (its counts and times): Google's
    JSON, read here once into the typed ``Execution``."""
    counts = {k: int(resource.get(f"{k}Count") or 0) for k in ("task", "running", "succeeded", "failed", "cancelled")}
    detail = (
        f"{counts['running']} running, {counts['succeeded']} succeeded, {counts['failed']} failed, "
        f"{counts['cancelled']} cancelled of {counts['task']} tasks"
    )
    conditions: list[dict[str, Any]] = resource.get("conditions") or []
    completed: dict[str, Any] = next((c for c in conditions if c.get("type") == "Completed"), {})
    if completed.get("message"):
        detail += f"; {completed['message']}"
    if not resource.get("completionTime"):
        return Execution(name, ExecutionState.RUNNING if resource.get("startTime") else ExecutionState.PENDING, detail)
    if counts["cancelled"]:
        return Execution(name, ExecutionState.CANCELLED, detail)
    succeeded = completed.get("state") == "CONDITION_SUCCEEDED" or (
        counts["task"] > 0 and counts["succeeded"] == counts["task"]
    )
    return Execution(name, ExecutionState.SUCCEEDED if succeeded else ExecutionState.FAILED, detail)


class LocalLauncher:
    """Executions as local worker processes (the local cloud has no Cloud Run).

    ``run`` starts ``task_count`` ``python -m scenerender.pipeline.worker`` processes in job mode, each
    in its own process group, with the environment the stack wrote to ``template-env.json``
    (the job's template; ``env`` overrides it, as jobs.run's container overrides do) and
    Cloud Run's task variables. ``<name>.json`` lists them. A task that exits normally writes
    ``<name>.task-<i>.exit``; one that is killed writes nothing, so the execution ends FAILED.
    """

    TEMPLATE_ENV = "template-env.json"

    def __init__(self, root: Path) -> None:
        self.root = root

    def run(self, task_count: int, env: Mapping[str, str] | None = None) -> str:
        name = f"local-{time.strftime('%H%M%S')}-{secrets.token_hex(3)}"
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            template = self._template()
            tasks = []
            for index in range(task_count):
                tasks.append(self._start_task(name, index, task_count, {**template, **(env or {})}))
            record = self.root / f"{name}.json"
            partial = record.with_name(record.name + ".part")
            partial.write_text(json.dumps({"name": name, "tasks": tasks, "started_at": time.time()}))
            os.replace(partial, record)
        except OSError as exc:
            raise TransientError(f"could not start local execution in {self.root}: {exc}") from exc
        return name

    def _template(self) -> dict[str, str]:
        path = self.root / self.TEMPLATE_ENV
        if not path.exists():
            return child_env()
        return {str(k): str(v) for k, v in json.loads(path.read_text()).items()}

    def _start_task(self, name: str, index: int, count: int, base: dict[str, str]) -> dict[str, Any]:
        env = {
            **base,
            "CLOUD_RUN_EXECUTION": name,
            "CLOUD_RUN_TASK_INDEX": str(index),
            "CLOUD_RUN_TASK_COUNT": str(count),
            Settings.env_name("task_exit_file"): str(self.root / f"{name}.task-{index}.exit"),
        }
        # The tasks of one execution share this machine's cores, as a job's tasks each have their own.
        env.setdefault(Settings.env_name("cpus"), str(max(1, (os.cpu_count() or 1) // count)))
        with open(self.root / f"{name}.task-{index}.log", "wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "scenerender.pipeline.worker"],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )
        # Reaped when it ends, so a finished task is not a zombie that looks alive.
        threading.Thread(target=proc.wait, name=f"reap-{proc.pid}", daemon=True).start()
        return {"index": index, "pid": proc.pid, "start_ticks": _start_ticks(proc.pid)}

    def tasks(self, name: str) -> list[dict[str, Any]]:
        path = self.root / f"{name}.json"
        if not path.exists():
            return []
        return list(json.loads(path.read_text())["tasks"])

    def execution(self, name: str) -> Execution:
        path = self.root / f"{name}.json"
        if not path.exists():
            return Execution(name, ExecutionState.NOT_FOUND)
        tasks = self.tasks(name)
        running = [t for t in tasks if _alive(int(t["pid"]), t.get("start_ticks"))]
        exits = {t["index"]: self.root / f"{name}.task-{t['index']}.exit" for t in tasks}
        failed = [i for i, p in exits.items() if not (p.exists() and p.read_text().strip() == "0")]
        if running:
            return Execution(name, ExecutionState.RUNNING, f"{len(running)} of {len(tasks)} tasks running")
        if failed:
            return Execution(
                name, ExecutionState.FAILED, f"task(s) {', '.join(map(str, failed))} ended without exiting cleanly"
            )
        return Execution(name, ExecutionState.SUCCEEDED, f"{len(tasks)} tasks exited")

    def stop_all(self) -> list[int]:
        """SIGKILL every task of every execution here (the stack going down); their pids."""
        import signal

        stopped = []
        for record in sorted(self.root.glob("*.json")):
            if record.name == self.TEMPLATE_ENV:
                continue
            for task in json.loads(record.read_text()).get("tasks", []):
                pid = int(task["pid"])
                if _alive(pid, task.get("start_ticks")):
                    try:
                        os.killpg(pid, signal.SIGKILL)
                        stopped.append(pid)
                    except OSError:
                        pass
        return stopped


def _proc_stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces; the fields after its closing parenthesis do not.
    return raw[raw.rindex(")") + 2 :].split()


def _start_ticks(pid: int) -> int | None:
    fields = _proc_stat(pid)
    return int(fields[19]) if fields else None  # field 22: start time in clock ticks since boot


def _alive(pid: int, start_ticks: int | None) -> bool:
    """The process still runs (not a zombie) and is the one started (not a reused pid)."""
    fields = _proc_stat(pid)
    if fields is None or fields[0] in ("Z", "X"):
        return False
    return start_ticks is None or int(fields[19]) == int(start_ticks)
