"""The typed messages read and write exactly the wire formats the web client, the CLI, the
contract and earlier deployments use: each model round-trips a message as it travels today,
and a job document written before the models still reads."""

from __future__ import annotations

import json
import re
from dataclasses import MISSING, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from scenerender.core.render import RenderResult
from scenerender.core.spec import parse_spec
from scenerender.errors import ConflictError, ErrorDetail, InputUnreachableError, RenderTimeoutError
from scenerender.messages import (
    ACTIVE,
    TERMINAL,
    BatchReceipt,
    DeadLetter,
    ErrorBlock,
    JobDocument,
    JobReceipt,
    JobStatus,
    RenderReport,
    RenderRequest,
    RenderResultBlock,
    SweepReport,
    UploadGrant,
)
from tests.unit.cloud_fakes import measured_result

ROOT = Path(__file__).resolve().parents[2]
SPEC = {"version": 1, "job_id": "scene-1", "project_id": "p", "scene_id": "s", "batch_id": "b-1", "segments": []}
# As the spec function published them before the models (steps.render_request's dict).
REQUEST_ON_THE_WIRE = {
    "job_id": "scene-1",
    "run_id": "a1b2c3d4e5f6",
    "spec_uri": "gs://scenerender-specs/jobs/scene-1.json",
    "spec_generation": "1712345678901234",
    "spec": SPEC,
}
COMPLETED_REPORT = {
    "job_id": "scene-1",
    "attempt": 1,
    "status": "COMPLETED",
    "output_uri": "gs://scenerender-renders/renders/scene-1/a1b2c3d4e5f6/scene-1.mp4",
    "sidecar_uris": {"poster": "gs://scenerender-renders/renders/scene-1/a1b2c3d4e5f6/scene-1.poster.jpg"},
    # RenderResult.to_dict() of a silent render: its loudness and true peak are null on the wire.
    "result": measured_result(sync={"max_boundary_error_ms": 0.0}),
}
FAILED_REPORT = {
    "job_id": "scene-1",
    "attempt": 5,
    "status": "FAILED",
    "error": {
        "code": "INPUT_UNREACHABLE",
        "message": "segments[0].url: object not found",
        "details": [{"path": "segments[0].url", "problem": "object not found"}],
    },
}


def test_the_status_enum_is_the_strings_on_the_wire() -> None:
    assert [s.value for s in JobStatus] == ["QUEUED", "RUNNING", "COMPLETED", "FAILED"]
    assert {"COMPLETED", "FAILED"} == TERMINAL and set(ACTIVE) == {"QUEUED", "RUNNING"}
    assert JobStatus.FAILED.ended and not JobStatus.RUNNING.ended
    assert json.dumps({"status": JobStatus.QUEUED}) == '{"status": "QUEUED"}'


def test_a_render_request_round_trips() -> None:
    request = RenderRequest.model_validate(REQUEST_ON_THE_WIRE)
    assert request.wire() == REQUEST_ON_THE_WIRE
    assert json.loads(request.body()) == REQUEST_ON_THE_WIRE
    assert request.batch_id == "b-1"


def test_a_request_without_a_job_id_is_refused() -> None:
    with pytest.raises(ValidationError):
        RenderRequest.model_validate({"spec": SPEC})


@pytest.mark.parametrize("wire", [COMPLETED_REPORT, FAILED_REPORT], ids=["completed", "failed"])
def test_a_render_report_round_trips(wire: dict[str, Any]) -> None:
    report = RenderReport.model_validate_json(json.dumps(wire))
    assert report.wire() == wire


def test_a_report_with_another_status_is_refused() -> None:
    with pytest.raises(ValidationError):
        RenderReport.model_validate({**FAILED_REPORT, "status": "RUNNING"})


def test_error_blocks_are_the_error_trees_to_dict() -> None:
    exc = InputUnreachableError("segments[0].url", "object not found")
    assert ErrorBlock.of(exc).wire() == exc.to_dict() == FAILED_REPORT["error"]
    conflict = ConflictError("job j belongs to another owner", details=[ErrorDetail("job_id", "taken")])
    assert ErrorBlock.of(conflict).wire() == {
        "code": "CONFLICT",
        "message": "job j belongs to another owner",
        "details": [{"path": "job_id", "problem": "taken"}],
    }
    assert ErrorBlock.of(RenderTimeoutError("worker lost")).wire() == {
        "code": "TIMEOUT",
        "message": "worker lost",
        "details": [],
    }
    assert ErrorBlock.internal("KeyError: 'x'").wire() == {
        "code": "INTERNAL",
        "message": "KeyError: 'x'",
        "details": [],
    }


