"""The real cloud clients, made once per process from the settings (emulators honoured).

The doors (functions, worker, CLI) take their stores from here; the pipeline steps take
them as arguments, so tests can hand in others.
"""

from __future__ import annotations

from functools import lru_cache

from scenerender.bus import Publisher
from scenerender.jobs import JobStore
from scenerender.settings import get_settings
from scenerender.storage import GcsBlobStore


@lru_cache(maxsize=1)
def blobs() -> GcsBlobStore:
    return GcsBlobStore(get_settings())


@lru_cache(maxsize=1)
def jobs() -> JobStore:
    from google.cloud import firestore

    settings = get_settings()
    return JobStore(firestore.Client(project=settings.project_id), settings)


@lru_cache(maxsize=1)
def bus() -> Publisher:
    return Publisher(get_settings())


def reset() -> None:
    """Forget the clients (tests that change the environment)."""
    for factory in (blobs, jobs, bus):
        factory.cache_clear()
