"""The renderer worker: ``python -m scenerender.pipeline.worker [--serve]`` (the Cloud Run job's entry point).

It pulls render requests one at a time, keeps each message leased while it renders
(renders outlast the ack deadline), and acknowledges only once the outcome is durable: the
report is published (the completion function turns it into the job's final state), or the
job is already final. Between requests it first takes segment encodes that a long scene on
another worker shares out (``scenerender.pipeline.workitems``): they unblock a scene already running.
Job mode drains both subscriptions and exits after ``idle_exit_s`` with nothing to do;
``--serve`` keeps pulling (local use).

A task has a timeout (``task_timeout_s``, from Terraform). Before it renders a request it
compares the render's estimate (``scenerender.pipeline.budget``) with the time it has left: a render
that would not fit is handed back (nack) for another execution, which it launches, and the
task takes nothing more. Stuck jobs are not swept here: ``scenerender.pipeline.sweeper`` runs on a
schedule, whether or not any execution is alive.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import time
from pathlib import Path
from types import FrameType

from pydantic import ValidationError

from scenerender.cloud.bus import LeasedMessage, pull_one
from scenerender.cloud.clients import Clients
from scenerender.cloud.launcher import current_execution, launch, launcher_for
from scenerender.cloud.progress import ProgressThrottle
from scenerender.core.spec import parse_spec
from scenerender.errors import SceneRenderError, SpecError
from scenerender.logs import configure_logging
from scenerender.messages import HandedBack, RenderRequest
from scenerender.pipeline import steps
from scenerender.pipeline.budget import estimated_render_s
from scenerender.pipeline.workitems import ItemStore, run_item, worker_id
from scenerender.ports import Stores
from scenerender.settings import Settings, get_settings

log = logging.getLogger("scenerender.pipeline.worker")
ITEM_PULL_TIMEOUT_S = 0.5


class Stop:
    """Set by SIGTERM/SIGINT: finish the current message, take no new one."""

    def __init__(self) -> None:
        self.requested = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        log.info("signal %d: stopping after the current job", signum)
        self.requested = True


HANDED_BACK = "HANDED_BACK"


class Task:
    """This task's clock: when it started and how long it may run (``task_timeout_s``)."""

    def __init__(self, settings: Settings, started: float | None = None) -> None:
        self.timeout_s = settings.task_timeout_s
        self.started = time.monotonic() if started is None else started
        self.handed_back = False

    def left_s(self) -> float | None:
        """Seconds until the task's timeout; None without one."""
        return self.timeout_s - (time.monotonic() - self.started) if self.timeout_s else None


def process_one(
    settings: Settings, stores: Stores, items: ItemStore | None, *, timeout_s: float, task: Task | None = None
) -> bool | None:
    """Handle one shared segment encode, else one render request. None: nothing came; else
    whether the message was acknowledged.

    Items come first: they unblock a scene already running. Their pull waits only briefly
    (an empty pull returns at its deadline), so a queue of render requests is not slowed;
    an item a short pull misses is still encoded, by its scene's own worker. ``items``: the
    segment-work store (None: segments are not shared, ``split_min_segments`` 0).
    """
    if items is not None:
        item = pull_one(settings.segment_subscription, timeout_s=ITEM_PULL_TIMEOUT_S, settings=settings)
        if item is not None:
            handle_item(settings, stores, items, item)
            return True
    message = pull_one(settings.render_subscription, timeout_s=timeout_s, settings=settings)
    if message is None:
        return None
    return handle_request(settings, stores, items, message, task=task)


def handle_item(settings: Settings, stores: Stores, items: ItemStore, item: LeasedMessage) -> None:
    with item:
        started = time.monotonic()
        done = run_item(item.data, settings=settings, blobs=stores.blobs, jobs=stores.jobs, items=items)
        item.ack()
        log.info(
            "segment %s of job %s: %s in %.1f s",
            str(item.data.get("index", "?")),
            str(item.data.get("job_id", "?")),
            done,
            time.monotonic() - started,
        )


