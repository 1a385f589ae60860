"""The renderer worker: ``python -m scenerender.worker [--serve]`` (the Cloud Run job's entry point).

It pulls render requests one at a time, keeps each message leased while it renders
(renders outlast the ack deadline), and acknowledges only once the outcome is durable: the
report is published (the completion function turns it into the job's final state), or the
job is already final. Job mode drains the subscription and exits when idle; ``--serve``
keeps pulling (local use).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from types import FrameType

from scenerender import clients, pipeline
from scenerender.bus import pull_one
from scenerender.errors import SceneRenderError
from scenerender.jobs import ProgressThrottle
from scenerender.logs import configure_logging
from scenerender.settings import Settings, get_settings

log = logging.getLogger("scenerender.worker")
IDLE_PULLS_BEFORE_EXIT = 2


class Stop:
    """Set by SIGTERM/SIGINT: finish the current message, take no new one."""

    def __init__(self) -> None:
        self.requested = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        log.info("signal %d: stopping after the current job", signum)
        self.requested = True


def process_one(settings: Settings, *, timeout_s: float) -> bool | None:
    """Pull and handle one request. None: nothing to do; else whether it was acknowledged."""
    message = pull_one(settings.render_subscription, timeout_s=timeout_s)
    if message is None:
        return None
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
    parser.add_argument("--pull-timeout", type=float, default=5.0, help="seconds one pull waits for a message")
    args = parser.parse_args(argv)
    configure_logging()
    settings = get_settings()
    stop = Stop()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    idle = 0
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
            if not args.serve and idle >= IDLE_PULLS_BEFORE_EXIT:
                log.info("subscription drained; exiting")
                break
        else:
            idle = 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
