"""One contract for each port (scenerender.ports), run against the unit tests' fake and the real
adapter on the emulators: what a unit test learns from a fake holds on Firestore, Cloud
Storage and Pub/Sub, and a fake that drifts from its adapter fails here."""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from scenerender.cli.remote import follow, follow_batch
from scenerender.cloud.bus import Publisher, ensure_subscription, ensure_topic, subscriber_client
from scenerender.cloud.clients import Clients
from scenerender.cloud.jobs import BUSY, JobStore
from scenerender.errors import SceneRenderError, UnreadableDocumentError
from scenerender.messages import (
    BatchDocument,
    BatchSummary,
    ErrorBlock,
    JobDocument,
    JobOutput,
    JobStatus,
    RenderResultBlock,
    SignedObject,
)
from scenerender.ports import Blobs, Bus, Jobs, SlotClaim
from scenerender.settings import Settings
from tests.unit.cloud_fakes import FakeBlobs, FakeBus, FakeJobs, measured_result, rendered

pytestmark = [pytest.mark.integration, pytest.mark.emulators]
KINDS = ["fake", "emulator"]


def unique(name: str) -> str:
    return f"contract-{name}-{uuid.uuid4().hex[:8]}"


# ---- Jobs -----------------------------------------------------------------------------------


@pytest.fixture(params=KINDS)
def jobs(request: pytest.FixtureRequest) -> Jobs:
    if request.param == "fake":
        return FakeJobs()
    stores: Clients = request.getfixturevalue("stores")
    return stores.jobs


def queued(owner: str = "u1", **more: Any) -> JobDocument:
    return JobDocument.queued(
        spec_uri="gs://s/jobs/j.json",
        spec_generation=str(more.pop("spec_generation", "1")),
        project_id="p",
        scene_id="s",
        owner_uid=owner,
        batch_id=more.pop("batch_id", None),
        run_id="r1",
        **more,
    )


def read(jobs: Jobs, job_id: str) -> JobDocument:
    doc = jobs.get(job_id)
    assert doc is not None, f"no job {job_id}"
    return doc


def test_a_job_is_created_once(jobs: Jobs) -> None:
    job = unique("create")
    assert jobs.get(job) is None
    assert jobs.create_job(job, queued(spec_generation="1"))
    assert not jobs.create_job(job, queued(owner="u2", spec_generation="2"))
    doc = read(jobs, job)
    assert doc.job_id == job and doc.owner_uid == "u1" and doc.spec_generation == "1"
    assert doc.status is JobStatus.QUEUED and doc.run_id == "r1" and doc.stage == "queued"
    assert isinstance(doc.created_at, datetime) and doc.finished_at is None
    # What the store holds reads back as the model the spec function wrote, field for field.
    assert {k: v for k, v in doc.wire().items() if k not in ("created_at", "updated_at")} == {
        "job_id": job,
        **queued(spec_generation="1").wire(),
    }


def test_a_refused_job_is_created_ended(jobs: Jobs) -> None:
    job = unique("refused")
    error = ErrorBlock.model_validate(
        {"code": "INVALID_SPEC", "message": "m", "details": [{"path": "p", "problem": "q"}]}
    )
    assert jobs.create_job(
        job, JobDocument.refused(spec_uri="gs://s/j", spec_generation="1", owner_uid=None, error=error)
    )
    doc = read(jobs, job)
    assert doc.status is JobStatus.FAILED and doc.error == error and doc.owner_uid is None
    assert isinstance(doc.finished_at, datetime) and jobs.mark_running(job) == 0


