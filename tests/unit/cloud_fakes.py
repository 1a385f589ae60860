"""In-memory stand-ins for the stores (``scenerender.ports``), for unit tests of the pipeline's doors.

tests/integration/test_ports.py runs one contract suite on these and on the real adapters
(on the emulators), so what a unit test learns from a fake holds for the real store.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from scenerender.cloud.jobs import completed_fields, launch_is_free, publish_is_free, run_start
from scenerender.cloud.owner_slots import reservation_holds
from scenerender.core.render import RenderResult
from scenerender.errors import AlreadyWrittenError, LimitExceededError, MissingError, SceneRenderError
from scenerender.messages import (
    BatchDocument,
    BatchSummary,
    ErrorBlock,
    JobDocument,
    JobOutput,
    JobStatus,
    RenderResultBlock,
    SignedObject,
    is_active,
    may_take,
    read_batch,
    read_job,
)
from scenerender.ports import SlotClaim

HEARTBEAT_STALE_S = 45.0  # Settings().heartbeat_stale_s


def _now() -> datetime:
    return datetime.now(UTC)


def measured_result(**fields: Any) -> dict[str, Any]:
    """A render's result as the worker reports it (``RenderResult.to_dict``): 2 s of 640x360,
    silent unless ``fields`` say otherwise (so loudness and true peak are null)."""
    base = {"duration_s": 2.0, "width": 640, "height": 360, "fps": 30.0, "size_bytes": 1000}
    silent = {"loudness_lufs": None, "true_peak_db": None, "av_drift_ms": 0.0}
    return RenderResult(**{**base, **silent, **fields}).to_dict()


def rendered(uri: str, **fields: Any) -> JobOutput:
    """A COMPLETED job's output as the completion step writes it: the MP4 at ``uri`` signed."""
    signed = SignedObject(
        uri=uri, url=f"https://signed.example/{uri[5:]}", url_expires_at=_now().replace(microsecond=0)
    )
    return JobOutput.of(signed, RenderResultBlock.model_validate(measured_result(**fields)), {})


def output_of(doc: JobDocument | None) -> JobOutput:
    """The output of a job that must have COMPLETED (the test fails with its error otherwise)."""
    assert doc is not None and doc.status is JobStatus.COMPLETED and doc.output is not None, doc
    return doc.output


def error_of(doc: JobDocument | None) -> ErrorBlock:
    """The error of a job that must have FAILED."""
    assert doc is not None and doc.status is JobStatus.FAILED and doc.error is not None, doc
    return doc.error


