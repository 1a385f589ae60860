"""The HTTP API as hostile and honest users meet it: real HTTP to the functions on the local
cloud, real ID tokens from the Firebase Auth emulator, Firestore with firestore.rules loaded."""

from __future__ import annotations

import io
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from scenerender.cloud import identity
from scenerender.cloud.clients import Clients
from scenerender.cloud.session import Session, sign_in
from scenerender.messages import JobDocument
from scenerender.pipeline.api import Api, ApiRequest, ApiResponse
from scenerender.settings import Settings
from tests.integration.conftest import LocalCloud
from tests.integration.test_pipeline import spec_for, wait_for_end
from tests.tokens import forged_token
from tests.unit.cloud_fakes import output_of

pytestmark = [pytest.mark.integration, pytest.mark.emulators]


@pytest.fixture(scope="module")
def api(settings: Settings) -> str:
    return settings.api_url


@pytest.fixture(scope="module")
def alice(settings: Settings) -> Session:
    return sign_in("alice@example.com", settings)


@pytest.fixture(scope="module")
def mallory(settings: Settings) -> Session:
    return sign_in("mallory@example.com", settings)


def auth(session: Session) -> dict[str, str]:
    return {"Authorization": f"Bearer {session.id_token}"}


def users_spec(job_id: str, media: dict[str, str], **extra: Any) -> bytes:
    body = {k: v for k, v in spec_for(job_id, media, **extra).items() if k != "owner_uid"}
    return json.dumps(body).encode()


def firestore_get(settings: Settings, path: str, session: Session | None) -> httpx.Response:
    host = settings.firestore_emulator_host
    url = f"http://{host}/v1/projects/{settings.project_id}/databases/(default)/documents/{path}"
    headers = auth(session) if session else {}
    return httpx.get(url, headers=headers, timeout=30)


def test_a_takeover_by_api_is_409_and_the_owner_still_renders_again_with_history(
    stores: Clients, api: str, settings: Settings, scene_media: dict[str, str], alice: Session, mallory: Session
) -> None:
    created = httpx.post(api, content=users_spec("it-alice", scene_media), headers=auth(alice), timeout=30)
    assert created.status_code == 202, created.text
    first = wait_for_end(stores.jobs, "it-alice")
    first_output = output_of(first)
    assert first.owner_uid == alice.uid
    spec_uri = f"gs://{settings.spec_bucket}/jobs/it-alice.json"
    spec_before = stores.blobs.read_bytes(spec_uri)

    # Mallory, with and without naming herself, and naming alice: refused, nothing written.
    for body in (
        users_spec("it-alice", scene_media),
        json.dumps({**json.loads(users_spec("it-alice", scene_media)), "owner_uid": mallory.uid}).encode(),
    ):
        taken = httpx.post(api, content=body, headers=auth(mallory), timeout=30)
        assert taken.status_code == 409, taken.text
        assert taken.json()["error"]["code"] == "CONFLICT"
        assert taken.json()["error"]["details"][0]["path"] == "job_id"
    as_alice = json.dumps({**json.loads(users_spec("it-alice", scene_media)), "owner_uid": alice.uid}).encode()
    assert httpx.post(api, content=as_alice, headers=auth(mallory), timeout=30).status_code == 403
    time.sleep(2)
    after = stores.jobs.get("it-alice")
    assert stores.blobs.read_bytes(spec_uri) == spec_before
    assert after is not None and after.owner_uid == alice.uid
    assert output_of(after).uri == first_output.uri and not after.history

    # Alice's own re-submission renders again and keeps the first run in history.
    again = httpx.post(api, content=users_spec("it-alice", scene_media), headers=auth(alice), timeout=30)
    assert again.status_code == 202, again.text
    deadline = time.monotonic() + 120
    while (doc := stores.jobs.get("it-alice")) is None or (
        doc.spec_generation != again.json()["spec_generation"] or not doc.status.ended
    ):
        assert time.monotonic() < deadline, doc
        time.sleep(0.3)
    assert output_of(doc) and doc.owner_uid == alice.uid
    assert [run["output"]["uri"] for run in doc.history] == [first_output.uri]


def test_another_users_job_is_not_readable_through_the_api_nor_through_the_rules(
    stores: Clients, api: str, settings: Settings, scene_media: dict[str, str], alice: Session, mallory: Session
) -> None:
    created = httpx.post(api, content=users_spec("it-private", scene_media), headers=auth(alice), timeout=30)
    assert created.status_code == 202, created.text
    wait_for_end(stores.jobs, "it-private")
    own = httpx.get(api, params={"job_id": "it-private"}, headers=auth(alice), timeout=30)
    assert own.status_code == 200 and own.json()["output"]["url"]
    other = httpx.get(api, params={"job_id": "it-private"}, headers=auth(mallory), timeout=30)
    missing = httpx.get(api, params={"job_id": "it-no-such-job"}, headers=auth(mallory), timeout=30)
    assert other.status_code == missing.status_code == 404
    assert other.json()["error"]["code"] == "NOT_FOUND" and "output" not in other.text
    # The rules the cloud enforces, loaded by dev up: only the owner's token reads the document.
    assert firestore_get(settings, "render_jobs/it-private", alice).status_code == 200
    denied = firestore_get(settings, "render_jobs/it-private", mallory)
    assert denied.status_code == 403 and "PERMISSION_DENIED" in denied.text
    assert firestore_get(settings, "render_jobs/it-private", None).status_code == 403