def test_a_job_runs_once_and_a_live_worker_is_not_displaced(jobs: Jobs) -> None:
    job = unique("run")
    jobs.create_job(job, queued())
    assert jobs.mark_running(job, worker="w1", execution="exec-1") == 1
    doc = read(jobs, job)
    assert doc.status is JobStatus.RUNNING and doc.worker == "w1" and doc.execution == "exec-1"
    assert isinstance(doc.started_at, datetime) and isinstance(doc.heartbeat_at, datetime) and doc.attempt == 1
    # Its worker beats (mark_running's own beat is fresh): a second worker is told BUSY.
    jobs.heartbeat(job)
    assert jobs.mark_running(job, worker="w2") == BUSY
    assert jobs.fail(job, ErrorBlock.internal("x"))
    assert jobs.mark_running(job, worker="w3") == 0  # ended: nothing more runs


def test_the_request_is_published_by_one_claimant_of_its_generation(jobs: Jobs) -> None:
    job = unique("publish")
    jobs.create_job(job, queued(spec_generation="7"))
    assert not jobs.claim_publish(job, "6")
    assert jobs.claim_publish(job, "7")
    assert read(jobs, job).request_published
    assert not jobs.claim_publish(job, "7")
    jobs.release_publish(job)
    assert jobs.claim_publish(job, "7")


def test_progress_never_decreases_and_only_a_running_job_moves(jobs: Jobs) -> None:
    job = unique("progress")
    jobs.create_job(job, queued())
    jobs.set_progress(job, "encode", 0.5)
    assert read(jobs, job).progress == 0.0  # not running yet
    jobs.mark_running(job)
    jobs.set_progress(job, "encode", 0.5)
    jobs.set_progress(job, "mux", 0.3)
    doc = read(jobs, job)
    assert doc.progress == 0.5 and doc.stage == "mux"  # the stage moves on; the progress does not go back


def test_a_job_ends_once(jobs: Jobs) -> None:
    job = unique("end")
    jobs.create_job(job, queued())
    jobs.mark_running(job)
    assert jobs.complete(job, rendered("gs://r/x.mp4"))
    assert not jobs.fail(job, ErrorBlock.internal("late"))
    assert not jobs.complete(job, rendered("gs://r/y.mp4"))
    doc = read(jobs, job)
    assert doc.status is JobStatus.COMPLETED and doc.output is not None and doc.output.uri == "gs://r/x.mp4"
    assert doc.progress == 1.0 and doc.stage == "done" and doc.error is None
    assert isinstance(doc.finished_at, datetime)


def test_a_completed_jobs_output_reads_back_as_written_nulls_and_all(jobs: Jobs) -> None:
    """The output block of docs/contract.md section 4: the render result with its nulls (a
    silent render's loudness), the signed URLs, each sidecar's; read back as the model."""
    job = unique("output")
    jobs.create_job(job, queued())
    silent = RenderResultBlock.model_validate(
        measured_result(sync={"max_boundary_error_ms": 0.0, "max_onset_error_ms": None})
    )
    expires = datetime(2030, 1, 1, tzinfo=UTC)
    mp4 = SignedObject(uri="gs://r/z.mp4", url="https://signed.example/r/z.mp4", url_expires_at=expires)
    poster = SignedObject(uri="gs://r/z.jpg", url="https://signed.example/r/z.jpg", url_expires_at=expires)
    output = JobOutput.of(mp4, silent, {"poster": poster})
    assert jobs.complete(job, output)
    doc = read(jobs, job)
    assert doc.output == output and doc.output.sidecars["poster"] == poster
    stored = json.loads(json.dumps(doc.output.wire(), default=str))
    assert stored["loudness_lufs"] is None and stored["true_peak_db"] is None
    assert stored["sync"] == {"max_boundary_error_ms": 0.0, "max_onset_error_ms": None}
    assert set(stored) == {"uri", "url", "url_expires_at", *silent.wire()}


def test_a_failed_job_keeps_its_error_block_as_the_contract_has_it(jobs: Jobs) -> None:
    job = unique("fail")
    jobs.create_job(job, queued())
    error = ErrorBlock.model_validate({"code": "TIMEOUT", "message": "m", "details": [{"path": "p", "message": "q"}]})
    assert jobs.fail(job, error)
    doc = read(jobs, job)
    assert doc.status is JobStatus.FAILED and doc.stage == "failed"
    assert doc.error is not None and doc.error.wire() == {
        "code": "TIMEOUT",
        "message": "m",
        "details": [{"path": "p", "problem": "q"}],
    }


