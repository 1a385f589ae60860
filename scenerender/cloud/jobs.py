"""Job documents in Firestore: ``render_jobs/{job_id}`` (CONTRACT.md section 4).

Every state change is a transaction or a create-only write, so redelivered events and
concurrent workers cannot move a job backwards: QUEUED -> RUNNING -> COMPLETED | FAILED,
and progress never decreases.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import firestore

from scenerender.cloud.batch_docs import BatchDocuments
from scenerender.cloud.google_errors import translate
from scenerender.cloud.liveness import beat_is_fresh
from scenerender.cloud.owner_slots import OwnerSlotDocuments
from scenerender.errors import SceneRenderError, UnreadableDocumentError
from scenerender.messages import (
    ACTIVE,
    ErrorBlock,
    JobDocument,
    JobOutput,
    JobStatus,
    is_active,
    may_take,
    read_job,
)
from scenerender.settings import Settings

log = logging.getLogger(__name__)

BUSY = -1  # mark_running: another worker is alive on the job


# A change of a job is a partial update: field -> value, where a value may be one of
# Firestore's sentinels (SERVER_TIMESTAMP, Increment), so it is written as a plain dict.
Fields = dict[str, Any]


def run_start(doc: JobDocument, worker: str, execution: str, stale_after_s: float, stamp: Any) -> Fields | int:
    """What ``mark_running`` writes on ``doc`` (``stamp``: the time to record), or why it writes
    nothing: 0 when the job has ended, ``BUSY`` when another worker is alive on it."""
    if doc.status.ended:
        return 0
    if doc.status == JobStatus.RUNNING and beat_is_fresh(doc.heartbeat_at, stale_after_s):
        return BUSY
    fields: Fields = {
        "status": JobStatus.RUNNING.value,
        "attempt": doc.attempt + 1,
        "stage": "starting",
        "worker": worker,
        "heartbeat_at": stamp,
    }
    if execution:
        # The execution the sweeper asks about is the one actually rendering the job.
        fields["execution"] = execution
    if doc.status == JobStatus.QUEUED:
        fields["started_at"] = stamp
    return fields


def job_document(snap: Any) -> JobDocument:
    """A job's snapshot as the model (``read_job``)."""
    return read_job(snap.to_dict() or {}, snap.id)


def publish_is_free(doc: JobDocument, generation: str) -> bool:
    """``claim_publish``: the job is QUEUED from this spec generation and its request not yet sent."""
    fresh = doc.status == JobStatus.QUEUED and not doc.request_published
    return fresh and doc.spec_generation == str(generation)


def launch_is_free(doc: JobDocument, expected_execution: str, stale_s: float) -> bool:
    """``claim_launch``: the job waits on a published request, still at ``expected_execution``,
    and no other launch was asked for less than ``stale_s`` ago."""
    if not is_active(doc.status) or not doc.request_published or doc.execution != expected_execution:
        return False
    return not (doc.launch_state == "requested" and beat_is_fresh(doc.launch_requested_at, stale_s))


def completed_fields(output: JobOutput) -> Fields:
    """What ``complete`` writes: the output block with its nulls (CONTRACT.md section 2)."""
    done = {"status": JobStatus.COMPLETED.value, "stage": "done", "progress": 1.0}
    return {**done, "output": output.wire(), "error": None}


def translate_error(exc: Exception, what: str) -> SceneRenderError:
    """A Firestore client error as ours (``scenerender.cloud.google_errors`` decides what is transient)."""
    return translate(exc, f"Firestore: {what}")


