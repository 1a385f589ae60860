"""The Cloud Functions, driven the way Eventarc and HTTP clients drive them: real CloudEvents
and HTTP requests posted to functions-framework's test client, with in-memory stores."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cloudevents.conversion import to_structured
from cloudevents.http import CloudEvent
from flask.testing import FlaskClient
from functions_framework import create_app

from scenerender.cloud import clients
from scenerender.messages import JobDocument, JobOutput, RenderReport, RenderRequest, RenderResultBlock
from scenerender.settings import get_settings
from tests.unit.cloud_fakes import FakeBlobs, FakeBus, FakeJobs, FakeStores, measured_result, rendered

SOURCE = str(Path(__file__).parents[2] / "functions" / "main.py")
SPEC = {
    "version": 1,
    "job_id": "scene-1",
    "project_id": "p",
    "scene_id": "s",
    "owner_uid": "u1",
    "segments": [{"id": "a", "url": "gs://scenerender-media/users/u1/a.mp4"}],
}


@pytest.fixture
def stores() -> Iterator[tuple[FakeBlobs, FakeJobs, FakeBus]]:
    blobs, jobs, bus = FakeBlobs(), FakeJobs(), FakeBus()
    with clients.override(blobs=blobs, jobs=jobs, bus=bus):
        yield blobs, jobs, bus


def client(target: str, signature: str) -> FlaskClient:
    return create_app(target, SOURCE, signature).test_client()


def pubsub_event(attributes: dict[str, str], body: bytes = b"{}") -> tuple[dict[str, str], bytes]:
    event = CloudEvent(
        {
            "type": "google.cloud.pubsub.topic.v1.messagePublished",
            "source": "//pubsub.googleapis.com/projects/p/topics/t",
        },
        {
            "message": {"data": base64.b64encode(body).decode(), "attributes": attributes, "messageId": "1"},
            "subscription": "projects/p/subscriptions/s",
        },
    )
    headers, data = to_structured(event)
    return dict(headers), data


def notification(
    name: str, generation: str = "1", event_type: str = "OBJECT_FINALIZE", bucket: str = "scenerender-specs"
) -> tuple[dict[str, str], bytes]:
    return pubsub_event({"bucketId": bucket, "objectId": name, "objectGeneration": generation, "eventType": event_type})


def post(target: str, event: tuple[dict[str, str], bytes]) -> None:
    headers, data = event
    response = client(target, "cloudevent").post("/", headers=headers, data=data)
    assert response.status_code == 200, response.data


def test_a_dropped_spec_queues_its_job_once(stores: tuple[FakeBlobs, FakeJobs, FakeBus]) -> None:
    blobs, jobs, bus = stores
    blobs.objects["gs://scenerender-specs/jobs/scene-1.json"] = json.dumps(SPEC).encode()
    post("on_spec_uploaded", notification("jobs/scene-1.json"))
    post("on_spec_uploaded", notification("jobs/scene-1.json"))  # redelivered
    job = jobs.docs["scene-1"]
    assert job["status"] == "QUEUED" and job["owner_uid"] == "u1" and job["spec_uri"].endswith("jobs/scene-1.json")
    assert [(topic, payload["job_id"]) for topic, payload, _ in bus.published] == [
        (get_settings().render_topic, "scene-1")
    ]


@pytest.mark.parametrize(
    "event",
    [
        notification("renders/scene-1.json"),
        notification("jobs/scene-1.txt"),
        notification("jobs/scene-1.json", event_type="OBJECT_DELETE"),
        notification("jobs/scene-1.json", bucket="scenerender-renders"),
    ],
    ids=["outside-jobs", "not-json", "delete", "other-bucket"],
)
def test_other_objects_start_nothing(
    stores: tuple[FakeBlobs, FakeJobs, FakeBus], event: tuple[dict[str, str], bytes]
) -> None:
    blobs, jobs, bus = stores
    for uri in (
        "gs://scenerender-specs/renders/scene-1.json",
        "gs://scenerender-specs/jobs/scene-1.txt",
        "gs://scenerender-specs/jobs/scene-1.json",
        "gs://scenerender-renders/jobs/scene-1.json",
    ):
        blobs.objects[uri] = json.dumps(SPEC).encode()
    post("on_spec_uploaded", event)
    assert jobs.docs == {} and bus.published == []


def test_an_invalid_spec_is_recorded_failed_with_every_path(stores: tuple[FakeBlobs, FakeJobs, FakeBus]) -> None:
    blobs, jobs, bus = stores
    bad = {**SPEC, "segments": [{"id": "a", "url": "x", "volume": 9}], "colour": "red"}
    blobs.objects["gs://scenerender-specs/jobs/bad one.json"] = json.dumps(bad).encode()
    post("on_spec_uploaded", notification("jobs/bad one.json"))
    job = jobs.docs["scene-1"]
    assert job["status"] == "FAILED" and job["error"]["code"] == "INVALID_SPEC"
    assert {d["path"] for d in job["error"]["details"]} == {"segments[0].volume", "colour"}
    assert bus.published == []


def test_a_completion_report_signs_a_url(stores: tuple[FakeBlobs, FakeJobs, FakeBus]) -> None:
    _, jobs, _ = stores
    jobs.create_job("scene-1", JobDocument.model_validate({"status": "RUNNING"}))
    report = {
        "job_id": "scene-1",
        "attempt": 1,
        "status": "COMPLETED",
        "output_uri": "gs://scenerender-renders/renders/scene-1/scene-1.mp4",
        "result": measured_result(duration_s=6.0),
    }
    post("on_render_reported", pubsub_event({}, json.dumps(report).encode()))
    output = jobs.docs["scene-1"]["output"]
    assert jobs.docs["scene-1"]["status"] == "COMPLETED"
    assert output["url"].startswith("https://signed.example/") and output["duration_s"] == 6.0
    assert (jobs.get("scene-1") or pytest.fail()).output == JobOutput.model_validate(output)


def test_the_written_output_is_the_contracts_with_its_nulls(stores: tuple[FakeBlobs, FakeJobs, FakeBus]) -> None:
    """docs/contract.md section 2: the job document's ``output`` carries the render result, a
    silent render's ``loudness_lufs`` and ``true_peak_db`` as ``null`` (not left out), and the
    URI and signed URL of the MP4 and of each sidecar."""
    _, jobs, _ = stores
    jobs.create_job("scene-1", JobDocument.model_validate({"status": "RUNNING"}))
    renders = "gs://scenerender-renders/renders/scene-1/r1"
    result = measured_result(sidecars={"poster": "scene-1.poster.jpg"})
    report = RenderReport.completed(
        "scene-1",
        1,
        output_uri=f"{renders}/scene-1.mp4",
        sidecar_uris={"poster": f"{renders}/scene-1.poster.jpg"},
        result=RenderResultBlock.model_validate(result),
    )
    assert report.wire()["result"] == result  # on the wire, nulls and all
    post("on_render_reported", pubsub_event({}, json.dumps(report.wire()).encode()))
    written = json.loads(json.dumps(jobs.docs["scene-1"]["output"], default=str))
    contract = (Path(__file__).parents[2] / "docs" / "contract.md").read_text()
    reports = contract.split("## 2. The render result")[1].split("(where segment")[0].split("job document:")[1]
    named = {*re.findall(r"`([a-z_]+)`", reports), "qc"}
    assert named == {"duration_s", "width", "height", "fps", "size_bytes", "loudness_lufs", "true_peak_db"} | {
        "av_drift_ms",
        "sync",
        "qc",
    }
    assert set(written) == {"uri", "url", "url_expires_at", *result} and named <= set(written)
    assert {k: written[k] for k in result if k != "sidecars"} == {k: v for k, v in result.items() if k != "sidecars"}
    assert written["loudness_lufs"] is None and written["true_peak_db"] is None
    assert set(written["sidecars"]) == {"poster"} and written["sidecars"]["poster"]["uri"].endswith(".poster.jpg")
    assert set(written["sidecars"]["poster"]) == {"uri", "url", "url_expires_at"}


def test_a_failure_report_records_its_code(stores: tuple[FakeBlobs, FakeJobs, FakeBus]) -> None:
    _, jobs, _ = stores
    jobs.create_job("scene-1", JobDocument.model_validate({"status": "RUNNING"}))
    error: dict[str, Any] = {
        "code": "INPUT_UNREACHABLE",
        "message": "segments[0].url: object not found",
        "details": [{"path": "segments[0].url", "message": "object not found"}],
    }
    post(
        "on_render_reported",
        pubsub_event({}, json.dumps({"job_id": "scene-1", "status": "FAILED", "error": error}).encode()),
    )
    # A report of before the contract named a detail's text ``problem`` reads the same.
    recorded = {**error, "details": [{"path": "segments[0].url", "problem": "object not found"}]}
    assert jobs.docs["scene-1"]["status"] == "FAILED" and jobs.docs["scene-1"]["error"] == recorded


def test_http_post_then_get(stores: tuple[FakeBlobs, FakeJobs, FakeBus], monkeypatch: pytest.MonkeyPatch) -> None:
    # More of the API in test_api.py; here, the round trip beside the other functions.
    from scenerender.cloud.identity import EMULATOR_ENV
    from tests.tokens import bearer, forged_token

    monkeypatch.setenv(EMULATOR_ENV, "127.0.0.1:9")
    blobs, jobs, _ = stores
    http = client("http_api", "http")
    u1 = bearer(forged_token("u1", get_settings().project_id))
    created = http.post("/", data=json.dumps(SPEC), headers=u1)
    assert created.status_code == 202 and created.json == {
        "job_id": "scene-1",
        "spec_uri": "gs://scenerender-specs/jobs/scene-1.json",
        "spec_generation": "1",
    }
    assert json.loads(blobs.objects["gs://scenerender-specs/jobs/scene-1.json"]) == SPEC
    assert http.get("/?job_id=scene-1", headers=u1).status_code == 404
    jobs.create_job("scene-1", JobDocument.model_validate({"status": "QUEUED", "owner_uid": "u1"}))
    assert http.get("/?job_id=scene-1", headers=u1).get_json()["status"] == "QUEUED"
    refused = http.post("/", data=b'{"version": 2}', headers=u1)
    assert refused.status_code == 400 and refused.get_json()["error"]["code"] == "INVALID_SPEC"
    assert http.put("/", headers=u1).status_code == 405
    assert http.post("/", data=json.dumps(SPEC)).status_code == 401


def test_a_new_spec_for_an_ended_job_renders_again_and_keeps_history(
    stores: tuple[FakeBlobs, FakeJobs, FakeBus],
) -> None:
    blobs, jobs, bus = stores
    blobs.objects["gs://scenerender-specs/jobs/scene-1.json"] = json.dumps(SPEC).encode()
    post("on_spec_uploaded", notification("jobs/scene-1.json", generation="1"))
    post("on_spec_uploaded", notification("jobs/scene-1.json", generation="2"))  # still QUEUED: refused
    assert jobs.docs["scene-1"]["resubmission_refused"]["spec_generation"] == "2"
    old = rendered("gs://r/old.mp4")
    assert jobs.complete("scene-1", old)
    post("on_spec_uploaded", notification("jobs/scene-1.json", generation="3"))
    job = jobs.docs["scene-1"]
    assert job["status"] == "QUEUED" and job["spec_generation"] == "3"
    assert [(h["status"], h["output"], h["spec_generation"]) for h in job["history"]] == [
        ("COMPLETED", old.wire(), "1")
    ]
    assert len(bus.published) == 2


def test_a_transient_error_every_time_fails_the_job_at_the_last_attempt(
    stores: tuple[FakeBlobs, FakeJobs, FakeBus], monkeypatch: pytest.MonkeyPatch
) -> None:
    from scenerender.errors import TransientError
    from scenerender.pipeline import steps

    _, jobs, bus = stores
    settings = get_settings()

    def unavailable(*args: Any, **kwargs: Any) -> Any:
        raise TransientError("storage unavailable")

    monkeypatch.setattr(steps.rendering, "render", unavailable)
    jobs.create_job("scene-1", JobDocument.model_validate({"status": "QUEUED"}))
    request = RenderRequest(job_id="scene-1", spec=SPEC)
    outcomes = []
    for _ in range(settings.max_attempts):
        # The redelivery comes back once the last attempt's heartbeat is stale (sooner, it is BUSY).
        jobs.docs["scene-1"].pop("heartbeat_at", None)
        outcomes.append(steps.run_render_request(request, settings=settings, blobs=FakeBlobs(), jobs=jobs, bus=bus))
    assert [o.ack for o in outcomes] == [False] * (settings.max_attempts - 1) + [True]
    topic, report, _ = bus.published[-1]
    assert topic == settings.completion_topic and report["status"] == "FAILED"
    assert report["attempt"] == settings.max_attempts and report["error"]["message"] == "storage unavailable"
    assert jobs.docs["scene-1"]["last_error"]["message"] == "storage unavailable"
    steps.record_report(RenderReport.model_validate(report), settings=settings, blobs=FakeBlobs(), jobs=jobs)
    assert jobs.docs["scene-1"]["status"] == "FAILED"


@pytest.mark.parametrize(
    ("raised", "code"),
    [
        ("RenderError", "RENDER_FAILED"),
        ("InputUnreachableError", "INPUT_UNREACHABLE"),
        ("SceneRenderError", "INTERNAL"),  # e.g. Firestore refusing a write: permanent by the map
        ("KeyError", "INTERNAL"),  # a bug: redelivery would meet it again
    ],
)
def test_a_permanent_error_or_a_bug_is_acknowledged_at_once_as_failed(
    stores: tuple[FakeBlobs, FakeJobs, FakeBus], monkeypatch: pytest.MonkeyPatch, raised: str, code: str
) -> None:
    from scenerender import errors
    from scenerender.pipeline import steps

    _, jobs, bus = stores
    settings = get_settings()
    assert settings.max_attempts > 1  # a retry would have been possible

    def fail(*args: Any, **kwargs: Any) -> Any:
        if raised == "KeyError":
            raise KeyError("status")
        if raised == "InputUnreachableError":
            raise errors.InputUnreachableError("segments[0].url", "object not found")
        raise getattr(errors, raised)("it went wrong")

    monkeypatch.setattr(steps.rendering, "render", fail)
    jobs.create_job("scene-1", JobDocument.model_validate({"status": "QUEUED"}))
    outcome = steps.run_render_request(
        RenderRequest(job_id="scene-1", spec=SPEC), settings=settings, blobs=FakeBlobs(), jobs=jobs, bus=bus
    )
    assert outcome.ack and outcome.status == "FAILED"
    topic, report, attributes = bus.published[-1]
    assert topic == settings.completion_topic and attributes["status"] == "FAILED"
    assert report["attempt"] == 1 and report["error"]["code"] == code
    assert "last_error" not in jobs.docs["scene-1"]  # nothing was left for a retry
    if raised == "KeyError":
        assert report["error"]["message"] == "KeyError: 'status'"


def test_a_transient_error_is_left_for_redelivery(
    stores: tuple[FakeBlobs, FakeJobs, FakeBus], monkeypatch: pytest.MonkeyPatch
) -> None:
    from google.api_core import exceptions as gexc

    from scenerender.cloud.google_errors import translate
    from scenerender.pipeline import steps

    _, jobs, bus = stores

    def unavailable(*args: Any, **kwargs: Any) -> Any:
        raise translate(gexc.ServiceUnavailable("down"), "Cloud Storage: gs://b/o")

    monkeypatch.setattr(steps.rendering, "render", unavailable)
    jobs.create_job("scene-1", JobDocument.model_validate({"status": "QUEUED"}))
    outcome = steps.run_render_request(
        RenderRequest(job_id="scene-1", spec=SPEC), settings=get_settings(), blobs=FakeBlobs(), jobs=jobs, bus=bus
    )
    assert not outcome.ack and outcome.status == "RETRY" and bus.published == []
    assert jobs.docs["scene-1"]["last_error"]["message"].startswith("Cloud Storage: gs://b/o: unavailable")


def test_jobs_left_running_by_a_vanished_worker_end_failed(stores: tuple[FakeBlobs, FakeJobs, FakeBus]) -> None:
    from datetime import UTC, datetime, timedelta

    from scenerender.cloud.launcher import AlwaysOnWorkers
    from scenerender.pipeline import sweeper

    _, jobs, _ = stores
    settings = get_settings()
    now = datetime.now(UTC)
    long_ago = now - timedelta(seconds=settings.stuck_after_s + 1)
    jobs.create_job("gone", JobDocument.model_validate({"status": "RUNNING", "heartbeat_at": long_ago}))
    jobs.create_job(
        "alive", JobDocument.model_validate({"status": "RUNNING", "heartbeat_at": now - timedelta(seconds=5)})
    )
    jobs.create_job("done", JobDocument.model_validate({"status": "COMPLETED", "heartbeat_at": long_ago}))
    jobs.docs["mangled"] = {"status": "RUNNING", "heartbeat_at": "yesterday"}  # edited by hand: no job
    report = sweeper.sweep(settings=settings, jobs=jobs, launcher=AlwaysOnWorkers(), now=now)
    assert list(report.failed) == ["gone"] and report.launched is None  # the others swept all the same
    assert jobs.docs["gone"]["status"] == "FAILED" and jobs.docs["gone"]["error"]["code"] == "TIMEOUT"
    assert jobs.docs["gone"]["error"]["message"].startswith("worker lost: no heartbeat for 1801 s")
    assert jobs.docs["alive"]["status"] == "RUNNING" and jobs.docs["done"]["status"] == "COMPLETED"


def test_a_request_whose_job_another_worker_holds_comes_back_when_that_worker_would_be_stale(
    stores: tuple[FakeBlobs, FakeJobs, FakeBus], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given back at once, a BUSY request returns to an idle worker straight away and uses up
    its deliveries in seconds (dead-lettered: the job FAILED though its worker had died and a
    take-over was due). It comes back once the holder's heartbeat would be stale."""
    from scenerender.cloud.jobs import BUSY
    from scenerender.pipeline import steps as pipeline
    from scenerender.pipeline import worker

    blobs, jobs, bus = stores
    settings = get_settings()
    jobs.create_job("held", JobDocument.model_validate({"status": "RUNNING", "attempt": 1}))
    monkeypatch.setattr(jobs, "mark_running", lambda *args, **kwargs: BUSY)
    outcome = pipeline.run_render_request(
        RenderRequest(job_id="held", spec=SPEC), settings=settings, blobs=blobs, jobs=jobs, bus=bus
    )
    assert (outcome.ack, outcome.status, outcome.retry_after_s) == (False, "BUSY", settings.heartbeat_stale_s)
    assert jobs.docs["held"]["attempt"] == 1 and not bus.published

    class Message:
        def __init__(self) -> None:
            self.data = {"job_id": "held", "spec": SPEC}
            self.delivery_attempt = 2
            self.given_back: list[float] = []

        def __enter__(self) -> Message:
            return self

        def __exit__(self, *exc: object) -> None:
            pass

        def ack(self) -> None:
            raise AssertionError("a BUSY request is not acknowledged")

        def nack(self, delay_s: float = 0.0) -> None:
            self.given_back.append(delay_s)

    monkeypatch.setattr(pipeline, "run_render_request", lambda *args, **kwargs: outcome)
    message = Message()
    alone = settings.model_copy(update={"split_min_segments": 0})  # no segment-work store
    assert worker.handle_request(alone, FakeStores(*stores), None, message) is False  # type: ignore[arg-type]
    assert message.given_back == [settings.heartbeat_stale_s]


