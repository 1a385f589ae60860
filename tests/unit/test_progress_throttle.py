"""Progress writes: about one a second, stages sooner, the last value never lost, never backwards."""

from __future__ import annotations

from scenerender.cloud.progress import ProgressThrottle


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_writes_are_spaced_and_the_last_one_is_flushed() -> None:
    clock, written = Clock(), []
    throttle = ProgressThrottle(lambda s, p: written.append((s, p)), interval_s=1.0, stage_interval_s=0.3, clock=clock)
    throttle("video", 0.10)
    for step in range(1, 10):  # many reports within half a second: held back
        clock.now += 0.05
        throttle("video", 0.10 + step / 100)
    assert written == [("video", 0.10)]
    clock.now += 0.6
    throttle("video", 0.30)
    assert written[-1] == ("video", 0.30)
    throttle("audio", 0.31)  # a new stage right away is held too...
    clock.now += 0.35
    throttle("mux", 0.32)  # ...but goes through once the stage gap has passed
    assert written[-1] == ("mux", 0.32) and len(written) == 3
    throttle("mux", 0.20)  # never backwards
    clock.now += 0.01
    throttle("measure", 0.40)
    throttle.flush()
    assert written[-1] == ("measure", 0.40) and [p for _, p in written] == sorted(p for _, p in written)
