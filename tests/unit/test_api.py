"""The HTTP API through functions-framework's test client, with in-memory stores and the real
token verifier in emulator mode (unsigned tokens). The integration tests run the same requests
against the functions on the emulators, with the Auth emulator's own tokens."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from functions_framework import create_app

from scenerender.cloud import clients
from scenerender.cloud.identity import EMULATOR_ENV
from scenerender.messages import JobDocument
from scenerender.settings import get_settings
from tests.tokens import bearer, forged_token
from tests.unit.cloud_fakes import FakeBlobs, FakeBus, FakeJobs

SOURCE = str(Path(__file__).parents[2] / "functions" / "main.py")
SPEC: dict[str, Any] = {
    "version": 1,
    "job_id": "scene-1",
    "project_id": "p",
    "scene_id": "s",
    "segments": [{"id": "a", "url": "https://cdn.example.com/a.mp4"}],
}


@pytest.fixture
def stores(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[FakeBlobs, FakeJobs]]:
    monkeypatch.setenv(EMULATOR_ENV, "127.0.0.1:9")
    blobs, jobs = FakeBlobs(), FakeJobs()
    with clients.override(blobs=blobs, jobs=jobs, bus=FakeBus()):
        yield blobs, jobs


@pytest.fixture
def http(stores: tuple[FakeBlobs, FakeJobs]) -> FlaskClient:
    return create_app("http_api", SOURCE, "http").test_client()


def user(uid: str) -> dict[str, str]:
    return bearer(forged_token(uid, get_settings().project_id))


def spec(**changes: Any) -> bytes:
    return json.dumps({**SPEC, **changes}).encode()


def error(response: Any) -> dict[str, Any]:
    body = response.get_json()["error"]
    assert set(body) == {"code", "message", "details"}
    assert all(set(d) == {"path", "problem"} for d in body["details"])
    return dict(body)


def test_no_token_or_a_bad_one_is_401(http: FlaskClient) -> None:
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic YTpi"}):
        response = http.post("/", data=spec(), headers=headers)
        assert response.status_code == 401 and error(response)["code"] == "UNAUTHENTICATED"
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_the_token_owns_the_job_and_a_missing_owner_is_filled_in(
    http: FlaskClient, stores: tuple[FakeBlobs, FakeJobs]
) -> None:
    blobs, _ = stores
    created = http.post("/", data=spec(), headers=user("alice"))
    assert created.status_code == 202, created.get_json()
    assert (
        created.get_json()["job_id"] == "scene-1"
        and created.get_json()["spec_uri"] == "gs://scenerender-specs/jobs/scene-1.json"
    )
    stored = json.loads(blobs.objects["gs://scenerender-specs/jobs/scene-1.json"])
    assert stored["owner_uid"] == "alice" and stored["job_id"] == "scene-1"


def test_a_spec_naming_another_owner_is_403(http: FlaskClient, stores: tuple[FakeBlobs, FakeJobs]) -> None:
    response = http.post("/", data=spec(owner_uid="alice"), headers=user("mallory"))
    assert response.status_code == 403
    assert error(response)["details"][0]["path"] == "owner_uid"
    assert stores[0].objects == {}


def assert_taken_from_mallory(http: FlaskClient, blobs: FakeBlobs) -> None:
    """Alice's job scene-1 and batch b-1, named by mallory as a spec's job, its batch and a
    batch's scene: 409 at the path that names them, and nothing written."""
    taken = http.post("/", data=spec(), headers=user("mallory"))
    assert taken.status_code == 409 and error(taken)["details"][0]["path"] == "job_id"
    joined = http.post("/", data=spec(job_id="other", batch_id="b-1"), headers=user("mallory"))
    assert joined.status_code == 409 and error(joined)["details"][0]["path"] == "batch_id"
    batch = {"version": 1, "batch_id": "b-2", "scenes": [{**SPEC, "job_id": "scene-1"}]}
    by_batch = http.post("/", data=json.dumps(batch), headers=user("mallory"))
    assert by_batch.status_code == 409 and error(by_batch)["details"][0]["path"] == "scenes[0].job_id"
    assert blobs.objects == {}


def test_another_users_job_id_or_batch_id_is_409_and_nothing_is_written(
    http: FlaskClient, stores: tuple[FakeBlobs, FakeJobs]
) -> None:
    blobs, jobs = stores
    jobs.create_job("scene-1", JobDocument.model_validate({"status": "COMPLETED", "owner_uid": "alice"}))
    jobs.batches["b-1"] = {"batch_id": "b-1", "owner_uid": "alice"}
    assert_taken_from_mallory(http, blobs)
    # Its owner re-renders it.
    assert http.post("/", data=spec(), headers=user("alice")).status_code == 202