class FakeBlobs:
    """Objects by URI, each write a new generation (as GCS without versioning, only the latest
    generation can be read); ``generations`` may also be set by a test."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.generations: dict[str, str] = {}
        self.reads: list[str] = []  # every URI whose bytes were read
        self._next_generation = 0

    def _check_generation(self, uri: str, generation: str | None) -> None:
        if uri not in self.objects:
            raise MissingError(f"Cloud Storage: {uri}: not found")
        if generation is not None and uri in self.generations and self.generations[uri] != generation:
            raise MissingError(f"Cloud Storage: {uri}#{generation}: not found")

    def _put(self, uri: str, data: bytes) -> int:
        self._next_generation += 1
        self.objects[uri] = data
        self.generations[uri] = str(self._next_generation)
        return self._next_generation

    def read_bytes(self, uri: str, *, generation: str | None = None, max_bytes: int | None = None) -> bytes:
        self._check_generation(uri, generation)
        self.reads.append(uri)
        data = self.objects[uri]
        return data if max_bytes is None else data[: max_bytes + 1]

    def size(self, uri: str, *, generation: str | None = None) -> int:
        self._check_generation(uri, generation)
        return len(self.objects[uri])

    def write_bytes(self, uri: str, data: bytes, *, content_type: str, if_generation_match: int | None = None) -> int:
        current = self.generations.get(uri, "?" if uri in self.objects else "0")
        if if_generation_match is not None and current != str(if_generation_match):
            raise AlreadyWrittenError(f"Cloud Storage: {uri}: generation is not {if_generation_match}")
        return self._put(uri, data)

    def download(self, uri: str, dest: Path, *, max_bytes: int | None = None) -> None:
        self._check_generation(uri, None)
        data = self.objects[uri]
        if max_bytes is not None and len(data) > max_bytes:
            raise LimitExceededError(f"{uri} is {len(data)} bytes; the limit is {max_bytes}")
        dest.write_bytes(data)

    def upload_file(self, src: Path, uri: str, *, content_type: str) -> None:
        self._put(uri, src.read_bytes())

    def signed_url(self, uri: str, ttl_s: int) -> tuple[str, datetime]:
        expires = _now().replace(microsecond=0) + timedelta(seconds=ttl_s)
        return f"https://signed.example/{uri[5:]}?X-Goog-Signature=abc", expires

    def signed_upload_url(self, uri: str, ttl_s: int, *, content_type: str, max_bytes: int) -> tuple[str, datetime]:
        expires = _now().replace(microsecond=0) + timedelta(seconds=ttl_s)
        return f"https://signed.example/{uri[5:]}?put=1", expires

    def exists(self, uri: str) -> bool:
        return uri in self.objects

    def delete(self, uri: str) -> None:
        self.objects.pop(uri, None)  # deleting what is gone is no error
        self.generations.pop(uri, None)

    def list_uris(self, prefix_uri: str) -> list[str]:
        return sorted(uri for uri in self.objects if uri.startswith(prefix_uri))


@dataclass(frozen=True)
class FakeStores:
    """``ports.Stores`` of fakes, as a door hands them down."""

    blobs: FakeBlobs
    jobs: FakeJobs
    bus: FakeBus


class FakeJobs:
    """``ports.Jobs`` in dicts: ``docs`` (jobs), ``batches``, ``refusals`` and ``owners`` (slots).

    The dicts hold what Firestore would hold (a test may write them as an older version did);
    reads validate them into the models, as ``cloud.jobs.JobStore`` does."""

    def __init__(self) -> None:
        self.docs: dict[str, dict[str, Any]] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self.refusals: dict[str, dict[str, Any]] = {}
        self.owners: dict[str, dict[str, datetime]] = {}

    def create_job(self, job_id: str, doc: JobDocument) -> bool:
        if job_id in self.docs:
            return False
        now = _now()
        fields = {"job_id": job_id, "created_at": now, "updated_at": now, **copy.deepcopy(doc.wire())}
        if doc.status.ended:
            fields["finished_at"] = now
        self.docs[job_id] = fields
        return True

    def _read(self, job_id: str) -> JobDocument | None:
        doc = self.docs.get(job_id)
        return read_job(copy.deepcopy(doc), job_id) if doc is not None else None

    def get(self, job_id: str) -> JobDocument | None:
        return self._read(job_id)

    def _update(self, job_id: str, fields: dict[str, Any]) -> None:
        if job_id not in self.docs:
            raise MissingError(f"Firestore: update job {job_id}: not found")
        self.docs[job_id].update(copy.deepcopy(fields), updated_at=_now())

    def mark_running(self, job_id: str, worker: str = "", execution: str = "") -> int:
        doc = self._read(job_id)
        start = run_start(doc, worker, execution, HEARTBEAT_STALE_S, _now()) if doc is not None else 0
        if not isinstance(start, dict):
            return start
        self._update(job_id, start)
        return int(start["attempt"])

    def heartbeat(self, job_id: str) -> None:
        self._update(job_id, {"heartbeat_at": _now()})

    def claim_publish(self, job_id: str, generation: str) -> bool:
        doc = self._read(job_id)
        if doc is None or not publish_is_free(doc, generation):
            return False
        self._update(job_id, {"request_published": True})
        return True

    def release_publish(self, job_id: str) -> None:
        self._update(job_id, {"request_published": False})

    def requeue(self, job_id: str, doc: JobDocument) -> bool:
        current = self._read(job_id)
        if current is None or not current.status.ended or not may_take(current, doc.owner_uid):
            return False
        self._update(job_id, {**doc.rerun(current), "created_at": _now()})
        return True

    def note(self, job_id: str, fields: dict[str, Any]) -> None:
        self._update(job_id, fields)

    def unfinished(self) -> list[JobDocument]:
        docs = []
        for job_id in list(self.docs):
            with contextlib.suppress(SceneRenderError):  # as the store: an unreadable document is left out
                doc = self._read(job_id)
                if doc is not None and is_active(doc.status):
                    docs.append(doc)
        return docs

    def reserve_slots(self, owner_uid: str, job_ids: Sequence[str], cap: int) -> SlotClaim:
        reserved = self.owners.get(owner_uid, {})
        mine = {j for j, d in self.docs.items() if d.get("owner_uid") == owner_uid and is_active(d.get("status"))}
        now = _now()
        keep = {j: at for j, at in reserved.items() if j in mine or reservation_holds(self._read(j), at, now)}
        held = mine | set(keep)
        new = [j for j in dict.fromkeys(job_ids) if j not in held]
        claim = SlotClaim(held=len(held), new=len(new), granted=len(held) + len(new) <= cap or not new)
        if claim.granted:
            self.owners[owner_uid] = {**keep, **dict.fromkeys(new, now)}
        return claim

    def claim_launch(self, job_id: str, expected_execution: str, stale_s: float) -> bool:
        doc = self._read(job_id)
        if doc is None or not launch_is_free(doc, expected_execution, stale_s):
            return False
        self._update(job_id, {"launch_state": "requested", "launch_requested_at": _now()})
        return True

    def record_launch(self, job_id: str, execution: str, task_count: int) -> None:
        launches = int(self.docs[job_id].get("launches") or 0) + 1
        self._update(
            job_id,
            {
                "launch_state": "launched",
                "execution": execution,
                "execution_tasks": task_count,
                "launched_at": _now(),
                "launches": launches,
                "launch_error": None,
            },
        )

    def release_launch(self, job_id: str, error: ErrorBlock) -> None:
        self._update(job_id, {"launch_state": "failed", "launch_error": error.wire()})

    def set_progress(self, job_id: str, stage: str, progress: float) -> None:
        doc = self._read(job_id)
        if doc is None or doc.status != JobStatus.RUNNING:
            return
        value = max(doc.progress, min(1.0, progress))
        self._update(job_id, {"stage": stage, "progress": value, "heartbeat_at": _now()})

    def _finish(self, job_id: str, fields: dict[str, Any]) -> bool:
        doc = self._read(job_id)
        if doc is None or doc.status.ended:
            return False
        self._update(job_id, {**fields, "finished_at": _now()})
        return True

    def complete(self, job_id: str, output: JobOutput) -> bool:
        return self._finish(job_id, completed_fields(output))

    def fail(self, job_id: str, error: ErrorBlock) -> bool:
        return self._finish(job_id, {"status": JobStatus.FAILED.value, "stage": "failed", "error": error.wire()})

    # -- batches and refusals ------------------------------------------------------------

    def record_refusal(self, refusal_id: str, fields: dict[str, Any]) -> None:
        self.refusals.setdefault(refusal_id, {**copy.deepcopy(fields), "created_at": _now()})

    def get_batch(self, batch_id: str) -> BatchDocument | None:
        doc = self.batches.get(batch_id)
        return read_batch(copy.deepcopy(doc), batch_id) if doc is not None else None

    def claim_batch(
        self, batch_id: str, owner_uid: str | None, fields: dict[str, Any], initial: BatchSummary | None = None
    ) -> str | None:
        stored = self.get_batch(batch_id)
        now = _now()
        if stored is None:
            empty = {"status": JobStatus.QUEUED.value, "counts": {}, "total": 0, "progress": 0.0, "eta_s": None}
            first = {**empty, "failed": [], **(initial.wire() if initial else {}), **copy.deepcopy(fields)}
            self.batches[batch_id] = {**first, "batch_id": batch_id, "owner_uid": owner_uid, "created_at": now}
            return None
        if not may_take(stored, owner_uid):
            return str(stored.owner_uid)
        self.batches[batch_id].update({**copy.deepcopy(fields), "owner_uid": owner_uid, "updated_at": now})
        return None

    def batch_jobs(self, batch_id: str) -> list[JobDocument]:
        return [doc for doc in map(self._read, list(self.docs)) if doc is not None and doc.batch_id == batch_id]

    def save_batch(self, batch_id: str, summary: Callable[[float, BatchDocument | None], BatchSummary]) -> None:
        stored = self.get_batch(batch_id)
        created = stored.created_at if stored is not None and stored.created_at else _now()
        new = summary(created.timestamp(), stored).wire()
        if stored is not None:
            new["progress"] = max(stored.progress, float(new["progress"]))
        doc = self.batches.setdefault(batch_id, {"batch_id": batch_id, "created_at": created})
        doc.update(new, updated_at=_now())


class FakeBus:
    def __init__(self) -> None:
        self.published: list[tuple[str, dict[str, Any], dict[str, str]]] = []

    def publish(self, topic_name: str, payload: dict[str, Any], **attributes: str) -> str:
        self.published.append((topic_name, copy.deepcopy(payload), attributes))
        return str(len(self.published))

    def publish_many(self, topic_name: str, payloads: list[dict[str, Any]], **attributes: str) -> None:
        for payload in payloads:
            self.publish(topic_name, payload, **attributes)