def test_only_an_ended_job_of_the_same_owner_is_queued_again(jobs: Jobs) -> None:
    job = unique("requeue")
    jobs.create_job(job, queued())
    assert not jobs.requeue(job, queued(spec_generation="2"))  # still QUEUED
    jobs.mark_running(job)
    old = rendered("gs://r/old.mp4")
    jobs.complete(job, old)
    assert not jobs.requeue(job, queued(owner="u2", spec_generation="2"))  # another owner's job
    assert jobs.requeue(job, queued(spec_generation="2"))
    doc = read(jobs, job)
    assert doc.status is JobStatus.QUEUED and doc.spec_generation == "2"
    assert doc.attempt == 0 and doc.output is None and doc.finished_at is None
    assert not doc.request_published and doc.launches == 0 and doc.rendered
    [earlier] = doc.history
    assert (earlier["status"], earlier["output"], earlier["spec_generation"]) == ("COMPLETED", old.wire(), "1")


def test_unfinished_jobs_are_the_queued_and_running_ones(jobs: Jobs) -> None:
    ids = [unique(f"active{i}") for i in range(3)]
    for job in ids:
        jobs.create_job(job, queued())
    jobs.mark_running(ids[1])
    jobs.fail(ids[2], ErrorBlock.internal("x"))
    mine = {d.job_id: d for d in jobs.unfinished() if d.job_id in ids}
    assert sorted(mine) == sorted(ids[:2])
    assert mine[ids[0]].status is JobStatus.QUEUED and mine[ids[1]].status is JobStatus.RUNNING
    assert mine[ids[1]] == read(jobs, ids[1])  # the sweeper reads what a get reads


def write_by_hand(jobs: Jobs, job_id: str, fields: dict[str, Any], *, batch: bool = False) -> None:
    """A document as someone edited it in the console, past the store's own writes."""
    if isinstance(jobs, FakeJobs):
        (jobs.batches if batch else jobs.docs)[job_id] = fields
    else:
        assert isinstance(jobs, JobStore)
        (jobs.batches if batch else jobs.collection).document(job_id).set(fields)


def test_a_document_that_is_no_job_is_named_and_the_others_are_still_swept(jobs: Jobs) -> None:
    good, bad = unique("good"), unique("bad")
    jobs.create_job(good, queued())
    write_by_hand(jobs, bad, {"status": "QUEUED", "attempt": "many", "spec_uri": "gs://s/jobs/x.json"})
    with pytest.raises(SceneRenderError, match=rf"^job document {bad} does not read as a job: attempt: Input should"):
        jobs.get(bad)
    swept = {d.job_id for d in jobs.unfinished()}
    assert good in swept and bad not in swept


def test_an_unreadable_document_names_its_owner_so_a_door_can_hide_it_from_others(jobs: Jobs) -> None:
    job, batch, ownerless = unique("bad"), unique("badbatch"), unique("ownerless")
    write_by_hand(jobs, job, {"status": "QUEUED", "attempt": "many", "owner_uid": "alice"})
    write_by_hand(jobs, batch, {"status": "QUEUED", "total": "all", "owner_uid": "alice"}, batch=True)
    write_by_hand(jobs, ownerless, {"status": "SOMETIMES", "owner_uid": 7})
    with pytest.raises(UnreadableDocumentError) as found:
        jobs.get(job)
    assert found.value.owner_uid == "alice" and found.value.code == "INTERNAL"
    with pytest.raises(
        UnreadableDocumentError, match=rf"^batch document {batch} does not read as a batch: total: "
    ) as b:
        jobs.get_batch(batch)
    assert b.value.owner_uid == "alice"
    with pytest.raises(UnreadableDocumentError) as none:
        jobs.get(ownerless)
    assert none.value.owner_uid is None