def test_a_request_whose_stores_fail_around_the_render_backs_off_instead_of_coming_straight_back(
    stores: tuple[FakeBlobs, FakeJobs, FakeBus], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Seen under load: a SIGKILLed worker left a transaction lock on its job, so the next
    worker's mark_running failed; given back at once, the request came straight back, failed
    again, and was dead-lettered in seconds (the job FAILED, a take-over due). It now stays
    away one heartbeat_stale_s per delivery so far."""
    from scenerender.errors import TransientError
    from scenerender.pipeline import steps as pipeline
    from scenerender.pipeline import worker

    settings = get_settings().model_copy(update={"split_min_segments": 0})

    def locked(*args: Any, **kwargs: Any) -> Any:
        raise TransientError("Firestore: update job j: Transaction lock timeout")

    class Message:
        def __init__(self, delivery_attempt: int) -> None:
            self.data = {"job_id": "j", "spec": SPEC}
            self.delivery_attempt = delivery_attempt
            self.given_back: list[float] = []

        def __enter__(self) -> Message:
            return self

        def __exit__(self, *exc: object) -> None:
            pass

        def ack(self) -> None:
            raise AssertionError("not acknowledged: the render never ran")

        def nack(self, delay_s: float = 0.0) -> None:
            self.given_back.append(delay_s)

    monkeypatch.setattr(pipeline, "run_render_request", locked)
    for attempt in (1, 3):
        message = Message(attempt)
        assert worker.handle_request(settings, FakeStores(*stores), None, message) is False  # type: ignore[arg-type]
        assert message.given_back == [settings.heartbeat_stale_s * attempt]


def test_a_spec_within_the_size_limit_is_not_refused_by_the_worker_for_its_size(
    stores: tuple[FakeBlobs, FakeJobs, FakeBus], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The spec function publishes the spec as its model's dump (every default written out);
    the worker measured that dump, re-serialised with spaces and escaped non-ASCII, against
    max_spec_bytes, so a spec of CJK lines the spec function had accepted failed at the
    worker with INVALID_SPEC 'spec is N bytes'."""
    from scenerender import errors
    from scenerender.pipeline import steps

    blobs, jobs, bus = stores
    line = "你去哪儿了。" * 40
    url = "gs://scenerender-media/users/u1/line.wav"
    clips = [{"type": "dialogue", "url": url, "start": 0.1 * i, "text": line} for i in range(8)]
    raw = json.dumps({**SPEC, "audio": {"clips": clips}}, ensure_ascii=False, separators=(",", ":")).encode()
    monkeypatch.setenv("SCENERENDER_MAX_SPEC_BYTES", str(len(raw)))  # the file is exactly at the limit
    get_settings.cache_clear()
    blobs.objects["gs://scenerender-specs/jobs/scene-1.json"] = raw
    post("on_spec_uploaded", notification("jobs/scene-1.json"))
    assert jobs.docs["scene-1"]["status"] == "QUEUED"
    request = RenderRequest.model_validate(bus.published[-1][1])
    rendered: list[str] = []

    def render(spec: Any, *args: Any, **kwargs: Any) -> Any:
        rendered.append(spec.audio.clips[7].text)
        raise errors.RenderError("stopped here: the spec was read")

    monkeypatch.setattr(steps.rendering, "render", render)
    outcome = steps.run_render_request(request, settings=get_settings(), blobs=blobs, jobs=jobs, bus=bus)
    assert rendered == [line], bus.published[-1][1].get("error")
    assert outcome.status == "FAILED" and bus.published[-1][1]["error"]["code"] == "RENDER_FAILED"