@pytest.mark.parametrize("job_id", ["a/b", ".", "..", "__x__", "", "a" * 129, "it-private/items/x", "%2e%2e"])
def test_invalid_ids_are_400_never_500(api: str, alice: Session, job_id: str) -> None:
    response = httpx.get(api, params={"job_id": job_id}, headers=auth(alice), timeout=30)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["details"][0]["path"] == "job_id"


def test_local_paths_are_400_at_once(stores: Clients, api: str, alice: Session, scene_media: dict[str, str]) -> None:
    body = json.loads(users_spec("it-local", scene_media))
    body["segments"][1]["url"] = "media/b.mp4"
    response = httpx.post(api, content=json.dumps(body), headers=auth(alice), timeout=30)
    assert response.status_code == 400, response.text
    assert [d["path"] for d in response.json()["error"]["details"]] == ["segments[1].url"]
    assert stores.jobs.get("it-local") is None


def test_the_per_owner_cap_is_429(stores: Clients, api: str, settings: Settings, scene_media: dict[str, str]) -> None:
    busy = sign_in("busy@example.com", settings)
    for index in range(settings.max_active_jobs_per_owner):
        # Queued jobs of this user (written as the pipeline writes them; nothing renders them).
        stores.jobs.create_job(
            f"it-busy-{index}", JobDocument.model_validate({"status": "QUEUED", "owner_uid": busy.uid})
        )
    refused = httpx.post(api, content=users_spec("it-busy-more", scene_media), headers=auth(busy), timeout=30)
    assert refused.status_code == 429, refused.text
    assert refused.json()["error"]["code"] == "TOO_MANY_JOBS"
    assert stores.jobs.get("it-busy-more") is None
    # Another user is not held back by it.
    other = sign_in("not-busy@example.com", settings)
    assert (
        httpx.post(api, content=users_spec("it-not-busy", scene_media), headers=auth(other), timeout=30).status_code
        == 202
    )


def test_concurrent_submissions_over_the_cap_accept_exactly_the_cap(
    stores: Clients, settings: Settings, scene_media: dict[str, str]
) -> None:
    """One user fires N specs at once, more than the cap: counting the active jobs and then
    writing would let every one of them see the same free slots. The slots are taken in one
    transaction on Firestore, so exactly the cap is accepted and the rest get the contract's
    429 TOO_MANY_JOBS, with nothing of theirs written.

    In process, so the N requests truly overlap (threads released together), on the Firestore
    and GCS emulators; the specs go to a bucket of their own that starts no job."""
    cap, fired = 4, 12
    bucket = "it-cap-race-specs"
    stores.blobs.ensure_bucket(bucket)
    racing = settings.model_copy(update={"spec_bucket": bucket, "max_active_jobs_per_owner": cap})
    user = sign_in("racer@example.com", settings)
    api = Api(
        settings=racing,
        jobs=stores.jobs,
        blobs=stores.blobs,
        verify=identity.verifier(settings).verify,
    )
    bodies = [users_spec(f"it-race-{i:02d}", scene_media) for i in range(fired)]
    start = threading.Barrier(fired)

    def submit(body: bytes) -> ApiResponse:
        start.wait(timeout=60)
        return api.handle(ApiRequest("POST", "/", {}, f"Bearer {user.id_token}", io.BytesIO(body).read, len(body)))

    with ThreadPoolExecutor(max_workers=fired) as pool:
        responses = list(pool.map(submit, bodies))
    accepted = sorted(str((r.body or {})["job_id"]) for r in responses if r.status == 202)
    refused = [r for r in responses if r.status != 202]
    assert len(accepted) == cap, [(r.status, r.body) for r in responses]
    assert all(r.status == 429 and (r.body or {})["error"]["code"] == "TOO_MANY_JOBS" for r in refused), refused
    assert sorted(stores.blobs.list_uris(f"gs://{bucket}/jobs/")) == [
        f"gs://{bucket}/jobs/{job_id}.json" for job_id in accepted
    ]
    # Full: one more is refused too, and an accepted one sent again takes no second slot.
    more = users_spec("it-race-more", scene_media)
    again = users_spec(accepted[0], scene_media)
    assert submit_alone(api, user, more).status == 429
    assert submit_alone(api, user, again).status == 202


def submit_alone(api: Api, user: Session, body: bytes) -> ApiResponse:
    return api.handle(ApiRequest("POST", "/", {}, f"Bearer {user.id_token}", io.BytesIO(body).read, len(body)))


