"""The per-owner cap, taken atomically: ``render_owners/{uid}`` (see ``scenerender.ports.OwnerSlots``).

The owner's record holds ``reserved``: job id -> when a submission reserved it. A claim is
one transaction that reads the record and the owner's QUEUED and RUNNING jobs, and writes
the record: every claim of one owner writes the same document, so Firestore serialises
them, and no two claims both see the last free slot. A reservation counts until its job
shows up active (then the job counts) and lapses when its job has ended after it was made,
or after ``RESERVATION_S`` if its spec never became a job (a write that failed after the
claim). The pipeline's own writes never touch the record: it needs no release.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from google.cloud import firestore

from scenerender.cloud.google_errors import translate
from scenerender.messages import ACTIVE, has_ended
from scenerender.ports import SlotClaim

# The spec function takes a written spec within seconds; a reservation still without its job
# after this was for a spec that was never written (or never will be taken).
RESERVATION_S = 600.0
# One user's concurrent submissions all contend on their record: more attempts than the
# default five, so contention alone does not turn a claim into a transient failure.
SLOT_ATTEMPTS = 30


def reservation_holds(doc: dict[str, Any] | None, reserved_at: Any, now: datetime) -> bool:
    """Whether a reservation whose job (``doc``, None if there is none yet) is not active still holds its slot."""
    if not isinstance(reserved_at, datetime) or (now - reserved_at).total_seconds() >= RESERVATION_S:
        return False
    if doc is None:
        return True  # its spec is on its way to the spec function
    finished = doc.get("finished_at")
    # An ended job that ended before the reservation is being submitted again (a requeue to come).
    return not has_ended(doc.get("status")) or (isinstance(finished, datetime) and finished < reserved_at)


class OwnerSlotDocuments:
    """``OwnerSlots`` on Firestore (mixed into ``JobStore``)."""

    client: firestore.Client
    collection: Any  # the job documents
    owners: Any

    def reserve_slots(self, owner_uid: str, job_ids: Sequence[str], cap: int) -> SlotClaim:
        """Reserve slots for ``job_ids`` if the owner's active and reserved jobs leave room for them."""
        ref = self.owners.document(owner_uid)
        active_query = self.collection.where(filter=firestore.FieldFilter("owner_uid", "==", owner_uid)).where(
            filter=firestore.FieldFilter("status", "in", [s.value for s in ACTIVE])
        )
        claims: list[SlotClaim] = []

        @firestore.transactional
        def run(transaction: Any) -> None:
            claims.clear()
            snap = ref.get(transaction=transaction)
            reserved: dict[str, Any] = dict((snap.to_dict() or {}).get("reserved") or {}) if snap.exists else {}
            active = {job.id for job in transaction.get(active_query)}
            waiting = [self.collection.document(j) for j in reserved if j not in active]
            found = transaction.get_all(waiting) if waiting else []
            jobs = {job.id: job.to_dict() or {} for job in found if job.exists}
            now = datetime.now(UTC)
            keep = {j: at for j, at in reserved.items() if j in active or reservation_holds(jobs.get(j), at, now)}
            held = active | set(keep)
            new = [j for j in dict.fromkeys(job_ids) if j not in held]
            claim = SlotClaim(held=len(held), new=len(new), granted=len(held) + len(new) <= cap or not new)
            claims.append(claim)
            if claim.granted and (new or len(keep) != len(reserved)):
                stamp = firestore.SERVER_TIMESTAMP
                reserving = {**keep, **dict.fromkeys(new, stamp)}
                transaction.set(ref, {"owner_uid": owner_uid, "reserved": reserving, "updated_at": stamp})

        try:
            run(self.client.transaction(max_attempts=SLOT_ATTEMPTS))
        except Exception as exc:
            raise translate(exc, f"Firestore: reserve job slots of {owner_uid}") from exc
        return claims[0]
