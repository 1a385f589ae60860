"""The pipeline through its public doors only: an object in the spec bucket, the HTTP function,
the Firestore document. Real emulators, real functions-framework processes, real workers."""

from __future__ import annotations

import base64
import dataclasses
import json
import queue
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from scenerender.cloud.bus import publisher_client
from scenerender.cloud.clients import Clients
from scenerender.core.render import RenderResult
from scenerender.dev.devstack import DevStack
from scenerender.errors import UnreadableDocumentError
from scenerender.messages import JobDocument, JobOutput
from scenerender.ports import Jobs
from scenerender.settings import Settings
from tests import measure
from tests.integration.conftest import SHARED_PREFIX, LocalCloud, workers_held_when
from tests.unit.cloud_fakes import output_of

pytestmark = [pytest.mark.integration, pytest.mark.emulators]
TIMEOUT_S = 90


def spec_for(job_id: str, media: dict[str, str], **extra: Any) -> dict[str, Any]:
    return {
        "version": 1,
        "job_id": job_id,
        "project_id": "p",
        "scene_id": "s",
        "owner_uid": "user-1",
        "output": {"resolution": "640x360"},
        "segments": [{"id": "a", "url": media["a.mp4"]}, {"id": "b", "url": media["b.mp4"]}],
        "audio": {"clips": [{"type": "dialogue", "url": media["line.wav"], "segment_id": "b", "offset": 0.25}]},
        **extra,
    }


def drop(stores: Clients, name: str, body: dict[str, Any] | bytes) -> int:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    uri = f"gs://{stores.settings.spec_bucket}/{name}"
    return stores.blobs.write_bytes(uri, data, content_type="application/json")


def wait_for_end(jobs: Jobs, job_id: str, timeout_s: float = TIMEOUT_S) -> JobDocument:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        doc = jobs.get(job_id)
        if doc is not None and doc.status.ended:
            return doc
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not end: {jobs.get(job_id)}")