def test_the_upload_door_writes_under_the_users_prefix_only(
    stores: Clients, api: str, settings: Settings, alice: Session
) -> None:
    data = b"\x00\x00\x00\x18ftypmp42" + os.urandom(2000)
    before = set(stores.blobs.list_uris(f"gs://{settings.media_bucket}/"))
    ticket = httpx.post(
        f"{api}/uploads",
        json={"filename": "clip.mp4", "content_type": "video/mp4", "size": len(data)},
        headers=auth(alice),
        timeout=30,
    )
    assert ticket.status_code == 200, ticket.text
    uri = ticket.json()["uri"]
    assert uri.startswith(f"gs://{settings.media_bucket}/users/{alice.uid}/uploads/") and uri.endswith("/clip.mp4")
    url = httpx.URL(ticket.json()["url"])
    assert url.path == f"/{settings.media_bucket}/" + uri.split("/", 3)[3]
    assert "x-goog-content-length-range" in url.params["X-Goog-SignedHeaders"]
    put = httpx.put(str(url), content=data, headers=ticket.json()["headers"], timeout=30)
    assert put.status_code in (200, 201), put.text
    assert set(stores.blobs.list_uris(f"gs://{settings.media_bucket}/")) - before == {uri}
    assert stores.blobs.read_bytes(uri) == data
    for bad in ("../../x.mp4", "users/bob/x.mp4", ".x"):
        refused = httpx.post(
            f"{api}/uploads",
            json={"filename": bad, "content_type": "video/mp4", "size": 10},
            headers=auth(alice),
            timeout=30,
        )
        assert refused.status_code == 400, refused.text


TOKENS = st.sampled_from(["alice", "forged", "garbage", "none", "basic"])
TEXT = st.text(max_size=40)


@hsettings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]),
    path=st.sampled_from(["/", "/jobs", "/uploads", "/x", "//", "/jobs/../uploads", "/%00"])
    | TEXT.map(lambda t: "/" + t),
    token=TOKENS,
    query=st.dictionaries(st.sampled_from(["job_id", "batch_id", "name", "x"]), TEXT, max_size=3),
    body=st.one_of(
        st.binary(max_size=200),
        TEXT.map(str.encode),
        st.dictionaries(TEXT, st.one_of(TEXT, st.integers(), st.none()), max_size=5).map(
            lambda d: json.dumps(d).encode()
        ),
        st.just(b'{"version": 1, "job_id": "it-fuzz", "project_id": "p", "scene_id": "s", "segments": []}'),
        st.just(b'{"version": 1, "batch_id": "it-fuzz-b", "scenes": [{}]}'),
        st.just(b'{"filename": "a.mp4", "content_type": "video/mp4", "size": 5}'),
    ),
    extra=st.dictionaries(
        st.sampled_from(["Content-Type", "Content-Length", "X-Forwarded-For", "Origin"]), TEXT, max_size=2
    ),
)
def test_fuzzed_requests_never_get_a_500(
    api: str,
    alice: Session,
    method: str,
    path: str,
    token: str,
    query: dict[str, str],
    body: bytes,
    extra: dict[str, str],
) -> None:
    headers = {k: v for k, v in extra.items() if v.isascii() and v.isprintable() and k != "Content-Length"}
    tokens = {
        "alice": f"Bearer {alice.id_token}",
        "forged": f"Bearer {forged_token('alice', 'another-project')}",
        "garbage": "Bearer x.y.z",
        "basic": "Basic YWxpY2U6eA==",
    }
    if token in tokens:
        headers["Authorization"] = tokens[token]
    try:
        response = httpx.request(method, api + path, params=query, content=body, headers=headers, timeout=30)
    except httpx.InvalidURL:
        return
    assert response.status_code < 500, (method, path, query, body, response.text)
    if response.status_code >= 400 and method != "HEAD":
        error = response.json()["error"]
        assert set(error) == {"code", "message", "details"}


def test_watch_reads_as_the_signed_in_user(
    stores: Clients, local: LocalCloud, alice: Session, scene_media: dict[str, str], api: str
) -> None:
    """`scenerender watch` reads Firestore with the user's token: the owner follows the job, another
    user meets the rules and gets NOT_FOUND, as for a job that does not exist."""
    import subprocess
    import sys

    created = httpx.post(api, content=users_spec("it-watched", scene_media), headers=auth(alice), timeout=30)
    assert created.status_code == 202, created.text
    wait_for_end(stores.jobs, "it-watched")
    env = local.env(SCENERENDER_WATCH_GRACE_S="3")

    def watch(user: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "scenerender", "watch", "it-watched", "--user", user, "--json"]
        return subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env, check=False)

    own = watch("alice@example.com")
    assert own.returncode == 0 and json.loads(own.stdout)["status"] == "COMPLETED", own.stderr
    other = watch("mallory@example.com")
    assert other.returncode == 2, other.stderr
    assert json.loads(other.stdout)["error"]["code"] == "NOT_FOUND"
