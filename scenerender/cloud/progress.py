"""How often a render's progress reaches its job document: at most about once a second."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class ProgressThrottle:
    """Forwards (stage, progress) at most once per ``interval_s``; a new stage sooner, after ``stage_interval_s``.

    The render reports many times a second; the job document needs about one write a second.
    A short scene passes through its six stages in under a second: writing each at once
    would cost the database more than the render (and listeners cannot see them anyway).
    """

    def __init__(
        self,
        write: Callable[[str, float], None],
        *,
        interval_s: float = 1.0,
        stage_interval_s: float = 0.3,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._write = write
        self._interval = interval_s
        self._stage_interval = stage_interval_s
        self._clock = clock
        self._last_at = float("-inf")
        self._last_stage = ""
        self._best = 0.0
        self._pending: tuple[str, float] | None = None
        self._lock = threading.Lock()

    def __call__(self, stage: str, progress: float) -> None:
        with self._lock:
            if progress < self._best:
                return
            self._best = progress
            now = self._clock()
            waited = now - self._last_at
            if waited >= self._interval or (stage != self._last_stage and waited >= self._stage_interval):
                self._last_at, self._last_stage, self._pending = now, stage, None
                send = True
            else:
                self._pending = (stage, progress)
                send = False
        if send:
            self._write(stage, progress)

    def flush(self) -> None:
        """Write the last value held back, if any."""
        with self._lock:
            pending, self._pending = self._pending, None
        if pending is not None:
            self._write(*pending)
