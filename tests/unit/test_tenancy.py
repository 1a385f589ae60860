"""What one user's spec may ask for: ids from object names, media scope, cost limits (pure),
and the spec function's handling of them with in-memory stores."""

from __future__ import annotations

import json
from typing import Any

import pytest

from scenerender.core.spec import parse_spec
from scenerender.core.tenancy import (
    MediaScope,
    SceneLimits,
    check_limits,
    check_media,
    job_id_from_object,
    valid_job_id,
)
from scenerender.errors import InputRefusedError, LimitExceededError, SpecError
from scenerender.pipeline import steps
from scenerender.settings import Settings
from tests.unit.cloud_fakes import FakeBlobs, FakeBus, FakeJobs, rendered

SETTINGS = Settings()
MEDIA = f"gs://{SETTINGS.media_bucket}"


def spec(owner: str = "alice", **extra: Any) -> dict[str, Any]:
    return {
        "version": 1,
        "job_id": "j",
        "project_id": "p",
        "scene_id": "s",
        "owner_uid": owner,
        "segments": [{"id": "a", "url": f"{MEDIA}/users/{owner}/a.mp4"}],
        **extra,
    }


# --- ids -----------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["a", "scene-42", "A.b_c-1", "x" * 128, "team-a..scene"])
def test_valid_job_ids(value: str) -> None:
    assert valid_job_id(value)


@pytest.mark.parametrize("value", ["", ".", "..", "__x__", "a/b", "-a", ".a", "x" * 129, "日本", "a b", "a\n"])
def test_invalid_job_ids(value: str) -> None:
    assert not valid_job_id(value)


def test_object_names_map_one_to_one_onto_job_ids() -> None:
    names = [
        "jobs/scene.json",
        "jobs/team-a/scene.json",
        "jobs/team-b/scene.json",
        "jobs/team-a.scene.json",
        "jobs/team-a/b/scene.json",
        "jobs/scene.v2.json",
    ]
    ids = [job_id_from_object(n) for n in names]
    assert ids == ["scene", "team-a..scene", "team-b..scene", "team-a.scene", "team-a..b..scene", "scene.v2"]
    assert len(set(ids)) == len(ids)


@pytest.mark.parametrize(
    "name",
    [
        "jobs/日本.json",
        "jobs/中文.json",
        "jobs/a b.json",
        "jobs/a..b.json",
        "jobs/a./b.json",
        "jobs//a.json",
        "jobs/.json",
        "jobs/.hidden.json",
        "jobs/__x__.json",
        f"jobs/{'x' * 129}.json",
    ],
)
def test_object_names_that_would_collapse_are_refused_with_a_located_reason(name: str) -> None:
    with pytest.raises(SpecError) as caught:
        job_id_from_object(name)
    assert caught.value.details[0].path == "job_id" and name in caught.value.details[0].message


# --- media ---------------------------------------------------------------------------------


def test_a_spec_reads_its_owners_prefix_and_shared_prefixes_only() -> None:
    settings = Settings(shared_media_prefixes=f"{MEDIA}/shared/")
    scope = MediaScope.from_settings(settings, "alice")
    assert scope.refusal(f"{MEDIA}/users/alice/a.mp4") is None
    assert scope.refusal(f"{MEDIA}/shared/music/theme.mp3") is None
    assert scope.refusal("https://cdn.example.com/a.mp4") is None  # the fetch policy rules there
    for url in (
        f"{MEDIA}/users/bob/a.mp4",
        f"{MEDIA}/users/alice-x/a.mp4",  # a prefix of the name is not the owner's folder
        f"{MEDIA}/users/alice",
        f"{MEDIA}/shared-not/a.mp4",
        f"{MEDIA}/a.mp4",
        f"gs://{settings.render_bucket}/renders/j/r/j.mp4",
        "gs://elsewhere/users/alice/a.mp4",
        "media/a.mp4",
    ):
        assert scope.refusal(url) is not None, url


def test_with_the_local_defaults_the_render_bucket_is_not_readable() -> None:
    scope = MediaScope.from_settings(Settings(), "alice")
    assert "not media this spec's owner may read" in (
        scope.refusal(f"gs://{SETTINGS.render_bucket}/renders/someone/r/x.mp4") or ""
    )
    assert MediaScope.from_settings(Settings(), None).refusal(f"{MEDIA}/users/alice/a.mp4") is not None