def test_get_returns_a_job_only_to_its_owner(http: FlaskClient, stores: tuple[FakeBlobs, FakeJobs]) -> None:
    _, jobs = stores
    jobs.create_job("scene-1", JobDocument.model_validate({"status": "QUEUED", "owner_uid": "alice"}))
    own = http.get("/?job_id=scene-1", headers=user("alice"))
    assert own.status_code == 200 and own.get_json()["status"] == "QUEUED"
    other = http.get("/?job_id=scene-1", headers=user("mallory"))
    missing = http.get("/?job_id=nope", headers=user("mallory"))
    # Another user's job and a missing one answer alike: existence is not told.
    assert other.status_code == missing.status_code == 404
    assert error(other)["code"] == "NOT_FOUND"
    assert http.get("/?job_id=scene-1").status_code == 401


def test_an_unreadable_document_is_told_only_to_its_owner(
    http: FlaskClient, stores: tuple[FakeBlobs, FakeJobs]
) -> None:
    """A job or batch document edited by hand into something that is no job: its owner hears it
    is unreadable (500, named); to another user it answers as another user's readable one would
    (GET 404 like a missing id, POST 409), so its existence is not told through the error."""
    blobs, jobs = stores
    jobs.docs["scene-1"] = {"status": "QUEUED", "attempt": "many", "owner_uid": "alice"}
    jobs.batches["b-1"] = {"status": "QUEUED", "total": "all", "owner_uid": "alice"}
    for key, value in (("job_id", "scene-1"), ("batch_id", "b-1")):
        other = http.get(f"/?{key}={value}", headers=user("mallory"))
        missing = http.get(f"/?{key}=nope", headers=user("mallory"))
        assert other.status_code == missing.status_code == 404
        assert error(other) == {**error(missing), "message": error(missing)["message"].replace("nope", value)}
        own = http.get(f"/?{key}={value}", headers=user("alice"))
        assert own.status_code == 500 and error(own)["code"] == "INTERNAL"
        assert error(own)["message"].startswith(f"{key[:-3]} document {value} does not read as a {key[:-3]}: ")
    assert_taken_from_mallory(http, blobs)


def test_get_gives_the_owner_the_spec_their_job_was_accepted_from(
    http: FlaskClient, stores: tuple[FakeBlobs, FakeJobs]
) -> None:
    """Re-render and promote from any browser: the owner's GET carries the accepted spec, nobody else's."""
    blobs, jobs = stores
    sent = {**SPEC, "output": {"resolution": "480p", "preview": True}}
    accepted = http.post("/", data=json.dumps(sent), headers=user("alice")).get_json()
    jobs.create_job(
        "scene-1",
        JobDocument.model_validate(
            {
                "status": "COMPLETED",
                "owner_uid": "alice",
                "spec_uri": accepted["spec_uri"],
                "spec_generation": accepted["spec_generation"],
            }
        ),
    )
    own = http.get("/?job_id=scene-1", headers=user("alice")).get_json()
    assert own["status"] == "COMPLETED"
    assert own["spec"] == {**sent, "owner_uid": "alice"}
    other = http.get("/?job_id=scene-1", headers=user("mallory"))
    assert other.status_code == 404 and "spec" not in other.get_json() and "preview" not in other.get_data(as_text=True)
    # A batch's scene comes back as a spec of its own, its id, batch and owner filled in.
    batch = {
        "version": 1,
        "batch_id": "b-1",
        "scenes": [{**SPEC, "job_id": None, "scene_id": "one"}, {**SPEC, "job_id": None, "scene_id": "two"}],
    }
    answer = http.post("/", data=json.dumps(batch), headers=user("alice")).get_json()
    jobs.create_job(
        "b-1-002",
        JobDocument.model_validate(
            {
                "status": "FAILED",
                "owner_uid": "alice",
                "batch_id": "b-1",
                "spec_uri": answer["spec_uri"],
                "spec_generation": answer["spec_generation"],
            }
        ),
    )
    scene = http.get("/?job_id=b-1-002", headers=user("alice")).get_json()["spec"]
    assert scene == {**SPEC, "scene_id": "two", "job_id": "b-1-002", "batch_id": "b-1", "owner_uid": "alice"}
    # A later resubmission replaced the object and was refused (the job kept its accepted
    # generation): the accepted spec still comes back, not the refused one.
    refused = http.post("/", data=json.dumps({**sent, "scene_id": "refused"}), headers=user("alice")).get_json()
    assert refused["spec_generation"] != accepted["spec_generation"]
    assert json.loads(blobs.objects[accepted["spec_uri"]])["scene_id"] == "refused"
    assert http.get("/?job_id=scene-1", headers=user("alice")).get_json()["spec"] == {**sent, "owner_uid": "alice"}
    # Neither the copy nor that generation is there any more (the object replaced, without versioning): no spec.
    for uri in [u for u in blobs.objects if u.startswith(f"gs://{get_settings().spec_bucket}/submitted/")]:
        del blobs.objects[uri]
    blobs.generations[accepted["spec_uri"]] = "999"
    assert http.get("/?job_id=scene-1", headers=user("alice")).get_json()["spec"] is None


