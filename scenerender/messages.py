"""The messages between the pipeline's steps, typed: what goes on Pub/Sub and into Firestore.

    spec function ──RenderRequest──► worker ──RenderReport──► completion function
         │                             │                            │
         └──────── JobDocument ────────┴──────── JobDocument ───────┘   render_jobs/{job_id}
    dead-letter topic ──DeadLetter──► dead-letter function ──► JobDocument FAILED, its ErrorBlock

Each model is the wire format as it already was (docs/contract.md, web/src/client.ts):
``wire()`` gives exactly the JSON body or the Firestore fields, and ``model_validate`` reads
them back, documents written before these models included (an error detail's ``message``
is read as its ``problem``). tests/unit/test_messages.py round-trips each model against the
JSON as it travels.

The package root holds this module (beside ``errors``) because both the cloud adapters and
the pipeline's steps speak it, and neither layer may import the other's.
"""

from __future__ import annotations

import json
from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_serializer

from scenerender.errors import SceneRenderError


class JobStatus(StrEnum):
    """Where a job (or a batch) is: QUEUED -> RUNNING -> COMPLETED | FAILED, never backwards."""

    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"

    @property
    def ended(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({JobStatus.COMPLETED, JobStatus.FAILED})
# What the per-owner cap and the sweeper count; a list, as Firestore's "in" filter takes one.
ACTIVE = (JobStatus.QUEUED, JobStatus.RUNNING)


def is_active(status: object) -> bool:
    """Whether a stored status (a plain string in Firestore) is QUEUED or RUNNING."""
    return status in ACTIVE


def has_ended(status: object) -> bool:
    """Whether a stored status is COMPLETED or FAILED."""
    return status in TERMINAL


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


class _Wire(BaseModel):
    # Read leniently (a field a later version adds is ignored), written exactly.
    model_config = ConfigDict(frozen=True, extra="ignore")

    def wire(self) -> dict[str, Any]:
        """The fields as they travel (JSON on Pub/Sub, a map in Firestore)."""
        return self.model_dump(mode="json", exclude_none=True)


class ErrorDetailBlock(_Wire):
    """One located problem: ``{"path", "problem"}`` (docs/contract.md, "One error object everywhere")."""

    path: str = ""
    # Documents written before the contract named it ``problem`` say ``message``.
    problem: str = Field(validation_alias=AliasChoices("problem", "message"))


class ErrorBlock(_Wire):
    """The ``error`` of a job, batch, refusal or report (and ``last_error``, ``launch_error``)."""

    code: str = SceneRenderError.code
    message: str
    details: list[ErrorDetailBlock] = Field(default_factory=list)

    @classmethod
    def of(cls, exc: SceneRenderError) -> ErrorBlock:
        """The error block of one error of the tree (its code, message and located details)."""
        return cls.model_validate(exc.to_dict())

    @classmethod
    def internal(cls, message: str) -> ErrorBlock:
        """An error outside the tree (a bug, a report that says nothing): INTERNAL."""
        return cls.of(SceneRenderError(message))

    def wire(self) -> dict[str, Any]:
        # ``details: []`` is on the wire even when empty: clients index it without a check.
        return self.model_dump(mode="json")


class RenderRequest(_Wire):
    """The spec function's message to the renderer (``render_topic``), one per run of a job.

    ``spec`` stays the JSON the spec function accepted: the worker parses it again, with the
    limits, because a request may come from elsewhere.
    """

    job_id: str = Field(min_length=1)
    run_id: str = ""
    spec_uri: str = ""
    spec_generation: str = ""
    spec: dict[str, Any] = Field(default_factory=dict)

    @property
    def batch_id(self) -> str | None:
        batch_id = self.spec.get("batch_id")
        return str(batch_id) if batch_id else None

    def body(self) -> bytes:
        return json.dumps(self.wire()).encode()


class RenderReport(_Wire):
    """The renderer's outcome of one request (``completion_topic``), as the completion function reads it.

    ``result`` is the render's measured result (``scenerender.core.render.RenderResult.to_dict``),
    copied into the job's ``output`` as it is.
    """

    job_id: str = Field(min_length=1)
    attempt: int = Field(0, ge=0)
    status: Literal[JobStatus.COMPLETED, JobStatus.FAILED]
    output_uri: str | None = None
    sidecar_uris: dict[str, str] | None = None
    result: dict[str, Any] | None = None
    error: ErrorBlock | None = None

    @classmethod
    def completed(
        cls, job_id: str, attempt: int, *, output_uri: str, sidecar_uris: dict[str, str], result: dict[str, Any]
    ) -> RenderReport:
        return cls(
            job_id=job_id,
            attempt=attempt,
            status=JobStatus.COMPLETED,
            output_uri=output_uri,
            sidecar_uris=sidecar_uris,
            result=result,
        )

    @classmethod
    def failed(cls, job_id: str, attempt: int, error: ErrorBlock) -> RenderReport:
        return cls(job_id=job_id, attempt=attempt, status=JobStatus.FAILED, error=error)


class DeadLetter(_Wire):
    """A render request Pub/Sub gave up on: whose job it was, and how often it was delivered."""

    job_id: str = ""
    deliveries: int | None = None

    DELIVERIES: ClassVar[str] = "CloudPubSubDeadLetterSourceDeliveryCount"  # the attribute Pub/Sub sets

    @classmethod
    def from_message(cls, body: bytes, attributes: dict[str, str]) -> DeadLetter:
        """A dead-lettered message; an unreadable body is a record without a job id."""
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):
            data = {}
        count = attributes.get(cls.DELIVERIES, "")
        job_id = data.get("job_id") if isinstance(data, dict) else None
        return cls(job_id=job_id if isinstance(job_id, str) else "", deliveries=int(count) if count.isdigit() else None)

    def error(self, last: ErrorBlock | None) -> ErrorBlock:
        """The job's final error: the last one a worker met (its code kept), and that Pub/Sub gave up."""
        gave_up = f"gave up after {self.deliveries if self.deliveries is not None else '?'} deliveries"
        if last is None:
            return ErrorBlock.internal(gave_up)
        return last.model_copy(update={"message": f"{gave_up}; last error: {last.message}"})


