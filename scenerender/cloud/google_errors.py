"""Google's client errors, translated into the error tree in this one place.

Firestore, Cloud Storage and Pub/Sub all raise ``google.api_core`` exceptions (gRPC's
``RpcError`` is first turned into its ``api_core`` class). ``translate`` maps them, first
match wins, as drawn here::

    google.api_core.exceptions                      ours (scenerender.errors)
    GoogleAPIError
    ├── RetryError (the client's own retries ran out) TransientError
    └── GoogleAPICallError
        ├── ClientError
        │   ├── TooManyRequests 429                 TransientError
        │   │   └── ResourceExhausted (gRPC)        TransientError
        │   ├── Cancelled 499                       TransientError
        │   ├── Conflict 409                        AlreadyWrittenError
        │   │   ├── Aborted (a transaction lost     TransientError
        │   │   │   a race: run it again)
        │   │   └── AlreadyExists                   AlreadyWrittenError
        │   ├── PreconditionFailed 412              AlreadyWrittenError (if_generation_match)
        │   ├── NotFound 404                        MissingError
        │   └── BadRequest 400, Unauthorized 401,   SceneRenderError
        │       Forbidden 403, 405, 411, 416
        ├── ServerError
        │   ├── InternalServerError 500, Unknown    TransientError
        │   ├── BadGateway 502                      TransientError
        │   ├── ServiceUnavailable 503              TransientError
        │   ├── GatewayTimeout 504                  TransientError
        │   │   └── DeadlineExceeded (gRPC)         TransientError
        │   └── MethodNotImplemented 501, DataLoss  SceneRenderError
        └── ResumableTransferError (uploads)
            ├── TransferStalledError                TransientError
            └── the others                          SceneRenderError
    google.auth.exceptions.TransportError           TransientError (no token: the network)
    requests ConnectionError, Timeout; OSError's    TransientError (Cloud Storage's transport)
      ConnectionError, TimeoutError
    ValueError from Aborted (a Firestore           TransientError (contention: the
      transaction's attempts ran out)                 client wraps its last ABORTED)
    anything else                                   SceneRenderError: never retried, a bug
                                                    does not heal on redelivery

The transient set is Pub/Sub's own default retry codes (ABORTED, CANCELLED,
DEADLINE_EXCEEDED, INTERNAL, RESOURCE_EXHAUSTED, UNAVAILABLE, UNKNOWN) in HTTP terms, for
every service alike: work that failed on one of these is left for redelivery; anything
else is recorded on the job at once. tests/unit/test_google_errors.py pins the set and
checks every ``api_core`` class lands where this table says.
"""

from __future__ import annotations

import grpc
import requests
from google.api_core import exceptions as gexc
from google.auth import exceptions as gauth

from scenerender.errors import AlreadyWrittenError, MissingError, SceneRenderError, TransientError

# (Google's class, ours), in the order they are tried: a subclass before its base.
MAP: tuple[tuple[type[BaseException], type[SceneRenderError]], ...] = (
    (gexc.RetryError, TransientError),
    (gexc.TooManyRequests, TransientError),
    (gexc.Cancelled, TransientError),
    (gexc.Aborted, TransientError),
    (gexc.AlreadyExists, AlreadyWrittenError),
    (gexc.Conflict, AlreadyWrittenError),
    (gexc.PreconditionFailed, AlreadyWrittenError),
    (gexc.NotFound, MissingError),
    (gexc.InternalServerError, TransientError),
    (gexc.Unknown, TransientError),
    (gexc.BadGateway, TransientError),
    (gexc.ServiceUnavailable, TransientError),
    (gexc.GatewayTimeout, TransientError),
    (gexc.TransferStalledError, TransientError),
    (gauth.TransportError, TransientError),
    (requests.ConnectionError, TransientError),
    (requests.Timeout, TransientError),
    (ConnectionError, TransientError),
    (TimeoutError, TransientError),
)

_SAYS = {TransientError: "unavailable", MissingError: "not found", AlreadyWrittenError: "already exists"}


def as_google(exc: BaseException) -> BaseException:
    """A raw gRPC error as its ``api_core`` class (the clients mostly do this themselves); a
    Firestore transaction that ran out of attempts as the ``Aborted`` it lost to each time
    (google-cloud-firestore raises ``ValueError`` from it), so contention is retried later
    like any lost race instead of failing the job as a bug."""
    if isinstance(exc, ValueError) and isinstance(exc.__cause__, gexc.Aborted):
        return exc.__cause__
    if isinstance(exc, grpc.RpcError) and isinstance(exc, grpc.Call):
        google: BaseException = gexc.from_grpc_error(exc)  # type: ignore[no-untyped-call]
        return google
    return exc


def error_class(exc: BaseException) -> type[SceneRenderError]:
    """The error tree's class for one of Google's exceptions (``SceneRenderError`` if unmapped)."""
    google = as_google(exc)
    return next((ours for theirs, ours in MAP if isinstance(google, theirs)), SceneRenderError)


def translate(exc: BaseException, what: str) -> SceneRenderError:
    """``exc`` as the error tree has it: ``raise translate(exc, "read job x") from exc``.

    ``what`` names the service and the thing (``"Firestore: read job x"``), so the message
    says where it happened without the caller's traceback.
    """
    ours = error_class(exc)
    says = _SAYS.get(ours, type(exc).__name__)
    return ours(f"{what}: {says}: {exc}")
