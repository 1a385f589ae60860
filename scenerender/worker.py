"""The renderer worker: ``python -m scenerender.worker [--serve]`` (the Cloud Run job's entry point).

It pulls render requests one at a time, keeps each message leased while it renders
(renders outlast the ack deadline), and acknowledges only once the outcome is durable: the
report is published (the completion function turns it into the job's final state), or the
job is already final. Between requests it first takes segment encodes that a long scene on
another worker shares out (``scenerender.workitems``): they unblock a scene already running.
Job mode drains both subscriptions and exits after ``idle_exit_s`` with nothing to do;
``--serve`` keeps pulling (local use).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
from types import FrameType

from scenerender import clients, pipeline
from scenerender.bus import LeasedMessage, pull_one
from scenerender.errors import SceneRenderError
from scenerender.jobs import ProgressThrottle
from scenerender.logs import configure_logging
from scenerender.settings import Settings, get_settings
from scenerender.workitems import run_item, worker_id

log = logging.getLogger("scenerender.worker")
ITEM_PULL_TIMEOUT_S = 0.5


class Stop:
    """Set by SIGTERM/SIGINT: finish the current message, take no new one."""

    def __init__(self) -> None:
        self.requested = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        log.info("signal %d: stopping after the current job", signum)
        self.requested = True


def process_one(settings: Settings, *, timeout_s: float) -> bool | None:
    """Handle one shared segment encode, else one render request. None: nothing came; else
    whether the message was acknowledged.

    Items come first: they unblock a scene already running. Their pull waits only briefly
    (an empty pull returns at its deadline), so a queue of render requests is not slowed;
    an item a short pull misses is still encoded, by its scene's own worker.
    """
    if settings.split_min_segments > 0:
        item = pull_one(settings.segment_subscription, timeout_s=ITEM_PULL_TIMEOUT_S)
        if item is not None:
            handle_item(settings, item)
            return True
    message = pull_one(settings.render_subscription, timeout_s=timeout_s)
    if message is None:
        return None
    return handle_request(settings, message)


def handle_item(settings: Settings, item: LeasedMessage) -> None:
    with item:
        started = time.monotonic()
        done = run_item(item.data, settings=settings, blobs=clients.blobs(), jobs=clients.jobs(), items=clients.items())
        item.ack()
        log.info(
            "segment %s of job %s: %s in %.1f s",
            str(item.data.get("index", "?")),
            str(item.data.get("job_id", "?")),
            done,
            time.monotonic() - started,
        )


def handle_request(settings: Settings, message: LeasedMessage) -> bool:
    with message:
        job_id = str(message.data.get("job_id", "?"))
        jobs = clients.jobs()
        throttle = ProgressThrottle(lambda stage, value: jobs.set_progress(job_id, stage, value))
        started = time.monotonic()
        outcome = pipeline.run_render_request(
            message.data,
            settings=settings,
            blobs=clients.blobs(),
            jobs=jobs,
            bus=clients.bus(),
            progress_writer=throttle,
            items=clients.items() if settings.split_min_segments > 0 else None,
        )
        throttle.flush()
        if outcome.ack:
            message.ack()
        else:
            message.nack()
        log.info(
            "job %s: %s in %.1f s (delivery %s)",
            job_id,
            outcome.status,
            time.monotonic() - started,
            message.delivery_attempt,
        )
        return outcome.ack


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scenerender.worker", description=__doc__.splitlines()[0])
    parser.add_argument("--serve", action="store_true", help="keep pulling instead of exiting when idle")
    parser.add_argument("--pull-timeout", type=float, default=2.0, help="seconds one pull waits for a message")
    args = parser.parse_args(argv)
    configure_logging()
    settings = get_settings()
    # A Cloud Run job's tasks all drain the same subscriptions: the work spreads by who is
    # free, not by index, so a task that dies leaves nothing assigned to it alone.
    log.info(
        "worker %s (task %s of %s)",
        worker_id(),
        os.environ.get("CLOUD_RUN_TASK_INDEX", "0"),
        os.environ.get("CLOUD_RUN_TASK_COUNT", "1"),
    )
    stop = Stop()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    idle = 0
    idle_since = time.monotonic()
    while not stop.requested:
        try:
            handled = process_one(settings, timeout_s=args.pull_timeout)
        except Exception:
            # The message (if any) went back for redelivery; a worker that dies here would
            # leave every other request waiting for a lease to run out.
            log.exception("worker loop error")
            time.sleep(1)
            continue
        if handled is None:
            idle += 1
            if idle == 1:
                # An idle worker has time to look for jobs whose worker vanished for good.
                try:
                    pipeline.fail_stuck_jobs(settings=settings, jobs=clients.jobs())
                except SceneRenderError as exc:
                    log.warning("stuck-job sweep failed: %s", exc.message)
            # A task does not leave at the first empty pull: a scene another task is still
            # planning may be about to share its segments.
            if not args.serve and time.monotonic() - idle_since >= settings.idle_exit_s:
                log.info("nothing to do for %.0f s; exiting", settings.idle_exit_s)
                break
        else:
            idle = 0
            idle_since = time.monotonic()
    return 0


if __name__ == "__main__":
    sys.exit(main())