@pytest.mark.parametrize("kind", ["job", "batch"])
def test_following_a_document_that_turns_unreadable_ends_with_its_error_not_a_wait(stores: Clients, kind: str) -> None:
    """The realtime listener hands an unreadable version over instead of dying in its thread,
    which left ``scenerender watch`` waiting out its timeout."""
    ident = unique(f"turns-{kind}")
    if kind == "job":
        stores.jobs.create_job(ident, queued())
    else:
        write_by_hand(stores.jobs, ident, {"batch_id": ident, "status": "RUNNING", "owner_uid": "u1"}, batch=True)
    updates: queue.Queue[str] = queue.Queue()
    ended: queue.Queue[BaseException] = queue.Queue()

    def follow_it() -> None:
        try:
            if kind == "job":
                follow(stores.jobs, ident, on_update=lambda d: updates.put(d.status.value), timeout_s=90)
            else:
                follow_batch(stores.jobs, ident, on_update=lambda d: updates.put(d.status.value), timeout_s=90)
        except BaseException as exc:
            ended.put(exc)

    threading.Thread(target=follow_it, daemon=True).start()
    assert updates.get(timeout=30) in ("QUEUED", "RUNNING")  # the listener is live
    bad = {"status": "QUEUED", "attempt": "many"} if kind == "job" else {"status": "QUEUED", "total": "all"}
    write_by_hand(stores.jobs, ident, {**bad, "owner_uid": "u1"}, batch=kind == "batch")
    exc = ended.get(timeout=20)
    assert isinstance(exc, UnreadableDocumentError), exc
    assert exc.message.startswith(f"{kind} document {ident} does not read as a {kind}: ")


def test_notes_are_merged_into_the_document(jobs: Jobs) -> None:
    job = unique("note")
    jobs.create_job(job, queued())
    jobs.note(job, {"last_error": ErrorBlock.internal("x").wire()})
    doc = read(jobs, job)
    assert doc.last_error == ErrorBlock.internal("x") and doc.status is JobStatus.QUEUED
    with pytest.raises(FileNotFoundError):
        jobs.note(unique("none"), {"x": 1})


def test_a_batch_belongs_to_its_first_owner(jobs: Jobs) -> None:
    batch = unique("batch")
    first = BatchSummary(status=JobStatus.QUEUED, counts={"QUEUED": 2}, total=2, progress=0.0, eta_s=None, failed=[])
    assert jobs.claim_batch(batch, "u1", {"spec_uri": "gs://s/jobs/b.json"}, first) is None
    doc = jobs.get_batch(batch)
    assert doc is not None and doc.status == JobStatus.QUEUED and doc.total == 2 and doc.failed == []
    assert doc.counts == {"QUEUED": 2} and doc.eta_s is None and "eta_s" in doc.wire()
    assert jobs.claim_batch(batch, "u2", {"spec_uri": "gs://s/jobs/other.json"}) == "u1"
    assert jobs.claim_batch(batch, "u1", {"spec_uri": "gs://s/jobs/b2.json"}) is None
    doc = jobs.get_batch(batch)
    assert doc is not None and doc.owner_uid == "u1" and doc.spec_uri == "gs://s/jobs/b2.json"
    job = unique("scene")
    jobs.create_job(job, queued(batch_id=batch))
    [scene] = jobs.batch_jobs(batch)
    assert scene == read(jobs, job) and scene.batch_id == batch and scene.status is JobStatus.QUEUED


