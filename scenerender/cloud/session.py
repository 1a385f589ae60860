"""The client's side of identity: sign in, then use the HTTP API and Firestore as that user.

Locally the user signs in to the Firebase Auth emulator with an email (``--user`` or
``SCENERENDER_USER``); the emulator makes the account on first use. Against the cloud the
command line takes an ID token the film app gave the user (``SCENERENDER_ID_TOKEN``).

Everything a user submits goes through the API, which checks the token; what the user
reads from Firestore is read with the same token, so ``firestore.rules`` decides (the
emulator evaluates ``request.auth`` from it, as the cloud does).
"""

from __future__ import annotations

import hashlib
import mimetypes
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from scenerender.errors import (
    ErrorDetail,
    InputError,
    NotFoundError,
    SceneRenderError,
    SpecError,
    TransientError,
    UnauthenticatedError,
    all_error_classes,
)
from scenerender.messages import BatchDocument, BatchReceipt, JobDocument, JobReceipt, UploadGrant
from scenerender.settings import Settings

DEFAULT_USER = "local-user@example.com"
TOKEN_ENV = Settings.env_name("id_token")
# The Auth emulator takes any API key; accounts it makes are local, so one fixed password serves.
EMULATOR_API_KEY = "fake-api-key"
EMULATOR_PASSWORD = "scenerender-local-password"
TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Session:
    """A signed-in user: ``uid`` and the ID token that proves it."""

    uid: str
    email: str | None
    id_token: str


def sign_in(email: str | None, settings: Settings) -> Session:
    """Sign in as ``email`` (default: ``SCENERENDER_USER``, then local-user@example.com).

    With the Auth emulator (``settings.auth_emulator_host``) the account is made on first
    use; otherwise the ID token comes from ``SCENERENDER_ID_TOKEN``.
    """
    email = email or settings.user or DEFAULT_USER
    host = settings.auth_emulator_host
    if not host:
        token = settings.id_token
        if not token:
            raise UnauthenticatedError(
                f"not signed in: run against the local cloud (scenerender dev up starts the Auth emulator) "
                f"or set {TOKEN_ENV} to a Firebase ID token"
            )
        return Session(uid=_uid_of(token), email=None, id_token=token)
    base = f"http://{host}/identitytoolkit.googleapis.com/v1/accounts"
    body = {"email": email, "password": EMULATOR_PASSWORD, "returnSecureToken": True}
    try:
        with httpx.Client(timeout=TIMEOUT_S) as http:
            response = http.post(f"{base}:signUp", params={"key": EMULATOR_API_KEY}, json=body)
            if response.status_code == 400 and "EMAIL_EXISTS" in response.text:
                response = http.post(f"{base}:signInWithPassword", params={"key": EMULATOR_API_KEY}, json=body)
    except httpx.HTTPError as exc:
        raise TransientError(f"the Auth emulator at {host} did not answer: {exc}") from exc
    if response.status_code != 200:
        raise UnauthenticatedError(f"could not sign in as {email}: {response.text[:300]}")
    data = response.json()
    return Session(uid=str(data["localId"]), email=email, id_token=str(data["idToken"]))


def _uid_of(token: str) -> str:
    # Only for display and for the uid the API will take from the token anyway; the API verifies it.
    import base64
    import json

    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return str(claims.get("user_id") or claims["sub"])
    except (IndexError, ValueError, KeyError) as exc:
        raise UnauthenticatedError(f"{TOKEN_ENV} is not an ID token") from exc


def _bearer_channel(host: str, id_token: str) -> Any:
    """An insecure gRPC channel to the Firestore emulator that sends ``authorization: Bearer
    <id_token>`` with every call, unary and streaming (the realtime listener), so the emulator
    evaluates the rules' ``request.auth`` as this user. (google-cloud-firestore's own emulator
    channel passes the token as a channel option, which reaches no call: the emulator then
    reads as its admin, and the rules never apply.)"""
    import collections

    import grpc

    class Details(
        collections.namedtuple(
            "Details", ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression")
        ),
        grpc.ClientCallDetails,  # type: ignore[misc]
    ):
        pass

    class Bearer(
        grpc.UnaryUnaryClientInterceptor,  # type: ignore[misc]
        grpc.UnaryStreamClientInterceptor,  # type: ignore[misc]
        grpc.StreamUnaryClientInterceptor,  # type: ignore[misc]
        grpc.StreamStreamClientInterceptor,  # type: ignore[misc]
    ):
        def _details(self, details: Any) -> Any:
            metadata = [*(details.metadata or []), ("authorization", f"Bearer {id_token}")]
            return Details(
                details.method,
                details.timeout,
                metadata,
                details.credentials,
                getattr(details, "wait_for_ready", None),
                getattr(details, "compression", None),
            )

        def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
            return continuation(self._details(details), request)

        def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
            return continuation(self._details(details), request)

        def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
            return continuation(self._details(details), requests)

        def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
            return continuation(self._details(details), requests)

    return grpc.intercept_channel(grpc.insecure_channel(host), Bearer())