def test_an_error_written_before_the_contract_said_problem_still_reads() -> None:
    old = {"code": "INVALID_SPEC", "message": "m", "details": [{"path": "segments[0].url", "message": "bad"}]}
    assert ErrorBlock.model_validate(old).wire() == {
        "code": "INVALID_SPEC",
        "message": "m",
        "details": [{"path": "segments[0].url", "problem": "bad"}],
    }


def test_a_dead_letter_reads_the_request_body_and_the_delivery_count() -> None:
    body = RenderRequest.model_validate(REQUEST_ON_THE_WIRE).body()
    letter = DeadLetter.from_message(body, {"CloudPubSubDeadLetterSourceDeliveryCount": "5"})
    assert letter.job_id == "scene-1" and letter.deliveries == 5
    assert DeadLetter.from_message(b"not json", {}) == DeadLetter(job_id="", deliveries=None)
    assert DeadLetter.from_message(b"[1]", {"CloudPubSubDeadLetterSourceDeliveryCount": "x"}).job_id == ""
    assert DeadLetter.from_message(b'{"job_id": 7}', {}).job_id == ""


def test_a_dead_letters_error_keeps_the_last_code_and_says_it_gave_up() -> None:
    letter = DeadLetter(job_id="j", deliveries=5)
    last = ErrorBlock.of(InputUnreachableError("segments[0].url", "object not found"))
    error = letter.error(last)
    assert error.code == "INPUT_UNREACHABLE" and error.details == last.details
    assert error.message == "gave up after 5 deliveries; last error: segments[0].url: object not found"
    assert DeadLetter(job_id="j").error(None).wire() == {
        "code": "INTERNAL",
        "message": "gave up after ? deliveries",
        "details": [],
    }


# A job document as the code before the models wrote it to Firestore, with the pipeline's own
# bookkeeping beside the contract's fields.
STORED = {
    "job_id": "scene-1",
    "status": "FAILED",
    "stage": "failed",
    "progress": 0.4,
    "attempt": 2,
    "project_id": "p",
    "scene_id": "s",
    "owner_uid": "u1",
    "batch_id": None,
    "spec_uri": "gs://scenerender-specs/jobs/scene-1.json",
    "spec_generation": "17",
    "run_id": "a1b2",
    "error": {"code": "RENDER_FAILED", "message": "ffmpeg failed", "details": []},
    "output": None,
    "created_at": datetime(2026, 1, 1, tzinfo=UTC),
    "started_at": datetime(2026, 1, 1, 0, 0, 5, tzinfo=UTC),
    "finished_at": datetime(2026, 1, 1, 0, 1, tzinfo=UTC),
    "updated_at": datetime(2026, 1, 1, 0, 1, tzinfo=UTC),
    "request_published": True,
    "launch_state": "launched",
    "launches": 1,
    "history": [{"status": "COMPLETED", "output": {"uri": "gs://r/old.mp4"}}],
    "heartbeat_at": datetime(2026, 1, 1, tzinfo=UTC),
    "last_error": {"code": "INTERNAL", "message": "unavailable", "details": []},
}


def test_a_stored_job_document_round_trips_with_its_bookkeeping() -> None:
    doc = JobDocument.model_validate(STORED)
    assert doc.status is JobStatus.FAILED and doc.status.ended
    assert doc.error is not None and doc.error.code == "RENDER_FAILED"
    assert doc.wire() == STORED
    assert type(doc.wire()["status"]) is str


def test_a_job_document_as_the_cli_and_the_web_client_get_it_reads() -> None:
    """The API and ``scenerender status --json`` send the document as JSON: timestamps as ISO text."""
    as_json = json.dumps(STORED, default=lambda v: v.isoformat())
    doc = JobDocument.model_validate_json(as_json)
    assert doc.finished_at == STORED["finished_at"] and doc.heartbeat_at == STORED["heartbeat_at"]
    # The pipeline's bookkeeping is typed too: nothing of this document is left untyped.
    assert doc.request_published and doc.launch_state == "launched" and doc.launches == 1
    assert doc.last_error == ErrorBlock.internal("unavailable") and doc.history == STORED["history"]
    assert doc.model_extra == {}


