"""Session fixtures: the real local cloud (Google's emulators, fake-gcs-server, functions, workers).

A test gets the stack's settings (``settings``) and the clients made from them (``stores``),
and hands them to what it calls; a child process it starts (the CLI, a worker) gets
``LocalCloud.env()``. Nothing here changes this process's environment: two stacks (the
session's and a module's own) are used side by side, each through its own settings.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from scenerender.cloud.clients import Clients
from scenerender.dev.devstack import DevStack, Ports
from scenerender.dev.functions import FUNCTIONS
from scenerender.dev.procs import free_run, record_alive
from scenerender.settings import Settings, child_env

WORKERS = 2
SHARED_PREFIX = "shared/"
# Short leases and heartbeats, so a killed worker's job is redelivered and taken over in
# seconds rather than a minute (the Pub/Sub emulator's shortest ack deadline is 10 s).
FAST_RECOVERY: dict[str, Any] = {"lease_s": 10, "heartbeat_s": 1.0, "heartbeat_stale_s": 6.0}
# No scheduler calling the sweeper: the tests that sweep call it themselves, as Cloud
# Scheduler would, so no tick of its own lands between a test's setup and its sweep
# (tests/integration/test_scheduler.py runs a stack with one).
NO_SCHEDULER: dict[str, Any] = {"sweep_interval_s": 0.0}


def pytest_addoption(parser: pytest.Parser) -> None:
    # Opt-in, so a test run leaves the working tree as it found it: the committed screenshots
    # change only when someone means to replace them (and then reviews the diff).
    parser.addoption(
        "--update-screenshots",
        action="store_true",
        default=False,
        help="tests/integration/test_web.py writes its screenshots into docs/img/ (default: a temp dir)",
    )


def stack_ports() -> Ports:
    """A free port for every service of a stack, no two the same (the Firebase CLI's hub and
    logging ports too): several engineers' test runs start stacks on one machine at once, and
    a default port another stack is about to bind is free when claimed and taken at start."""
    taken: set[int] = set()

    def run(count: int) -> int:
        first = free_run(count, avoid=taken)
        taken.update(range(first, first + count))
        return first

    functions = run(len(FUNCTIONS))
    return Ports(
        pubsub=run(1),
        firestore=run(1),
        gcs=run(1),
        functions=functions,
        web=run(1),
        auth=run(1),
        auth_hub=run(1),
        auth_logging=run(1),
    )


@dataclass(frozen=True)
class LocalCloud:
    """A running local cloud as a test uses it."""

    stack: DevStack
    settings: Settings  # this process's settings with the test's own, pointed at the stack
    stores: Clients  # made from ``settings``

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a child process (the CLI, a worker) on this stack, plus ``extra``."""
        return child_env({**self.settings.env_vars(), **self.stack.env(), **extra})


@contextlib.contextmanager
def local_cloud(state_dir: Path, overrides: dict[str, Any], **options: Any) -> Iterator[LocalCloud]:
    """A whole local cloud on free ports, run with these settings (``Settings`` field -> value,
    over this process's); ``options`` go to ``DevStack``."""
    stack = DevStack(Settings(**overrides), state_dir=state_dir, ports=stack_ports(), **options)
    try:
        stack.up()
        settings = stack.client_settings()
        yield LocalCloud(stack, settings, Clients(settings))
    finally:
        stack.down()


@contextlib.contextmanager
def workers_paused(cloud: DevStack) -> Iterator[None]:
    """Every live worker of the stack stopped (SIGSTOP to its process group, its ffmpeg children
    too) until the block ends: a job queued meanwhile stays QUEUED for as long as the test needs,
    however fast or slow the machine is. The records are checked to be the stack's own processes
    (not a reused pid), and each is continued even when the block fails."""
    stopped: list[int] = []
    try:
        for record in cloud.state.processes:
            if record.name.startswith("worker") and record_alive(record):
                os.killpg(record.pid, signal.SIGSTOP)
                stopped.append(record.pid)
        assert stopped, "the stack runs no worker"
        yield
    finally:
        for pgid in stopped:
            os.killpg(pgid, signal.SIGCONT)


WORKER_STEP_S = 0.05  # how long the workers run between two looks of ``workers_held_when``


@contextlib.contextmanager
def workers_held_when(cloud: DevStack, reached: Callable[[], bool], *, timeout_s: float) -> Iterator[None]:
    """The stack's workers run in short steps and are stopped between them until ``reached()``
    holds while they are stopped; the block runs with them still stopped (``workers_paused``).
    For a state a render passes through, such as a job RUNNING: the test acts on that state on
    any machine, loaded or idle, instead of hoping a render is still running when it acts."""
    deadline = time.monotonic() + timeout_s
    while True:
        with workers_paused(cloud):
            if reached():
                yield
                return
        assert time.monotonic() < deadline, f"not reached within {timeout_s:g} s"
        time.sleep(WORKER_STEP_S)


@pytest.fixture(scope="session")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCloud]:
    """The whole local cloud on free ports, started once for the session and stopped after it."""
    overrides = {
        **FAST_RECOVERY,
        **NO_SCHEDULER,
        # The workers' private dirs: the tests that SIGKILL a worker leave its dir, here and not in /tmp.
        "work_dir": str(tmp_path_factory.mktemp("worker-tmp")),
        # The operator's shared library: media every test user's spec may read (SHARED_PREFIX).
        "shared_media_prefixes": [f"gs://{Settings().media_bucket}/{SHARED_PREFIX}"],
    }
    with local_cloud(tmp_path_factory.mktemp("devstack"), overrides, workers=WORKERS) as made:
        yield made


@pytest.fixture(scope="session")
def cloud(local: LocalCloud) -> DevStack:
    return local.stack


@pytest.fixture(scope="session")
def settings(local: LocalCloud) -> Settings:
    return local.settings


@pytest.fixture(scope="session")
def stores(local: LocalCloud) -> Clients:
    return local.stores


@pytest.fixture(scope="session")
def scene_media(settings: Settings, stores: Clients, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Short segments and a dialogue line in the media bucket, and the same files locally."""
    from tests.mediagen import make_tone_burst, make_video

    folder: Path = tmp_path_factory.mktemp("scene-media")
    files = {
        "a.mp4": make_video(folder / "a.mp4", width=640, height=360, fps=30, duration=1.0),
        "b.mp4": make_video(folder / "b.mp4", width=640, height=360, fps=30, duration=1.0, pattern="smptebars"),
        "line.wav": make_tone_burst(folder / "line.wav", freq=1000, duration=0.4),
    }
    uris = {"dir": str(folder)}
    for name, path in files.items():
        uri = f"gs://{settings.media_bucket}/{SHARED_PREFIX}it/{name}"
        stores.blobs.upload_file(path, uri, content_type="application/octet-stream")
        uris[name] = uri
    return uris
