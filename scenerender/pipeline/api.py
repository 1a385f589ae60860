"""The HTTP API for end users (CONTRACT.md section 5), apart from the function that serves it.

    POST /            a job spec or a batch file  -> 202 {job_id | batch_id, spec_uri, spec_generation}
    GET  /?job_id=    the caller's own job        -> 200 the job document and its accepted ``spec``
    GET  /?batch_id=  the caller's own batch      -> 200 the batch document
    POST /uploads     {filename, content_type, size, sha256?} -> 200 a V4 signed PUT URL under
                      gs://MEDIA_BUCKET/users/{uid}/

Every request needs ``Authorization: Bearer <Firebase ID token>``; the token's uid owns what
it submits. Each refusal is one class of the error tree, answered with its ``http_status``
and ``{"error": {"code", "message", "details": [{"path", "problem"}]}}``; docs/api.md lists
them. The ownership checks here refuse early and write nothing; the spec function checks
ownership again when it takes the spec (the record of truth), so a race between two users
writing the same id at once still leaves the first owner's job alone.

Size: the four routes and their refusals, one door's whole surface (docs/api.md lists it
in the same order).
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from scenerender.cloud.identity import User, bearer_token
from scenerender.core.inputs import is_local_path
from scenerender.core.spec import ID_PATTERN, JobSpec, default_job_id, load_json, parse_spec
from scenerender.core.tenancy import check_spec
from scenerender.errors import (
    BodyTooLargeError,
    ConflictError,
    ErrorDetail,
    ForbiddenError,
    MethodNotAllowedError,
    NotFoundError,
    SceneRenderError,
    SpecError,
    TooManyJobsError,
    TransientError,
    UnauthenticatedError,
    UnreadableDocumentError,
)
from scenerender.messages import (
    BatchReceipt,
    ErrorBlock,
    JobDocument,
    JobReceipt,
    UploadGrant,
    is_active,
    may_take,
)
from scenerender.pipeline.batch import BatchSpec, is_batch, parse_batch, scene_job_id, scene_runs, scene_spec
from scenerender.pipeline.steps import spec_object_name
from scenerender.ports import Blobs, Jobs
from scenerender.settings import Settings

log = logging.getLogger(__name__)

JOB_PATHS = frozenset({"/", "/jobs"})
SUBMITTED_PREFIX = "submitted/"  # copies of the spec objects the API wrote, one per generation
UPLOAD_PATH = "/uploads"
_ID = re.compile(ID_PATTERN)
CORS_HEADERS = {
    # Tokens travel in a header, never in cookies, so a page of another origin cannot act as a
    # user without that user's token: any origin may call (the web client runs on its own host).
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type",
    "Access-Control-Max-Age": "3600",
}


@dataclass(frozen=True)
class ApiRequest:
    """What the API needs of an HTTP request; ``read(n)`` returns at most ``n`` bytes of the body."""

    method: str
    path: str
    args: Mapping[str, str]
    authorization: str | None
    read: Callable[[int], bytes]
    content_length: int | None = None


@dataclass(frozen=True)
class ApiResponse:
    status: int
    body: dict[str, Any] | None  # the HTTP body: a model's wire() (a receipt, a JobDocument, an ErrorBlock...)
    headers: dict[str, str] = field(default_factory=dict)

    def json(self) -> str:
        return json.dumps(self.body, default=_json_default) if self.body is not None else ""


@dataclass(frozen=True)
class Api:
    """The API's stores and the token check, handed in by the function (or a test)."""

    settings: Settings
    jobs: Jobs
    blobs: Blobs
    verify: Callable[[str], User]

    def handle(self, request: ApiRequest) -> ApiResponse:
        """Answer one request; never raises (a bug is a logged 500 without a trace in the body)."""
        try:
            response = self._route(request)
        except SceneRenderError as exc:
            response = error_response(exc)
        except Exception as exc:
            log.exception("API %s %s: internal error", request.method, request.path)
            response = error_response(SceneRenderError(f"internal error ({type(exc).__name__})"))
        return ApiResponse(response.status, response.body, {**CORS_HEADERS, **response.headers})

    def _route(self, request: ApiRequest) -> ApiResponse:
        method = request.method.upper()
        if method == "OPTIONS":  # a browser's preflight carries no token
            return ApiResponse(204, None)
        user = self.verify(bearer_token(request.authorization))
        path = "/" + request.path.strip("/")
        if path in JOB_PATHS:
            if method == "POST":
                return self.submit(user, request)
            if method == "GET":
                return self.read(user, request.args)
        elif path == UPLOAD_PATH:
            if method == "POST":
                return self.upload(user, request)
        else:
            raise NotFoundError(f"no such path {path[:200]!r}: use /, /jobs or /uploads")
        raise MethodNotAllowedError(f"{path} does not take {method[:20]}", details=[ErrorDetail("method", method)])

    # -- POST /: a spec or a batch -------------------------------------------------------------

    def submit(self, user: User, request: ApiRequest) -> ApiResponse:
        raw = read_body(request, self.settings.max_api_body_bytes)
        if is_batch(raw):
            return self._submit_batch(user, parse_batch(raw), raw)
        spec = parse_spec(raw, max_bytes=self.settings.max_spec_bytes)
        check_owner(user, spec.owner_uid, "owner_uid")
        refuse_local_paths(spec)
        name_hint = request.args.get("name", "")
        job_id = spec.job_id or default_job_id(name_hint or f"job-{os.urandom(4).hex()}")
        self._check_job_id(user, job_id, "job_id")
        if spec.batch_id:
            self._check_batch_id(user, spec.batch_id, "batch_id")
        # The same limits and media scope as the spec function applies to a bucket drop.
        check_spec(spec, self.settings, owner_uid=user.uid)
        self._take_slots(user, [job_id])
        data = load_json(raw, max_bytes=self.settings.max_spec_bytes)
        # The stored spec names its owner and id, as a spec dropped by a trusted backend must.
        data.update(owner_uid=user.uid, job_id=job_id)
        uri = f"gs://{self.settings.spec_bucket}/{spec_object_name(job_id)}"
        generation = self._write_spec(uri, stored_bytes(data))
        log.info("API: user %s submitted job %s (%s)", user.uid, job_id, uri)
        return ApiResponse(202, JobReceipt(job_id=job_id, spec_uri=uri, spec_generation=str(generation)).wire())

    def _submit_batch(self, user: User, batch: BatchSpec, raw: bytes) -> ApiResponse:
        check_owner(user, batch.owner_uid, "owner_uid")
        for index, scene in enumerate(batch.scenes):
            check_owner(user, scene.owner_uid, f"scenes[{index}].owner_uid")
            refuse_local_paths(scene, prefix=f"scenes[{index}].")
            try:
                check_spec(scene, self.settings, owner_uid=user.uid)
            except SceneRenderError as exc:
                exc.details = [ErrorDetail(f"scenes[{index}].{d.path}", d.message) for d in exc.details]
                raise
        self._check_batch_id(user, batch.batch_id, "batch_id")
        data = load_json(raw, max_bytes=self.settings.max_api_body_bytes, what="batch")
        data["owner_uid"] = user.uid
        for scene in data["scenes"]:
            scene["owner_uid"] = user.uid
        # The scenes as the spec function will read them (with their owner), so a slot is taken
        # only for a scene it will run: a completed, unchanged scene of a batch sent again runs not.
        written = stored_bytes(data)
        # Not measured against the body's limit again: the body was within it, and what is
        # written differs from it only by the owner filled in.
        stored = parse_batch(written, max_bytes=len(written))
        running: list[str] = []
        for index in range(len(batch.scenes)):
            job_id = scene_job_id(batch, index)
            existing = self._check_job_id(user, job_id, f"scenes[{index}].job_id")
            if existing is None or is_active(existing.status) or scene_runs(existing, scene_spec(stored, index)):
                running.append(job_id)
        self._take_slots(user, running)
        uri = f"gs://{self.settings.spec_bucket}/{spec_object_name(batch.batch_id)}"
        generation = self._write_spec(uri, written)
        log.info("API: user %s submitted batch %s (%s)", user.uid, batch.batch_id, uri)
        job_ids = [scene_job_id(batch, i) for i in range(len(batch.scenes))]
        receipt = BatchReceipt(batch_id=batch.batch_id, job_ids=job_ids, spec_uri=uri, spec_generation=str(generation))
        return ApiResponse(202, receipt.wire())

    def _write_spec(self, uri: str, data: bytes) -> int:
        """Write the spec object (it starts the job), then a copy of it named by its generation.

        The spec function may refuse this generation (the job still runs, another owner's id)
        after it has replaced the one the job was accepted from; the job document keeps naming
        the accepted generation, and its copy is what ``GET /?job_id=`` reads. Object versioning
        would keep that generation too, but only as long as the bucket's lifecycle keeps it.
        """
        generation = self.blobs.write_bytes(uri, data, content_type="application/json")
        try:
            self.blobs.write_bytes(submitted_copy_uri(uri, str(generation)), data, content_type="application/json")
        except SceneRenderError as exc:
            # The job is submitted either way; only a later re-render from another browser may miss its spec.
            log.warning("API: the copy of %s generation %s was not written: %s", uri, generation, exc.message)
        return generation

    def _check_job_id(self, user: User, job_id: str, path: str) -> JobDocument | None:
        """The job stored under ``job_id`` (None if none), or 409 if it is not the user's to take."""
        # A job id belongs to its first owner for good. A job without an owner (an invalid spec
        # that named none) may be taken only while it never rendered, as the spec function decides.
        existing = owners_read(user, lambda: self.jobs.get(job_id), _taken("job", job_id, path))
        if not may_take(existing, user.uid):
            raise _taken("job", job_id, path)
        return existing

    def _check_batch_id(self, user: User, batch_id: str, path: str) -> None:
        existing = owners_read(user, lambda: self.jobs.get_batch(batch_id), _taken("batch", batch_id, path))
        if existing is not None and existing.owner_uid != user.uid:
            raise _taken("batch", batch_id, path)

    def _take_slots(self, user: User, job_ids: list[str]) -> None:
        """Reserve the per-owner cap's slots for these jobs, or refuse them all (429).

        The last check before the spec is written, and one transaction (``ports.OwnerSlots``):
        a user's concurrent submissions cannot all count the same free slots. A job already
        QUEUED or RUNNING takes no second slot (its resubmission is the spec function's to refuse).
        """
        cap = self.settings.max_active_jobs_per_owner
        claim = self.jobs.reserve_slots(user.uid, job_ids, cap)
        if not claim.granted:
            raise TooManyJobsError(
                f"you have {claim.held} jobs queued or running and this adds {claim.new}; "
                f"the limit is {cap} (max_active_jobs_per_owner): wait for some to end",
                details=[ErrorDetail("", f"{claim.held} active + {claim.new} new > {cap}")],
            )

    # -- GET /?job_id= | ?batch_id= --------------------------------------------------------------

    def read(self, user: User, args: Mapping[str, str]) -> ApiResponse:
        keys = [k for k in ("job_id", "batch_id") if k in args]
        if len(keys) != 1:
            raise SpecError.from_details([ErrorDetail("job_id", "give exactly one of job_id and batch_id")])
        key = keys[0]
        value = args[key]
        if not _ID.fullmatch(value):
            raise SpecError.from_details([ErrorDetail(key, f"not a valid id (pattern {ID_PATTERN})")])
        not_found = NotFoundError(f"you have no {key[:-3]} {value!r}", details=[ErrorDetail(key, "not found")])
        doc = owners_read(
            user, lambda: self.jobs.get(value) if key == "job_id" else self.jobs.get_batch(value), not_found
        )
        # Another user's job answers exactly as a missing one: its existence is not told either.
        if doc is None or doc.owner_uid != user.uid:
            raise not_found
        body = doc.wire()
        if isinstance(doc, JobDocument):
            # The owner's own spec, so any of their browsers can re-render or promote the job.
            body["spec"] = self.accepted_spec(value, doc)
        return ApiResponse(200, body)

    def accepted_spec(self, job_id: str, doc: JobDocument) -> dict[str, Any] | None:
        """The spec the job document was last written from (a batch's scene as a spec of its own).

        Read from the copy the API kept of the generation the document names (``_write_spec``):
        the object itself may since hold a resubmission that was refused. Without a copy (a spec
        dropped into the bucket), the object at that generation, while versioning keeps it.
        ``None`` when neither is there or it cannot be read as a spec any more.
        """
        uri, generation = doc.spec_uri, doc.spec_generation
        # Only the spec bucket: a job document names nothing else, and the API reads nothing else.
        if not uri.startswith(f"gs://{self.settings.spec_bucket}/"):
            return None
        limit = max(self.settings.max_spec_bytes, self.settings.max_batch_bytes)
        try:
            raw = self._read_accepted(uri, generation or None, limit)
            data = load_json(raw, max_bytes=limit)
            if not is_batch(raw):
                return data if isinstance(data, dict) else None
            batch = parse_batch(raw, max_bytes=limit)
        except TransientError:
            raise  # storage unavailable: 503, try again
        except (FileNotFoundError, SceneRenderError):
            return None
        for index in range(len(batch.scenes)):
            if scene_job_id(batch, index) == job_id:
                scene: dict[str, Any] = dict(data["scenes"][index])
                owner = scene.get("owner_uid") or data.get("owner_uid")
                return {**scene, "job_id": job_id, "batch_id": batch.batch_id, "owner_uid": owner}
        return None

    def _read_accepted(self, uri: str, generation: str | None, limit: int) -> bytes:
        if generation:
            try:
                return self.blobs.read_bytes(submitted_copy_uri(uri, generation), max_bytes=limit)
            except FileNotFoundError:
                pass
        return self.blobs.read_bytes(uri, generation=generation, max_bytes=limit)

    # -- POST /uploads -------------------------------------------------------------------------

    def upload(self, user: User, request: ApiRequest) -> ApiResponse:
        raw = read_body(request, self.settings.max_api_body_bytes)
        try:
            ask = UploadRequest.model_validate_json(raw)
        except ValidationError as exc:
            raise SpecError.from_details(
                [ErrorDetail(".".join(str(p) for p in e["loc"]), e["msg"]) for e in exc.errors()]
            ) from None
        if ask.size > self.settings.max_input_bytes:
            raise SpecError.from_details(
                [ErrorDetail("size", f"{ask.size} bytes; the largest input is {self.settings.max_input_bytes}")]
            )
        folder = ask.sha256[:32] if ask.sha256 else os.urandom(12).hex()
        uri = f"{user_prefix(self.settings, user.uid)}uploads/{folder}/{ask.filename}"
        exists = bool(ask.sha256) and self.blobs.exists(uri)
        url, expires = self.blobs.signed_upload_url(
            uri, self.settings.upload_url_ttl_s, content_type=ask.content_type, max_bytes=ask.size
        )
        headers = {"Content-Type": ask.content_type, "x-goog-content-length-range": f"0,{ask.size}"}
        grant = UploadGrant(uri=uri, url=url, headers=headers, expires_at=expires, exists=exists)
        return ApiResponse(200, grant.wire())


