"""The local cloud's Cloud Scheduler: ``python -m scenerender.dev.scheduler URL`` POSTs to the
sweeper function at URL every ``sweep_interval_s``.

In the cloud, Cloud Scheduler calls ``on_sweep`` on a schedule (terraform/sweeper.tf), whether
or not any renderer execution is alive. ``scenerender dev up`` runs this process in its place
(``DevStack``), so a job stranded in the local cloud is swept as it would be in the cloud,
through the same HTTP function. Like Cloud Scheduler (``retry_count = 0``), a failed call is
logged and the next tick is its retry.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import urllib.error
import urllib.request
from types import FrameType

from scenerender.logs import configure_logging
from scenerender.messages import SweepReport
from scenerender.settings import get_settings

log = logging.getLogger("scenerender.scheduler")
CALL_TIMEOUT_S = 120.0  # the sweeper function's timeout_seconds (terraform/sweeper.tf)


def call_sweeper(url: str, timeout_s: float = CALL_TIMEOUT_S) -> SweepReport:
    """One tick: POST to the sweeper function, as Cloud Scheduler's http_target does; its report."""
    request = urllib.request.Request(url, data=b"{}", method="POST", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        return SweepReport.model_validate_json(response.read())


def run(url: str, every_s: float, stop: threading.Event) -> None:
    """Call the sweeper every ``every_s`` seconds (the first call after one interval) until ``stop``."""
    while not stop.wait(every_s):
        try:
            report = call_sweeper(url)
        # urllib's HTTPError and URLError are OSErrors; pydantic's ValidationError is a ValueError.
        except (OSError, ValueError) as exc:
            log.warning("sweep call to %s failed: %s", url, exc)
            continue
        log.info(
            "sweep: %s unfinished, launched %s for %s, failed %s",
            report.checked,
            report.launched,
            sorted(report.launched_for),
            sorted(report.failed),
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scenerender.dev.scheduler", description=__doc__.splitlines()[0])
    parser.add_argument("url", help="the sweeper function's URL")
    parser.add_argument(
        "--every", type=float, default=None, help="seconds between calls (default: SCENERENDER_SWEEP_INTERVAL_S)"
    )
    args = parser.parse_args(argv)
    configure_logging()
    every = args.every if args.every is not None else get_settings().sweep_interval_s
    if every <= 0:
        parser.error("--every must be more than 0")
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info("calling %s every %.0f s", args.url, every)
    run(args.url, every, stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