def test_a_batch_summary_never_loses_progress(jobs: Jobs) -> None:
    batch = unique("summary")
    seen: list[BatchDocument | None] = []

    def summary(progress: float) -> Callable[[float, BatchDocument | None], BatchSummary]:
        def make(created: float, doc: BatchDocument | None) -> BatchSummary:
            seen.append(doc)
            return BatchSummary(
                status=JobStatus.RUNNING, counts={"RUNNING": 1}, total=1, progress=progress, eta_s=None, failed=[]
            )

        return make

    jobs.save_batch(batch, summary(0.5))
    assert seen == [None]  # nothing stored yet
    jobs.claim_batch(batch, "u1", {"scenes": ["a"]})
    jobs.save_batch(batch, summary(0.2))
    doc = jobs.get_batch(batch)
    assert doc is not None and doc.progress == 0.5 and doc.scenes == ["a"] and doc.batch_id == batch
    assert doc.status is JobStatus.RUNNING and doc.counts == {"RUNNING": 1}
    last = seen[-1]
    assert last is not None and last.scenes == ["a"]  # the summary is made from the document as stored


def test_a_refusal_is_recorded_once(jobs: Jobs) -> None:
    refusal = unique("refusal")
    jobs.record_refusal(refusal, {"job_id": "j", "owner_uid": "u2"})
    jobs.record_refusal(refusal, {"job_id": "j", "owner_uid": "u3"})  # a redelivery: nothing new, no error


def test_one_launch_at_a_time(jobs: Jobs) -> None:
    job = unique("launch")
    jobs.create_job(job, queued(spec_generation="1"))
    assert not jobs.claim_launch(job, "", 60.0)  # its request is not out yet
    jobs.claim_publish(job, "1")
    assert jobs.claim_launch(job, "", 60.0)
    assert not jobs.claim_launch(job, "", 60.0)  # one in flight
    jobs.release_launch(job, ErrorBlock.internal("quota"))
    failed = read(jobs, job)
    assert failed.launch_error == ErrorBlock.internal("quota") and failed.launch_state == "failed"
    assert jobs.claim_launch(job, "", 60.0)
    assert isinstance(read(jobs, job).launch_requested_at, datetime)
    jobs.record_launch(job, "exec-1", 2)
    doc = read(jobs, job)
    assert doc.execution == "exec-1" and doc.execution_tasks == 2 and doc.launches == 1
    assert doc.launch_state == "launched" and doc.launch_error is None and isinstance(doc.launched_at, datetime)
    assert not jobs.claim_launch(job, "", 60.0)  # an execution is recorded
    assert jobs.claim_launch(job, "exec-1", 60.0)


def test_owner_slots_are_granted_up_to_the_cap_and_freed_as_jobs_end(jobs: Jobs) -> None:
    owner = unique("owner")
    a, b, c, d = (unique(n) for n in "abcd")
    assert jobs.reserve_slots(owner, [a], 2) == SlotClaim(held=0, new=1, granted=True)
    assert jobs.reserve_slots(owner, [a], 2) == SlotClaim(held=1, new=0, granted=True)  # the same job again
    assert jobs.reserve_slots(owner, [b, c], 2) == SlotClaim(held=1, new=2, granted=False)  # all or nothing
    assert jobs.reserve_slots(owner, [b], 2) == SlotClaim(held=1, new=1, granted=True)
    assert jobs.reserve_slots(owner, [c], 2) == SlotClaim(held=2, new=1, granted=False)
    assert jobs.reserve_slots(unique("other"), [c], 2).granted  # another owner's cap is their own
    # The reserved job appears and runs: it holds its one slot; once it ends, the slot is free.
    jobs.create_job(a, queued(owner=owner))
    jobs.mark_running(a)
    assert jobs.reserve_slots(owner, [c], 2) == SlotClaim(held=2, new=1, granted=False)
    jobs.fail(a, ErrorBlock.internal("x"))
    assert jobs.reserve_slots(owner, [c], 2) == SlotClaim(held=1, new=1, granted=True)
    # A job queued without a reservation (a trusted backend's bucket drop) counts too.
    jobs.create_job(d, queued(owner=owner))
    assert jobs.reserve_slots(owner, [unique("e")], 2) == SlotClaim(held=3, new=1, granted=False)


