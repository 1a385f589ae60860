"""One long scene's segment encodes spread over workers (Cloud Run job tasks, local workers).

    assembler: the worker holding the scene's render request
      plans every segment ─► encodes missing from the segment cache ─► one work item each,
      published to the segment-work topic; then works the items itself, in order
    helpers: every other worker or task, between render requests
      pulls an item ─► claims it ─► fetches the source, checks its digest ─► encodes ─►
      stores it in the segment cache ─► marks the item DONE
    assembler: once every item is DONE it copies them from the cache and assembles the
      scene (copy-concat, audio, mux), as for a scene it encoded alone

Claims live in Firestore beside the job (``render_jobs/{job}/items/{key}``) and are kept
alive by a heartbeat; an item whose holder stopped beating is claimed again, by the
assembler or by the helper its redelivered message reaches, so a dead task delays an item
by ``heartbeat_stale_s`` and never stalls the scene. The segment cache is where the
results meet: an item's output is the cache entry under its content address, published
whole, so nothing is encoded twice and nothing half-written is ever read.
"""

from __future__ import annotations

import logging
import os
import socket
from contextlib import AbstractContextManager
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from google.cloud import firestore
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from scenerender.cloud.jobs import translate_error
from scenerender.cloud.liveness import beat_is_fresh, keep_beating
from scenerender.core import plan
from scenerender.core.cache import OUTPUT, SOURCE, BlobSegmentCache, file_digest, materialize, segment_key
from scenerender.core.encode_queue import SegmentTask
from scenerender.core.ffmpeg import FFmpegRunner
from scenerender.core.inputs import FetchPolicy, InputResolver
from scenerender.core.render import RenderOptions, private_dir
from scenerender.core.tenancy import MediaScope
from scenerender.errors import SceneRenderError
from scenerender.messages import JobStatus
from scenerender.ports import Blobs, Bus, Jobs
from scenerender.settings import Settings

log = logging.getLogger(__name__)

ClaimState = Literal["mine", "done", "held"]
ITEM_TTL = timedelta(days=1)


def worker_id(settings: Settings) -> str:
    """This process, as job and item documents name it (unique across tasks and machines).

    Tasks of a Cloud Run job may share a host name and a PID (each is PID 1 of its own
    container), so there the execution and the task index come first.
    """
    task = settings.cloud_run_task_index
    where = f"{settings.cloud_run_execution or 'run'}/task-{task}/" if task is not None else ""
    return f"{where}{socket.gethostname()}:{os.getpid()}"


class WorkItem(BaseModel):
    """A work item message: one normalisation any worker can run from it alone."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    job_id: str = Field(min_length=1, max_length=128)
    key: str = Field(pattern=r"^[0-9a-f]{64}$")
    index: int = Field(ge=0)
    source_url: str = Field(min_length=1)
    input_path: str
    source_digest: str = Field(pattern=r"^[0-9a-f]{64}$")
    template: list[str] = Field(min_length=2)
    duration_s: float = Field(gt=0)

    @model_validator(mode="after")
    def _consistent(self) -> WorkItem:
        # The key is the cache address of the output: it must be the address of exactly this
        # encode, or a helper would file a wrong segment where a later render trusts it.
        if self.template.count(SOURCE) != 1 or self.template[-1] != OUTPUT or self.template.count(OUTPUT) != 1:
            raise ValueError("template must read <source> once and write <output> last")
        if segment_key(self.source_digest, self.template) != self.key:
            raise ValueError("key is not the content address of this template and source")
        return self

    @classmethod
    def from_task(cls, job_id: str, task: SegmentTask) -> WorkItem:
        return cls(job_id=job_id, **asdict(task))


class ItemRecord(BaseModel):
    """``render_jobs/{job}/items/{key}``: one segment encode offered to other workers
    (``ItemStore``), CLAIMED -> DONE, or RELEASED for the assembler.

    Read leniently (timestamps as Firestore gives them); written field by field by the store,
    whose timestamps are the server's.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    status: Literal["CLAIMED", "DONE", "RELEASED"] | None = None
    holder: str | None = None
    index: int = -1
    attempt: int = 0
    holders: list[str] = Field(default_factory=list)
    heartbeat_at: datetime | None = None
    claimed_at: datetime | None = None
    done_by: str | None = None
    done_at: datetime | None = None
    reason: str = ""


