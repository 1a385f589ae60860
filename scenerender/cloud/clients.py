"""The real cloud clients, made once per process from the settings (emulators honoured).

The doors (functions, worker, CLI) take their stores from here; the pipeline steps take
them as arguments, so tests can hand in others.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from scenerender.cloud.bus import Publisher
from scenerender.cloud.jobs import JobStore
from scenerender.cloud.storage import GcsBlobStore
from scenerender.settings import get_settings

if TYPE_CHECKING:
    from scenerender.pipeline.workitems import ItemStore

_overrides: dict[str, Any] = {}


def blobs() -> GcsBlobStore:
    return _overrides.get("blobs") or _blobs()


def jobs() -> JobStore:
    return _overrides.get("jobs") or _jobs()


def items() -> ItemStore:
    return _overrides.get("items") or _items()


def bus() -> Publisher:
    return _overrides.get("bus") or _bus()


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


@lru_cache(maxsize=1)
def _blobs() -> GcsBlobStore:
    return GcsBlobStore(get_settings())


@lru_cache(maxsize=1)
def _jobs() -> JobStore:
    from google.cloud import firestore

    settings = get_settings()
    return JobStore(firestore.Client(project=settings.project_id), settings)


@lru_cache(maxsize=1)
def _items() -> ItemStore:
    from scenerender.pipeline.workitems import ItemStore

    return ItemStore(jobs().client, get_settings())


@lru_cache(maxsize=1)
def _bus() -> Publisher:
    return Publisher(get_settings())


def reset() -> None:
    """Forget the clients (tests that change the environment)."""
    for factory in (_blobs, _jobs, _items, _bus):
        factory.cache_clear()
