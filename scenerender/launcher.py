"""Starting the renderer: one Cloud Run job execution per render request.

The execution drains the render subscription and exits when it is idle, so starting one
per request is safe: an execution that finds the queue already empty ends at once. With
no ``SCENERENDER_RENDERER_JOB`` (the local cloud) the long-running workers drain it.
"""

from __future__ import annotations

import logging

from scenerender.errors import TransientError
from scenerender.settings import Settings

log = logging.getLogger(__name__)
RUN_API = "https://run.googleapis.com/v2"


def start_renderer(settings: Settings) -> None:
    """Run the renderer job (Cloud Run Admin API ``jobs.run``, no overrides)."""
    if not settings.renderer_job:
        return
    import google.auth
    from google.auth.transport.requests import AuthorizedSession

    credentials, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
    name = f"projects/{settings.project_id}/locations/{settings.region}/jobs/{settings.renderer_job}"
    response = AuthorizedSession(credentials).post(f"{RUN_API}/{name}:run", json={}, timeout=30)
    if response.status_code >= 400:
        # The request is already queued; raising makes the event redelivered, so the start is retried.
        raise TransientError(f"could not start {name}: HTTP {response.status_code} {response.text[:300]}")
    log.info("started an execution of %s", name)