def test_a_dropped_spec_completes_and_its_url_downloads_the_local_render(
    settings: Settings, stores: Clients, scene_media: dict[str, str], tmp_path: Path
) -> None:
    updates: queue.Queue[JobDocument | UnreadableDocumentError | None] = queue.Queue()
    watch = stores.jobs.watch("it-ok", updates.put)
    try:
        drop(stores, "jobs/it-ok.json", spec_for("it-ok", scene_media))
        doc = wait_for_end(stores.jobs, "it-ok")
        time.sleep(0.5)  # the listener's last snapshots
    finally:
        watch.unsubscribe()
    assert doc.status == "COMPLETED" and doc.attempt == 1, doc
    seen = [d for d in iter_queue(updates) if d]
    statuses = [d.status.value for d in seen]
    assert statuses[0] == "QUEUED" and statuses[-1] == "COMPLETED"
    assert statuses == sorted(statuses, key=["QUEUED", "RUNNING", "COMPLETED"].index)  # never backwards
    assert "RUNNING" in statuses
    progress = [d.progress for d in seen]
    assert progress == sorted(progress) and progress[-1] == 1.0

    output = output_of(doc)
    assert output.uri == f"gs://{settings.render_bucket}/renders/it-ok/{doc.run_id}/it-ok.mp4"
    assert output.url_expires_at.timestamp() - time.time() == pytest.approx(settings.signed_url_ttl_s, abs=120)
    # As Firestore holds it: the contract's output block, every result field there, nulls included.
    stored = stores.jobs.collection.document("it-ok").get().to_dict()["output"]
    assert set(stored) == {"uri", "url", "url_expires_at", *(f.name for f in dataclasses.fields(RenderResult))}
    assert JobOutput.model_validate(stored) == output
    downloaded = tmp_path / "pipeline.mp4"
    with httpx.stream("GET", output.url, timeout=30) as response:
        assert response.status_code == 200
        downloaded.write_bytes(response.read())

    # The same spec rendered locally, from the same files.
    local_spec = spec_for(
        "it-ok", {name: str(Path(scene_media["dir"]) / name) for name in ("a.mp4", "b.mp4", "line.wav")}
    )
    spec_path = tmp_path / "local.json"
    spec_path.write_text(json.dumps(local_spec))
    local = tmp_path / "local.mp4"
    done = subprocess.run(
        [sys.executable, "-m", "scenerender", "render", str(spec_path), "-o", str(local), "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert float(measure.probe(downloaded)["format"]["duration"]) == pytest.approx(
        float(measure.probe(local)["format"]["duration"]), abs=1 / 30
    )
    assert downloaded.stat().st_size == pytest.approx(local.stat().st_size, rel=0.01)
    assert output.size_bytes == downloaded.stat().st_size and output.duration_s == pytest.approx(2.0, abs=0.04)
    # The sidecars went up beside the MP4, each with its own signed URL (docs/deliverables.md).
    assert set(output.sidecars) == {"poster", "contact_sheet"}
    for kind, suffix in (("poster", ".poster.jpg"), ("contact_sheet", ".sheet.jpg")):
        sidecar = output.sidecars[kind]
        assert sidecar.uri == output.uri.removesuffix(".mp4") + suffix
        response = httpx.get(sidecar.url, timeout=30)
        assert response.status_code == 200 and response.content[:3] == b"\xff\xd8\xff"  # a JPEG


def iter_queue(q: queue.Queue[JobDocument | UnreadableDocumentError | None]) -> list[JobDocument | None]:
    items = []
    while not q.empty():
        item = q.get_nowait()
        if isinstance(item, UnreadableDocumentError):
            raise item
        items.append(item)
    return items


def test_an_invalid_spec_ends_failed_with_the_field_path_and_stays_in_the_bucket(
    settings: Settings, stores: Clients
) -> None:
    bad = {
        "version": 1,
        "job_id": "it-bad",
        "project_id": "p",
        "scene_id": "s",
        "segments": [{"id": "a", "url": "gs://x/a.mp4", "volumme": 1}],
    }
    drop(stores, "jobs/it-bad.json", bad)
    doc = wait_for_end(stores.jobs, "it-bad")
    assert doc.status == "FAILED" and doc.error is not None and doc.error.code == "INVALID_SPEC"
    assert doc.error.wire()["details"] == [
        {"path": "segments[0].volumme", "problem": "unknown field (did you mean `volume`?)"}
    ]
    assert stores.blobs.exists(f"gs://{settings.spec_bucket}/jobs/it-bad.json")


def test_an_unreachable_input_ends_failed_naming_the_input(
    settings: Settings, stores: Clients, scene_media: dict[str, str]
) -> None:
    media = dict(scene_media, **{"b.mp4": f"gs://{settings.media_bucket}/{SHARED_PREFIX}it/missing.mp4"})
    drop(stores, "jobs/it-missing.json", spec_for("it-missing", media))
    doc = wait_for_end(stores.jobs, "it-missing")
    assert doc.status == "FAILED" and doc.error is not None and doc.error.code == "INPUT_UNREACHABLE"
    assert doc.error.details[0].path == "segments[1].url"
    assert "it/missing.mp4" in doc.error.message


def test_the_same_notification_twice_renders_once(
    settings: Settings, stores: Clients, scene_media: dict[str, str]
) -> None:
    generation = drop(stores, "jobs/it-twice.json", spec_for("it-twice", scene_media))
    publisher = publisher_client(settings)
    topic = publisher.topic_path(settings.project_id, settings.spec_topic)
    attributes = {
        "bucketId": settings.spec_bucket,
        "objectId": "jobs/it-twice.json",
        "objectGeneration": str(generation),
        "eventType": "OBJECT_FINALIZE",
    }
    # Three more deliveries of the notification fake-gcs already sent, at the same moment.
    # The attributes are keyword arguments, which mypy would also match with ``retry``.
    futures = [publisher.publish(topic, base64.b64encode(b"{}"), **attributes) for _ in range(3)]  # type: ignore[arg-type]
    for future in futures:
        future.result(timeout=30)
    wait_for_end(stores.jobs, "it-twice")
    time.sleep(3)  # time for any duplicate render to show
    doc = wait_for_end(stores.jobs, "it-twice")
    assert doc.status == "COMPLETED" and doc.attempt == 1 and not doc.history, doc.error
    # One run, one MP4; beside it only that run's sidecars (poster, contact sheet, captions).
    run = f"gs://{settings.render_bucket}/renders/it-twice/{doc.run_id}/"
    objects = stores.blobs.list_uris(f"gs://{settings.render_bucket}/renders/it-twice/")
    assert [o for o in objects if o.endswith(".mp4")] == [f"{run}it-twice.mp4"]
    assert all(o.startswith(run) for o in objects), objects


def test_objects_outside_jobs_and_outputs_start_nothing(
    settings: Settings, stores: Clients, scene_media: dict[str, str]
) -> None:
    drop(stores, "other/it-outside.json", spec_for("it-outside", scene_media))
    drop(stores, "jobs/it-notjson.txt", spec_for("it-notjson", scene_media))
    output_like = json.dumps(spec_for("it-output", scene_media)).encode()
    stores.blobs.write_bytes(
        f"gs://{settings.render_bucket}/jobs/it-output.json", output_like, content_type="application/json"
    )
    time.sleep(4)
    for job_id in ("it-outside", "it-notjson", "it-output", "other-it-outside", "it-notjson.txt"):
        assert stores.jobs.get(job_id) is None


def test_http_post_then_get(settings: Settings, stores: Clients, scene_media: dict[str, str]) -> None:
    """The API's round trip, as a user signed in to the Auth emulator (more in test_identity_api.py)."""
    from scenerender.cloud.session import sign_in

    api = settings.api_url
    me = {"Authorization": f"Bearer {sign_in('http-user@example.com', settings).id_token}"}
    body = {k: v for k, v in spec_for("it-http", scene_media).items() if k != "owner_uid"}
    created = httpx.post(api, content=json.dumps(body), headers=me, timeout=30)
    assert created.status_code == 202, created.text
    assert created.json()["job_id"] == "it-http"
    assert wait_for_end(stores.jobs, "it-http").status == "COMPLETED"
    fetched = httpx.get(api, params={"job_id": "it-http"}, headers=me, timeout=30)
    assert fetched.status_code == 200 and fetched.json()["status"] == "COMPLETED"
    assert httpx.get(api, params={"job_id": "nope"}, headers=me, timeout=30).status_code == 404
    refused = httpx.post(api, content=b'{"version": 1}', headers=me, timeout=30)
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "INVALID_SPEC"
    assert httpx.post(api, content=json.dumps(body), timeout=30).status_code == 401


def test_a_new_spec_renders_an_ended_job_again_and_is_refused_while_it_runs(
    cloud: DevStack, stores: Clients, scene_media: dict[str, str]
) -> None:
    drop(stores, "jobs/it-again.json", spec_for("it-again", scene_media))
    first = output_of(wait_for_end(stores.jobs, "it-again"))
    # Dropped again after it ended: rendered again (at another size, to tell the runs apart),
    # the earlier run kept in history.
    again = spec_for("it-again", scene_media, output={"resolution": "480p"})
    generation = drop(stores, "jobs/it-again.json", again)

    def running() -> bool:
        doc = stores.jobs.get("it-again")
        return doc is not None and doc.spec_generation == str(generation) and doc.status == "RUNNING"

    # Dropped while it runs: refused, with the reason on the job. The workers are held while
    # the job is RUNNING until the refusal is recorded, however fast the render would be.
    with workers_held_when(cloud, running, timeout_s=TIMEOUT_S):
        refused = drop(stores, "jobs/it-again.json", spec_for("it-again", scene_media))
        deadline = time.monotonic() + TIMEOUT_S
        while (held := stores.jobs.get("it-again")) is None or held.resubmission_refused is None:
            assert time.monotonic() < deadline, held
            time.sleep(0.1)
        assert held.status == "RUNNING", held
    doc = wait_for_end(stores.jobs, "it-again")
    assert output_of(doc).height == 480 and doc.spec_generation == str(generation)
    assert doc.resubmission_refused is not None and doc.resubmission_refused.spec_generation == str(refused)
    assert "still RUNNING" in doc.resubmission_refused.reason
    assert [h["status"] for h in doc.history] == ["COMPLETED"]
    assert doc.history[0]["output"]["uri"] == first.uri


def test_duplicate_render_requests_and_reports_change_nothing(
    stores: Clients, settings: Settings, scene_media: dict[str, str]
) -> None:
    drop(stores, "jobs/it-dup.json", spec_for("it-dup", scene_media))
    doc = wait_for_end(stores.jobs, "it-dup")
    assert doc.status == "COMPLETED"
    finished = doc.finished_at
    request = {"job_id": "it-dup", "spec": spec_for("it-dup", scene_media)}
    report = {
        "job_id": "it-dup",
        "attempt": 1,
        "status": "FAILED",
        "error": {"code": "RENDER_FAILED", "message": "late duplicate", "details": []},
    }
    for _ in range(3):  # the request and a (contradicting) report, delivered again at once
        stores.bus.publish(settings.render_topic, request, job_id="it-dup")
        stores.bus.publish(settings.completion_topic, report, job_id="it-dup", status="FAILED")
    time.sleep(5)
    doc = wait_for_end(stores.jobs, "it-dup")
    assert doc.status == "COMPLETED" and doc.attempt == 1 and doc.finished_at == finished
    # One run, one MP4; beside it only that run's sidecars (poster, contact sheet, captions).
    run = f"gs://{settings.render_bucket}/renders/it-dup/{doc.run_id}/"
    objects = stores.blobs.list_uris(f"gs://{settings.render_bucket}/renders/it-dup/")
    assert [o for o in objects if o.endswith(".mp4")] == [f"{run}it-dup.mp4"]
    assert all(o.startswith(run) for o in objects), objects


def test_submit_uploads_local_media_waits_and_downloads_into_a_folder(
    local: LocalCloud, scene_media: dict[str, str], tmp_path: Path
) -> None:
    """The CLI's door: a spec naming local files, ``submit --download FOLDER`` (implies --wait)."""
    files = {name: str(Path(scene_media["dir"]) / name) for name in ("a.mp4", "b.mp4", "line.wav")}
    spec_path = tmp_path / "scene.json"
    # No owner_uid: the API names the signed-in user (a spec naming another is refused, 403).
    # Captions (the line's text) and stems asked for: every kind of sidecar comes down with it.
    spec = spec_for("it-cli", files, output={"resolution": "640x360", "stems": True})
    spec["audio"]["clips"][0] |= {"text": "Where were you?", "character": {"id": "ava", "name": "Ava"}}
    spec_path.write_text(json.dumps({k: v for k, v in spec.items() if k != "owner_uid"}))
    folder = tmp_path / "downloads"
    folder.mkdir()
    env = local.env()
    outside = subprocess.run(
        [sys.executable, "-m", "scenerender", "submit", str(spec_path)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    # The media sits in another folder than the spec: not uploaded unless asked for.
    assert outside.returncode == 2 and "--allow-outside" in outside.stderr, outside.stderr
    done = subprocess.run(
        [sys.executable, "-m", "scenerender", "submit", str(spec_path), "--download", str(folder), "--allow-outside"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "it-cli"
    # The MP4 and its sidecars beside it, as `render` names them, and no partial download.
    stems = ("dialogue", "narration", "music", "sfx", "me")
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["it-cli.mp4", "it-cli.poster.jpg", "it-cli.sheet.jpg", "it-cli.vtt", "it-cli.srt"]
        + [f"it-cli.{stem}.flac" for stem in stems]
    )
    assert float(measure.probe(folder / "it-cli.mp4")["format"]["duration"]) == pytest.approx(2.0, abs=1 / 30)
    # Each is the file the render made, whole: the captions carry the line, the stems the scene's length.
    assert "<v Ava>Where were you?</v>" in (folder / "it-cli.vtt").read_text(encoding="utf-8")
    assert "Ava: Where were you?" in (folder / "it-cli.srt").read_text(encoding="utf-8")
    for stem in stems:
        assert len(measure.decode_audio(folder / f"it-cli.{stem}.flac")) == 2 * measure.SAMPLE_RATE, stem
    dialogue = measure.decode_audio(folder / "it-cli.dialogue.flac")
    assert np.abs(dialogue).max() > 0.01 and np.abs(measure.decode_audio(folder / "it-cli.narration.flac")).max() == 0
