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

from scenerender.devstack import free_port, http_ok

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
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        log.close()


def token(uid: str) -> str:
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
        "firebase": {"sign_in_provider": "custom"},
    }
    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


def doc_url(base: str, path: str) -> str:
    return f"{base}/v1/projects/{PROJECT}/databases/(default)/documents/{path}"


def seed(base: str) -> None:
    # "Bearer owner" is the emulator's admin bypass, as the pipeline's service accounts bypass rules.
    for job_id, owner in (("job-a", "alice"), ("job-b", "bob")):
        response = httpx.patch(
            doc_url(base, f"render_jobs/{job_id}"),
            headers={"Authorization": "Bearer owner"},
            json={"fields": {"owner_uid": {"stringValue": owner}, "status": {"stringValue": "COMPLETED"}}},
            timeout=10,
        )
        assert response.status_code == 200, response.text


def test_owner_reads_own_job_and_nobody_else_does(firestore: str) -> None:
    seed(firestore)
    url = doc_url(firestore, "render_jobs/job-a")
    own = httpx.get(url, headers={"Authorization": f"Bearer {token('alice')}"}, timeout=10)
    assert own.status_code == 200 and own.json()["fields"]["status"]["stringValue"] == "COMPLETED"
    assert httpx.get(url, headers={"Authorization": f"Bearer {token('bob')}"}, timeout=10).status_code == 403
    assert httpx.get(url, timeout=10).status_code == 403  # anonymous


@pytest.mark.parametrize("path", ["render_jobs/job-a", "render_jobs/new-job", "render_batches/b-1", "other/x"])
def test_no_client_writes(firestore: str, path: str) -> None:
    seed(firestore)
    body = {"fields": {"owner_uid": {"stringValue": "alice"}, "status": {"stringValue": "COMPLETED"}}}
    for headers in ({"Authorization": f"Bearer {token('alice')}"}, {}):
        response = httpx.patch(doc_url(firestore, path), headers=headers, json=body, timeout=10)
        assert response.status_code == 403, (path, response.text)
    deleted = httpx.delete(
        doc_url(firestore, "render_jobs/job-a"), headers={"Authorization": f"Bearer {token('alice')}"}, timeout=10
    )
    assert deleted.status_code == 403