class ItemStore:
    """Claims on work items: ``render_jobs/{job}/items/{key}`` (CLAIMED -> DONE, or RELEASED)."""

    def __init__(self, client: firestore.Client, settings: Settings) -> None:
        self.client = client
        self.jobs = client.collection(settings.jobs_collection)
        self.stale_after_s = settings.heartbeat_stale_s

    def _ref(self, job_id: str, key: str) -> Any:
        return self.jobs.document(job_id).collection("items").document(key)

    def claim(self, job_id: str, key: str, holder: str, index: int = -1) -> ClaimState:
        """Take the item unless it is DONE or another holder is alive on it."""
        ref = self._ref(job_id, key)
        outcome: ClaimState = "mine"

        @firestore.transactional
        def run(transaction: Any) -> None:
            nonlocal outcome
            snap = ref.get(transaction=transaction)
            doc = ItemRecord.model_validate(snap.to_dict() or {}) if snap.exists else ItemRecord()
            if doc.status == "DONE":
                outcome = "done"
                return
            alive = beat_is_fresh(doc.heartbeat_at, self.stale_after_s)
            if doc.status == "CLAIMED" and alive and doc.holder != holder:
                outcome = "held"
                return
            outcome = "mine"
            transaction.set(
                ref,
                {
                    "status": "CLAIMED",
                    "holder": holder,
                    "index": index if index >= 0 else doc.index,
                    "attempt": doc.attempt + 1,
                    "holders": [*doc.holders, holder],
                    "heartbeat_at": firestore.SERVER_TIMESTAMP,
                    "claimed_at": firestore.SERVER_TIMESTAMP,
                    "expire_at": datetime.now(UTC) + ITEM_TTL,  # Firestore's TTL policy deletes it then
                },
            )

        try:
            run(self.client.transaction())
        except Exception as exc:
            raise translate_error(exc, f"claim item {key[:12]} of job {job_id}") from exc
        return outcome

    # Written field by field (``fields``): the timestamps in them are the server's sentinels.
    def _if_holder(self, job_id: str, key: str, holder: str, fields: dict[str, Any]) -> None:
        ref = self._ref(job_id, key)

        @firestore.transactional
        def run(transaction: Any) -> None:
            doc = ItemRecord.model_validate(ref.get(transaction=transaction).to_dict() or {})
            # A holder that was taken over (it looked dead) must not overwrite the new claim.
            if doc.status == "CLAIMED" and doc.holder == holder:
                transaction.update(ref, fields)

        try:
            run(self.client.transaction())
        except Exception as exc:
            raise translate_error(exc, f"update item {key[:12]} of job {job_id}") from exc

    def beat(self, job_id: str, key: str, holder: str) -> None:
        self._if_holder(job_id, key, holder, {"heartbeat_at": firestore.SERVER_TIMESTAMP})

    def done(self, job_id: str, key: str, holder: str) -> None:
        self._if_holder(
            job_id, key, holder, {"status": "DONE", "done_by": holder, "done_at": firestore.SERVER_TIMESTAMP}
        )

    def release(self, job_id: str, key: str, holder: str, reason: str = "") -> None:
        self._if_holder(job_id, key, holder, {"status": "RELEASED", "reason": reason})

    def items(self, job_id: str) -> dict[str, ItemRecord]:
        """Every work item of the job, by key."""
        try:
            return {
                snap.id: ItemRecord.model_validate(snap.to_dict() or {})
                for snap in self.jobs.document(job_id).collection("items").stream()
            }
        except Exception as exc:
            raise translate_error(exc, f"read items of job {job_id}") from exc


def beating(items: ItemStore, job_id: str, key: str, holder: str, every_s: float) -> AbstractContextManager[None]:
    """Keep the claim alive while the block runs."""
    return keep_beating(lambda: items.beat(job_id, key, holder), every_s, f"item {key[:12]} of job {job_id}")


