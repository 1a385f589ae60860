"""The real cloud clients of one ``Settings``, emulators honoured from the settings themselves.

``Clients(settings)`` makes each Google client on first use, pointed at the emulators the
settings name (``pubsub_emulator_host`` ...) or at Google Cloud: nothing here reads or
writes the process environment, so a command can talk to the local cloud it just started
by handing down ``Clients(stack_settings)``.

The worker's ``main`` makes its ``Clients`` once and hands them down (``ports.Stores``);
so do the command line (``cli.dev.cloud_clients``) and the integration tests (a ``Clients``
of each local cloud they start, tests/integration/conftest.py). The Cloud Functions' entry
points have no caller to hand them anything: they take the process's own,
``clients.default()`` (the settings read from the environment at start), which unit tests
replace with fakes (``override``). The pipeline steps take the stores as arguments.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property, lru_cache
from typing import Any

from google.auth.credentials import AnonymousCredentials
from google.cloud import firestore

from scenerender.cloud.bus import Publisher
from scenerender.cloud.jobs import JobStore
from scenerender.cloud.storage import GcsBlobStore
from scenerender.settings import Settings, get_settings

_overrides: dict[str, Any] = {}


def firestore_client(settings: Settings) -> firestore.Client:
    """A Firestore client for the settings' project, on the emulator they name if any."""
    host = settings.firestore_emulator_host
    if not host:
        return firestore.Client(project=settings.project_id)
    return EmulatorFirestore(host, project=settings.project_id)


class EmulatorFirestore(firestore.Client):
    """A Firestore client on the emulator at ``host``.

    google-cloud-firestore takes the emulator's address only from FIRESTORE_EMULATOR_HOST,
    read once in its constructor into ``_emulator_host`` (used when its channel is made, on
    first call); set here from the settings instead, so this process's environment does
    not decide which Firestore it talks to.
    """

    def __init__(self, host: str, **kwargs: Any) -> None:
        credentials = kwargs.pop("credentials", None) or AnonymousCredentials()  # type: ignore[no-untyped-call]
        super().__init__(credentials=credentials, **kwargs)
        self._emulator_host = host


class Clients:
    """The stores of one ``Settings``, each made on first use."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @cached_property
    def blobs(self) -> GcsBlobStore:
        return GcsBlobStore(self.settings)

    @cached_property
    def jobs(self) -> JobStore:
        return JobStore(firestore_client(self.settings), self.settings)

    @cached_property
    def bus(self) -> Publisher:
        return Publisher(self.settings)


@lru_cache(maxsize=1)
def default() -> Clients:
    """The process's clients, for the settings read from its environment at start."""
    return Clients(get_settings())


def blobs() -> GcsBlobStore:
    return _overrides.get("blobs") or default().blobs


def jobs() -> JobStore:
    return _overrides.get("jobs") or default().jobs


def bus() -> Publisher:
    return _overrides.get("bus") or default().bus


@contextmanager
def override(**stores: Any) -> Iterator[None]:
    """Hand the doors other stores (``blobs=``, ``jobs=``, ``bus=``) for the duration: unit tests."""
    previous = dict(_overrides)
    _overrides.update(stores)
    try:
        yield
    finally:
        _overrides.clear()
        _overrides.update(previous)
