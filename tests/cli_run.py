"""The installed `scenerender` as a user runs it: a separate process, from a shell with only
what the test gives it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCENERENDER = str(Path(sys.executable).parent / "scenerender")
# What a developer's shell (or the test session's local cloud) may carry, and a new user's does not.
_CLOUD_VARS = (
    "PUBSUB_EMULATOR_HOST",
    "FIRESTORE_EMULATOR_HOST",
    "STORAGE_EMULATOR_HOST",
    "FIREBASE_AUTH_EMULATOR_HOST",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "GOOGLE_CLOUD_PROJECT",
)


def bare_env(**extra: str) -> dict[str, str]:
    """This environment without any cloud or SceneRender setting, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in _CLOUD_VARS and not k.startswith("SCENERENDER_")}
    env["SCENERENDER_SEGMENT_CACHE"] = "false"
    return {**env, **extra}


def run(
    *args: str | Path, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """``scenerender ARGS``; the environment is ``bare_env()`` unless one is given."""
    return subprocess.run(
        [SCENERENDER, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=env if env is not None else bare_env(),
        cwd=cwd,
    )
