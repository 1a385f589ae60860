"""Suite-wide fixtures: every test starts from the default settings."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from scenerender.settings import get_settings

_ISOLATED_PREFIXES = ("SCENERENDER_",)
_ISOLATED_NAMES = ("FFMPEG", "FFPROBE")


@pytest.fixture(autouse=True)
def isolated_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Drop SceneRender variables a developer's shell may carry, and the settings cache."""
    for name in list(os.environ):
        if name.startswith(_ISOLATED_PREFIXES) or name in _ISOLATED_NAMES:
            monkeypatch.delenv(name)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()