class UploadRequest(BaseModel):
    """The body of ``POST /uploads``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # A plain file name: no folders, no leading dot, so the object lands where the URI says.
    filename: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$")]
    content_type: Annotated[str, StringConstraints(pattern=r"^[a-z]+/[A-Za-z0-9.+-]{1,100}$")]
    size: Annotated[int, Field(ge=1)]
    sha256: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")] | None = None


def submitted_copy_uri(spec_uri: str, generation: str) -> str:
    """Where the API keeps a copy of one generation of a spec object it wrote.

    Outside ``jobs/``, so the bucket's notification (and the spec function) never sees it:
    ``gs://SPECS/jobs/ID.json`` generation G is copied to ``gs://SPECS/submitted/jobs/ID/G.json``.
    """
    bucket, _, name = spec_uri.removeprefix("gs://").partition("/")
    return f"gs://{bucket}/{SUBMITTED_PREFIX}{name.removesuffix('.json')}/{generation}.json"


def user_prefix(settings: Settings, uid: str) -> str:
    """Where a user's own media lives: only they may name it in a spec."""
    return f"gs://{settings.media_bucket}/users/{uid}/"


_D = TypeVar("_D")


def owners_read(user: User, read: Callable[[], _D], otherwise: SceneRenderError) -> _D:
    """``read()`` of a stored document; one that does not read as a job or batch is its owner's
    to hear about (500, naming it), and anybody else gets ``otherwise``: what another user's
    readable document would answer them, so its existence is not told."""
    try:
        return read()
    except UnreadableDocumentError as exc:
        if exc.owner_uid == user.uid:
            raise
        raise otherwise from None


