"""ID token verification: unsigned tokens pass only in emulator mode, and every refusal is ours."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from scenerender.cloud.identity import CUSTOM_TOKEN_AUDIENCE, EMULATOR_ENV, TokenVerifier, bearer_token, verifier
from scenerender.errors import UnauthenticatedError
from scenerender.settings import Settings
from tests.tokens import forged_token

PROJECT = "identity-test"


@pytest.fixture
def emulated() -> Iterator[TokenVerifier]:
    verifier = TokenVerifier(PROJECT, emulator_host="127.0.0.1:9")  # never contacted: verification is local
    yield verifier
    verifier.close()


@pytest.fixture(params=["unset", "set"])
def real(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[TokenVerifier]:
    """A verifier whose settings name no emulator, with firebase-admin's emulator variable in the
    environment or not: the environment does not decide what this package accepts."""
    if request.param == "set":
        monkeypatch.setenv(EMULATOR_ENV, "127.0.0.1:9")
    else:
        monkeypatch.delenv(EMULATOR_ENV, raising=False)
    verifier = TokenVerifier(PROJECT)
    yield verifier
    verifier.close()


def test_a_forged_unsigned_token_is_refused_without_the_emulator(real: TokenVerifier) -> None:
    with pytest.raises(UnauthenticatedError) as caught:
        real.verify(forged_token("alice", PROJECT))
    assert caught.value.code == "UNAUTHENTICATED" and caught.value.http_status == 401
    assert "algorithm 'none'" in caught.value.message and "kid" in caught.value.message


def test_the_same_token_is_accepted_in_emulator_mode(emulated: TokenVerifier) -> None:
    user = emulated.verify(forged_token("alice", PROJECT, email="alice@example.com"))
    assert (user.uid, user.email, user.sign_in_provider) == ("alice", "alice@example.com", "password")


@pytest.mark.parametrize(
    "token",
    [
        forged_token("alice", "another-project"),  # another project's token
        forged_token("alice", PROJECT, iss="https://evil.example/x"),
        forged_token("", PROJECT),  # no uid
        forged_token("a" * 129, PROJECT),  # a uid longer than Firebase's
        forged_token("alice", PROJECT, aud=CUSTOM_TOKEN_AUDIENCE),  # a custom token
        "W10.W10.",  # JSON, not an object
        "",
        "x",
        "a.b.c",
        "é.é.é",
        "Bearer",
        "." * 5000,
    ],
    ids=[
        "other-project",
        "issuer",
        "no-uid",
        "long-uid",
        "custom-token",
        "list",
        "empty",
        "x",
        "abc",
        "non-ascii",
        "word",
        "dots",
    ],
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


def test_the_settings_choose_the_mode() -> None:
    # (model_copy: Settings(auth_emulator_host=...) would be ignored, the field's only name
    # being its variable's, FIREBASE_AUTH_EMULATOR_HOST.)
    emulated = verifier(Settings(project_id=PROJECT).model_copy(update={"auth_emulator_host": "127.0.0.1:9"}))
    real = verifier(Settings(project_id=PROJECT).model_copy(update={"auth_emulator_host": ""}))
    assert emulated.verify(forged_token("alice", PROJECT)).uid == "alice"
    with pytest.raises(UnauthenticatedError):
        real.verify(forged_token("alice", PROJECT))
