"""Cloud Function entry points: unpack the event, call ``scenerender.pipeline.steps``, record the outcome.

Deployed from this folder with the ``scenerender`` package beside it (see terraform/functions.tf).
"""

from __future__ import annotations

import base64
import logging
from typing import Any

import flask
import functions_framework
from cloudevents.http import CloudEvent
from pydantic import ValidationError

from scenerender.cloud import clients, identity
from scenerender.cloud.launcher import launcher_for
from scenerender.errors import SceneRenderError
from scenerender.logs import configure_logging
from scenerender.messages import DeadLetter, RenderReport
from scenerender.pipeline import steps, sweeper
from scenerender.pipeline.api import Api, ApiRequest
from scenerender.settings import get_settings

configure_logging()
log = logging.getLogger("scenerender.functions")


def _message(event: CloudEvent) -> tuple[dict[str, str], bytes]:
    """Attributes and body of the Pub/Sub message inside a messagePublished CloudEvent."""
    message: dict[str, Any] = (event.get_data() or {}).get("message", {})
    body = base64.b64decode(message.get("data", "") or b"")
    return dict(message.get("attributes") or {}), body


@functions_framework.cloud_event
def on_spec_uploaded(event: CloudEvent) -> None:
    """A spec bucket notification: validate the spec, queue the job (or record why not)."""
    attributes, _ = _message(event)
    settings = get_settings()
    steps.accept_spec(
        steps.SpecEvent.from_attributes(attributes),
        settings=settings,
        blobs=clients.blobs(),
        jobs=clients.jobs(),
        bus=clients.bus(),
        launcher=launcher_for(settings),
    )


@functions_framework.cloud_event
def on_render_reported(event: CloudEvent) -> None:
    """A renderer report: the job ends COMPLETED with a signed URL, or FAILED with its error."""
    _, body = _message(event)
    try:
        report = RenderReport.model_validate_json(body)
    except ValidationError as exc:
        # A malformed report can never succeed; acknowledge it instead of looping.
        log.error("unreadable render report dropped: %s", exc.errors(include_url=False)[:3])
        return
    steps.record_report(report, settings=get_settings(), blobs=clients.blobs(), jobs=clients.jobs())


@functions_framework.cloud_event
def on_render_dead_lettered(event: CloudEvent) -> None:
    """A render request that ran out of deliveries: its job ends FAILED with the last error."""
    attributes, body = _message(event)
    steps.record_dead_letter(
        DeadLetter.from_message(body, attributes), jobs=clients.jobs(), stale_after_s=get_settings().heartbeat_stale_s
    )


@functions_framework.http
def http_api(request: flask.Request) -> flask.Response:
    """The end users' HTTP API (scenerender.pipeline.api): POST a spec, GET a job, POST /uploads."""
    settings = get_settings()
    api = Api(
        settings=settings,
        jobs=clients.jobs(),
        blobs=clients.blobs(),
        verify=identity.verifier(settings).verify,
    )
    response = api.handle(
        ApiRequest(
            method=request.method,
            path=request.path,
            args=request.args.to_dict(),
            authorization=request.headers.get("Authorization"),
            read=request.stream.read,
            content_length=request.content_length,
        )
    )
    return flask.Response(
        response.json(), status=response.status, headers=response.headers, mimetype="application/json"
    )


@functions_framework.http
def on_sweep(request: flask.Request) -> flask.typing.ResponseReturnValue:
    """Cloud Scheduler's call: launch for queued requests no execution serves, end jobs whose
    executions died (``scenerender.pipeline.sweeper``). Answers what it did."""
    settings = get_settings()
    try:
        report = sweeper.sweep(settings=settings, jobs=clients.jobs(), launcher=launcher_for(settings))
    except SceneRenderError as exc:
        # Scheduler records the failure and calls again at the next tick.
        log.error("sweep failed: %s", exc.message)
        return {"error": exc.to_dict()}, 503
    return report.wire(), 200
