"""Many users of one pipeline, tried as a hostile one would, through the spec bucket's door:
objects dropped into the GCS emulator as a trusted backend drops them, the notifications it
publishes, the Firestore documents the pipeline writes (CONTRACT.md section 5).

Each test here fails on the pipeline before ownership, scoping and limits were added."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from google.cloud import firestore

from scenerender.cloud.bus import publisher_client
from scenerender.cloud.clients import Clients
from scenerender.dev.devstack import DevStack
from scenerender.messages import BatchDocument, JobDocument, JobStatus
from scenerender.settings import Settings
from tests.unit.cloud_fakes import error_of, output_of

pytestmark = [pytest.mark.integration, pytest.mark.emulators]
TIMEOUT_S = 90


# --- helpers -------------------------------------------------------------------------------


def own_media(stores: Clients, scene_media: dict[str, str], uid: str) -> dict[str, str]:
    """The test scene's files uploaded under ``users/{uid}/`` (the user's own media)."""
    settings = stores.settings
    uris = {}
    for name in ("a.mp4", "b.mp4", "line.wav"):
        uri = f"gs://{settings.media_bucket}/users/{uid}/{name}"
        if not stores.blobs.exists(uri):
            stores.blobs.upload_file(Path(scene_media["dir"]) / name, uri, content_type="application/octet-stream")
        uris[name] = uri
    return uris


def spec_for(job_id: str | None, owner: str, media: dict[str, str], **extra: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "version": 1,
        "project_id": "p",
        "scene_id": "s",
        "owner_uid": owner,
        "output": {"resolution": "640x360"},
        "segments": [{"id": "a", "url": media["a.mp4"]}, {"id": "b", "url": media["b.mp4"]}],
        **extra,
    }
    if job_id is not None:
        spec["job_id"] = job_id
    return spec


def drop(stores: Clients, name: str, body: dict[str, Any] | bytes) -> int:
    settings = stores.settings
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return stores.blobs.write_bytes(f"gs://{settings.spec_bucket}/{name}", data, content_type="application/json")


def wait_for(what: str, check: Any, timeout_s: float = TIMEOUT_S) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def wait_for_end(stores: Clients, job_id: str, generation: int | None = None) -> JobDocument:
    def ended() -> JobDocument | None:
        doc = stores.jobs.get(job_id)
        if doc is None or not doc.status.ended:
            return None
        return doc if generation is None or doc.spec_generation == str(generation) else None

    result: JobDocument = wait_for(f"job {job_id} to end", ended)
    return result


def refusals(stores: Clients, spec_uri: str) -> list[dict[str, Any]]:
    settings = stores.settings
    collection = stores.jobs.client.collection(settings.refusals_collection)
    query = collection.where(filter=firestore.FieldFilter("spec_uri", "==", spec_uri))
    return [dict(snap.to_dict() or {}) for snap in query.stream()]


def wait_refused(stores: Clients, spec_uri: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = wait_for(f"a refusal of {spec_uri}", lambda: refusals(stores, spec_uri))
    return found


def download(url: str) -> bytes:
    response = httpx.get(url, timeout=30)
    assert response.status_code == 200
    return response.content


def stable(doc: JobDocument | None) -> dict[str, Any]:
    """A job document without the fields a refresh of its batch may touch."""
    assert doc is not None
    return {k: v for k, v in doc.wire().items() if k not in ("heartbeat_at",)}


def notify(settings: Settings, name: str, generation: int) -> None:
    """A (late) delivery of the bucket notification of ``name`` at ``generation``."""
    publisher = publisher_client(settings)
    topic = publisher.topic_path(settings.project_id, settings.spec_topic)
    attributes = {
        "bucketId": settings.spec_bucket,
        "objectId": name,
        "objectGeneration": str(generation),
        "eventType": "OBJECT_FINALIZE",
    }
    # The attributes are keyword arguments, which mypy would also match with ``retry``.
    publisher.publish(topic, base64.b64encode(b"{}"), **attributes).result(timeout=30)  # type: ignore[arg-type]


# --- ownership -----------------------------------------------------------------------------


def test_another_owners_drop_for_a_job_changes_nothing_and_the_owner_renders_again(
    stores: Clients, settings: Settings, scene_media: dict[str, str]
) -> None:
    alice, mallory = own_media(stores, scene_media, "alice"), own_media(stores, scene_media, "mallory")
    drop(stores, "jobs/it-own.json", spec_for("it-own", "alice", alice))
    first = wait_for_end(stores, "it-own")
    first_output = output_of(first)
    assert first.owner_uid == "alice"
    first_bytes = download(first_output.url)

    # Mallory names alice's job, once from another object and once over alice's own object.
    attacks = [("jobs/mallory/it-own.json", spec_for("it-own", "mallory", mallory))]
    attacks.append(("jobs/it-own.json", spec_for("it-own", "mallory", mallory, output={"resolution": "1080p"})))
    for name, body in attacks:
        generation = drop(stores, name, body)
        refused = wait_refused(stores, f"gs://{settings.spec_bucket}/{name}")
        assert [(r["job_id"], r["owner_uid"], r["spec_generation"]) for r in refused] == [
            ("it-own", "mallory", str(generation))
        ]
        assert refused[0]["error"]["code"] == "CONFLICT" and "another owner" in refused[0]["error"]["message"]
    time.sleep(3)  # time for any render the refused drops could have started
    after = stores.jobs.get("it-own")
    assert stable(after) == stable(first)  # owner, status, history, output, spec: untouched
    assert after is not None and after.resubmission_refused is None  # nothing of mallory's is shown to alice
    renders = stores.blobs.list_uris(f"gs://{settings.render_bucket}/renders/it-own/")
    # Only the first run's objects: its MP4 and, beside it, its sidecars.
    assert [o for o in renders if o.endswith(".mp4")] == [first_output.uri]
    assert all(o.startswith(first_output.uri.rsplit("/", 1)[0] + "/") for o in renders), renders
    assert download(first_output.url) == first_bytes

    # Alice's own re-submission renders again, keeps the first run, and has its own object:
    # the first run's URL still serves the first run's file.
    generation = drop(stores, "jobs/it-own.json", spec_for("it-own", "alice", alice, output={"resolution": "720p"}))
    second = wait_for_end(stores, "it-own", generation)
    assert output_of(second).height == 720 and second.owner_uid == "alice"
    assert [h["output"]["uri"] for h in second.history] == [first_output.uri]
    assert second.run_id != first.run_id and output_of(second).uri != first_output.uri
    assert download(first_output.url) == first_bytes
    assert download(output_of(second).url) != first_bytes


def test_another_owners_batch_cannot_take_a_batch_nor_can_a_plain_spec_join_it(
    stores: Clients, settings: Settings, scene_media: dict[str, str]
) -> None:
    alice, mallory = own_media(stores, scene_media, "alice"), own_media(stores, scene_media, "mallory")

    def batch(owner: str, media: dict[str, str]) -> dict[str, Any]:
        scene = spec_for(None, owner, media)
        del scene["owner_uid"]
        return {"version": 1, "batch_id": "it-own-batch", "owner_uid": owner, "scenes": [scene]}

    drop(stores, "jobs/it-own-batch.json", batch("alice", alice))
    first = wait_for_end(stores, "it-own-batch-001")
    assert output_of(first) and first.owner_uid == "alice"

    def batch_ended() -> BatchDocument | None:
        doc = stores.jobs.get_batch("it-own-batch")
        return doc if doc and doc.status == JobStatus.COMPLETED else None

    batch_doc: BatchDocument = wait_for("the batch to end", batch_ended)

    name = "jobs/mallory/it-own-batch.json"
    drop(stores, name, batch("mallory", mallory))
    refused = wait_refused(stores, f"gs://{settings.spec_bucket}/{name}")
    assert [(r["batch_id"], r["owner_uid"], r["error"]["code"]) for r in refused] == [
        ("it-own-batch", "mallory", "CONFLICT")
    ]
    join = "jobs/it-own-join.json"
    drop(stores, join, spec_for("it-own-join", "mallory", mallory, batch_id="it-own-batch"))
    refused = wait_refused(stores, f"gs://{settings.spec_bucket}/{join}")
    assert [(r["job_id"], r["batch_id"], r["error"]["code"]) for r in refused] == [
        ("it-own-join", "it-own-batch", "CONFLICT")
    ]
    time.sleep(3)
    assert stores.jobs.get("it-own-join") is None
    after = stores.jobs.get_batch("it-own-batch")
    assert after is not None and after.owner_uid == "alice" and after.spec_uri == batch_doc.spec_uri
    assert after.total == 1 and after.status == JobStatus.COMPLETED
    assert stable(stores.jobs.get("it-own-batch-001")) == stable(first)


# --- names and generations -----------------------------------------------------------------


def test_object_names_make_distinct_job_ids_or_are_refused(
    stores: Clients, settings: Settings, scene_media: dict[str, str]
) -> None:
    media = own_media(stores, scene_media, "namer")
    drop(stores, "jobs/team-a/it-scene.json", spec_for(None, "namer", media))
    drop(stores, "jobs/team-b/it-scene.json", spec_for(None, "namer", media))
    a, b = wait_for_end(stores, "team-a..it-scene"), wait_for_end(stores, "team-b..it-scene")
    assert a.spec_uri.endswith("jobs/team-a/it-scene.json") and b.spec_uri.endswith("jobs/team-b/it-scene.json")
    assert a.status == b.status == "COMPLETED" and not a.history and not b.history
    assert stores.jobs.get("it-scene") is None

    for name in ("jobs/日本.json", "jobs/中文.json"):
        drop(stores, name, spec_for(None, "namer", media))
        refused = wait_refused(stores, f"gs://{settings.spec_bucket}/{name}")
        assert refused[0]["job_id"] is None and refused[0]["error"]["code"] == "INVALID_SPEC"
        detail = refused[0]["error"]["details"][0]
        assert detail["path"] == "job_id" and name in detail["problem"]
    assert stores.jobs.get("job") is None


def test_a_late_older_generation_changes_nothing(
    stores: Clients, settings: Settings, scene_media: dict[str, str]
) -> None:
    media = own_media(stores, scene_media, "late")
    old = drop(stores, "jobs/it-late.json", spec_for("it-late", "late", media))
    wait_for_end(stores, "it-late", old)
    new = drop(stores, "jobs/it-late.json", spec_for("it-late", "late", media, output={"resolution": "480p"}))
    done = wait_for_end(stores, "it-late", new)
    assert done.status == "COMPLETED" and len(done.history) == 1
    notify(settings, "jobs/it-late.json", old)  # the first notification, delivered again late
    time.sleep(4)
    after = stores.jobs.get("it-late")
    assert stable(after) == stable(done)  # not re-queued, not rendered again with the newer bytes


# --- media ---------------------------------------------------------------------------------


def test_a_spec_may_read_only_its_owners_media(
    stores: Clients, settings: Settings, scene_media: dict[str, str]
) -> None:
    alice = own_media(stores, scene_media, "alice")
    drop(stores, "jobs/it-scope-ok.json", spec_for("it-scope-ok", "alice", alice))
    done = output_of(wait_for_end(stores, "it-scope-ok"))
    others = {
        "it-scope-user": alice["a.mp4"],  # another user's prefix
        "it-scope-renders": done.uri,  # the render bucket: someone's finished MP4
        "it-scope-bucket": "gs://some-other-bucket/users/mallory/a.mp4",
        "it-scope-root": f"gs://{settings.media_bucket}/a.mp4",  # the media bucket outside any prefix
    }
    mallory = own_media(stores, scene_media, "mallory")
    for job_id, url in others.items():
        spec = spec_for(job_id, "mallory", {**mallory, "b.mp4": url})
        drop(stores, f"jobs/{job_id}.json", spec)
    for job_id, url in others.items():
        doc = wait_for_end(stores, job_id)
        error = error_of(doc)
        assert error.code == "INPUT_REFUSED", (job_id, error)
        assert doc.stage == "validate" and not doc.attempt  # refused at accept: never rendered
        assert error.details[0].path == "segments[1].url" and url in error.message


def test_the_worker_refuses_media_outside_the_owners_scope_whoever_sent_the_request(
    stores: Clients, settings: Settings, scene_media: dict[str, str]
) -> None:
    """Defence in depth: a render request that did not pass the spec function is held to the
    same scope by the worker at fetch time."""
    alice = own_media(stores, scene_media, "alice")
    spec = spec_for("it-scope-worker", "mallory", alice)
    stores.jobs.create_job(
        "it-scope-worker", JobDocument.model_validate({"status": "QUEUED", "owner_uid": "mallory", "attempt": 0})
    )
    stores.bus.publish(settings.render_topic, {"job_id": "it-scope-worker", "spec": spec}, job_id="it-scope-worker")
    assert error_of(wait_for_end(stores, "it-scope-worker")).code == "INPUT_REFUSED"
    assert stores.blobs.list_uris(f"gs://{settings.render_bucket}/renders/it-scope-worker/") == []


# --- cost ----------------------------------------------------------------------------------


def _group_peak_rss_kb(pgid: int) -> int:
    """The largest peak resident set (VmHWM) among the processes of one process group."""
    peak = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getpgid(int(entry.name)) != pgid:
                continue
            for line in (entry / "status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]))
        except (OSError, ValueError, ProcessLookupError):
            continue
    return peak


def test_an_oversized_batch_is_refused_from_its_metadata_unread(
    stores: Clients, cloud: DevStack, settings: Settings, scene_media: dict[str, str]
) -> None:
    media = own_media(stores, scene_media, "bulk")
    scene = spec_for(None, "bulk", media)
    scene["audio"] = {"clips": [{"type": "sfx", "url": media["line.wav"], "start": 0.0, "volume": 0.5}] * 400}
    scenes = [dict(scene, scene_id=f"s{i}") for i in range(200)]
    raw = json.dumps({"version": 1, "batch_id": "it-huge", "owner_uid": "bulk", "scenes": scenes}).encode()
    raw += b" " * max(0, 48 * 1024 * 1024 - len(raw))  # 48 MB, most of it parsed whole before
    assert len(raw) > settings.max_batch_bytes
    function = next(p.pid for p in cloud.state.processes if p.name == "function-spec")
    before = _group_peak_rss_kb(function)
    started = time.monotonic()
    drop(stores, "jobs/it-huge.json", raw)
    doc = wait_for_end(stores, "it-huge")
    elapsed = time.monotonic() - started
    error = error_of(doc)
    assert error.code == "LIMIT_EXCEEDED"
    assert "max_batch_bytes" in error.message and str(len(raw)) in error.message
    grown_mb = (_group_peak_rss_kb(function) - before) / 1024
    # Reading the 48 MB object (let alone parsing it) would raise the peak by more than its size.
    assert grown_mb < 24, grown_mb
    assert stores.jobs.get_batch("it-huge") is None and stores.jobs.get("it-huge-001") is None
    print(f"\n48 MB batch refused in {elapsed:.2f} s; spec function peak RSS grew {grown_mb:.1f} MB")


def _dir_bytes(root: Path) -> int:
    total = 0
    # os.walk, not Path.rglob: a worker may remove a folder while it is walked (rglob raises
    # FileNotFoundError from inside its iterator then); what vanished is skipped.
    for folder, _, files in os.walk(root):
        for name in files:
            path = Path(folder) / name
            try:
                if not path.is_symlink():
                    total += path.stat().st_size
            except OSError:
                continue
    return total


@pytest.fixture(scope="module")
def long_source(stores: Clients, settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A 3.9 h 16x16 video (small in bytes: one frame a second, no sound) under its owner's prefix."""
    path = tmp_path_factory.mktemp("long") / "long.mp4"
    cmd = ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "color=c=gray:s=16x16:r=1", "-t", "14040"]
    subprocess.run([*cmd, "-c:v", "libx264", "-g", "600", "-pix_fmt", "yuv420p", str(path)], check=True)
    uri = f"gs://{settings.media_bucket}/users/hog/long.mp4"
    stores.blobs.upload_file(path, uri, content_type="video/mp4")
    return uri