def test_every_refused_input_is_listed() -> None:
    data = spec(segments=[{"id": "a", "url": f"{MEDIA}/users/bob/a.mp4"}, {"id": "b", "url": f"{MEDIA}/x.mp4"}])
    with pytest.raises(InputRefusedError) as caught:
        check_media(parse_spec(data), "alice", SETTINGS)
    assert caught.value.code == "INPUT_REFUSED"
    assert [d.path for d in caught.value.details] == ["segments[0].url", "segments[1].url"]


def test_a_shared_prefix_must_be_a_folder() -> None:
    with pytest.raises(ValueError):
        Settings(shared_media_prefixes=f"{MEDIA}/shared")


# --- cost ----------------------------------------------------------------------------------


def test_a_scene_the_spec_says_is_too_long_is_refused_naming_the_limit() -> None:
    url = f"{MEDIA}/users/alice/a.mp4"
    data = spec(segments=[{"id": f"s{i}", "url": url, "duration": 14000.0} for i in range(500)])
    with pytest.raises(LimitExceededError) as caught:
        check_limits(parse_spec(data), SETTINGS)
    assert caught.value.code == "LIMIT_EXCEEDED" and caught.value.exit_code == 2
    assert {d.path for d in caught.value.details} == {"segments", "output.resolution"}
    assert "max_scene_s" in caught.value.message and "at least" in caught.value.message


def test_limits_on_counts_and_pixels() -> None:
    settings = Settings(max_segments=2, max_clips=1, max_pixel_seconds=1920 * 1080 * 10)
    url = f"{MEDIA}/users/alice/a.mp4"
    clips = [{"type": "sfx", "url": url, "start": 0.0}] * 2
    data = spec(segments=[{"id": f"s{i}", "url": url, "duration": 4.0} for i in range(3)], audio={"clips": clips})
    with pytest.raises(LimitExceededError) as caught:
        check_limits(parse_spec(data), settings)
    messages = {d.path: d.message for d in caught.value.details}
    assert "max_segments" in messages["segments"] and "max_clips" in messages["audio.clips"]
    assert "max_pixel_seconds" in messages["output.resolution"]  # 12 s of 1080p
    check_limits(parse_spec(spec()), settings)  # unknown length: left to the probe


def test_the_probed_length_is_held_to_the_limits() -> None:
    limits = SceneLimits(max_scene_s=1800, max_pixel_seconds=1e12)
    limits.check(1800.0, (1920, 1080))
    with pytest.raises(LimitExceededError) as caught:
        limits.check(500 * 14040.0, (16, 16))
    assert "1950.00 h" in caught.value.message and "max_scene_s" in caught.value.message


# --- the spec function and the API's door, with in-memory stores ---------------------------


def accept(blobs: FakeBlobs, jobs: FakeJobs, bus: FakeBus, name: str, generation: str = "1") -> str | None:
    event = steps.SpecEvent(SETTINGS.spec_bucket, name, generation, "OBJECT_FINALIZE")
    return steps.accept_spec(event, settings=SETTINGS, blobs=blobs, jobs=jobs, bus=bus)


def put(blobs: FakeBlobs, name: str, body: dict[str, Any] | bytes, generation: str = "1") -> None:
    uri = f"gs://{SETTINGS.spec_bucket}/{name}"
    blobs.objects[uri] = body if isinstance(body, bytes) else json.dumps(body).encode()
    blobs.generations[uri] = generation


def test_a_drop_without_an_owner_is_refused() -> None:
    blobs, jobs, bus = FakeBlobs(), FakeJobs(), FakeBus()
    body = spec()
    del body["owner_uid"]
    put(blobs, "jobs/j.json", body)
    accept(blobs, jobs, bus, "jobs/j.json")
    assert jobs.docs["j"]["status"] == "FAILED" and jobs.docs["j"]["error"]["details"][0]["path"] == "owner_uid"
    assert bus.published == []


def test_another_owners_spec_leaves_a_refusal_and_the_job_untouched() -> None:
    blobs, jobs, bus = FakeBlobs(), FakeJobs(), FakeBus()
    put(blobs, "jobs/j.json", spec("alice"))
    accept(blobs, jobs, bus, "jobs/j.json")
    assert jobs.complete("j", rendered("gs://r/renders/j/r1/j.mp4"))
    before = json.dumps(jobs.docs["j"], sort_keys=True, default=str)
    for name, owner in (("jobs/j.json", "mallory"), ("jobs/x/j.json", "mallory")):
        put(blobs, name, spec(owner), generation="2")
        accept(blobs, jobs, bus, name, "2")
        accept(blobs, jobs, bus, name, "2")  # redelivered: one record
    assert json.dumps(jobs.docs["j"], sort_keys=True, default=str) == before and len(bus.published) == 1
    assert sorted((r["spec_uri"].split("/", 3)[3], r["error"]["code"]) for r in jobs.refusals.values()) == [
        ("jobs/j.json", "CONFLICT"),
        ("jobs/x/j.json", "CONFLICT"),
    ]
    # An invalid spec naming alice's job but not alice: refused apart as well.
    put(blobs, "jobs/j.json", {**spec("mallory"), "colour": "red"}, generation="3")
    accept(blobs, jobs, bus, "jobs/j.json", "3")
    assert json.dumps(jobs.docs["j"], sort_keys=True, default=str) == before and len(jobs.refusals) == 3


