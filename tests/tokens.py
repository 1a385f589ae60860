"""Hand-made Firebase ID tokens for tests: unsigned (``alg: none``), as the Auth emulator makes them.

Such a token is what an attacker can forge without any key; firebase-admin accepts it only in
emulator mode (``FIREBASE_AUTH_EMULATOR_HOST`` set).
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any


def _part(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def forged_token(uid: str, project_id: str, *, expires_in_s: int = 3600, **claims: Any) -> str:
    """An unsigned ID token for ``uid`` in ``project_id``; ``claims`` override the defaults."""
    now = int(time.time())
    body: dict[str, Any] = {
        "sub": uid,
        "user_id": uid,
        "aud": project_id,
        "iss": f"https://securetoken.google.com/{project_id}",
        "iat": now - 10,
        "auth_time": now - 10,
        "exp": now + expires_in_s,
        "firebase": {"sign_in_provider": "password", "identities": {}},
        **claims,
    }
    return f"{_part({'alg': 'none', 'typ': 'JWT'})}.{_part(body)}."


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
