"""Is the cloud a client points at there at all? A short check before any Google client is made.

The Google clients retry a closed port for about two minutes before they give up; a user who
stopped the local cloud (or never started one) wants to hear that at once, and what to do.
Only the standard library (and the settings) is used, so the check costs nothing on top of the command's start.
"""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

from scenerender.errors import CloudUnavailableError, ErrorDetail
from scenerender.settings import Settings

HEALTH_TIMEOUT_S = 0.4
CLOUD_ADDRESS_FIELDS = (
    "storage_emulator_host",
    "firestore_emulator_host",
    "pubsub_emulator_host",
    "auth_emulator_host",
    "api_url",
)
# Where a client finds the local cloud; each is checked with a short TCP connect before use.
CLOUD_ADDRESS_VARS = tuple(Settings.env_name(f) for f in CLOUD_ADDRESS_FIELDS)


def addresses(settings: Settings) -> dict[str, str]:
    """The cloud addresses ``settings`` name, by their environment variable (as ``unanswered`` takes them)."""
    return {Settings.env_name(f): str(getattr(settings, f)) for f in CLOUD_ADDRESS_FIELDS}


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