def test_the_contracts_job_document_fields_are_the_models() -> None:
    """docs/contract.md names the fields clients read; each is typed on the model under that name."""
    contract = (ROOT / "docs" / "contract.md").read_text()
    line = next(line for line in contract.splitlines() if "`render_jobs/{job_id}`" in line and "`status`" in line)
    named = set(re.findall(r"`([a-z_]+)`", line.split("Status lives in Firestore")[-1]))
    nested = {"code", "message", "details", "uri", "url", "url_expires_at"}  # the error's and the output's
    assert named - nested <= set(JobDocument.model_fields), sorted(named - nested - set(JobDocument.model_fields))
    assert {"code", "message", "details"} == set(ErrorBlock.model_fields)


def test_the_queued_document_is_the_one_the_spec_function_wrote() -> None:
    spec = parse_spec(
        json.dumps({**SPEC, "segments": [{"id": "a", "url": "gs://m/users/u1/a.mp4"}], "owner_uid": "u1"}).encode()
    )
    doc = JobDocument.queued(
        spec_uri="gs://s/jobs/scene-1.json",
        spec_generation="3",
        project_id=spec.project_id,
        scene_id=spec.scene_id,
        owner_uid="u1",
        batch_id="b-1",
        run_id="r",
        weight_s=2.0,
    )
    assert doc.wire() == {
        "spec_uri": "gs://s/jobs/scene-1.json",
        "spec_generation": "3",
        "status": "QUEUED",
        "stage": "queued",
        "progress": 0.0,
        "attempt": 0,
        "project_id": "p",
        "scene_id": "s",
        "owner_uid": "u1",
        "batch_id": "b-1",
        "run_id": "r",
        "weight_s": 2.0,
    }


def test_the_reports_result_block_has_the_render_results_fields_and_defaults() -> None:
    """The core's ``RenderResult`` (a dataclass: the render path imports no pydantic messages)
    and the wire's ``RenderResultBlock`` are one shape written twice; this keeps them one."""
    core = {f.name: f for f in fields(RenderResult)}
    wire = RenderResultBlock.model_fields
    assert set(core) == set(wire)
    for name, field in core.items():
        default = field.default_factory() if field.default_factory is not MISSING else field.default
        if default is MISSING:
            assert wire[name].is_required(), name
        else:
            assert wire[name].get_default(call_default_factory=True) == default, name


def test_the_api_answers_are_the_shapes_docs_api_md_names() -> None:
    # Given the storage's generation as it comes (an int).
    job = JobReceipt.model_validate(
        {"job_id": "scene-1", "spec_uri": "gs://specs/jobs/scene-1.json", "spec_generation": 1712345678901234}
    )
    assert job.wire() == {
        "job_id": "scene-1",
        "spec_uri": "gs://specs/jobs/scene-1.json",
        "spec_generation": "1712345678901234",  # a string: a JavaScript number would round it
    }
    batch = {"batch_id": "b", "job_ids": ["b-001"], "spec_uri": "gs://specs/jobs/b.json", "spec_generation": "7"}
    assert BatchReceipt.model_validate(batch).wire() == batch
    expires = datetime(2026, 12, 6, 14, 0, tzinfo=UTC)
    headers = {"Content-Type": "video/mp4", "x-goog-content-length-range": "0,10"}
    grant = UploadGrant(uri="gs://m/u/a.mp4", url="https://signed", headers=headers, expires_at=expires, exists=False)
    assert json.loads(json.dumps(grant.wire())) == {
        "uri": "gs://m/u/a.mp4",
        "url": "https://signed",
        "method": "PUT",
        "headers": headers,
        "expires_at": "2026-12-06T14:00:00+00:00",  # as the API wrote it before the model
        "exists": False,
    }
    # Read back as the CLI's client reads it.
    assert UploadGrant.model_validate(grant.wire()) == grant


def test_the_sweep_report_says_null_when_nothing_was_launched() -> None:
    report = SweepReport(checked=2, failed={"a": "worker lost"})
    assert report.wire() == {
        "checked": 2,
        "launched": None,
        "launched_for": {},
        "failed": {"a": "worker lost"},
        "errors": [],
    }
    assert SweepReport.model_validate_json(json.dumps(report.wire())) == report
