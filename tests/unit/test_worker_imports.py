"""The renderer worker loads the pipeline and Google's clients it talks to, not the CLI's.

A worker renders beside its ffmpeg encodes on a Cloud Run task's memory: the terminal UI
(typer, rich), Firebase's token checks (the API's) and Pillow (an animated WebP's decoder,
loaded when one is met) have no place in its process at start. A real local render is held
to the same rule in tests/integration/test_render_imports.py.
"""

from __future__ import annotations

import json
import subprocess
import sys

NOT_IN_A_WORKER = ("typer", "rich", "click", "firebase_admin", "PIL", "scenerender.cli", "scenerender.dev")


def test_the_worker_loads_no_terminal_ui_token_checks_or_image_library() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-P",
            "-c",
            "import json, sys, scenerender.pipeline.worker; print(json.dumps(sorted(sys.modules)))",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    modules = json.loads(done.stdout)
    # What the worker does need is there: the check reads the worker's own process.
    assert "scenerender.core.render" in modules and "google.cloud.pubsub_v1" in modules
    found = [m for m in modules if any(m == name or m.startswith(f"{name}.") for name in NOT_IN_A_WORKER)]
    assert found == []