def test_a_slot_reserved_to_run_an_ended_job_again_holds_until_it_runs(jobs: Jobs) -> None:
    owner = unique("owner")
    job = unique("again")
    jobs.create_job(job, queued(owner=owner))
    jobs.fail(job, ErrorBlock.internal("x"))
    assert jobs.reserve_slots(owner, [job], 1) == SlotClaim(held=0, new=1, granted=True)
    # Its spec is on its way to the spec function: the job ended before the reservation.
    assert jobs.reserve_slots(owner, [unique("next")], 1) == SlotClaim(held=1, new=1, granted=False)


# ---- Blobs ----------------------------------------------------------------------------------


@pytest.fixture(params=KINDS)
def blobs(request: pytest.FixtureRequest) -> Iterator[tuple[Blobs, str]]:
    """A store and a prefix of its own in a bucket that exists."""
    if request.param == "fake":
        yield FakeBlobs(), f"gs://bucket/{unique('blobs')}/"
        return
    stores: Clients = request.getfixturevalue("stores")
    yield stores.blobs, f"gs://{stores.settings.media_bucket}/{unique('blobs')}/"


def test_objects_are_written_read_listed_and_deleted(blobs: tuple[Blobs, str]) -> None:
    store, prefix = blobs
    assert not store.exists(prefix + "a")
    store.write_bytes(prefix + "a", b"hello", content_type="text/plain")
    store.write_bytes(prefix + "b/c", b"x", content_type="text/plain")
    assert store.exists(prefix + "a") and store.read_bytes(prefix + "a") == b"hello"
    assert store.size(prefix + "a") == 5
    assert sorted(store.list_uris(prefix)) == [prefix + "a", prefix + "b/c"]
    store.delete(prefix + "a")
    store.delete(prefix + "a")  # deleting what is gone is no error
    assert not store.exists(prefix + "a") and store.list_uris(prefix) == [prefix + "b/c"]