def user_jobs(settings: Settings, session: Session) -> Any:
    """A ``JobStore`` that reads as the user (emulator only), so firestore.rules apply to it.

    The rules deny a document that is another user's and one that does not exist alike, so
    for this store a denied read is "no such job of yours" (None), as the API's 404 is.
    """
    from google.api_core import exceptions as gexc

    from scenerender.cloud.clients import EmulatorFirestore
    from scenerender.cloud.jobs import JobStore

    if not settings.firestore_emulator_host:
        raise SceneRenderError("reading Firestore as a user needs the Firestore emulator (the local cloud)")

    class UserJobStore(JobStore):
        def get(self, job_id: str) -> JobDocument | None:
            try:
                return super().get(job_id)
            except SceneRenderError as exc:
                if isinstance(exc.__cause__, gexc.PermissionDenied):
                    return None
                raise

        def get_batch(self, batch_id: str) -> BatchDocument | None:
            try:
                return super().get_batch(batch_id)
            except SceneRenderError as exc:
                if isinstance(exc.__cause__, gexc.PermissionDenied):
                    return None
                raise

    class UserClient(EmulatorFirestore):
        def _emulator_channel(self, transport: Any) -> Any:
            return _bearer_channel(str(self._emulator_host), session.id_token)

    client = UserClient(settings.firestore_emulator_host, project=settings.project_id)
    return UserJobStore(client, settings)


def error_from_body(status: int, body: Any) -> SceneRenderError:
    """The API's error body as the error tree's class for its code."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return SceneRenderError(f"the API answered HTTP {status}")
    details = [
        ErrorDetail(str(d.get("path", "")), str(d.get("problem", "")))
        for d in error.get("details") or []
        if isinstance(d, dict)
    ]
    code, message = str(error.get("code")), str(error.get("message"))
    candidates = [c for c in all_error_classes() if c.code == code and c.code != SceneRenderError.code]
    cls = next((c for c in candidates if c.http_status == status), candidates[0] if candidates else None)
    if cls is None:
        return TransientError(message) if status == 503 else SceneRenderError(message, details=details)
    if issubclass(cls, InputError):
        first = details[0] if details else ErrorDetail("", message)
        return cls(first.path, first.message)
    return cls(message, details=details)


AnswerT = TypeVar("AnswerT", bound=BaseModel)


class ApiClient:
    """The HTTP API as one signed-in user."""

    def __init__(self, base_url: str, session: Session) -> None:
        if not base_url:
            raise SpecError.from_details(
                [ErrorDetail("SCENERENDER_API_URL", "the HTTP API's address is not set (scenerender dev up sets it)")]
            )
        self.base_url = base_url.rstrip("/")
        self.session = session
        self.http = httpx.Client(
            timeout=TIMEOUT_S, headers={"Authorization": f"Bearer {session.id_token}"}, follow_redirects=False
        )

    # The API's JSON body, as it came: each caller below reads it as the message it is.
    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = self.http.request(method, f"{self.base_url}{path}", **kwargs)
        except httpx.HTTPError as exc:
            raise TransientError(f"the API at {self.base_url} did not answer: {exc}") from exc
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code >= 400:
            raise error_from_body(response.status_code, body)
        return body if isinstance(body, dict) else {}

    def submit(self, spec: bytes) -> JobReceipt:
        """POST a job spec: the job it became and where its spec is."""
        return _answer(JobReceipt, self._post_spec(spec))

    def submit_batch(self, batch: bytes) -> BatchReceipt:
        """POST a batch: its scenes' job ids and where the batch is."""
        return _answer(BatchReceipt, self._post_spec(batch))

    def _post_spec(self, body: bytes) -> dict[str, Any]:
        return self._call("POST", "/", content=body, headers={"Content-Type": "application/json"})

    def job(self, job_id: str) -> JobDocument:
        """The user's job document (its ``spec``, the accepted spec, kept as an extra field)."""
        return JobDocument.model_validate(self._call("GET", "/", params={"job_id": job_id}))

    def batch(self, batch_id: str) -> BatchDocument:
        return BatchDocument.model_validate(self._call("GET", "/", params={"batch_id": batch_id}))

    def wait_until_visible(self, key: str, value: str, timeout_s: float = 60.0) -> JobDocument | BatchDocument:
        """The document once the spec function has made it (404 until then)."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                return self.job(value) if key == "job_id" else self.batch(value)
            except NotFoundError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def upload(self, path: Path) -> str:
        """Upload a local file through ``POST /uploads`` (a signed PUT under the user's prefix): its gs:// URI.

        Named by content hash, so a file already uploaded is not sent again.
        """
        digest = _sha256(path)
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        size = path.stat().st_size
        ask = {"filename": _safe_name(path.name), "content_type": content_type, "size": size, "sha256": digest}
        grant = _answer(UploadGrant, self._call("POST", "/uploads", json=ask))
        if not grant.exists:
            try:
                with path.open("rb") as fh:
                    response = httpx.put(grant.url, content=fh, headers=grant.headers, timeout=600)
            except httpx.HTTPError as exc:
                raise TransientError(f"upload of {path} failed: {exc}") from exc
            if response.status_code not in (200, 201):
                raise SceneRenderError(f"upload of {path} failed: HTTP {response.status_code} {response.text[:200]}")
        return grant.uri

    def close(self) -> None:
        self.http.close()


def _answer(model: type[AnswerT], body: dict[str, Any]) -> AnswerT:
    """The API's 2xx body read as the message it answers with; another shape says so."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise SceneRenderError(f"the API answered with no {model.__name__} ({where}: {first['msg']})") from None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _safe_name(name: str) -> str:
    import re

    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", name).lstrip(".")[:128]
    return cleaned or "file"
