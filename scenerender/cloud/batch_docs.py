"""Batch documents and refusal records in Firestore: ``render_batches/{batch_id}``, ``render_refusals``.

The batch side of ``scenerender.cloud.jobs.JobStore`` (which it is mixed into): a batch's
document is claimed by its first owner in one transaction, and refreshed optimistically
from its jobs by every step that moves one of them.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import firestore

from scenerender.cloud.google_errors import translate
from scenerender.errors import TransientError, UnreadableDocumentError
from scenerender.messages import BatchDocument, BatchSummary, JobDocument, JobStatus, may_take, read_batch

BATCH_WRITE_ATTEMPTS = 20
CLAIM_ATTEMPTS = 20  # transaction attempts of a batch claim (see claim_batch)
CLAIM_ROUNDS = 3  # rounds of those attempts, apart by a random pause, before the claim is transient


class BatchDocuments:
    """Reads and writes batch documents and refusal records (mixed into ``JobStore``)."""

    client: firestore.Client
    collection: Any  # the job documents, which a batch's summary reads
    batches: Any
    refusals: Any

    # ``fields`` here and in ``claim_batch`` are writes: field -> value, Firestore sentinels among them.
    def record_refusal(self, refusal_id: str, fields: dict[str, Any]) -> None:
        """A refused bucket drop, kept apart from the job it named (whose owner never sees it).

        Create-only under an id made from the event, so a redelivery records it once.
        """
        try:
            self.refusals.document(refusal_id).create({**fields, "created_at": firestore.SERVER_TIMESTAMP})
        except (gexc.AlreadyExists, gexc.Conflict):
            pass
        except Exception as exc:
            raise translate(exc, f"Firestore: record refusal {refusal_id}") from exc

    def claim_batch(
        self, batch_id: str, owner_uid: str | None, fields: dict[str, Any], initial: BatchSummary | None = None
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
            doc = BatchDocument.model_validate(snap.to_dict() or {}) if snap.exists else None
            now = firestore.SERVER_TIMESTAMP
            if doc is None:
                empty = {
                    "status": JobStatus.QUEUED.value,
                    "counts": {},
                    "total": 0,
                    "progress": 0.0,
                    "eta_s": None,
                    "failed": [],
                }
                ids = {"batch_id": batch_id, "owner_uid": owner_uid}
                first = {**empty, **(initial.wire() if initial else {}), **fields, **ids}
                transaction.create(ref, {**first, "created_at": now, "updated_at": now})
            elif not may_take(doc, owner_uid):
                other.append(str(doc.owner_uid))
            elif fields or doc.owner_uid != owner_uid:  # nothing to write for a scene joining its owner's batch
                transaction.update(ref, {**fields, "owner_uid": owner_uid, "updated_at": now})

        for round_ in range(CLAIM_ROUNDS):
            try:
                # Owners racing for one new batch id contend on one document: more attempts than
                # the default five, so contention alone does not turn a claim into a failure.
                run(self.client.transaction(max_attempts=CLAIM_ATTEMPTS))
                break
            except Exception as exc:
                error = translate(exc, f"Firestore: claim batch {batch_id}")
                if not error.retryable or round_ == CLAIM_ROUNDS - 1:
                    raise error from exc
            # The client retries a lost transaction at once; racers that keep meeting on the
            # emulator's locks (seen on a loaded CI run: 20 attempts, each a lock timeout) are
            # spread apart before the next round.
            time.sleep(random.uniform(0.05, 0.3) * (round_ + 1))
        return other[0] if other else None

    def batch_jobs(self, batch_id: str) -> list[JobDocument]:
        """The job documents of one batch."""
        try:
            snaps = self.collection.where(filter=firestore.FieldFilter("batch_id", "==", batch_id)).stream()
            return [JobDocument.model_validate({**(snap.to_dict() or {}), "job_id": snap.id}) for snap in snaps]
        except Exception as exc:
            raise translate(exc, f"Firestore: read batch {batch_id}") from exc

    def save_batch(self, batch_id: str, summary: Callable[[float, BatchDocument | None], BatchSummary]) -> None:
        """Create or refresh ``render_batches/{batch_id}``: ``summary(created_at, doc)`` gives the
        aggregate from the document as read (None before it exists).

        Optimistic, not a transaction: every worker and function refreshes the same document,
        and locking transactions on it contend (the emulator's worst of all). Each write is
        conditional on the version read, retried on a conflict; progress never decreases.
        """
        ref = self.batches.document(batch_id)
        try:
            for _ in range(BATCH_WRITE_ATTEMPTS):
                snap = ref.get()
                doc = BatchDocument.model_validate(snap.to_dict() or {}) if snap.exists else None
                created_s = doc.created_at.timestamp() if doc is not None and doc.created_at else time.time()
                new = {**summary(created_s, doc).wire(), "updated_at": firestore.SERVER_TIMESTAMP}
                try:
                    if doc is not None:
                        new["progress"] = max(doc.progress, float(new["progress"]))
                        ref.update(new, option=self.client.write_option(last_update_time=snap.update_time))
                    else:
                        ref.create({**new, "batch_id": batch_id, "created_at": firestore.SERVER_TIMESTAMP})
                    return
                except (gexc.FailedPrecondition, gexc.AlreadyExists, gexc.Conflict, gexc.Aborted):
                    time.sleep(random.uniform(0.02, 0.2))  # someone wrote first: read again
        except Exception as exc:
            raise translate(exc, f"Firestore: update batch {batch_id}") from exc
        raise TransientError(f"batch {batch_id}: {BATCH_WRITE_ATTEMPTS} conflicting writes in a row")

    def get_batch(self, batch_id: str) -> BatchDocument | None:
        try:
            snap = self.batches.document(batch_id).get()
        except Exception as exc:
            raise translate(exc, f"Firestore: read batch {batch_id}") from exc
        return read_batch(snap.to_dict() or {}, batch_id) if snap.exists else None

    def watch_batch(
        self, batch_id: str, callback: Callable[[BatchDocument | UnreadableDocumentError | None], None]
    ) -> Any:
        """Call ``callback`` with the batch document on every change (one that does not read as
        a batch as its error, as ``JobStore.watch`` does); ``.unsubscribe()`` the result to stop."""

        def on_snapshot(snapshots: list[Any], changes: Any, read_time: Any) -> None:
            for snap in snapshots:
                doc: BatchDocument | UnreadableDocumentError | None
                try:
                    doc = read_batch(snap.to_dict() or {}, batch_id) if snap.exists else None
                except UnreadableDocumentError as exc:
                    doc = exc
                callback(doc)

        return self.batches.document(batch_id).on_snapshot(on_snapshot)