def _taken(kind: str, value: str, path: str) -> ConflictError:
    return ConflictError(
        f"{path}: {kind} {value!r} belongs to another user; choose another id",
        details=[ErrorDetail(path, f"{kind} {value!r} belongs to another user")],
    )


def check_owner(user: User, owner_uid: str | None, path: str) -> None:
    """A spec sent by a user may name only that user as its owner (a missing one is filled in)."""
    if owner_uid is not None and owner_uid != user.uid:
        raise ForbiddenError(
            f"{path}: is {owner_uid!r}, but you are signed in as {user.uid!r}",
            details=[ErrorDetail(path, f"is {owner_uid!r}, not the signed-in user {user.uid!r}")],
        )


def refuse_local_paths(spec: JobSpec, *, prefix: str = "") -> None:
    """Paths on the client's machine mean nothing to the pipeline: refused now, each located."""
    details = [
        ErrorDetail(
            f"{prefix}{where}",
            f"{url[:200]!r} is a local path; upload the file (POST /uploads) and name its gs:// URI",
        )
        for where, url in spec.inputs()
        if is_local_path(url) or url.lower().startswith("file:")
    ]
    if details:
        raise SpecError.from_details(details)


def read_body(request: ApiRequest, limit: int) -> bytes:
    """The body, at most ``limit`` bytes: a larger one is refused before (or instead of) reading it all."""
    if request.content_length is not None and request.content_length > limit:
        raise _too_large(request.content_length, limit)
    data = request.read(limit + 1)
    if len(data) > limit:
        raise _too_large(None, limit)
    return data


