"""``Settings`` keywords: a field is given by its name, whatever its environment variable is
called, and a keyword that names no field is an error, not a setting dropped in silence."""

from __future__ import annotations

import pytest

from scenerender.settings import Settings

# A value of each aliased field's type that no environment here holds.
GIVEN = {
    "ffmpeg": "/opt/ff/ffmpeg",
    "ffprobe": "/opt/ff/ffprobe",
    "cache_home": "/opt/cache",
    "pubsub_emulator_host": "127.0.0.1:1",
    "firestore_emulator_host": "127.0.0.1:2",
    "storage_emulator_host": "http://127.0.0.1:3",
    "auth_emulator_host": "127.0.0.1:4",
    "credentials_file": "/opt/key.json",
    "cloud_run_execution": "exec-1",
    "cloud_run_task_index": 3,
    "cloud_run_task_count": 4,
}


def test_every_field_with_its_own_environment_name_is_covered() -> None:
    aliased = {name for name, f in Settings.model_fields.items() if isinstance(f.validation_alias, str)}
    assert aliased == set(GIVEN)


@pytest.mark.parametrize(("name", "value"), sorted(GIVEN.items()))
def test_a_field_is_given_by_its_name_or_its_environment_name(name: str, value: object) -> None:
    by_name = Settings(**{name: value})
    assert getattr(by_name, name) == value
    assert getattr(Settings(**{Settings.env_name(name): value}), name) == value
    # And handed to a child process under the name it reads.
    assert by_name.env_vars()[Settings.env_name(name)] == str(value)


def test_a_keyword_that_names_no_field_is_refused() -> None:
    with pytest.raises(TypeError, match="Settings has no field 'segment_cach'"):
        Settings(segment_cach=False)
    assert Settings(segment_cache=False).segment_cache is False
