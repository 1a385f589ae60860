"""ID token verification: unsigned tokens pass only in emulator mode, and every refusal is ours."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from scenerender.cloud.identity import EMULATOR_ENV, TokenVerifier, bearer_token
from scenerender.errors import UnauthenticatedError
from tests.tokens import forged_token

PROJECT = "identity-test"


@pytest.fixture
def emulated(monkeypatch: pytest.MonkeyPatch) -> Iterator[TokenVerifier]:
    monkeypatch.setenv(EMULATOR_ENV, "127.0.0.1:9")  # never contacted: verification is local
    verifier = TokenVerifier(PROJECT)
    yield verifier
    verifier.close()


@pytest.fixture
def real(monkeypatch: pytest.MonkeyPatch) -> Iterator[TokenVerifier]:
    monkeypatch.delenv(EMULATOR_ENV, raising=False)
    verifier = TokenVerifier(PROJECT)
    yield verifier
    verifier.close()


def test_a_forged_unsigned_token_is_refused_without_the_emulator_variable(real: TokenVerifier) -> None:
    with pytest.raises(UnauthenticatedError) as caught:
        real.verify(forged_token("alice", PROJECT))
    assert caught.value.code == "UNAUTHENTICATED" and caught.value.http_status == 401
    assert "algorithm" in caught.value.message or "kid" in caught.value.message


def test_the_same_token_is_accepted_in_emulator_mode(emulated: TokenVerifier) -> None:
    user = emulated.verify(forged_token("alice", PROJECT, email="alice@example.com"))
    assert (user.uid, user.email, user.sign_in_provider) == ("alice", "alice@example.com", "password")


@pytest.mark.parametrize(
    "token",
    [
        forged_token("alice", "another-project"),  # another project's token
        forged_token("alice", PROJECT, iss="https://evil.example/x"),
        forged_token("", PROJECT),  # no uid
        "",
        "x",
        "a.b.c",
        "é.é.é",
        "Bearer",
        "." * 5000,
    ],
    ids=["other-project", "issuer", "no-uid", "empty", "x", "abc", "non-ascii", "word", "dots"],
)
# (Expiry is not among them: firebase-admin does not check it on emulator tokens.)
def test_bad_tokens_are_refused_even_in_emulator_mode(emulated: TokenVerifier, token: str) -> None:
    with pytest.raises(UnauthenticatedError):
        emulated.verify(token)


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer abc", "abc"),
        ("bearer  abc ", "abc"),
        ("Basic abc", ""),
        ("", ""),
        (None, ""),
        ("Bearer", ""),
    ],
)
def test_bearer_token(header: str | None, token: str) -> None:
    assert bearer_token(header) == token
