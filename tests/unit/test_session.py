"""The client's side of the API: its error bodies back into the error tree, and which local files
`submit` may upload."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from scenerender.cli.remote import upload_local_files
from scenerender.cloud.session import ApiClient, Session, error_from_body
from scenerender.errors import (
    BodyTooLargeError,
    ConflictError,
    InputRefusedError,
    LimitExceededError,
    NotFoundError,
    SceneRenderError,
    SpecError,
    TooManyJobsError,
    TransientError,
    UnauthenticatedError,
)


@pytest.mark.parametrize(
    ("status", "code", "cls"),
    [
        (401, "UNAUTHENTICATED", UnauthenticatedError),
        (404, "NOT_FOUND", NotFoundError),
        (409, "CONFLICT", ConflictError),
        (429, "TOO_MANY_JOBS", TooManyJobsError),
        (413, "LIMIT_EXCEEDED", BodyTooLargeError),
        (400, "LIMIT_EXCEEDED", LimitExceededError),
        (400, "INVALID_SPEC", SpecError),
        (400, "INPUT_REFUSED", InputRefusedError),
    ],
)
def test_api_errors_come_back_as_their_class(status: int, code: str, cls: type) -> None:
    body = {"error": {"code": code, "message": "m", "details": [{"path": "segments[0].url", "problem": "p"}]}}
    exc = error_from_body(status, body)
    assert type(exc) is cls and exc.details[0].path == "segments[0].url"


def test_a_body_that_is_not_ours_is_still_an_error() -> None:
    assert isinstance(error_from_body(503, {"error": {"code": "INTERNAL", "message": "x"}}), TransientError)
    assert error_from_body(502, "<html>").message == "the API answered HTTP 502"


def test_only_files_in_the_specs_folder_are_uploaded_unless_allowed(tmp_path: Path) -> None:
    (tmp_path / "scene").mkdir()
    (tmp_path / "scene" / "a.mp4").write_bytes(b"a")
    (tmp_path / "secret.key").write_bytes(b"k")
    spec_path = tmp_path / "scene" / "job.json"
    raw = {
        "segments": [{"id": "a", "url": "a.mp4"}, {"id": "b", "url": "../secret.key"}],
        "audio": {"clips": [{"type": "sfx", "url": str(tmp_path / "secret.key")}, {"type": "sfx", "url": "gs://m/x"}]},
    }
    sent: list[Path] = []

    def upload(path: Path) -> str:
        sent.append(path)
        return f"gs://media/users/u/uploads/{path.name}"

    with pytest.raises(SpecError) as refused:
        upload_local_files(spec_path, raw, upload)
    assert [d.path for d in refused.value.details] == ["segments[1].url", "audio.clips[0].url"]
    assert "--allow-outside" in refused.value.message
    sent.clear()
    names: dict[str, str] = {}
    data = upload_local_files(spec_path, raw, upload, allow_outside=True, names=names)
    assert [s["url"] for s in data["segments"]] == [
        "gs://media/users/u/uploads/a.mp4",
        "gs://media/users/u/uploads/secret.key",
    ]
    assert data["audio"]["clips"][1]["url"] == "gs://m/x"
    assert names["gs://media/users/u/uploads/a.mp4"] == "a.mp4"
    assert json.dumps(raw).count("gs://media") == 0  # the caller's spec is left as it was


def test_a_2xx_answer_of_the_wrong_shape_is_an_error_not_a_key_error() -> None:
    api = ApiClient("http://api.test", Session("u", None, "token"))

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/uploads":
            return httpx.Response(200, json={"uri": "gs://m/a.mp4"})  # no url, headers, expires_at...
        receipt = {"batch_id": "b", "job_ids": ["b-001"], "spec_uri": "gs://s/b.json", "spec_generation": "1"}
        return httpx.Response(202, json=receipt)

    api.http = httpx.Client(transport=httpx.MockTransport(answer))
    with pytest.raises(SceneRenderError, match=r"no JobReceipt \(job_id: Field required\)"):
        api.submit(b"{}")  # a job's POST answered with a batch's receipt
    assert api.submit_batch(b"{}").batch_id == "b"
    with pytest.raises(SceneRenderError, match="no UploadGrant"):
        api.upload(Path(__file__))
