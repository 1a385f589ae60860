"""Job documents in Firestore: ``render_jobs/{job_id}`` (CONTRACT.md section 4).

Every state change is a transaction or a create-only write, so redelivered events and
concurrent workers cannot move a job backwards: QUEUED -> RUNNING -> COMPLETED | FAILED,
and progress never decreases.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import firestore

from scenerender.cloud.google_errors import translate
from scenerender.errors import SceneRenderError, TransientError
from scenerender.settings import Settings

log = logging.getLogger(__name__)


class JobStatus(StrEnum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"


TERMINAL = frozenset({JobStatus.COMPLETED, JobStatus.FAILED})
BUSY = -1  # mark_running: another worker is alive on the job
BATCH_WRITE_ATTEMPTS = 20


def translate_error(exc: Exception, what: str) -> SceneRenderError:
    """A Firestore client error as ours (``scenerender.cloud.google_errors`` decides what is transient)."""
    return translate(exc, f"Firestore: {what}")


def may_take(doc: dict[str, Any], owner_uid: Any) -> bool:
    """Whether ``owner_uid`` may write over this job or batch document: it is theirs, or it
    has no owner and never rendered anything (an invalid spec that named no owner left it).

    A job or batch belongs to its first owner for good (CONTRACT.md section 5).
    """
    owner = doc.get("owner_uid")
    if owner:
        return bool(owner_uid) and owner == owner_uid
    rendered = doc.get("output") or any(isinstance(h, dict) and h.get("output") for h in doc.get("history") or [])
    return not rendered


def beat_is_fresh(beat: Any, stale_after_s: float) -> bool:
    """A heartbeat timestamp recent enough that its writer counts as alive."""
    return isinstance(beat, datetime) and (datetime.now(UTC) - beat).total_seconds() < stale_after_s


@contextmanager
def keep_beating(beat: Callable[[], None], every_s: float, name: str) -> Iterator[None]:
    """Call ``beat`` every ``every_s`` while the block runs, so a sweep or a claimant can tell a
    live worker from a dead one. A failed beat is logged; the next one may get through."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(every_s):
            try:
                beat()
            except SceneRenderError as exc:
                log.warning("%s: heartbeat failed: %s", name, exc.message)

    thread = threading.Thread(target=loop, name=name, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


CLAIM_ATTEMPTS = 20  # transaction attempts of a batch claim (see claim_batch)


class JobStore:
    """Reads and moves job documents."""

    def __init__(self, client: firestore.Client, settings: Settings) -> None:
        self.client = client
        # A RUNNING job whose heartbeat is older than this has lost its worker; a
        # redelivered request may take it over.
        self.stale_after_s = settings.heartbeat_stale_s
        self.collection = client.collection(settings.jobs_collection)
        self.batches = client.collection(settings.batches_collection)
        self.refusals = client.collection(settings.refusals_collection)

    def _ref(self, job_id: str) -> Any:
        return self.collection.document(job_id)

    def create_job(self, job_id: str, fields: dict[str, Any]) -> bool:
        """Create the job document; False if it already exists (nothing is changed then)."""
        now = firestore.SERVER_TIMESTAMP
        doc = {"job_id": job_id, "created_at": now, "updated_at": now, **fields}
        if doc.get("status") in TERMINAL:
            doc["finished_at"] = now
        try:
            self._ref(job_id).create(doc)
        except gexc.AlreadyExists:
            return False
        except gexc.Conflict:
            return False
        except Exception as exc:
            raise translate_error(exc, f"create job {job_id}") from exc
        return True

    def get(self, job_id: str) -> dict[str, Any] | None:
        try:
            snap = self._ref(job_id).get()
        except Exception as exc:
            raise translate_error(exc, f"read job {job_id}") from exc
        return dict(snap.to_dict() or {}) if snap.exists else None

    def _transition(
        self, job_id: str, change: Callable[[dict[str, Any]], dict[str, Any] | None]
    ) -> dict[str, Any] | None:
        """Apply ``change`` (current doc -> fields to write, or None) in one transaction."""
        ref = self._ref(job_id)

        @firestore.transactional
        def run(transaction: Any) -> dict[str, Any] | None:
            snap = ref.get(transaction=transaction)
            if not snap.exists:
                return None
            fields = change(dict(snap.to_dict() or {}))
            if fields:
                transaction.update(ref, {**fields, "updated_at": firestore.SERVER_TIMESTAMP})
            return fields

        try:
            result: dict[str, Any] | None = run(self.client.transaction())
        except Exception as exc:
            raise translate_error(exc, f"update job {job_id}") from exc
        return result

    def mark_running(self, job_id: str, worker: str = "", execution: str = "") -> int:
        """QUEUED, or RUNNING without a live worker -> RUNNING; returns the attempt.

        0 if the job has ended; ``BUSY`` if another worker is alive on it (its heartbeat is fresh).
        """
        busy = False

        def change(doc: dict[str, Any]) -> dict[str, Any] | None:
            nonlocal busy
            if doc.get("status") in TERMINAL:
                return None
            if doc.get("status") == JobStatus.RUNNING and beat_is_fresh(doc.get("heartbeat_at"), self.stale_after_s):
                busy = True
                return None
            fields: dict[str, Any] = {
                "status": JobStatus.RUNNING.value,
                "attempt": int(doc.get("attempt") or 0) + 1,
                "stage": "starting",
                "worker": worker,
                "heartbeat_at": firestore.SERVER_TIMESTAMP,
            }
            if execution:
                # The execution the sweeper asks about is the one actually rendering the job.
                fields["execution"] = execution
            if doc.get("status") == JobStatus.QUEUED:
                fields["started_at"] = firestore.SERVER_TIMESTAMP
            return fields

        fields = self._transition(job_id, change)
        if busy:
            return BUSY
        return int(fields["attempt"]) if fields else 0

    def requeue(self, job_id: str, fields: dict[str, Any]) -> bool:
        """A new spec for an ended job: back to QUEUED, the earlier run kept in ``history``.

        False (and nothing changed) while the job is still QUEUED or RUNNING, or when the job
        is not ``fields["owner_uid"]``'s to render: checked in the same transaction, so no
        other owner can slip in between the caller's check and the write.
        """

        def change(doc: dict[str, Any]) -> dict[str, Any] | None:
            if doc.get("status") not in TERMINAL or not may_take(doc, fields.get("owner_uid")):
                return None
            earlier = {
                k: doc.get(k)
                for k in (
                    "status",
                    "spec_uri",
                    "spec_generation",
                    "attempt",
                    "output",
                    "error",
                    "started_at",
                    "finished_at",
                )
            }
            return {
                **fields,
                "history": [*(doc.get("history") or []), earlier],
                "attempt": 0,
                "progress": 0.0,
                "output": None,
                "error": None,
                "started_at": None,
                "finished_at": None,
                "request_published": False,
                # The new run is launched afresh: the earlier run's execution is not its own.
                "execution": "",
                "launch_state": None,
                "launches": 0,
                "launch_error": None,
                "created_at": firestore.SERVER_TIMESTAMP,
            }

        return self._transition(job_id, change) is not None

    def note(self, job_id: str, fields: dict[str, Any]) -> None:
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

        def change(doc: dict[str, Any]) -> dict[str, Any] | None:
            fresh = doc.get("status") == JobStatus.QUEUED and not doc.get("request_published")
            if not fresh or str(doc.get("spec_generation")) != str(generation):
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

        def change(doc: dict[str, Any]) -> dict[str, Any] | None:
            if doc.get("status") not in (JobStatus.QUEUED, JobStatus.RUNNING) or not doc.get("request_published"):
                return None
            if str(doc.get("execution") or "") != expected_execution:
                return None
            asked = doc.get("launch_requested_at")
            if doc.get("launch_state") == "requested" and beat_is_fresh(asked, stale_s):
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

    def release_launch(self, job_id: str, error: dict[str, Any]) -> None:
        """The claimed launch failed: recorded, and claimable again at once."""
        self.note(job_id, {"launch_state": "failed", "launch_error": error})

    def unfinished(self) -> list[dict[str, Any]]:
        """Every QUEUED or RUNNING job document (the sweeper's round)."""
        try:
            snaps = self.collection.where(
                filter=firestore.FieldFilter("status", "in", [JobStatus.QUEUED.value, JobStatus.RUNNING.value])
            ).stream()
            return [{**(snap.to_dict() or {}), "job_id": snap.id} for snap in snaps]
        except Exception as exc:
            raise translate_error(exc, "find unfinished jobs") from exc

    def set_progress(self, job_id: str, stage: str, progress: float) -> None:
        """Stage and progress of a RUNNING job; a lower progress than recorded is ignored."""

        def change(doc: dict[str, Any]) -> dict[str, Any] | None:
            if doc.get("status") != JobStatus.RUNNING:
                return None
            value = max(float(doc.get("progress") or 0.0), min(1.0, progress))
            return {"stage": stage, "progress": value, "heartbeat_at": firestore.SERVER_TIMESTAMP}

        self._transition(job_id, change)

    def _finish(self, job_id: str, fields: dict[str, Any]) -> bool:
        def change(doc: dict[str, Any]) -> dict[str, Any] | None:
            if doc.get("status") in TERMINAL:
                return None  # never backwards, never twice
            return {**fields, "finished_at": firestore.SERVER_TIMESTAMP}

        return self._transition(job_id, change) is not None

    def complete(self, job_id: str, output: dict[str, Any]) -> bool:
        """-> COMPLETED with the output block; False if the job had already ended."""
        return self._finish(
            job_id,
            {"status": JobStatus.COMPLETED.value, "stage": "done", "progress": 1.0, "output": output, "error": None},
        )

    def fail(self, job_id: str, error: dict[str, Any]) -> bool:
        """-> FAILED with the error block; False if the job had already ended."""
        return self._finish(job_id, {"status": JobStatus.FAILED.value, "stage": "failed", "error": error})

    def record_refusal(self, refusal_id: str, fields: dict[str, Any]) -> None:
        """A refused bucket drop, kept apart from the job it named (whose owner never sees it).

        Create-only under an id made from the event, so a redelivery records it once.
        """
        try:
            self.refusals.document(refusal_id).create({**fields, "created_at": firestore.SERVER_TIMESTAMP})
        except (gexc.AlreadyExists, gexc.Conflict):
            pass
        except Exception as exc:
            raise translate_error(exc, f"record refusal {refusal_id}") from exc

    def claim_batch(
        self, batch_id: str, owner_uid: str | None, fields: dict[str, Any], initial: dict[str, Any] | None = None
    ) -> str | None:
        """Make ``owner_uid`` the owner of the batch, or find it is someone else's.

        One transaction: the batch is created with ``initial`` and ``fields`` if it does not exist, an
        ownerless one (an unreadable batch file made it) is taken, and one of ``owner_uid``'s
        gets ``fields``. Returns the other owner when the batch is not ``owner_uid``'s
        (nothing written then), else None.
        """
        ref = self.batches.document(batch_id)
        other: list[str] = []

        @firestore.transactional
        def run(transaction: Any) -> None:
            other.clear()
            snap = ref.get(transaction=transaction)
            doc = dict(snap.to_dict() or {}) if snap.exists else {}
            now = firestore.SERVER_TIMESTAMP
            if not snap.exists:
                empty = {"status": "QUEUED", "counts": {}, "total": 0, "progress": 0.0, "eta_s": None, "failed": []}
                ids = {"batch_id": batch_id, "owner_uid": owner_uid}
                first = {**empty, **(initial or {}), **fields, **ids}
                transaction.create(ref, {**first, "created_at": now, "updated_at": now})
            elif not may_take(doc, owner_uid):
                other.append(str(doc.get("owner_uid")))
            elif fields or doc.get("owner_uid") != owner_uid:  # nothing to write for a scene joining its owner's batch
                transaction.update(ref, {**fields, "owner_uid": owner_uid, "updated_at": now})

        try:
            # Owners racing for one new batch id contend on one document: more attempts than the
            # default five, so contention alone does not turn a claim into a transient failure.
            run(self.client.transaction(max_attempts=CLAIM_ATTEMPTS))
        except Exception as exc:
            raise translate_error(exc, f"claim batch {batch_id}") from exc
        return other[0] if other else None

    def batch_jobs(self, batch_id: str) -> list[dict[str, Any]]:
        """The job documents of one batch."""
        try:
            snaps = self.collection.where(filter=firestore.FieldFilter("batch_id", "==", batch_id)).stream()
            return [dict(snap.to_dict() or {}) for snap in snaps]
        except Exception as exc:
            raise translate_error(exc, f"read batch {batch_id}") from exc

    def save_batch(
        self, batch_id: str, fields: dict[str, Any], summary: Callable[[float, dict[str, Any]], dict[str, Any]]
    ) -> None:
        """Create or refresh ``render_batches/{batch_id}``: ``summary(created_at, doc)`` gives the aggregate.

        Optimistic, not a transaction: every worker and function refreshes the same document,
        and locking transactions on it contend (the emulator's worst of all). Each write is
        conditional on the version read, retried on a conflict; progress never decreases.
        """
        ref = self.batches.document(batch_id)
        try:
            for _ in range(BATCH_WRITE_ATTEMPTS):
                snap = ref.get()
                doc = dict(snap.to_dict() or {}) if snap.exists else {}
                created = doc.get("created_at")
                created_s = created.timestamp() if isinstance(created, datetime) else time.time()
                new = {**fields, **summary(created_s, {**doc, **fields}), "updated_at": firestore.SERVER_TIMESTAMP}
                try:
                    if snap.exists:
                        new["progress"] = max(float(doc.get("progress") or 0.0), float(new["progress"]))
                        ref.update(new, option=self.client.write_option(last_update_time=snap.update_time))
                    else:
                        ref.create({**new, "batch_id": batch_id, "created_at": firestore.SERVER_TIMESTAMP})
                    return
                except (gexc.FailedPrecondition, gexc.AlreadyExists, gexc.Conflict, gexc.Aborted):
                    time.sleep(random.uniform(0.02, 0.2))  # someone wrote first: read again
        except Exception as exc:
            raise translate_error(exc, f"update batch {batch_id}") from exc
        raise TransientError(f"batch {batch_id}: {BATCH_WRITE_ATTEMPTS} conflicting writes in a row")

    def get_batch(self, batch_id: str) -> dict[str, Any] | None:
        try:
            snap = self.batches.document(batch_id).get()
        except Exception as exc:
            raise translate_error(exc, f"read batch {batch_id}") from exc
        return dict(snap.to_dict() or {}) if snap.exists else None

    def watch_batch(self, batch_id: str, callback: Callable[[dict[str, Any] | None], None]) -> Any:
        def on_snapshot(snapshots: list[Any], changes: Any, read_time: Any) -> None:
            for snap in snapshots:
                callback(dict(snap.to_dict() or {}) if snap.exists else None)

        return self.batches.document(batch_id).on_snapshot(on_snapshot)

    def count_active(self, owner_uid: str) -> int:
        """How many of ``owner_uid``'s jobs are QUEUED or RUNNING (the API's per-owner cap).

        One aggregation query: equality on ``owner_uid`` and ``in`` on ``status`` are served by
        Firestore's single-field indexes (merged), so no composite index is needed.
        """
        try:
            query = self.collection.where(filter=firestore.FieldFilter("owner_uid", "==", owner_uid)).where(
                filter=firestore.FieldFilter("status", "in", [JobStatus.QUEUED.value, JobStatus.RUNNING.value])
            )
            aggregation: Any = query.count(alias="active")
            return int(next(r.value for batch in aggregation.get() for r in batch if r.alias == "active"))
        except Exception as exc:
            raise translate_error(exc, f"count active jobs of {owner_uid}") from exc

    def watch(self, job_id: str, callback: Callable[[dict[str, Any] | None], None]) -> Any:
        """Call ``callback`` with the document on every change (Firestore realtime listener).

        Returns the watch; call ``.unsubscribe()`` to stop.
        """

        def on_snapshot(snapshots: list[Any], changes: Any, read_time: Any) -> None:
            for snap in snapshots:
                callback(dict(snap.to_dict() or {}) if snap.exists else None)

        return self._ref(job_id).on_snapshot(on_snapshot)


class ProgressThrottle:
    """Forwards (stage, progress) at most once per ``interval_s``; a new stage sooner, after ``stage_interval_s``.

    The render reports many times a second; the job document needs about one write a second.
    A short scene passes through its six stages in under a second: writing each at once
    would cost the database more than the render (and listeners cannot see them anyway).
    """

    def __init__(
        self,
        write: Callable[[str, float], None],
        *,
        interval_s: float = 1.0,
        stage_interval_s: float = 0.3,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._write = write
        self._interval = interval_s
        self._stage_interval = stage_interval_s
        self._clock = clock
        self._last_at = float("-inf")
        self._last_stage = ""
        self._best = 0.0
        self._pending: tuple[str, float] | None = None
        self._lock = threading.Lock()

    def __call__(self, stage: str, progress: float) -> None:
        with self._lock:
            if progress < self._best:
                return
            self._best = progress
            now = self._clock()
            waited = now - self._last_at
            if waited >= self._interval or (stage != self._last_stage and waited >= self._stage_interval):
                self._last_at, self._last_stage, self._pending = now, stage, None
                send = True
            else:
                self._pending = (stage, progress)
                send = False
        if send:
            self._write(stage, progress)

    def flush(self) -> None:
        """Write the last value held back, if any."""
        with self._lock:
            pending, self._pending = self._pending, None
        if pending is not None:
            self._write(*pending)