# What ``history`` keeps of a run when its job runs again, and what the new run starts from.
EARLIER_RUN = ("status", "spec_uri", "spec_generation", "attempt", "output", "error", "started_at", "finished_at")
NEW_RUN: dict[str, Any] = {
    "attempt": 0,
    "progress": 0.0,
    "output": None,
    "error": None,
    "started_at": None,
    "finished_at": None,
    "request_published": False,
    "execution": "",
    "launch_state": None,
    "launches": 0,
    "launch_error": None,
}


class _Document(BaseModel):
    """A Firestore document as read back: typed where read, everything else kept as stored."""

    model_config = ConfigDict(frozen=True, extra="allow")

    status: JobStatus
    error: ErrorBlock | None = None

    @field_serializer("status")
    def _status(self, status: JobStatus) -> str:
        return status.value  # Firestore stores the plain string

    def wire(self) -> dict[str, Any]:
        """The fields this model was given, as Firestore stores them (timestamps stay datetimes)."""
        fields = self.model_dump(exclude_unset=True)
        if self.error is not None:
            fields["error"] = self.error.wire()
        return fields


class JobDocument(_Document):
    """``render_jobs/{job_id}`` (docs/contract.md section 4).

    The fields the contract, the CLI and the web client read are typed; the pipeline's own
    bookkeeping (launches, history, heartbeat, request_published...) is kept as it is stored.
    """

    job_id: str = ""
    stage: str = ""
    progress: float = 0.0
    attempt: int = 0
    project_id: str | None = None
    scene_id: str | None = None
    owner_uid: str | None = None
    batch_id: str | None = None
    spec_uri: str = ""
    spec_generation: str = ""
    run_id: str = ""
    spec_hash: str | None = None
    weight_s: float | None = None
    output: dict[str, Any] | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    updated_at: datetime | None = None

    @classmethod
    def queued(cls, **fields: Any) -> JobDocument:
        """A new run's document: QUEUED, nothing done yet; ``fields`` name its spec, owner and run."""
        return cls(status=JobStatus.QUEUED, stage="queued", progress=0.0, attempt=0, **fields)

    @classmethod
    def refused(cls, *, spec_uri: str, spec_generation: str, owner_uid: str | None, error: ErrorBlock) -> JobDocument:
        """A spec that will never run: FAILED at validation, its error telling why."""
        return cls(
            status=JobStatus.FAILED,
            stage="validate",
            progress=0.0,
            spec_uri=spec_uri,
            spec_generation=spec_generation,
            owner_uid=owner_uid,
            error=error,
        )

    def rerun(self, current: dict[str, Any]) -> dict[str, Any]:
        """The fields that turn an ended job (``current``, as stored) into this new run of it:
        the earlier run kept in ``history``, everything of it reset (its execution too: the new
        run is launched afresh). Not ``created_at``: the store stamps it."""
        earlier = {k: current.get(k) for k in EARLIER_RUN}
        return {**self.wire(), "history": [*(current.get("history") or []), earlier], **NEW_RUN}


class BatchDocument(_Document):
    """``render_batches/{batch_id}`` (docs/contract.md section 4): the batch's scenes and the
    summary of their jobs (``scenerender.pipeline.batch.summarize``), as read back.

    Read leniently like ``JobDocument``: fields the pipeline adds later are kept as stored.
    """

    batch_id: str = ""
    status: JobStatus = JobStatus.QUEUED
    owner_uid: str | None = None
    spec_uri: str = ""
    spec_generation: str = ""
    scenes: list[str] = Field(default_factory=list)
    counts: dict[str, int] = Field(default_factory=dict)
    total: int = 0
    progress: float = 0.0
    eta_s: float | None = None
    failed: list[str] = Field(default_factory=list)
    created_at: datetime | None = None
    updated_at: datetime | None = None
