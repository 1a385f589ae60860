"""The one error tree of SceneRender.

Every failure the package raises is a ``SceneRenderError``; each class carries the
contract's error code (CONTRACT.md section 4), the CLI exit code (section 3) and whether
trying again later can succeed::

    SceneRenderError                 INTERNAL             exit 1
    ├── SpecError                    INVALID_SPEC         exit 2   (details: JSON paths)
    │   └── LimitExceededError       LIMIT_EXCEEDED       exit 2   (names the limit)
    │       └── BodyTooLargeError    LIMIT_EXCEEDED                (HTTP 413)
    ├── InputError                                        exit 3   (names the input)
    │   ├── InputUnreachableError    INPUT_UNREACHABLE
    │   ├── InputRefusedError        INPUT_REFUSED
    │   └── InputMediaError          INPUT_INVALID_MEDIA
    ├── NotFoundError                NOT_FOUND            exit 2   (a job or batch id that
    │                                                               names nothing; HTTP 404)
    ├── CloudUnavailableError        INTERNAL             exit 1   (no cloud answers: the
    │                                                               client says how to start one)
    ├── RenderError                  RENDER_FAILED        exit 4   (stderr tail)
    │   ├── OutOfSyncError           RENDER_FAILED                 (where picture and sound part)
    │   └── RenderTimeoutError       TIMEOUT
    ├── TransientError               INTERNAL             exit 1   (retryable: cloud
    │                                                               service unavailable; HTTP 503)
    ├── MissingError                 INTERNAL             exit 1   (an object or document is
    │                                                               not there; also FileNotFoundError)
    ├── AlreadyWrittenError          INTERNAL             exit 1   (a create-only write found one
    │                                                               there; also FileExistsError)
    ├── UnreadableDocumentError      INTERNAL             exit 1   (a stored job or batch document
    │                                                               that does not read as one)
    └── ApiError                                          exit 1   (the HTTP API's refusals)
        ├── UnauthenticatedError     UNAUTHENTICATED               (HTTP 401)
        ├── ForbiddenError           FORBIDDEN            exit 2   (HTTP 403)
        ├── MethodNotAllowedError    METHOD_NOT_ALLOWED            (HTTP 405)
        ├── ConflictError            CONFLICT             exit 2   (HTTP 409)
        └── TooManyJobsError         TOO_MANY_JOBS                 (HTTP 429)

Each class also carries the HTTP status the API answers it with (``http_status``): 400 for
a spec or input refused, 503 for a transient failure, 500 only for a bug.

Third-party exceptions are translated into this tree once, where they are caught, with
``raise ... from exc``: Google's client errors by the one map in ``scenerender.cloud.google_errors``
(which also decides which of them are worth a retry); httpx's and subprocess's where the
fetch and the ffmpeg runner catch them.

Outside the tree, because it is not a failure: ``Stopped``, a ``KeyboardInterrupt`` the
command line raises in its main thread when SIGTERM or SIGHUP asks it to stop. It unwinds
like Ctrl-C does (every ffmpeg stopped, the private dir and any partial output removed) and
exits with 128 + the signal's number, as a shell reports a process the signal ended.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from typing import Any, ClassVar, Self


@dataclass(frozen=True)
class ErrorDetail:
    """One located problem: a JSON path into the spec (``audio.clips[3].segment_id``) and why."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message

    def to_dict(self) -> dict[str, str]:
        """The contract's form (CONTRACT.md section 3), the same on a job document, the API and ``--json``."""
        return {"path": self.path, "problem": self.message}