def _too_large(size: int | None, limit: int) -> BodyTooLargeError:
    told = f"{size} bytes" if size is not None else f"more than {limit} bytes"
    return BodyTooLargeError(
        f"request body is {told}; the limit is {limit} (max_api_body_bytes)",
        details=[ErrorDetail("body", f"larger than max_api_body_bytes ({limit})")],
    )


def stored_bytes(data: Any) -> bytes:
    """A submitted spec or batch as the spec object is written: compact UTF-8, so it is no
    larger than the body the user sent (plus the owner filled in). ``json.dumps``' defaults
    add a space after every separator and escape every non-ASCII character (a CJK caption's
    3 bytes a character become 6), so a body within ``max_spec_bytes`` was written past it
    and the spec function refused, after the API had answered 202, a spec the user sent within
    the limit."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()


def error_body(exc: SceneRenderError) -> dict[str, Any]:
    """``{"error": {"code", "message", "details": [{"path", "problem"}]}}`` (docs/api.md)."""
    return {"error": ErrorBlock.of(exc).wire()}


def error_response(exc: SceneRenderError) -> ApiResponse:
    headers = {"WWW-Authenticate": 'Bearer realm="scenerender"'} if isinstance(exc, UnauthenticatedError) else {}
    if exc.retryable:
        headers["Retry-After"] = "5"
    return ApiResponse(exc.http_status, error_body(exc), headers)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)