def test_a_missing_object_is_file_not_found(blobs: tuple[Blobs, str], tmp_path: Path) -> None:
    store, prefix = blobs
    with pytest.raises(FileNotFoundError):
        store.read_bytes(prefix + "none")
    with pytest.raises(FileNotFoundError):
        store.size(prefix + "none")
    with pytest.raises(FileNotFoundError):
        store.download(prefix + "none", tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_a_read_stops_one_byte_past_the_limit(blobs: tuple[Blobs, str]) -> None:
    store, prefix = blobs
    store.write_bytes(prefix + "big", b"0123456789", content_type="application/octet-stream")
    assert store.read_bytes(prefix + "big", max_bytes=3) == b"0123"
    assert store.read_bytes(prefix + "big", max_bytes=100) == b"0123456789"


def test_a_replaced_generation_is_gone(blobs: tuple[Blobs, str]) -> None:
    store, prefix = blobs
    first = store.write_bytes(prefix + "spec.json", b"{}", content_type="application/json")
    assert store.read_bytes(prefix + "spec.json", generation=str(first)) == b"{}"
    assert store.size(prefix + "spec.json", generation=str(first)) == 2
    second = store.write_bytes(prefix + "spec.json", b"[]", content_type="application/json")
    assert second != first
    assert store.read_bytes(prefix + "spec.json", generation=str(second)) == b"[]"
    with pytest.raises(FileNotFoundError):
        store.read_bytes(prefix + "spec.json", generation=str(first))


def test_a_create_only_write_loses_to_an_existing_object(blobs: tuple[Blobs, str]) -> None:
    store, prefix = blobs
    store.write_bytes(prefix + "once", b"1", content_type="text/plain", if_generation_match=0)
    with pytest.raises(FileExistsError):
        store.write_bytes(prefix + "once", b"2", content_type="text/plain", if_generation_match=0)
    assert store.read_bytes(prefix + "once") == b"1"


def test_files_go_up_and_come_down_within_a_size_cap(blobs: tuple[Blobs, str], tmp_path: Path) -> None:
    store, prefix = blobs
    src = tmp_path / "in.bin"
    src.write_bytes(b"z" * 1000)
    store.upload_file(src, prefix + "f.bin", content_type="application/octet-stream")
    store.download(prefix + "f.bin", tmp_path / "out.bin")
    assert (tmp_path / "out.bin").read_bytes() == src.read_bytes()
    with pytest.raises(SceneRenderError):
        store.download(prefix + "f.bin", tmp_path / "capped.bin", max_bytes=999)


def test_signed_urls_name_the_object_and_expire_when_asked(blobs: tuple[Blobs, str]) -> None:
    store, prefix = blobs
    store.write_bytes(prefix + "v.mp4", b"v", content_type="video/mp4")
    before = datetime.now(UTC).replace(microsecond=0)
    url, expires = store.signed_url(prefix + "v.mp4", 600)
    assert "v.mp4" in url and 599 <= (expires - before).total_seconds() <= 601
    put, put_expires = store.signed_upload_url(prefix + "up.mp4", 900, content_type="video/mp4", max_bytes=10)
    assert "up.mp4" in put and 899 <= (put_expires - before).total_seconds() <= 901


# ---- Bus ------------------------------------------------------------------------------------


@dataclass
class BusUnderTest:
    bus: Bus
    topic: str
    received: Callable[[int], list[tuple[dict[str, Any], dict[str, str]]]]


@pytest.fixture(params=KINDS)
def bus(request: pytest.FixtureRequest) -> BusUnderTest:
    topic = unique("topic")
    if request.param == "fake":
        fake = FakeBus()
        return BusUnderTest(fake, topic, lambda n: [(p, a) for t, p, a in fake.published if t == topic])
    settings: Settings = request.getfixturevalue("settings")
    ensure_topic(settings, topic)
    subscription = ensure_subscription(settings, topic + "-sub", topic)
    subscriber = subscriber_client(settings)

    def received(n: int) -> list[tuple[dict[str, Any], dict[str, str]]]:
        got: list[tuple[dict[str, Any], dict[str, str]]] = []
        deadline = time.monotonic() + 60
        while len(got) < n and time.monotonic() < deadline:
            response = subscriber.pull(request={"subscription": subscription, "max_messages": 10}, timeout=10)
            for m in response.received_messages:
                got.append((json.loads(m.message.data), dict(m.message.attributes)))
            if response.received_messages:
                subscriber.acknowledge(
                    request={"subscription": subscription, "ack_ids": [m.ack_id for m in response.received_messages]}
                )
        return got

    return BusUnderTest(Publisher(settings), topic, received)


def test_a_published_body_and_its_attributes_arrive_as_sent(bus: BusUnderTest) -> None:
    body = {"job_id": "j", "spec": {"segments": [{"id": "a"}]}, "progress": 0.5}
    message_id = bus.bus.publish(bus.topic, body, job_id="j", status="FAILED")
    assert isinstance(message_id, str) and message_id
    assert bus.received(1) == [(body, {"job_id": "j", "status": "FAILED"})]


def test_many_bodies_are_published_at_once(bus: BusUnderTest) -> None:
    bodies = [{"index": i} for i in range(5)]
    bus.bus.publish_many(bus.topic, bodies, job_id="j")
    got = bus.received(5)
    assert sorted(p["index"] for p, _ in got) == list(range(5))
    assert all(a == {"job_id": "j"} for _, a in got)


def test_the_real_side_ran_on_the_emulators(stores: Clients) -> None:
    # The real side of every pair above ran against these emulators, not against a default client.
    settings = stores.settings
    assert settings.firestore_emulator_host and settings.pubsub_emulator_host and settings.storage_emulator_host
    assert stores.jobs.client._emulator_host == settings.firestore_emulator_host
    assert stores.blobs.emulated
