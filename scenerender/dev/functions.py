"""The Cloud Functions the local cloud serves, by name: (entry point in ``functions/main.py``,
functions-framework signature type), on consecutive ports in this order.

Its own module, without the stack's machinery, because the CLI names the functions in the
help of ``dev up`` and every ``scenerender`` command builds that help: ``render`` should not
load the local cloud's process and HTTP code (``scenerender.dev.devstack``) to print it.
"""

from __future__ import annotations

FUNCTIONS = {
    "spec": ("on_spec_uploaded", "cloudevent"),
    "report": ("on_render_reported", "cloudevent"),
    "api": ("http_api", "http"),
    "dead": ("on_render_dead_lettered", "cloudevent"),
    "sweep": ("on_sweep", "http"),
}