def test_a_two_thousand_hour_scene_is_refused_right_after_probing(
    stores: Clients, settings: Settings, long_source: str
) -> None:
    """500 segments, no durations: the spec cannot tell the length; the probe can (1,950 h)."""
    spec = {
        "version": 1,
        "job_id": "it-hog",
        "project_id": "p",
        "scene_id": "s",
        "owner_uid": "hog",
        "output": {"resolution": "16x16", "fps": 30},
        "segments": [{"id": f"s{i}", "url": long_source} for i in range(500)],
    }
    work = Path(settings.work_dir)
    base = _dir_bytes(work)
    started = time.monotonic()
    drop(stores, "jobs/it-hog.json", spec)
    peak = 0
    deadline = started + 60
    while (doc := stores.jobs.get("it-hog")) is None or not doc.status.ended:
        assert time.monotonic() < deadline, doc
        peak = max(peak, _dir_bytes(work) - base)
        time.sleep(0.05)
    elapsed = time.monotonic() - started
    error = error_of(doc)
    assert error.code == "LIMIT_EXCEEDED", error
    assert "max_scene_s" in error.message and doc.attempt == 1
    assert elapsed < 30, elapsed
    assert peak < 20 * 1024 * 1024, peak  # the source itself (~1 MB), no rendered audio or video
    assert stores.blobs.list_uris(f"gs://{settings.render_bucket}/renders/it-hog/") == []
    print(f"\n1,950 h scene refused in {elapsed:.1f} s; work dir peak growth {peak / 1e6:.1f} MB")