def hand_back_if_late(
    settings: Settings, stores: Stores, request: RenderRequest, message: LeasedMessage, task: Task
) -> bool:
    """Give the request back, and launch an execution for it, if its render would outlast this task."""
    left = task.left_s()
    if left is None:
        return False
    try:
        spec = parse_spec(json.dumps(request.spec).encode())
    except SpecError:
        return False  # the render reports it
    estimate = estimated_render_s(spec, settings)
    if estimate <= left:
        return False
    job_id = request.job_id
    message.nack()
    task.handed_back = True
    jobs = stores.jobs
    execution = current_execution(settings)
    reason = HandedBack(execution=execution, estimate_s=round(estimate, 1), task_left_s=round(left, 1))
    log.info("job %s: estimated %.0f s, %.0f s left in this task: handed back", job_id, estimate, left)
    try:
        jobs.note(job_id, {"handed_back": reason.wire()})
        doc = jobs.get(job_id)
        # A fresh execution, whatever the job recorded: this one's tasks are all as late.
        launch(
            [job_id],
            jobs=jobs,
            launcher=launcher_for(settings),
            settings=settings,
            expected={job_id: doc.execution if doc is not None else ""},
        )
    except SceneRenderError as exc:
        # The request is back in the queue; the sweeper launches for it if nothing else does.
        log.warning("job %s: launch after hand-back failed: %s", job_id, exc.message)
    return True


def backoff_s(settings: Settings, delivery_attempt: int) -> float:
    """How long a request that failed around its render stays away: one heartbeat_stale_s
    (long enough for a dead holder's lock or heartbeat to lapse) per delivery so far."""
    return settings.heartbeat_stale_s * max(1, delivery_attempt)


def handle_request(
    settings: Settings, stores: Stores, items: ItemStore | None, message: LeasedMessage, task: Task | None = None
) -> bool:
    with message:
        try:
            request = RenderRequest.model_validate(message.data)
        except ValidationError as exc:
            # No job to record it on, and no delivery will ever read better: dropped, loudly.
            log.error("render request %s dropped: %s", message.message_id, exc.errors(include_url=False)[:3])
            message.ack()
            return True
        if task is not None and hand_back_if_late(settings, stores, request, message, task):
            return False
        job_id = request.job_id
        jobs = stores.jobs
        throttle = ProgressThrottle(lambda stage, value: jobs.set_progress(job_id, stage, value))
        started = time.monotonic()
        try:
            outcome = steps.run_render_request(
                request,
                settings=settings,
                blobs=stores.blobs,
                jobs=jobs,
                bus=stores.bus,
                progress_writer=throttle,
                items=items,
            )
        except Exception:
            # The render's own errors are reported inside; what escapes is the stores failing
            # around it (e.g. a transaction lock that a killed worker left on the job, until it
            # expires). Given back at once, the request would come straight back and fail
            # again, and the subscription's delivery attempts would be gone in seconds.
            delay = backoff_s(settings, message.delivery_attempt)
            log.exception("job %s: failed around the render; back in %.0f s", job_id, delay)
            message.nack(delay)
            return False
        throttle.flush()
        if outcome.ack:
            message.ack()
        else:
            message.nack(outcome.retry_after_s)
        log.info(
            "job %s: %s in %.1f s (delivery %s)",
            job_id,
            outcome.status,
            time.monotonic() - started,
            message.delivery_attempt,
        )
        return outcome.ack


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scenerender.pipeline.worker", description=__doc__.splitlines()[0])
    parser.add_argument("--serve", action="store_true", help="keep pulling instead of exiting when idle")
    parser.add_argument("--pull-timeout", type=float, default=2.0, help="seconds one pull waits for a message")
    args = parser.parse_args(argv)
    configure_logging()
    # The one place the worker reads its settings and makes its clients; the rest is handed them.
    settings = get_settings()
    cloud = Clients(settings)
    # The work-item store shares the job store's Firestore client.
    items = ItemStore(cloud.jobs.client, settings) if settings.split_min_segments > 0 else None
    # A Cloud Run job's tasks all drain the same subscriptions: the work spreads by who is
    # free, not by index, so a task that dies leaves nothing assigned to it alone.
    log.info(
        "worker %s (task %s of %s)",
        worker_id(settings),
        settings.cloud_run_task_index or 0,
        settings.cloud_run_task_count,
    )
    task = Task(settings)
    stop = Stop()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    idle_since = time.monotonic()
    while not stop.requested and not task.handed_back:
        try:
            handled = process_one(settings, cloud, items, timeout_s=args.pull_timeout, task=task)
        except Exception:
            # The message (if any) went back for redelivery; a worker that dies here would
            # leave every other request waiting for a lease to run out.
            log.exception("worker loop error")
            time.sleep(1)
            continue
        if handled is None:
            # A task does not leave at the first empty pull: a scene another task is still
            # planning may be about to share its segments.
            if not args.serve and time.monotonic() - idle_since >= settings.idle_exit_s:
                log.info("nothing to do for %.0f s; exiting", settings.idle_exit_s)
                break
        else:
            idle_since = time.monotonic()
    if settings.task_exit_file:
        # The local launcher's record that this task ended on its own (a killed one writes nothing).
        Path(settings.task_exit_file).write_text("0\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
