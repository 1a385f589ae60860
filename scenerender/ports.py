"""The interfaces the pipeline's steps take their stores by: one place, each implemented twice.

    Blobs  ◄── cloud.storage.GcsBlobStore (Cloud Storage, fake-gcs-server)   tests/unit/cloud_fakes.FakeBlobs
    Jobs   ◄── cloud.jobs.JobStore (Firestore and its emulator)               tests/unit/cloud_fakes.FakeJobs
    Bus    ◄── cloud.bus.Publisher (Pub/Sub and its emulator)                 tests/unit/cloud_fakes.FakeBus

The doors (functions, worker, CLI) hand in the real adapters; a unit test hands in the fakes.
tests/integration/test_ports.py runs one contract suite against both of each pair, on the
emulators, so a fake cannot drift from what it stands in for.

At the package root (beside ``messages``): the core's segment cache, the cloud adapters and
the pipeline all name these, and none of those layers may import another's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    # Named in the Protocols' signatures only. The render core's segment cache takes ``Blobs``
    # from here, and a local render has no use for the pipeline's pydantic models (building
    # them costs ~20 ms and 0.5 MB in every `scenerender render`).
    from scenerender.messages import BatchDocument, BatchSummary, ErrorBlock, JobDocument, JobOutput


class Blobs(Protocol):
    """Object storage by ``gs://bucket/name`` URI. A missing object (or generation) raises
    ``MissingError`` (a ``FileNotFoundError``); a lost ``if_generation_match`` race
    ``AlreadyWrittenError`` (a ``FileExistsError``)."""

    def read_bytes(self, uri: str, *, generation: str | None = None, max_bytes: int | None = None) -> bytes: ...
    def size(self, uri: str, *, generation: str | None = None) -> int: ...
    def download(self, uri: str, dest: Path, *, max_bytes: int | None = None) -> None: ...
    def upload_file(self, src: Path, uri: str, *, content_type: str) -> None: ...
    def write_bytes(
        self, uri: str, data: bytes, *, content_type: str, if_generation_match: int | None = None
    ) -> int: ...
    def exists(self, uri: str) -> bool: ...
    def delete(self, uri: str) -> None: ...
    def list_uris(self, prefix_uri: str) -> list[str]: ...
    def signed_url(self, uri: str, ttl_s: int) -> tuple[str, datetime]: ...
    def signed_upload_url(self, uri: str, ttl_s: int, *, content_type: str, max_bytes: int) -> tuple[str, datetime]: ...


class LaunchRecords(Protocol):
    """The job store's side of a launch (``scenerender.cloud.launcher``)."""

    def claim_launch(self, job_id: str, expected_execution: str, stale_s: float) -> bool: ...
    def record_launch(self, job_id: str, execution: str, task_count: int) -> None: ...
    def release_launch(self, job_id: str, error: ErrorBlock) -> None: ...


@dataclass(frozen=True)
class SlotClaim:
    """The outcome of ``OwnerSlots.reserve_slots``."""

    held: int  # the owner's jobs QUEUED, RUNNING or reserved and not yet created, before this claim
    new: int  # the claim's job ids not among them (a job already active takes no second slot)
    granted: bool  # held + new <= cap: the new ones are reserved; else nothing was written


class OwnerSlots(Protocol):
    """The per-owner cap on QUEUED and RUNNING jobs (``max_active_jobs_per_owner``).

    Counting the active jobs and then writing a spec is a check-then-write race: a user's
    concurrent submissions would all count the same jobs and all pass. A claim therefore
    counts the owner's active jobs and the slots reserved for submissions whose jobs do not
    exist yet, and takes slots for the new job ids only if they fit, atomically (on
    Firestore: create-only slot documents, ``scenerender.cloud.owner_slots``), so of N
    concurrent submissions exactly as many as fit are granted.
    """

    def reserve_slots(self, owner_uid: str, job_ids: Sequence[str], cap: int) -> SlotClaim: ...


class Jobs(LaunchRecords, OwnerSlots, Protocol):
    """Job and batch documents (``render_jobs``, ``render_batches``, ``render_refusals``).

    Every state change is one transaction: a job never moves backwards, never ends twice.
    Documents are read back as the models (``JobDocument``, ``BatchDocument``); a fake and the
    Firestore adapter validate what they hold the same way (tests/integration/test_ports.py).
    """

    def create_job(self, job_id: str, doc: JobDocument) -> bool: ...
    def get(self, job_id: str) -> JobDocument | None: ...
    def mark_running(self, job_id: str, worker: str = "", execution: str = "") -> int: ...
    def heartbeat(self, job_id: str) -> None: ...
    def claim_publish(self, job_id: str, generation: str) -> bool: ...
    def release_publish(self, job_id: str) -> None: ...
    def requeue(self, job_id: str, doc: JobDocument) -> bool: ...
    # ``note`` and the ``fields`` below are partial writes (field -> value, the store's own
    # timestamps among them), not documents: free-form by nature.
    def note(self, job_id: str, fields: dict[str, Any]) -> None: ...
    def unfinished(self) -> list[JobDocument]: ...
    def batch_jobs(self, batch_id: str) -> list[JobDocument]: ...
    def get_batch(self, batch_id: str) -> BatchDocument | None: ...
    def claim_batch(
        self, batch_id: str, owner_uid: str | None, fields: dict[str, Any], initial: BatchSummary | None = None
    ) -> str | None: ...
    def record_refusal(self, refusal_id: str, fields: dict[str, Any]) -> None: ...
    def save_batch(self, batch_id: str, summary: Callable[[float, BatchDocument | None], BatchSummary]) -> None: ...
    def set_progress(self, job_id: str, stage: str, progress: float) -> None: ...
    def complete(self, job_id: str, output: JobOutput) -> bool: ...
    def fail(self, job_id: str, error: ErrorBlock) -> bool: ...


class Bus(Protocol):
    """Pub/Sub topics of the settings' project; a body is a JSON object.

    The payload is the message's ``wire()`` (``RenderRequest``, a work item's claim...): the bus
    carries any JSON body, so it takes the serialised form rather than one model type."""

    def publish(self, topic_name: str, payload: dict[str, Any], **attributes: str) -> str: ...
    def publish_many(self, topic_name: str, payloads: list[dict[str, Any]], **attributes: str) -> None: ...


class Stores(Protocol):
    """The three stores a door hands down (``scenerender.cloud.clients.Clients``, or fakes)."""

    @property
    def blobs(self) -> Blobs: ...
    @property
    def jobs(self) -> Jobs: ...
    @property
    def bus(self) -> Bus: ...