def test_an_ownerless_failed_job_may_be_taken_by_its_first_owner() -> None:
    blobs, jobs, bus = FakeBlobs(), FakeJobs(), FakeBus()
    body = spec()
    del body["owner_uid"]
    put(blobs, "jobs/j.json", body)
    accept(blobs, jobs, bus, "jobs/j.json")
    put(blobs, "jobs/j.json", spec("alice"), generation="2")
    accept(blobs, jobs, bus, "jobs/j.json", "2")
    assert jobs.docs["j"]["status"] == "QUEUED" and jobs.docs["j"]["owner_uid"] == "alice"


def test_an_oversized_object_is_refused_from_its_size_unread() -> None:
    blobs, jobs, bus = FakeBlobs(), FakeJobs(), FakeBus()
    put(blobs, "jobs/big.json", b" " * (SETTINGS.max_batch_bytes + 1))
    accept(blobs, jobs, bus, "jobs/big.json")
    assert blobs.reads == []
    assert jobs.docs["big"]["error"]["code"] == "LIMIT_EXCEEDED"
    assert "max_batch_bytes" in jobs.docs["big"]["error"]["message"]
    # A plain spec over the spec limit (but under the batch limit) is refused by the spec limit.
    put(blobs, "jobs/mid.json", json.dumps(spec()).encode() + b" " * SETTINGS.max_spec_bytes)
    accept(blobs, jobs, bus, "jobs/mid.json")
    assert "the limit is 1048576" in jobs.docs["j"]["error"]["message"]


def test_a_batch_over_its_limit_is_refused() -> None:
    settings = Settings(max_batch_bytes=2048)
    blobs, jobs, bus = FakeBlobs(), FakeJobs(), FakeBus()
    scenes = [{k: v for k, v in spec().items() if k not in ("job_id", "owner_uid")}] * 20
    put(blobs, "jobs/b.json", {"version": 1, "batch_id": "b", "owner_uid": "alice", "scenes": scenes})
    event = steps.SpecEvent(settings.spec_bucket, "jobs/b.json", "1", "OBJECT_FINALIZE")
    steps.accept_spec(event, settings=settings, blobs=blobs, jobs=jobs, bus=bus)
    assert "max_batch_bytes" in jobs.docs["b"]["error"]["message"] and bus.published == []


def test_only_the_events_generation_is_read() -> None:
    blobs, jobs, bus = FakeBlobs(), FakeJobs(), FakeBus()
    put(blobs, "jobs/j.json", spec(), generation="5")
    assert accept(blobs, jobs, bus, "jobs/j.json", "4") is None  # replaced before it was read
    assert jobs.docs == {} and blobs.reads == []
    accept(blobs, jobs, bus, "jobs/j.json", "5")
    assert jobs.docs["j"]["spec_generation"] == "5"


def test_the_api_door_applies_the_same_checks_and_names_the_owner() -> None:
    written: dict[str, bytes] = {}

    def submit(body: dict[str, Any], owner: str | None = None) -> tuple[str, str]:
        return steps.submit_spec_bytes(
            json.dumps(body).encode(), settings=SETTINGS, write=written.__setitem__, owner_uid=owner
        )

    url = f"{MEDIA}/users/alice/a.mp4"
    with pytest.raises(LimitExceededError):
        submit(spec(segments=[{"id": f"s{i}", "url": url, "duration": 4000.0} for i in range(2)]))
    with pytest.raises(InputRefusedError):
        submit(spec("mallory", segments=[{"id": "a", "url": url}]))
    with pytest.raises(InputRefusedError):
        submit(spec(segments=[{"id": "a", "url": "media/a.mp4"}]))  # a local path: refused at once
    assert written == {}
    body = spec()
    del body["owner_uid"]
    job_id, uri = submit(body, owner="alice")
    assert job_id == "j" and json.loads(written[uri])["owner_uid"] == "alice"
