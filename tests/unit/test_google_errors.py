"""The one boundary for Google's errors: every class lands where the map says, and the
transient set (what the pipeline leaves for redelivery) is pinned here by name."""

from __future__ import annotations

import inspect

import grpc
import pytest
import requests
from google.api_core import exceptions as gexc
from google.auth import exceptions as gauth

from scenerender.cloud import google_errors
from scenerender.cloud.google_errors import MAP, error_class, translate
from scenerender.errors import AlreadyWrittenError, MissingError, SceneRenderError, TransientError

# Changing this set changes what a worker retries: do it on purpose, with the docstring's table.
TRANSIENT = {
    "RetryError",
    "TooManyRequests",
    "ResourceExhausted",
    "Cancelled",
    "Aborted",
    "InternalServerError",
    "Unknown",
    "BadGateway",
    "ServiceUnavailable",
    "GatewayTimeout",
    "DeadlineExceeded",
    "TransferStalledError",
}
MISSING = {"NotFound"}
ALREADY_WRITTEN = {"Conflict", "AlreadyExists", "PreconditionFailed"}


def api_core_classes() -> list[type[Exception]]:
    """Every exception class google.api_core.exceptions defines (an upgrade's new one too)."""
    return [
        cls
        for _, cls in inspect.getmembers(gexc, inspect.isclass)
        if issubclass(cls, gexc.GoogleAPIError) and cls.__module__ == gexc.__name__
    ]


def make(cls: type[BaseException]) -> BaseException:
    # RetryError also takes the last error its retries met.
    return cls("boom", None) if issubclass(cls, gexc.RetryError) else cls("boom")


@pytest.mark.parametrize("cls", api_core_classes(), ids=lambda c: c.__name__)
def test_every_api_core_class_lands_where_the_table_says(cls: type[Exception]) -> None:
    expected = (
        TransientError
        if cls.__name__ in TRANSIENT
        else MissingError
        if cls.__name__ in MISSING
        else AlreadyWrittenError
        if cls.__name__ in ALREADY_WRITTEN
        else SceneRenderError
    )
    translated = translate(make(cls), "Firestore: read job j")
    assert type(translated) is expected
    assert translated.retryable == (cls.__name__ in TRANSIENT)
    assert translated.message.startswith("Firestore: read job j: ")


def test_every_class_of_the_map_is_reached_and_none_is_shadowed() -> None:
    # A subclass listed after its base would never be reached: first match wins.
    for i, (theirs, ours) in enumerate(MAP):
        for earlier, _ in MAP[:i]:
            assert not issubclass(theirs, earlier), f"{theirs.__name__} is shadowed by {earlier.__name__}"
        assert error_class(make(theirs)) is ours


def test_every_class_of_the_map_is_drawn_in_the_module_docstring() -> None:
    doc = google_errors.__doc__ or ""
    for theirs, _ in MAP:
        assert theirs.__name__ in doc, theirs.__name__


@pytest.mark.parametrize(
    "exc",
    [
        gauth.TransportError("no route to the token server"),
        requests.ConnectionError("reset"),
        requests.Timeout("read timed out"),
        ConnectionResetError("reset"),
        TimeoutError("timed out"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_transport_failures_are_transient(exc: Exception) -> None:
    assert type(translate(exc, "Cloud Storage: gs://b/o")) is TransientError


@pytest.mark.parametrize(
    "exc",
    [KeyError("status"), ValueError("bad"), gauth.RefreshError("revoked"), OSError(28, "No space left on device")],
    ids=lambda e: type(e).__name__,
)
def test_anything_else_is_permanent(exc: Exception) -> None:
    translated = translate(exc, "Pub/Sub: publish to t")
    assert type(translated) is SceneRenderError and not translated.retryable
    assert type(exc).__name__ in translated.message


class FakeRpcError(grpc.RpcError, grpc.Call):  # type: ignore[misc]
    """A raw gRPC failure, as a streaming call can surface one."""

    def __init__(self, code: grpc.StatusCode) -> None:
        self._code = code

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return "raw"

    def trailing_metadata(self) -> None:
        return None

    def initial_metadata(self) -> None:
        return None

    def is_active(self) -> bool:
        return False

    def time_remaining(self) -> None:
        return None

    def cancel(self) -> bool:
        return False

    def add_callback(self, callback: object) -> bool:
        return False


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (grpc.StatusCode.UNAVAILABLE, TransientError),
        (grpc.StatusCode.ABORTED, TransientError),
        (grpc.StatusCode.DEADLINE_EXCEEDED, TransientError),
        (grpc.StatusCode.NOT_FOUND, MissingError),
        (grpc.StatusCode.ALREADY_EXISTS, AlreadyWrittenError),
        (grpc.StatusCode.PERMISSION_DENIED, SceneRenderError),
        (grpc.StatusCode.INVALID_ARGUMENT, SceneRenderError),
    ],
)
def test_raw_grpc_errors_go_through_their_api_core_class(code: grpc.StatusCode, expected: type) -> None:
    assert type(translate(FakeRpcError(code), "Firestore: x")) is expected


def test_a_firestore_transaction_out_of_attempts_is_transient_and_any_other_value_error_is_not() -> None:
    """google-cloud-firestore gives up on a contended transaction with ``ValueError`` from its last ``Aborted``."""
    try:
        try:
            raise gexc.Aborted("Transaction lock timeout.")
        except gexc.Aborted as aborted:
            raise ValueError("Failed to commit transaction in 20 attempts.") from aborted
    except ValueError as exc:
        out_of_attempts = exc
    translated = translate(out_of_attempts, "Firestore: claim batch b")
    assert type(translated) is TransientError and translated.retryable
    assert translated.message.endswith("Failed to commit transaction in 20 attempts.")
    try:
        try:
            raise KeyError("x")
        except KeyError as key:
            raise ValueError("bad") from key
    except ValueError as exc:
        other = exc
    assert type(translate(other, "Firestore: x")) is SceneRenderError


def test_missing_and_already_written_are_also_the_builtin_errors_callers_catch() -> None:
    assert isinstance(translate(gexc.NotFound("x"), "Cloud Storage: gs://b/o"), FileNotFoundError)
    assert isinstance(translate(gexc.PreconditionFailed("x"), "Cloud Storage: gs://b/o"), FileExistsError)


def test_the_three_adapters_translate_through_the_one_map() -> None:
    from scenerender.cloud import bus, jobs, storage

    for exc in (gexc.Aborted("contention"), gexc.MethodNotImplemented("no"), gexc.ServiceUnavailable("down")):
        kinds = {
            type(jobs.translate_error(exc, "x")),
            type(bus._translate(exc, "x")),
            type(storage._translate(exc, "gs://b/o")),
        }
        assert kinds == {error_class(exc)}, exc
