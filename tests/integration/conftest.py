"""Session fixtures: the real local cloud (Google's emulators, fake-gcs-server, functions, workers)."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from scenerender.cloud import clients
from scenerender.dev.devstack import DevStack, Ports
from scenerender.dev.functions import FUNCTIONS
from scenerender.dev.procs import free_run, record_alive
from scenerender.settings import Settings, get_settings

WORKERS = 2
SHARED_PREFIX = "shared/"
# Short leases and heartbeats, so a killed worker's job is redelivered and taken over in
# seconds rather than a minute (the Pub/Sub emulator's shortest ack deadline is 10 s).
FAST_RECOVERY = {"SCENERENDER_LEASE_S": "10", "SCENERENDER_HEARTBEAT_S": "1", "SCENERENDER_HEARTBEAT_STALE_S": "6"}
# No scheduler calling the sweeper: the tests that sweep call it themselves, as Cloud
# Scheduler would, so no tick of its own lands between a test's setup and its sweep
# (tests/integration/test_scheduler.py runs a stack with one).
NO_SCHEDULER = {"SCENERENDER_SWEEP_INTERVAL_S": "0"}


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


def forget_clients() -> None:
    """Drop the cached settings and clients: the next ones are made for the current environment."""
    from scenerender.cloud import bus

    get_settings.cache_clear()
    clients.reset()
    bus._subscriber.cache_clear()


@contextlib.contextmanager
def local_cloud(state_dir: Path, env: dict[str, str], **options: Any) -> Iterator[DevStack]:
    """A whole local cloud on free ports, with ``env`` set while it runs and the process
    environment and clients as they were after it stops. ``options`` go to ``DevStack``."""
    saved = dict(os.environ)
    forget_clients()  # another stack's clients, made for its own emulators
    os.environ.update(env)
    get_settings.cache_clear()
    stack = DevStack(get_settings(), state_dir=state_dir, ports=stack_ports(), **options)
    try:
        stack.up()
        os.environ.update(stack.env())
        forget_clients()
        yield stack
    finally:
        stack.down()
        os.environ.clear()
        os.environ.update(saved)
        forget_clients()


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
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    """The whole local cloud on free ports, started once for the session and stopped after it."""
    env = {
        **FAST_RECOVERY,
        **NO_SCHEDULER,
        # The workers' private dirs: the tests that SIGKILL a worker leave its dir, here and not in /tmp.
        "SCENERENDER_WORK_DIR": str(tmp_path_factory.mktemp("worker-tmp")),
        # The operator's shared library: media every test user's spec may read (SHARED_PREFIX).
        Settings.env_name("shared_media_prefixes"): f"gs://{Settings().media_bucket}/{SHARED_PREFIX}",
    }
    with local_cloud(tmp_path_factory.mktemp("devstack"), env, workers=WORKERS) as stack:
        yield stack


@pytest.fixture(scope="session")
def settings(cloud: DevStack) -> Settings:
    return get_settings()


@pytest.fixture(scope="session")
def scene_media(cloud: DevStack, settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
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
        clients.blobs().upload_file(path, uri, content_type="application/octet-stream")
        uris[name] = uri
    return uris