class JobSegmentClaims:
    """The assembler's side: ``scenerender.core.render.SegmentClaims`` for one job."""

    def __init__(self, job_id: str, items: ItemStore, bus: Bus, settings: Settings) -> None:
        self.job_id = job_id
        self.items = items
        self.bus = bus
        self.topic = settings.segment_topic
        self.heartbeat_s = settings.heartbeat_s
        self.holder = worker_id(settings)
        self._index: dict[str, int] = {}

    def offer(self, tasks: list[SegmentTask]) -> None:
        self._index = {t.key: t.index for t in tasks}
        self.bus.publish_many(
            self.topic, [WorkItem.from_task(self.job_id, t).model_dump() for t in tasks], job_id=self.job_id
        )
        log.info("job %s: %d segment encodes offered to other workers", self.job_id, len(tasks))

    def claim(self, key: str) -> ClaimState:
        return self.items.claim(self.job_id, key, self.holder, self._index.get(key, -1))

    def holding(self, key: str) -> AbstractContextManager[None]:
        return beating(self.items, self.job_id, key, self.holder, self.heartbeat_s)

    def done(self, key: str) -> None:
        self.items.done(self.job_id, key, self.holder)

    def release(self, key: str) -> None:
        self.items.release(self.job_id, key, self.holder, "the assembler's encode failed")


def run_item(data: dict[str, Any], *, settings: Settings, blobs: Blobs, jobs: Jobs, items: ItemStore) -> str:
    """A helper's side: encode one work item into the segment cache. Returns what happened.

    Every outcome acknowledges the message: an item this worker could not finish is
    released, and the assembler (which waits on every item) encodes it itself.
    """
    try:
        item = WorkItem.model_validate(data)
    except ValidationError as exc:
        log.error("work item dropped: %s", exc.errors(include_url=False)[:3])
        return "invalid"
    job = jobs.get(item.job_id)
    if job is None or job.status != JobStatus.RUNNING:
        return "job not running"
    holder = worker_id(settings)
    state = items.claim(item.job_id, item.key, holder, item.index)
    if state != "mine":
        return state
    try:
        with (
            beating(items, item.job_id, item.key, holder, settings.heartbeat_s),
            private_dir(settings.work_dir) as work,
        ):
            inputs = work / "inputs"
            inputs.mkdir()
            resolver = InputResolver(
                inputs,
                # The job owner's media only, as the scene's own worker fetches it.
                FetchPolicy.from_settings(settings, media_scope=MediaScope.from_settings(settings, job.owner_uid)),
                gs_download=lambda uri, dest, cap: blobs.download(uri, dest, max_bytes=cap),
            )
            source = resolver.resolve(item.source_url, item.input_path)
            # The assembler probed these bytes under the media policy; the same digest means the
            # same bytes, so this helper runs ffmpeg only on an input that passed it. (An animated
            # WebP's encode, never offered (encode_queue.shareable), would be of its converted
            # MOV's digest: one named anyway is released here, its frames never decoded.)
            if file_digest(source) != item.source_digest:
                items.release(item.job_id, item.key, holder, "the source changed since the scene was planned")
                return "source changed"
            out = work / "segment.mp4"
            _, threads = plan.parallel_jobs(settings.parallelism, 1, RenderOptions.from_settings(settings).cores)
            argv = materialize(item.template, ffmpeg="ffmpeg", source=source, output=out, threads=threads)
            FFmpegRunner(settings.ffmpeg, timeout_s=float(settings.render_timeout_s)).run(
                argv, duration_s=item.duration_s
            )
            if not BlobSegmentCache(blobs, settings.render_bucket).store(item.key, out):
                items.release(item.job_id, item.key, holder, "the segment could not be stored")
                return "not stored"
        items.done(item.job_id, item.key, holder)
    except SceneRenderError as exc:
        log.warning("item %s of job %s: %s; released", item.key[:12], item.job_id, exc.message)
        items.release(item.job_id, item.key, holder, exc.message[:500])
        return "released"
    except BaseException:
        items.release(item.job_id, item.key, holder, "internal error")
        raise
    return "done"
