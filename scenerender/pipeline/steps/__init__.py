"""The pipeline's steps (CONTRACT.md section 4), apart from the doors that call them.

    spec object in the spec bucket ──► accept_spec ──► job QUEUED + render request   accept.py
        a batch file ──► accept_batch ──► one job per scene                          accept_batch.py
        a spec that will not run ──► its FAILED job, a note, or a refusal record      refusals.py
    render request ──► run_render_request (worker) ──► MP4 in the render bucket + report   rendering.py
    report ──► record_report ──► job COMPLETED with a signed URL | FAILED with its error   report.py
    dead letter ──► record_dead_letter ──► job FAILED with the last error seen             report.py

``events`` reads the spec object an event names; ``requests`` sends a render request,
launches its execution and refreshes a batch's summary. Messages between the steps are the
models of ``scenerender.messages``; the stores are the ``scenerender.ports`` interfaces, so
the Cloud Functions, the worker and the tests hand in the real clients (on the emulators
or on GCP) or, in a unit test, a fake.

This package names each step here, so the doors (``functions/main.py``, the worker, the
CLI) import ``scenerender.pipeline.steps`` and need not know which file a step lives in.
"""

from scenerender.pipeline.steps.accept import accept_spec, submit_spec_bytes
from scenerender.pipeline.steps.accept_batch import accept_batch
from scenerender.pipeline.steps.events import SpecEvent, new_run_id, read_spec_object, spec_object_name
from scenerender.pipeline.steps.rendering import WorkOutcome, output_uri, run_render_request, upload_sidecars
from scenerender.pipeline.steps.report import record_dead_letter, record_report
from scenerender.pipeline.steps.requests import launch_requests, publish_request, refresh_batch, render_request

__all__ = [
    "SpecEvent",
    "WorkOutcome",
    "accept_batch",
    "accept_spec",
    "launch_requests",
    "new_run_id",
    "output_uri",
    "publish_request",
    "read_spec_object",
    "record_dead_letter",
    "record_report",
    "refresh_batch",
    "render_request",
    "run_render_request",
    "spec_object_name",
    "submit_spec_bytes",
    "upload_sidecars",
]
