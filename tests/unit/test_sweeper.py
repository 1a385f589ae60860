"""The sweeper's decision for one job, row by row of its table (scenerender.pipeline.sweeper).

The emulator tests (tests/integration/test_launch.py, test_scheduler.py) show the sweeps
happening; these pin each rule, and its reason, on the exact boundary.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from scenerender.cloud.launcher import Execution, ExecutionState
from scenerender.messages import JobDocument, JobStatus
from scenerender.pipeline.sweeper import judge
from scenerender.settings import Settings

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
SETTINGS = Settings(
    launch_grace_s=120, start_deadline_s=1800, max_launches=5, heartbeat_stale_s=60, stuck_after_s=3600, max_attempts=5
)


def ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


def queued(**fields: Any) -> JobDocument:
    return JobDocument.model_validate({"status": "QUEUED", "request_published": True, "created_at": ago(600), **fields})


def running(**fields: Any) -> JobDocument:
    return JobDocument.model_validate({"status": "RUNNING", "attempt": 1, "launches": 1, **fields})


RUN = Execution("exec-1", ExecutionState.RUNNING)
PENDING = Execution("exec-1", ExecutionState.PENDING)
FAILED = Execution("exec-1", ExecutionState.FAILED, "task 0 exited 137")
GONE = Execution("exec-1", ExecutionState.NOT_FOUND)


@pytest.mark.parametrize(
    ("doc", "execution", "action", "reason"),
    [
        # QUEUED, request not published: the spec function is still at work.
        (queued(request_published=False), None, "leave", "request not published yet"),
        # QUEUED, no execution recorded.
        (queued(launch_state="requested", launch_requested_at=ago(119)), None, "leave", "a launch is in flight"),
        (queued(launch_state="requested", launch_requested_at=ago(121)), None, "launch", "no execution was ever"),
        (queued(created_at=ago(30)), None, "leave", "the spec function is still launching"),
        (queued(), None, "launch", "no execution was ever started"),
        (
            queued(launch_state="failed", launch_error={"message": "429 quota"}),
            None,
            "launch",
            "the last launch failed: 429 quota",
        ),
        (queued(launches=5), None, "fail", "5 launches, the limit is 5"),
        # QUEUED, execution alive.
        (queued(launches=1, launched_at=ago(60)), RUN, "leave", "execution exec-1 is RUNNING"),
        (queued(launches=1, launched_at=ago(600)), PENDING, "leave", "execution exec-1 is PENDING"),
        (queued(launches=1, launched_at=ago(1801)), PENDING, "fail", "never started (quota? image?)"),
        # QUEUED, execution ended.
        (queued(launches=1), FAILED, "launch", "queued, but execution exec-1 is FAILED (task 0 exited 137)"),
        (queued(launches=1), GONE, "launch", "queued, but execution exec-1 is NOT_FOUND"),
        (queued(launches=5), FAILED, "fail", "5 executions launched and none took the request"),
        # RUNNING with a fresh heartbeat: its worker is there.
        (running(heartbeat_at=ago(59)), FAILED, "leave", "its worker is alive"),
        # RUNNING, heartbeat stale.
        (running(heartbeat_at=ago(61)), RUN, "leave", "no heartbeat for 61 s, but execution exec-1 is RUNNING"),
        (running(heartbeat_at=ago(61)), FAILED, "launch", "(attempt 1 of 5)"),
        (running(heartbeat_at=ago(61)), None, "launch", "no execution recorded"),
        (running(heartbeat_at=ago(61), attempt=5), FAILED, "fail", "no attempts left"),
        (running(heartbeat_at=ago(61), launches=5), FAILED, "fail", "no attempts left"),
        # RUNNING, no heartbeat for stuck_after_s: failed whatever the execution says.
        (running(heartbeat_at=ago(3600)), RUN, "fail", "worker lost: no heartbeat for 3600 s; execution exec-1"),
        # Ended jobs are not the sweeper's.
        (JobDocument(status=JobStatus.COMPLETED), None, "leave", ""),
        (JobDocument(status=JobStatus.FAILED), FAILED, "leave", ""),
    ],
)
def test_each_rule_of_the_sweep(doc: JobDocument, execution: Execution | None, action: str, reason: str) -> None:
    verdict = judge(doc, execution, SETTINGS, NOW)
    assert verdict.action == action, verdict
    assert reason in verdict.reason, verdict
