"""Heartbeats: how a worker shows it is alive on a job (or a work item), and how others tell."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from scenerender.errors import SceneRenderError

log = logging.getLogger(__name__)


def beat_is_fresh(beat: Any, stale_after_s: float) -> bool:
    """A heartbeat timestamp recent enough that its writer counts as alive."""
    return isinstance(beat, datetime) and (datetime.now(UTC) - beat).total_seconds() < stale_after_s


@contextmanager
def keep_beating(beat: Callable[[], None], every_s: float, name: str) -> Iterator[None]:
    """Call ``beat`` every ``every_s`` while the block runs, so a sweep or a claimant can tell a
    live worker from a dead one. A failed beat is logged; the next one may get through."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(every_s):
            try:
                beat()
            except SceneRenderError as exc:
                log.warning("%s: heartbeat failed: %s", name, exc.message)

    thread = threading.Thread(target=loop, name=name, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)