@pytest.mark.parametrize(
    "query",
    [
        "job_id=a/b",
        "job_id=.",
        "job_id=..",
        "job_id=__x__",
        "job_id=",
        "job_id=" + "a" * 129,
        "",
        "x=1",
        "job_id=a%00b",
        "job_id=a&batch_id=b",
        "batch_id=..%2F",
    ],
)
def test_invalid_ids_are_400(http: FlaskClient, query: str) -> None:
    response = http.get(f"/?{query}", headers=user("alice"))
    assert response.status_code == 400, response.get_json()
    assert error(response)["code"] == "INVALID_SPEC"


def test_a_body_over_the_limit_is_413(http: FlaskClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCENERENDER_MAX_API_BODY_BYTES", "1000")
    get_settings.cache_clear()
    response = http.post("/", data=b" " * 1001 + spec(), headers=user("alice"))
    assert response.status_code == 413 and error(response)["code"] == "LIMIT_EXCEEDED"


def test_the_per_owner_cap_is_429(
    http: FlaskClient, stores: tuple[FakeBlobs, FakeJobs], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, jobs = stores
    monkeypatch.setenv("SCENERENDER_MAX_ACTIVE_JOBS_PER_OWNER", "2")
    get_settings.cache_clear()
    jobs.create_job("a1", JobDocument.model_validate({"status": "QUEUED", "owner_uid": "alice"}))
    jobs.create_job("a2", JobDocument.model_validate({"status": "RUNNING", "owner_uid": "alice"}))
    jobs.create_job("b1", JobDocument.model_validate({"status": "QUEUED", "owner_uid": "bob"}))
    refused = http.post("/", data=spec(job_id="a3"), headers=user("alice"))
    assert refused.status_code == 429 and error(refused)["code"] == "TOO_MANY_JOBS"
    assert http.post("/", data=spec(job_id="b2"), headers=user("bob")).status_code == 202
    jobs.docs["a2"]["status"] = "COMPLETED"
    assert http.post("/", data=spec(job_id="a3"), headers=user("alice")).status_code == 202


def test_a_batch_sent_again_takes_slots_only_for_the_scenes_that_run(
    http: FlaskClient, stores: tuple[FakeBlobs, FakeJobs], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The spec function re-runs only a batch's failed or changed scenes; a completed, unchanged
    scene takes no slot, or a user re-sending a finished batch would be refused (or hold slots)."""
    from scenerender.messages import JobStatus
    from scenerender.pipeline.batch import parse_batch, scene_spec, spec_hash

    blobs, jobs = stores
    monkeypatch.setenv("SCENERENDER_MAX_ACTIVE_JOBS_PER_OWNER", "2")
    get_settings.cache_clear()
    scenes = [{**SPEC, "job_id": f"b-{i}", "scene_id": f"s{i}"} for i in range(2)]
    batch = {"version": 1, "batch_id": "b", "scenes": scenes}
    assert http.post("/", data=json.dumps(batch), headers=user("alice")).status_code == 202
    # The spec function ran both scenes to the end, from the batch as the API wrote it.
    written = parse_batch(blobs.objects["gs://scenerender-specs/jobs/b.json"])
    for index in range(2):
        done = {"status": JobStatus.COMPLETED, "owner_uid": "alice", "spec_hash": spec_hash(scene_spec(written, index))}
        jobs.create_job(f"b-{index}", JobDocument.model_validate(done))
    jobs.create_job("other", JobDocument.model_validate({"status": "RUNNING", "owner_uid": "alice"}))
    # One slot is left (2 - "other"): the same batch again runs nothing, so it takes none...
    assert http.post("/", data=json.dumps(batch), headers=user("alice")).status_code == 202
    # ...one changed scene takes the one slot, and two changed scenes are refused.
    changed = {**batch, "scenes": [{**scenes[0], "scene_id": "new"}, scenes[1]]}
    assert http.post("/", data=json.dumps(changed), headers=user("alice")).status_code == 202
    both = {**batch, "scenes": [{**scene, "scene_id": "new2"} for scene in scenes]}
    refused = http.post("/", data=json.dumps(both), headers=user("alice"))
    assert refused.status_code == 429 and error(refused)["code"] == "TOO_MANY_JOBS"


def test_local_paths_are_400_with_their_paths(http: FlaskClient) -> None:
    body = {
        **SPEC,
        "segments": [{"id": "a", "url": "media/a.mp4"}, {"id": "b", "url": "gs://m/b.mp4"}],
        "audio": {"clips": [{"type": "sfx", "url": "file:///etc/passwd"}]},
    }
    response = http.post("/", data=json.dumps(body), headers=user("alice"))
    assert response.status_code == 400
    assert [d["path"] for d in error(response)["details"]] == ["segments[0].url", "audio.clips[0].url"]


def test_uploads_are_signed_under_the_users_prefix(http: FlaskClient) -> None:
    ask = {"filename": "seg-1.mp4", "content_type": "video/mp4", "size": 1234}
    response = http.post("/uploads", data=json.dumps(ask), headers=user("alice"))
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["uri"].startswith("gs://scenerender-media/users/alice/uploads/")
    assert response.get_json()["uri"].endswith("/seg-1.mp4") and response.get_json()["method"] == "PUT"
    for bad in (
        {**ask, "filename": "../x.mp4"},
        {**ask, "filename": "a/b.mp4"},
        {**ask, "filename": ".hidden"},
        {**ask, "size": 0},
        {**ask, "size": 10**13},
        {**ask, "content_type": "text/html\r\nX: y"},
        {**ask, "extra": 1},
        {"filename": "a.mp4"},
    ):
        refused = http.post("/uploads", data=json.dumps(bad), headers=user("alice"))
        assert refused.status_code == 400, (bad, refused.get_json())
    assert http.post("/uploads", data=json.dumps(ask)).status_code == 401


def test_methods_paths_and_preflight(http: FlaskClient) -> None:
    assert http.put("/", headers=user("alice")).status_code == 405
    assert http.get("/uploads", headers=user("alice")).status_code == 405
    assert http.get("/nope", headers=user("alice")).status_code == 404
    preflight = http.options("/", headers={"Origin": "http://localhost:5000"})
    assert preflight.status_code == 204 and "Authorization" in preflight.headers["Access-Control-Allow-Headers"]


def test_a_spec_or_batch_within_its_limit_is_written_within_it(
    http: FlaskClient, stores: tuple[FakeBlobs, FakeJobs], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The API writes the body back out with the owner filled in. json.dumps' defaults (a space
    after every separator, non-ASCII escaped) made a compact spec of CJK text twice its size:
    the spec function then refused, after the 202, the spec the user sent within
    max_spec_bytes; and a batch at max_api_body_bytes was refused with 400 for the size of the
    API's own copy of it."""
    from scenerender.core.spec import parse_spec
    from scenerender.pipeline.batch import parse_batch

    blobs, _ = stores
    clip = {"type": "dialogue", "url": "https://cdn.example.com/l.wav", "text": "你去哪儿了。" * 40}
    scene = {**SPEC, "owner_uid": "alice", "audio": {"clips": [clip]}}
    raw = json.dumps(scene, ensure_ascii=False, separators=(",", ":")).encode()
    monkeypatch.setenv("SCENERENDER_MAX_SPEC_BYTES", str(len(raw)))
    get_settings.cache_clear()
    answer = http.post("/", data=raw, headers=user("alice"))
    assert answer.status_code == 202, answer.get_json()
    written = blobs.objects[answer.get_json()["spec_uri"]]
    assert parse_spec(written, max_bytes=get_settings().max_spec_bytes).audio.clips[0].text == clip["text"]

    scenes = [{**scene, "job_id": f"b-{i}", "scene_id": f"s{i}"} for i in range(3)]
    batch = json.dumps({"version": 1, "batch_id": "b", "owner_uid": "alice", "scenes": scenes}, separators=(",", ":"))
    monkeypatch.setenv("SCENERENDER_MAX_API_BODY_BYTES", str(len(batch.encode())))
    get_settings.cache_clear()
    answer = http.post("/", data=batch.encode(), headers=user("alice"))
    assert answer.status_code == 202, answer.get_json()
    assert len(parse_batch(blobs.objects[answer.get_json()["spec_uri"]]).scenes) == 3
