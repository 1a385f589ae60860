"""Session fixtures: the real local cloud (Google's emulators, fake-gcs-server, functions, workers)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from scenerender.cloud import clients
from scenerender.dev.devstack import FUNCTIONS, DevStack, Ports, free_port
from scenerender.settings import Settings, get_settings

WORKERS = 2
SHARED_PREFIX = "shared/"
# Short leases and heartbeats, so a killed worker's job is redelivered and taken over in
# seconds rather than a minute (the Pub/Sub emulator's shortest ack deadline is 10 s).
FAST_RECOVERY = {"SCENERENDER_LEASE_S": "10", "SCENERENDER_HEARTBEAT_S": "1", "SCENERENDER_HEARTBEAT_STALE_S": "6"}


@pytest.fixture(scope="session")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    """The whole local cloud on free ports, started once for the session and stopped after it."""
    saved = dict(os.environ)
    os.environ.update(FAST_RECOVERY)
    # The workers' private dirs: the tests that SIGKILL a worker leave its dir, here and not in /tmp.
    os.environ["SCENERENDER_WORK_DIR"] = str(tmp_path_factory.mktemp("worker-tmp"))
    # The operator's shared library: media every test user's spec may read (SHARED_PREFIX).
    os.environ[Settings.env_name("shared_media_prefixes")] = f"gs://{Settings().media_bucket}/{SHARED_PREFIX}"
    get_settings.cache_clear()
    functions_port = free_port()
    while any(not _free(functions_port + i) for i in range(len(FUNCTIONS))):
        functions_port = free_port()
    stack = DevStack(
        get_settings(),
        state_dir=tmp_path_factory.mktemp("devstack"),
        ports=Ports(
            pubsub=free_port(),
            firestore=free_port(),
            gcs=free_port(),
            functions=functions_port,
            web=free_port(),
            auth=free_port(),
        ),
        workers=WORKERS,
    )
    stack.up()
    os.environ.update(stack.env())
    get_settings.cache_clear()
    clients.reset()
    try:
        yield stack
    finally:
        stack.down()
        os.environ.clear()
        os.environ.update(saved)
        get_settings.cache_clear()
        clients.reset()


def _free(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


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