class JobStore(BatchDocuments, OwnerSlotDocuments):
    """Reads and moves job documents (and, through its mixins, batches, refusals and owner slots)."""

    def __init__(self, client: firestore.Client, settings: Settings) -> None:
        self.client = client
        # A RUNNING job whose heartbeat is older than this has lost its worker; a
        # redelivered request may take it over.
        self.stale_after_s = settings.heartbeat_stale_s
        self.collection = client.collection(settings.jobs_collection)
        self.batches = client.collection(settings.batches_collection)
        self.refusals = client.collection(settings.refusals_collection)
        self.owners = client.collection(settings.owners_collection)

    def _ref(self, job_id: str) -> Any:
        return self.collection.document(job_id)

    def create_job(self, job_id: str, doc: JobDocument) -> bool:
        """Create the job document; False if it already exists (nothing is changed then)."""
        now = firestore.SERVER_TIMESTAMP
        fields = {"job_id": job_id, "created_at": now, "updated_at": now, **doc.wire()}
        if doc.status.ended:
            fields["finished_at"] = now
        try:
            self._ref(job_id).create(fields)
        except gexc.AlreadyExists:
            return False
        except gexc.Conflict:
            return False
        except Exception as exc:
            raise translate_error(exc, f"create job {job_id}") from exc
        return True

    def get(self, job_id: str) -> JobDocument | None:
        try:
            snap = self._ref(job_id).get()
        except Exception as exc:
            raise translate_error(exc, f"read job {job_id}") from exc
        return job_document(snap) if snap.exists else None

    def _transition(self, job_id: str, change: Callable[[JobDocument], Fields | None]) -> Fields | None:
        """Apply ``change`` (current doc -> fields to write, or None) in one transaction."""
        ref = self._ref(job_id)

        @firestore.transactional
        def run(transaction: Any) -> Fields | None:
            snap = ref.get(transaction=transaction)
            if not snap.exists:
                return None
            fields = change(job_document(snap))
            if fields:
                transaction.update(ref, {**fields, "updated_at": firestore.SERVER_TIMESTAMP})
            return fields

        try:
            result: Fields | None = run(self.client.transaction())
        except Exception as exc:
            raise translate_error(exc, f"update job {job_id}") from exc
        return result

    def mark_running(self, job_id: str, worker: str = "", execution: str = "") -> int:
        """QUEUED, or RUNNING without a live worker -> RUNNING; returns the attempt.

        0 if the job has ended; ``BUSY`` if another worker is alive on it (its heartbeat is fresh).
        """
        busy = False

        def change(doc: JobDocument) -> Fields | None:
            nonlocal busy
            start = run_start(doc, worker, execution, self.stale_after_s, firestore.SERVER_TIMESTAMP)
            busy = start == BUSY
            return start if isinstance(start, dict) else None

        fields = self._transition(job_id, change)
        if busy:
            return BUSY
        return int(fields["attempt"]) if fields else 0

    def requeue(self, job_id: str, doc: JobDocument) -> bool:
        """A new spec for an ended job: back to QUEUED, the earlier run kept in ``history``.

        False (and nothing changed) while the job is still QUEUED or RUNNING, or when the job
        is not ``doc.owner_uid``'s to render: checked in the same transaction, so no
        other owner can slip in between the caller's check and the write.
        """

        def change(current: JobDocument) -> Fields | None:
            if not current.status.ended or not may_take(current, doc.owner_uid):
                return None
            return {**doc.rerun(current), "created_at": firestore.SERVER_TIMESTAMP}

        return self._transition(job_id, change) is not None

    def note(self, job_id: str, fields: Fields) -> None:
        """Plain fields that do not move the job's state (e.g. a refused re-submission)."""
        try:
            self._ref(job_id).update({**fields, "updated_at": firestore.SERVER_TIMESTAMP})
        except Exception as exc:
            raise translate_error(exc, f"update job {job_id}") from exc

    def heartbeat(self, job_id: str) -> None:
        """The worker is alive on this job (written outside a transaction: last writer wins)."""
        try:
            self._ref(job_id).update({"heartbeat_at": firestore.SERVER_TIMESTAMP})
        except Exception as exc:
            raise translate_error(exc, f"heartbeat {job_id}") from exc

    def claim_publish(self, job_id: str, generation: str) -> bool:
        """Claim the sending of this run's render request: True for exactly one caller.

        Concurrent deliveries of one notification all find the job QUEUED; only the one
        that wins this transaction publishes.
        """

        def change(doc: JobDocument) -> Fields | None:
            if not publish_is_free(doc, generation):
                return None
            return {"request_published": True}

        return self._transition(job_id, change) is not None

    def release_publish(self, job_id: str) -> None:
        """The claimed publish failed: let a redelivered event try again."""
        try:
            self._ref(job_id).update({"request_published": False})
        except Exception as exc:
            raise translate_error(exc, f"update job {job_id}") from exc

    def claim_launch(self, job_id: str, expected_execution: str, stale_s: float) -> bool:
        """Claim the next launch for this job: True for exactly one caller.

        The job must be QUEUED or RUNNING with its request published, its recorded execution
        still ``expected_execution`` ("" for none), and no other launch in flight (one
        requested less than ``stale_s`` ago).
        """

        def change(doc: JobDocument) -> Fields | None:
            if not launch_is_free(doc, expected_execution, stale_s):
                return None
            return {"launch_state": "requested", "launch_requested_at": firestore.SERVER_TIMESTAMP}

        return self._transition(job_id, change) is not None

    def record_launch(self, job_id: str, execution: str, task_count: int) -> None:
        """The claimed launch started ``execution``."""
        self.note(
            job_id,
            {
                "launch_state": "launched",
                "execution": execution,
                "execution_tasks": task_count,
                "launched_at": firestore.SERVER_TIMESTAMP,
                "launches": firestore.Increment(1),
                "launch_error": None,
            },
        )

    def release_launch(self, job_id: str, error: ErrorBlock) -> None:
        """The claimed launch failed: recorded, and claimable again at once."""
        self.note(job_id, {"launch_state": "failed", "launch_error": error.wire()})

    def unfinished(self) -> list[JobDocument]:
        """Every QUEUED or RUNNING job document (the sweeper's round)."""
        try:
            snaps = self.collection.where(
                filter=firestore.FieldFilter("status", "in", [s.value for s in ACTIVE])
            ).stream()
            docs: list[JobDocument] = []
            for snap in snaps:
                try:
                    docs.append(job_document(snap))
                except SceneRenderError as exc:
                    # Left out, not fatal: one unreadable document must not stop every other
                    # job's sweep. It is said each round until someone mends or ends it.
                    log.error("unfinished jobs: %s", exc.message)
            return docs
        except Exception as exc:
            raise translate_error(exc, "find unfinished jobs") from exc

    def set_progress(self, job_id: str, stage: str, progress: float) -> None:
        """Stage and progress of a RUNNING job; a lower progress than recorded is ignored."""

        def change(doc: JobDocument) -> Fields | None:
            if doc.status != JobStatus.RUNNING:
                return None
            value = max(doc.progress, min(1.0, progress))
            return {"stage": stage, "progress": value, "heartbeat_at": firestore.SERVER_TIMESTAMP}

        self._transition(job_id, change)

    def _finish(self, job_id: str, fields: Fields) -> bool:
        def change(doc: JobDocument) -> Fields | None:
            if doc.status.ended:
                return None  # never backwards, never twice
            return {**fields, "finished_at": firestore.SERVER_TIMESTAMP}

        return self._transition(job_id, change) is not None

    def complete(self, job_id: str, output: JobOutput) -> bool:
        """-> COMPLETED with the output block; False if the job had already ended."""
        return self._finish(job_id, completed_fields(output))

    def fail(self, job_id: str, error: ErrorBlock) -> bool:
        """-> FAILED with the error block; False if the job had already ended."""
        return self._finish(job_id, {"status": JobStatus.FAILED.value, "stage": "failed", "error": error.wire()})

    def watch(self, job_id: str, callback: Callable[[JobDocument | UnreadableDocumentError | None], None]) -> Any:
        """Call ``callback`` with the document on every change (Firestore realtime listener).

        A version that does not read as a job is handed over as its error: raised in the
        listener's thread it would only end the listener, and whoever follows would wait out
        their timeout. Returns the watch; call ``.unsubscribe()`` to stop.
        """

        def on_snapshot(snapshots: list[Any], changes: Any, read_time: Any) -> None:
            for snap in snapshots:
                doc: JobDocument | UnreadableDocumentError | None
                try:
                    doc = job_document(snap) if snap.exists else None
                except UnreadableDocumentError as exc:
                    doc = exc
                callback(doc)

        return self._ref(job_id).on_snapshot(on_snapshot)
