"""The per-owner cap, taken atomically: ``render_owners/{uid}/slots/{k}`` (``scenerender.ports.OwnerSlots``).

A user may have ``cap`` jobs QUEUED or RUNNING; a submission takes one slot document per new
job, ``k`` below the cap, holding the job id and when it was reserved. The slots of one
claim are written in one atomic batch of preconditioned writes: a free slot is created
(create-only) or, if a lapsed reservation holds it, replaced only if it has not changed
since it was read. Two claims can never both take the same slot: one batch fails whole and
reads again. So no more slots than the cap are ever held, and of N concurrent submissions
exactly as many as fit are granted.

No transaction: every claim of one owner would lock the same document, and Firestore (its
emulator most of all) aborts contending transactions over and over; create-only and
preconditioned writes fail at once instead of waiting on a lock.

A reservation counts until its job shows up active (then the job counts, once) and lapses
when its job has ended after it was made, or after ``RESERVATION_S`` if its spec never
became a job (a write that failed after the claim). The pipeline's own writes never touch
the slots: a lapsed one is simply taken by the next claim. A job QUEUED or RUNNING without a
slot (a trusted backend's bucket drop) counts against the cap too, and its place is kept
free: slots are taken only below ``cap`` minus such jobs.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import firestore

from scenerender.cloud.google_errors import translate
from scenerender.errors import TransientError
from scenerender.messages import ACTIVE, JobDocument
from scenerender.ports import SlotClaim

# The spec function takes a written spec within seconds; a reservation still without its job
# after this was for a spec that was never written (or never will be taken).
RESERVATION_S = 600.0
CLAIM_DEADLINE_S = 30.0  # claims losing race after race for this long: transient (HTTP 503)
LOST_RACE = (gexc.AlreadyExists, gexc.Conflict, gexc.FailedPrecondition, gexc.Aborted)


def reservation_holds(doc: JobDocument | None, reserved_at: Any, now: datetime) -> bool:
    """Whether a reservation whose job (``doc``, None if there is none yet) is not active still holds its slot."""
    if not isinstance(reserved_at, datetime) or (now - reserved_at).total_seconds() >= RESERVATION_S:
        return False
    if doc is None:
        return True  # its spec is on its way to the spec function
    finished = doc.finished_at
    # An ended job that ended before the reservation is being submitted again (a requeue to come).
    return not doc.status.ended or (finished is not None and finished < reserved_at)


class OwnerSlotDocuments:
    """``OwnerSlots`` on Firestore (mixed into ``JobStore``)."""

    client: firestore.Client
    collection: Any  # the job documents
    owners: Any

    def reserve_slots(self, owner_uid: str, job_ids: Sequence[str], cap: int) -> SlotClaim:
        """Reserve slots for ``job_ids`` if the owner's active and reserved jobs leave room for them."""
        slots = self.owners.document(owner_uid).collection("slots")
        deadline = time.monotonic() + CLAIM_DEADLINE_S
        pause = 0.02
        while True:
            try:
                claim = self._try_claim(owner_uid, slots, job_ids, cap)
            except LOST_RACE as exc:
                if time.monotonic() + pause > deadline:
                    raise TransientError(f"Firestore: the job slots of {owner_uid} stayed contended") from exc
            except Exception as exc:
                raise translate(exc, f"Firestore: reserve job slots of {owner_uid}") from exc
            else:
                return claim
            time.sleep(random.uniform(0, pause))  # another claim took a slot first: read again
            pause = min(pause * 2, 0.5)

    def _try_claim(self, owner_uid: str, slots: Any, job_ids: Sequence[str], cap: int) -> SlotClaim:
        query = self.collection.where(filter=firestore.FieldFilter("owner_uid", "==", owner_uid)).where(
            filter=firestore.FieldFilter("status", "in", [s.value for s in ACTIVE])
        )
        active = {snap.id for snap in query.stream()}
        taken = {snap.id: snap for snap in slots.stream()}
        # A slot document is this module's own record ({job_id, reserved_at}), read only here.
        reserved = {k: (snap.to_dict() or {}) for k, snap in taken.items()}
        waiting = [self.collection.document(r["job_id"]) for r in reserved.values() if r.get("job_id") not in active]
        jobs = (
            {
                snap.id: JobDocument.model_validate(snap.to_dict() or {})
                for snap in self.client.get_all(waiting)
                if snap.exists
            }
            if waiting
            else {}
        )
        now = datetime.now(UTC)
        holding = {
            k: str(r.get("job_id"))
            for k, r in reserved.items()
            if r.get("job_id") in active or reservation_holds(jobs.get(str(r.get("job_id"))), r.get("reserved_at"), now)
        }
        held = active | set(holding.values())
        new = [j for j in dict.fromkeys(job_ids) if j not in held]
        if not new or len(held) + len(new) > cap:
            return SlotClaim(held=len(held), new=len(new), granted=not new)
        # Room is kept for the active jobs that hold no slot: every claim sees the same bound.
        bound = cap - len(active - set(holding.values()))
        free = [str(k) for k in range(bound) if str(k) not in holding]
        if len(free) < len(new):  # slots held twice for one job (a job id sent twice at once) until it ends
            return SlotClaim(held=cap - len(free), new=len(new), granted=False)
        batch = self.client.batch()
        for index, job_id in zip(random.sample(free, len(new)), new, strict=True):
            fields = {"job_id": job_id, "reserved_at": firestore.SERVER_TIMESTAMP}
            if index in taken:  # a lapsed reservation: replaced only if nobody replaced it first
                batch.update(
                    slots.document(index),
                    fields,
                    option=self.client.write_option(last_update_time=taken[index].update_time),
                )
            else:
                batch.create(slots.document(index), fields)
        batch.commit()
        return SlotClaim(held=len(held), new=len(new), granted=True)
