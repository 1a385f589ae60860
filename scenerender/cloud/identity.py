"""Who is calling the HTTP API: a Firebase ID token, verified with the Firebase Admin SDK.

End users present ``Authorization: Bearer <Firebase ID token>`` (CONTRACT.md section 5).
``firebase_admin.auth.verify_id_token`` checks its signature against Google's public
certificates, its audience and issuer against the project, and its expiry. With
``FIREBASE_AUTH_EMULATOR_HOST`` set it accepts the Auth emulator's unsigned tokens instead
(firebase-admin's own behaviour, for the local cloud only); without it an unsigned token is
refused, so a deployment that does not set the variable cannot be fooled by a forged one.

firebase-admin's exceptions are translated into the error tree here, once.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass
from typing import Any

import firebase_admin
import google.auth.credentials
from firebase_admin import auth, credentials
from firebase_admin import exceptions as fb_exceptions

from scenerender.errors import TransientError, UnauthenticatedError
from scenerender.settings import Settings

EMULATOR_ENV = Settings.env_name("auth_emulator_host")
_app_names = itertools.count()
_lock = threading.Lock()


@dataclass(frozen=True)
class User:
    """A verified end user: the token's ``uid`` owns what the user submits."""

    uid: str
    email: str | None = None
    sign_in_provider: str | None = None


class _NoCredentials(credentials.Base):  # type: ignore[misc]
    """Verifying an ID token needs only the project id and Google's public certificates, never
    the service's own credentials, so the app gets none (and works in tests and locally)."""

    def get_credential(self) -> google.auth.credentials.Credentials:
        return google.auth.credentials.AnonymousCredentials()


class TokenVerifier:
    """Verifies ID tokens for one project.

    firebase-admin reads ``FIREBASE_AUTH_EMULATOR_HOST`` itself, from the environment, when the
    app's first token is verified. Each verifier has its own firebase-admin app, so a test can
    make one with the variable and one without in the same process.
    """

    def __init__(self, project_id: str) -> None:
        self.project_id = project_id
        self._app = firebase_admin.initialize_app(
            _NoCredentials(), options={"projectId": project_id}, name=f"scenerender-auth-{next(_app_names)}"
        )

    def verify(self, token: str) -> User:
        """The user of a valid ID token; ``UnauthenticatedError`` for anything else."""
        if not token:
            raise UnauthenticatedError("sign in: send Authorization: Bearer <Firebase ID token>")
        try:
            claims: dict[str, Any] = auth.verify_id_token(token, app=self._app)
        except auth.CertificateFetchError as exc:
            # Google's public keys could not be fetched: the token may be fine; try again later.
            raise TransientError(f"could not fetch the token-signing certificates: {exc}") from exc
        except (auth.ExpiredIdTokenError, auth.RevokedIdTokenError, auth.UserDisabledError) as exc:
            raise UnauthenticatedError(f"ID token refused: {exc}") from exc
        except (auth.InvalidIdTokenError, ValueError) as exc:
            raise UnauthenticatedError(f"invalid ID token: {_first_line(exc)}") from exc
        except fb_exceptions.FirebaseError as exc:
            raise TransientError(f"could not verify the ID token: {exc}") from exc
        uid = claims.get("uid") or claims.get("sub")
        if not isinstance(uid, str) or not uid:
            raise UnauthenticatedError("invalid ID token: no uid")
        firebase = claims.get("firebase") if isinstance(claims.get("firebase"), dict) else {}
        email = claims.get("email")
        return User(
            uid=uid,
            email=email if isinstance(email, str) else None,
            sign_in_provider=(firebase or {}).get("sign_in_provider"),
        )

    def close(self) -> None:
        firebase_admin.delete_app(self._app)


_verifiers: dict[tuple[str, str], TokenVerifier] = {}


def verifier(settings: Settings) -> TokenVerifier:
    """The process's verifier for the settings' project (one per value of the emulator variable,
    ``Settings.auth_emulator_host``, that firebase-admin reads too)."""
    key = (settings.project_id, settings.auth_emulator_host)
    with _lock:
        if key not in _verifiers:
            _verifiers[key] = TokenVerifier(settings.project_id)
        return _verifiers[key]


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header ('' when there is none)."""
    scheme, _, token = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer":
        return ""
    return token.strip()


def _first_line(exc: Exception) -> str:
    # firebase-admin's messages end with a paragraph on how to get a token; the first line says what is wrong.
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
