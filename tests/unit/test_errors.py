"""The error tree: every class maps to a contract error code and exit code."""

from __future__ import annotations

import pytest

from scenerender.errors import (
    ErrorDetail,
    InputRefusedError,
    InputUnreachableError,
    SceneRenderError,
    SpecError,
    all_error_classes,
)

CONTRACT_CODES = {
    "INVALID_SPEC",
    "INPUT_UNREACHABLE",
    "INPUT_REFUSED",
    "INPUT_INVALID_MEDIA",
    "LIMIT_EXCEEDED",
    "RENDER_FAILED",
    "TIMEOUT",
    "INTERNAL",
    "NOT_FOUND",  # the API's (section 4) and the CLI's `watch` of an id that names nothing
    # The HTTP API's refusals (docs/api.md)
    "UNAUTHENTICATED",
    "FORBIDDEN",
    "METHOD_NOT_ALLOWED",
    "CONFLICT",
    "TOO_MANY_JOBS",
}
EXIT_CODES = {
    "INVALID_SPEC": {2},
    "INPUT_UNREACHABLE": {3},
    "INPUT_REFUSED": {3},
    "INPUT_INVALID_MEDIA": {3},
    "LIMIT_EXCEEDED": {2},
    "RENDER_FAILED": {4},
    "TIMEOUT": {4},
    "INTERNAL": {1},
    "NOT_FOUND": {2},
    "UNAUTHENTICATED": {1},
    "FORBIDDEN": {2},
    "METHOD_NOT_ALLOWED": {1},
    "CONFLICT": {2},
    "TOO_MANY_JOBS": {1},
}
HTTP_STATUS = {
    "INVALID_SPEC": {400},
    "LIMIT_EXCEEDED": {400, 413},
    "INPUT_UNREACHABLE": {400},
    "INPUT_REFUSED": {400},
    "INPUT_INVALID_MEDIA": {400},
    "RENDER_FAILED": {500},
    "TIMEOUT": {500},
    "INTERNAL": {500, 503},
    "UNAUTHENTICATED": {401},
    "FORBIDDEN": {403},
    "NOT_FOUND": {404},
    "METHOD_NOT_ALLOWED": {405},
    "CONFLICT": {409},
    "TOO_MANY_JOBS": {429},
}


@pytest.mark.parametrize("cls", all_error_classes(), ids=lambda c: c.__name__)
def test_every_error_class_is_mapped(cls: type[SceneRenderError]) -> None:
    assert cls.code in CONTRACT_CODES
    assert cls.exit_code in EXIT_CODES[cls.code]
    assert cls.http_status in HTTP_STATUS[cls.code]
    assert cls.__doc__, "each error says what it means"


def test_every_contract_code_has_a_class() -> None:
    assert {c.code for c in all_error_classes()} == CONTRACT_CODES


def test_input_errors_name_the_input() -> None:
    exc = InputUnreachableError("segments[2].url", "HTTP 404", url="https://x/a.mp4")
    assert str(exc) == "segments[2].url (https://x/a.mp4): HTTP 404"
    assert exc.to_dict()["details"] == [{"path": "segments[2].url", "problem": "HTTP 404"}]
    assert not exc.retryable and not InputRefusedError("a", "b").retryable


def test_spec_error_summarises_all_details() -> None:
    exc = SpecError.from_details([ErrorDetail("a", "x"), ErrorDetail("b", "y")])
    assert exc.message == "a: x (and 1 more)" and len(exc.to_dict()["details"]) == 2