def test_a_scene_whose_spec_tells_its_length_is_refused_before_any_work(
    stores: Clients, settings: Settings, long_source: str
) -> None:
    spec = {
        "version": 1,
        "job_id": "it-hog-static",
        "project_id": "p",
        "scene_id": "s",
        "owner_uid": "hog",
        "output": {"resolution": "16x16", "fps": 30},
        "segments": [{"id": f"s{i}", "url": long_source, "duration": 14000.0} for i in range(500)],
    }
    started = time.monotonic()
    drop(stores, "jobs/it-hog-static.json", spec)
    doc = wait_for_end(stores, "it-hog-static")
    assert time.monotonic() - started < 10
    error = error_of(doc)
    assert error.code == "LIMIT_EXCEEDED" and doc.stage == "validate"
    assert error.details[0].path == "segments" and "max_scene_s" in error.message
    assert not doc.attempt  # no render request was sent


# --- races ---------------------------------------------------------------------------------


def test_owners_racing_for_one_batch_id_leave_exactly_one_owner(stores: Clients, settings: Settings) -> None:
    """``claim_batch`` is one Firestore transaction: eight owners at once, one wins, the rest learn its name."""
    from concurrent.futures import ThreadPoolExecutor

    jobs = stores.jobs
    owners = [f"racer-{i}" for i in range(8)]
    with ThreadPoolExecutor(len(owners)) as pool:
        answers = list(pool.map(lambda o: jobs.claim_batch("it-race-batch", o, {"spec_uri": o}), owners))
    winners = [o for o, other in zip(owners, answers, strict=True) if other is None]
    assert len(winners) == 1, answers
    doc = jobs.get_batch("it-race-batch")
    assert doc is not None and doc.owner_uid == winners[0] and doc.spec_uri == winners[0]
    assert {other for other in answers if other is not None} == {winners[0]}


def test_two_owners_dropping_one_new_job_id_at_once_leave_one_job(
    stores: Clients, settings: Settings, scene_media: dict[str, str]
) -> None:
    names = {"alice": "jobs/race/alice.json", "mallory": "jobs/race/mallory.json"}
    bodies = {owner: spec_for("it-race", owner, own_media(stores, scene_media, owner)) for owner in names}
    for owner, name in names.items():
        drop(stores, name, bodies[owner])
    doc = wait_for_end(stores, "it-race")
    winner = doc.owner_uid
    loser = next(o for o in names if o != winner)
    refused = wait_refused(stores, f"gs://{settings.spec_bucket}/{names[loser]}")
    assert [(r["job_id"], r["owner_uid"], r["error"]["code"]) for r in refused] == [("it-race", loser, "CONFLICT")]
    time.sleep(2)
    after = stores.jobs.get("it-race")
    assert after is not None and after.owner_uid == winner and winner is not None
    assert after.spec_uri.endswith(names[winner]) and not after.history
