"""Who is calling the HTTP API: a Firebase ID token, verified with the Firebase Admin SDK.

End users present ``Authorization: Bearer <Firebase ID token>`` (CONTRACT.md section 5).
``firebase_admin.auth.verify_id_token`` checks its signature against Google's public
certificates, its audience and issuer against the project, and its expiry.

The Auth emulator's tokens are unsigned. They are accepted only when the settings name the
emulator (``Settings.auth_emulator_host``, FIREBASE_AUTH_EMULATOR_HOST; the local cloud only),
with the claims checked here as firebase-admin checks them in its emulator mode. That mode
is switched by the process environment alone, which this package does not steer; so a
verifier whose settings name no emulator refuses an unsigned token before firebase-admin sees
it, whatever the environment says, and a deployment cannot be fooled by a forged one.

firebase-admin's exceptions are translated into the error tree here, once.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import firebase_admin
import google.auth.credentials
import google.auth.exceptions
from firebase_admin import auth, credentials
from firebase_admin import exceptions as fb_exceptions
from google.auth import jwt

from scenerender.errors import TransientError, UnauthenticatedError
from scenerender.settings import Settings

EMULATOR_ENV = Settings.env_name("auth_emulator_host")
ISSUER = "https://securetoken.google.com/"
# What a custom token (made to be exchanged for an ID token) names as its audience.
CUSTOM_TOKEN_AUDIENCE = "https://identitytoolkit.googleapis.com/google.identity.identitytoolkit.v1.IdentityToolkit"
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
    """Verifies ID tokens for one project: Google-signed ones, or with ``emulator_host`` the
    Auth emulator's unsigned ones.

    Each verifier of Google-signed tokens has its own firebase-admin app, so verifiers of
    several projects live in one process.
    """

    def __init__(self, project_id: str, emulator_host: str = "") -> None:
        self.project_id = project_id
        self.emulator_host = emulator_host
        self._app = (
            None
            if emulator_host
            else firebase_admin.initialize_app(
                _NoCredentials(), options={"projectId": project_id}, name=f"scenerender-auth-{next(_app_names)}"
            )
        )

    def verify(self, token: str) -> User:
        """The user of a valid ID token; ``UnauthenticatedError`` for anything else."""
        if not token:
            raise UnauthenticatedError("sign in: send Authorization: Bearer <Firebase ID token>")
        claims = self._emulator_claims(token) if self._app is None else self._google_claims(token, self._app)
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

    def _google_claims(self, token: str, app: firebase_admin.App) -> dict[str, Any]:
        # firebase-admin skips the signature when FIREBASE_AUTH_EMULATOR_HOST is in the
        # environment: an unsigned token never reaches it here, whatever the environment says.
        header = _unverified(token, jwt.decode_header)
        if header.get("alg") != "RS256" or not header.get("kid"):
            raise UnauthenticatedError(
                f"invalid ID token: algorithm {header.get('alg')!r}{'' if header.get('kid') else ', no kid'}: "
                "not signed by Google (unsigned tokens come from the Auth emulator, accepted only locally)"
            )
        try:
            claims: dict[str, Any] = auth.verify_id_token(token, app=app)
        except auth.CertificateFetchError as exc:
            # Google's public keys could not be fetched: the token may be fine; try again later.
            raise TransientError(f"could not fetch the token-signing certificates: {exc}") from exc
        except (auth.ExpiredIdTokenError, auth.RevokedIdTokenError, auth.UserDisabledError) as exc:
            raise UnauthenticatedError(f"ID token refused: {exc}") from exc
        except (auth.InvalidIdTokenError, ValueError) as exc:
            raise UnauthenticatedError(f"invalid ID token: {_first_line(exc)}") from exc
        except fb_exceptions.FirebaseError as exc:
            raise TransientError(f"could not verify the ID token: {exc}") from exc
        return claims

    def _emulator_claims(self, token: str) -> dict[str, Any]:
        """An Auth emulator token's claims, checked as firebase-admin checks them in emulator
        mode: audience, issuer, subject (and, as there, not the signature nor the expiry)."""
        claims = _unverified(token, lambda t: jwt.decode(t, verify=False))
        audience, issuer, subject = claims.get("aud"), claims.get("iss"), claims.get("sub")
        if audience == CUSTOM_TOKEN_AUDIENCE:
            problem = "a custom token, not an ID token"
        elif audience != self.project_id:
            problem = f"audience {audience!r}, not the project {self.project_id!r}"
        elif issuer != ISSUER + self.project_id:
            problem = f"issuer {issuer!r}, not {ISSUER + self.project_id!r}"
        elif not isinstance(subject, str) or not subject or len(subject) > 128:
            problem = "no subject (uid) of 1 to 128 characters"
        else:
            return claims
        raise UnauthenticatedError(f"invalid ID token: {problem}")

    def close(self) -> None:
        if self._app is not None:
            firebase_admin.delete_app(self._app)


_verifiers: dict[tuple[str, str], TokenVerifier] = {}


def verifier(settings: Settings) -> TokenVerifier:
    """The process's verifier for the settings' project and Auth emulator (if any)."""
    key = (settings.project_id, settings.auth_emulator_host)
    with _lock:
        if key not in _verifiers:
            _verifiers[key] = TokenVerifier(settings.project_id, emulator_host=settings.auth_emulator_host)
        return _verifiers[key]


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header ('' when there is none)."""
    scheme, _, token = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer":
        return ""
    return token.strip()


def _unverified(token: str, decode: Callable[[str], Any]) -> dict[str, Any]:
    """A JWT's header or claims, not verified; a token that is not one is ``UnauthenticatedError``."""
    try:
        part = decode(token)
    except (ValueError, google.auth.exceptions.GoogleAuthError) as exc:
        raise UnauthenticatedError(f"invalid ID token: {_first_line(exc)}") from exc
    if not isinstance(part, dict):
        raise UnauthenticatedError("invalid ID token: not a JSON object")
    return part


def _first_line(exc: Exception) -> str:
    # firebase-admin's messages end with a paragraph on how to get a token; the first line says what is wrong.
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
