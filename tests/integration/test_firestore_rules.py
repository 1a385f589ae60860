"""firestore.rules against the Firestore emulator started with them: clients read only their own jobs."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from scenerender.dev.procs import free_port, http_ok

pytestmark = pytest.mark.integration
RULES = Path(__file__).parents[2] / "firestore.rules"
PROJECT = "rules-test"


@pytest.fixture(scope="module")
def firestore(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log = (tmp_path_factory.mktemp("rules") / "firestore.log").open("wb")
    proc = subprocess.Popen(
        ["gcloud", "emulators", "firestore", "start", f"--host-port=127.0.0.1:{port}", f"--rules={RULES}", "--quiet"],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while not http_ok(base + "/"):
            assert time.monotonic() < deadline and proc.poll() is None, "the Firestore emulator did not start"
            time.sleep(0.2)
        yield base
    finally:
        # gcloud starts java under it: end the whole group, hard if it lingers.
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        log.close()


def token(uid: str, provider: str = "password") -> str:
    """An unsigned ID token, which the emulator accepts (alg none)."""

    def part(data: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    claims = {
        "sub": uid,
        "user_id": uid,
        "aud": PROJECT,
        "iss": f"https://securetoken.google.com/{PROJECT}",
        "iat": int(time.time()),
        "exp": int(time.time()) + 3600,
        "firebase": {"sign_in_provider": provider},
    }
    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


def doc_url(base: str, path: str) -> str:
    return f"{base}/v1/projects/{PROJECT}/databases/(default)/documents/{path}"


def as_user(uid: str, provider: str = "password") -> dict[str, str]:
    return {"Authorization": f"Bearer {token(uid, provider)}"}


# Who is refused a document alice owns: another signed-in user, a Firebase anonymous user, and
# a request with no credentials at all.
STRANGERS = {
    "another user": as_user("bob"),
    "anonymous user": as_user("anon-1", provider="anonymous"),
    "no credentials": {},
}


def seed(base: str) -> None:
    # "Bearer owner" is the emulator's admin bypass, as the pipeline's service accounts bypass rules.
    docs = {
        "render_jobs/job-a": "alice",
        "render_jobs/job-b": "bob",
        "render_batches/batch-a": "alice",
    }
    for path, owner in docs.items():
        response = httpx.patch(
            doc_url(base, path),
            headers={"Authorization": "Bearer owner"},
            json={"fields": {"owner_uid": {"stringValue": owner}, "status": {"stringValue": "COMPLETED"}}},
            timeout=10,
        )
        assert response.status_code == 200, response.text


@pytest.mark.parametrize("path", ["render_jobs/job-a", "render_batches/batch-a"])
def test_owner_reads_own_document_and_nobody_else_does(firestore: str, path: str) -> None:
    seed(firestore)
    url = doc_url(firestore, path)
    own = httpx.get(url, headers=as_user("alice"), timeout=10)
    assert own.status_code == 200 and own.json()["fields"]["status"]["stringValue"] == "COMPLETED"
    for who, headers in STRANGERS.items():
        assert httpx.get(url, headers=headers, timeout=10).status_code == 403, who


def run_query(base: str, headers: dict[str, str], owner: str | None) -> httpx.Response:
    query: dict[str, object] = {"from": [{"collectionId": "render_jobs"}]}
    if owner is not None:
        query["where"] = {
            "fieldFilter": {"field": {"fieldPath": "owner_uid"}, "op": "EQUAL", "value": {"stringValue": owner}}
        }
    url = f"{base}/v1/projects/{PROJECT}/databases/(default)/documents:runQuery"
    return httpx.post(url, headers=headers, json={"structuredQuery": query}, timeout=10)


def test_a_user_may_list_only_their_own_jobs(firestore: str) -> None:
    seed(firestore)
    mine = run_query(firestore, as_user("alice"), owner="alice")
    assert mine.status_code == 200, mine.text
    names = [r["document"]["name"].rsplit("/", 1)[-1] for r in mine.json() if "document" in r]
    assert names == ["job-a"]
    # Rules are not filters: a query that could return another user's job is refused whole.
    assert run_query(firestore, as_user("alice"), owner=None).status_code == 403
    assert run_query(firestore, as_user("alice"), owner="bob").status_code == 403


@pytest.mark.parametrize("path", ["render_jobs/job-a", "render_jobs/new-job", "render_batches/batch-a", "other/x"])
def test_no_client_writes(firestore: str, path: str) -> None:
    seed(firestore)
    body = {"fields": {"owner_uid": {"stringValue": "alice"}, "status": {"stringValue": "QUEUED"}}}
    for who, headers in {"owner": as_user("alice"), **STRANGERS}.items():
        response = httpx.patch(doc_url(firestore, path), headers=headers, json=body, timeout=10)
        assert response.status_code == 403, (path, who, response.text)
        deleted = httpx.delete(doc_url(firestore, path), headers=headers, timeout=10)
        assert deleted.status_code == 403, (path, who, deleted.text)
    if path == "render_jobs/job-a":  # and nothing changed
        kept = httpx.get(doc_url(firestore, path), headers=as_user("alice"), timeout=10)
        assert kept.json()["fields"]["status"]["stringValue"] == "COMPLETED"


def test_refusal_records_are_read_by_no_client(firestore: str) -> None:
    """``render_refusals``: what another owner's drop asked for, kept from every end user, even
    the one it names (only the backends, through IAM, read it)."""
    url = doc_url(firestore, "render_refusals/r-1")
    fields = {"owner_uid": {"stringValue": "mallory"}, "job_id": {"stringValue": "job-a"}}
    created = httpx.patch(url, headers={"Authorization": "Bearer owner"}, json={"fields": fields}, timeout=10)
    assert created.status_code == 200, created.text
    for who, headers in {"named": as_user("mallory"), "job owner": as_user("alice"), **STRANGERS}.items():
        assert httpx.get(url, headers=headers, timeout=10).status_code == 403, who
