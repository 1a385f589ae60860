"""Is the cloud a client points at there at all? A short check before any Google client is made.

The Google clients retry a closed port for about two minutes before they give up; a user who
stopped the local cloud (or never started one) wants to hear that at once, and what to do.
Only the standard library is used, so the check costs nothing on top of the command's start.
"""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

from scenerender.errors import CloudUnavailableError, ErrorDetail

# Where a client finds the local cloud; each is checked with a short TCP connect before use.
CLOUD_ADDRESS_VARS = (
    "STORAGE_EMULATOR_HOST",
    "FIRESTORE_EMULATOR_HOST",
    "PUBSUB_EMULATOR_HOST",
    "FIREBASE_AUTH_EMULATOR_HOST",
    "SCENERENDER_API_URL",
)
HEALTH_TIMEOUT_S = 0.4


def _address(value: str) -> tuple[str, int] | None:
    parts = urlsplit(value if "://" in value else f"//{value}")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return None
    return (parts.hostname or "127.0.0.1", port)


def unanswered(env: dict[str, str], timeout_s: float = HEALTH_TIMEOUT_S) -> list[str]:
    """``NAME=value`` of each cloud address in ``env`` where nothing accepts a connection."""
    silent = []
    for name in CLOUD_ADDRESS_VARS:
        value = env.get(name)
        address = _address(value) if value else None
        if address is None:
            continue
        try:
            with socket.create_connection(address, timeout=timeout_s):
                pass
        except OSError:
            silent.append(f"{name}={value}")
    return silent


def require_cloud(env: dict[str, str], where: str) -> None:
    """Fail at once (exit 1) when the local cloud ``env`` points at does not answer.

    The Google clients retry a closed port for about two minutes before they give up; a
    user who stopped the stack wants to hear that now, and what to do.
    """
    silent = unanswered(env)
    if silent:
        raise CloudUnavailableError(
            f"the local cloud does not answer ({', '.join(silent)}, {where}): start it with "
            '`eval "$(scenerender dev up)"`, or unset those variables if it was stopped on purpose',
            details=[
                ErrorDetail(item.split("=", 1)[0], "nothing answers at " + item.split("=", 1)[1]) for item in silent
            ],
        )
