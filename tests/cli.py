"""The CLI as a user runs it: a separate process, its JSON result."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any


def render_json(
    spec: Path, out: Path, *, module: str = "scenerender", timeout: float = 600, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """``scenerender render SPEC -o OUT --json`` without the segment cache, ``env`` added to the
    environment; fails the test on a non-zero exit."""
    done = subprocess.run(
        [sys.executable, "-m", module, "render", str(spec), "-o", str(out), "--json"],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, "SCENERENDER_SEGMENT_CACHE": "false", **(env or {})},
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result
