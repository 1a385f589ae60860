"""`watch` of a job that does not exist ends NOT_FOUND: at once without a spec, after the grace with one."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from scenerender.cli.remote import follow
from scenerender.errors import NotFoundError
from scenerender.messages import JobDocument


class Silent:
    """A job store whose job never appears (its listener only says so)."""

    def get(self, job_id: str) -> JobDocument | None:
        return None

    def watch(self, job_id: str, callback: Callable[[JobDocument | None], None]) -> Any:
        callback(None)

        class Watch:
            def unsubscribe(self) -> None:
                pass

        return Watch()


def test_no_job_and_no_spec_is_not_found_at_once() -> None:
    started = time.monotonic()
    with pytest.raises(NotFoundError) as info:
        follow(Silent(), "nope", on_update=lambda d: None, grace_s=30, spec_exists=lambda: False)  # type: ignore[arg-type]
    assert time.monotonic() - started < 0.5
    assert info.value.exit_code == 2 and info.value.code == "NOT_FOUND"
    assert info.value.details[0].path == "ID" and "no spec for it" in info.value.details[0].message


def test_a_spec_without_a_job_is_not_found_after_the_grace() -> None:
    started = time.monotonic()
    with pytest.raises(NotFoundError) as info:
        follow(Silent(), "ghost", on_update=lambda d: None, grace_s=1.0, spec_exists=lambda: True)  # type: ignore[arg-type]
    assert 1.0 <= time.monotonic() - started < 3.0
    assert "no job 'ghost' appeared within 1 s" in info.value.message