class SceneRenderError(Exception):
    """Base of every error SceneRender raises on purpose."""

    code: ClassVar[str] = "INTERNAL"
    exit_code: ClassVar[int] = 1
    retryable: ClassVar[bool] = False
    http_status: ClassVar[int] = 500

    def __init__(self, message: str, *, details: list[ErrorDetail] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: list[ErrorDetail] = list(details or [])

    def to_dict(self) -> dict[str, Any]:
        """The ``error`` block of a job document and of ``--json`` output."""
        return {
            "code": self.code,
            "message": self.message,
            "details": [d.to_dict() for d in self.details],
        }


class SpecError(SceneRenderError):
    """The spec (or the command line) is invalid; every problem is listed with its path."""

    code = "INVALID_SPEC"
    exit_code = 2
    http_status = 400

    @classmethod
    def from_details(cls, details: list[ErrorDetail]) -> Self:
        head = str(details[0]) if details else "invalid spec"
        more = f" (and {len(details) - 1} more)" if len(details) > 1 else ""
        return cls(f"{head}{more}", details=details)


class LimitExceededError(SpecError):
    """The spec asks for more than a configured limit allows (scene length, pixels x seconds,
    segments, clips, object size); the message names the setting, so an operator knows what to raise.

    A subclass of ``SpecError``: the same spec will never pass, and every door treats it as a
    refused spec (exit 2, HTTP 400), with its own code.
    """

    code = "LIMIT_EXCEEDED"


class BodyTooLargeError(LimitExceededError):
    """An HTTP request body is larger than the API takes (``max_api_body_bytes``)."""

    http_status = 413


class InputError(SceneRenderError):
    """An input could not be used; ``input_path`` is where the spec names it (``segments[2].url``)."""

    code = "INPUT_INVALID_MEDIA"
    exit_code = 3
    http_status = 400

    def __init__(self, input_path: str, reason: str, *, url: str | None = None) -> None:
        where = f"{input_path} ({url})" if url else input_path
        super().__init__(f"{where}: {reason}", details=[ErrorDetail(input_path, reason)])
        self.input_path = input_path
        self.reason = reason
        self.url = url


class InputUnreachableError(InputError):
    """The input could not be fetched (missing file, 404, network).

    Not retried by redelivery: fetches already retry within the attempt, and a user
    waiting on a missing file wants the answer now, not after every redelivery.
    """

    code = "INPUT_UNREACHABLE"


class InputRefusedError(InputError):
    """The input's location is not allowed (scheme, host, bucket, size)."""

    code = "INPUT_REFUSED"


class InputMediaError(InputError):
    """The input was fetched but is not usable media (not media, no video stream, zero length)."""

    code = "INPUT_INVALID_MEDIA"


class NotFoundError(SceneRenderError):
    """The job or batch an id names does not exist (and no spec for it is on its way); on the API
    also another user's, which it answers exactly as a missing one."""

    code = "NOT_FOUND"
    exit_code = 2
    http_status = 404


class CloudUnavailableError(SceneRenderError):
    """No cloud answers the client (no local cloud running, or the one it was pointed at is gone)."""

    code = "INTERNAL"
    exit_code = 1


class RenderError(SceneRenderError):
    """ffmpeg failed; ``stderr_tail`` holds its last lines."""

    code = "RENDER_FAILED"
    exit_code = 4

    def __init__(self, message: str, *, stderr_tail: str = "", command: str = "") -> None:
        super().__init__(message)
        self.stderr_tail = stderr_tail
        self.command = command

    def __str__(self) -> str:
        return f"{self.message}\n{self.stderr_tail}" if self.stderr_tail else self.message


class QcFailedError(RenderError):
    """The quality report found something the spec's ``qc.fail_on`` names (RENDER_FAILED)."""

    def __init__(self, message: str, *, details: list[ErrorDetail]) -> None:
        super().__init__(message)
        self.details = list(details)


class OutOfSyncError(RenderError):
    """The output's picture and sound disagree by more than one frame somewhere (the sync
    certificate, ``scenerender.core.sync``); ``details`` name each place, planned and measured."""

    def __init__(self, message: str, *, details: list[ErrorDetail]) -> None:
        super().__init__(message)
        self.details = list(details)


class RenderTimeoutError(RenderError):
    """The render ran past its time limit."""

    code = "TIMEOUT"


class TransientError(SceneRenderError):
    """A cloud service was unavailable; the same work can succeed on redelivery."""

    code = "INTERNAL"
    retryable = True
    http_status = 503


class MissingError(SceneRenderError, FileNotFoundError):
    """The object or document is not there (Google's 404). Also a ``FileNotFoundError``, so a
    caller that asks "is it there?" catches it as it would for a local file."""


class AlreadyWrittenError(SceneRenderError, FileExistsError):
    """A create-only write found the object or document already there (409, or 412 on a
    generation precondition). Also a ``FileExistsError``: the caller lost a race and says so."""


class UnreadableDocumentError(SceneRenderError):
    """A stored job or batch document does not read as one (edited by hand, or written by
    another version). Carries the owner the document names, if any, so a door answers another
    user as it would for a missing document instead of telling them it exists."""

    def __init__(self, message: str, *, owner_uid: str | None) -> None:
        super().__init__(message)
        self.owner_uid = owner_uid


class ApiError(SceneRenderError):
    """The HTTP API refuses a request for who sent it or what it asks, not for its spec."""

    code = "INTERNAL"


class UnauthenticatedError(ApiError):
    """No Firebase ID token, or one that does not verify (expired, forged, another project's)."""

    code = "UNAUTHENTICATED"
    http_status = 401


class ForbiddenError(ApiError):
    """The signed-in user may not do this (a spec naming another ``owner_uid``)."""

    code = "FORBIDDEN"
    exit_code = 2
    http_status = 403


class MethodNotAllowedError(ApiError):
    """The path does not take this HTTP method, or the path does not exist."""

    code = "METHOD_NOT_ALLOWED"
    http_status = 405


class ConflictError(ApiError):
    """The job or batch id belongs to another user for good; nothing was written."""

    code = "CONFLICT"
    exit_code = 2
    http_status = 409


class TooManyJobsError(ApiError):
    """The user already has as many jobs queued or running as ``max_active_jobs_per_owner`` allows."""

    code = "TOO_MANY_JOBS"
    http_status = 429


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP asked the command line to stop (see the module's docstring)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    def __str__(self) -> str:
        return f"stopped by {signal.Signals(self.signum).name}"


def collected(problems: list[SceneRenderError]) -> SceneRenderError:
    """Many problems found in one round as one error that lists them all.

    Any spec problem makes it a ``SpecError`` (exit 2; the input problems are listed beside
    the spec's); input problems alone keep the first one's class and code (exit 3).
    """
    details = [d for p in problems for d in (p.details or [ErrorDetail("", p.message)])]
    if len(problems) == 1:
        return problems[0]
    if not problems:
        return SpecError.from_details(details)
    spec_problems = [p for p in problems if isinstance(p, SpecError)]
    if spec_problems:
        return type(spec_problems[0]).from_details(details)  # a limit stays LIMIT_EXCEEDED
    first = problems[0]
    if isinstance(first, InputError):
        many = type(first)(first.input_path, first.reason, url=first.url)
        many.details = details
        if len(details) > 1:
            many.message += f" (and {len(details) - 1} more)"
        return many
    return first


def all_error_classes() -> list[type[SceneRenderError]]:
    """Every class of the tree, base included (tests check each is mapped)."""
    found: list[type[SceneRenderError]] = []
    pending: list[type[SceneRenderError]] = [SceneRenderError]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return found
