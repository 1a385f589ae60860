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

Size: one concern, the wire formats between the steps, read as a whole (each model is the
shape of one message or document; splitting them would scatter one contract).

The package root holds this module (beside ``errors``) because both the cloud adapters and
the pipeline's steps speak it, and neither layer may import the other's.
"""

from __future__ import annotations

import json
from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, field_serializer

from scenerender.errors import SceneRenderError, UnreadableDocumentError


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


def may_take(doc: JobDocument | BatchDocument | None, owner_uid: str | None) -> bool:
    """Whether ``owner_uid`` may write over this job or batch document: there is none, it is
    theirs, or it has no owner and never rendered anything (an invalid spec that named no
    owner left it).

    A job or batch belongs to its first owner for good (CONTRACT.md section 5).
    """
    if doc is None:
        return True
    if doc.owner_uid:
        return bool(owner_uid) and doc.owner_uid == owner_uid
    return not doc.rendered


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


class _ResultFields(BaseModel):
    """The render's measured result (CONTRACT.md section 2), the fields shared by the report's
    ``result`` and the job document's ``output``.

    Written with its nulls: ``loudness_lufs``/``true_peak_db`` are ``null`` for an output without
    sound, and clients read the key. Read leniently: a field a newer renderer adds is kept
    (``extra="allow"``) and reaches the job document as it came.
    """

    model_config = ConfigDict(frozen=True, extra="allow")

    duration_s: float
    width: int
    height: int
    fps: float
    size_bytes: int
    loudness_lufs: float | None
    true_peak_db: float | None
    av_drift_ms: float
    timings: dict[str, float] = Field(default_factory=dict)
    fast_path: bool = False
    fast_path_blockers: list[str] = Field(default_factory=list)
    segments_encoded: int = 0
    segments_copied: int = 0
    segments_reused: int = 0
    segments_from_helpers: int = 0
    audio_reused: bool = False
    audio_encoders: int = 0
    probes_reused: int = 0
    captions_burned: bool = False
    # Free-form on purpose: the QC report and the sync certificate are the core's own reports
    # (docs/deliverables.md), passed to the client as measured; no step between reads them.
    qc: dict[str, Any] = Field(default_factory=dict)
    sync: dict[str, Any] = Field(default_factory=dict)


class RenderResultBlock(_ResultFields):
    """``RenderReport.result``: ``scenerender.core.render.RenderResult.to_dict()`` as it travels."""

    sidecars: dict[str, str] = Field(default_factory=dict)  # kind -> the file's name beside the MP4

    def wire(self) -> dict[str, Any]:
        # Exactly the fields it was given, nulls included (``exclude_unset``, not ``exclude_none``).
        return self.model_dump(mode="json", exclude_unset=True)

    def measured(self) -> dict[str, Any]:
        """The result's fields as given, without the sidecars' file names (the output signs them)."""
        fields = self.model_dump(exclude_unset=True)
        fields.pop("sidecars", None)
        return fields


class SignedObject(BaseModel):
    """An object of the output with its V4 signed URL (the MP4 itself, or one sidecar)."""

    model_config = ConfigDict(frozen=True, extra="allow")

    uri: str
    url: str
    url_expires_at: datetime


class JobOutput(_ResultFields):
    """A COMPLETED job's ``output``: the MP4's URI and signed URL, each sidecar's, and the
    render result of CONTRACT.md section 2 (docs/contract.md section 4)."""

    uri: str
    url: str
    url_expires_at: datetime
    sidecars: dict[str, SignedObject] = Field(default_factory=dict)

    @classmethod
    def of(cls, signed: SignedObject, result: RenderResultBlock, sidecars: dict[str, SignedObject]) -> JobOutput:
        return cls.model_validate({**signed.model_dump(), **result.measured(), "sidecars": sidecars})

    def wire(self) -> dict[str, Any]:
        """As Firestore stores it: every field given, nulls kept, timestamps as datetimes."""
        return self.model_dump(exclude_unset=True)


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
    result: RenderResultBlock | None = None
    error: ErrorBlock | None = None

    @classmethod
    def completed(
        cls, job_id: str, attempt: int, *, output_uri: str, sidecar_uris: dict[str, str], result: RenderResultBlock
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

    def wire(self) -> dict[str, Any]:
        fields = super().wire()
        if self.result is not None:
            fields["result"] = self.result.wire()  # its nulls are part of the result
        return fields


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
    """A Firestore document as read back: typed where read, anything else kept as stored."""

    # Lenient like every reader of stored data: an older writer's number where a string is
    # now (a generation), or a field this version does not know, still reads.
    model_config = ConfigDict(frozen=True, extra="allow", coerce_numbers_to_str=True)

    status: JobStatus
    owner_uid: str | None = None
    spec_uri: str = ""
    spec_generation: str = ""
    error: ErrorBlock | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @field_serializer("status")
    def _status(self, status: JobStatus) -> str:
        return status.value  # Firestore stores the plain string

    @property
    def rendered(self) -> bool:
        """Whether anything was ever rendered under it (``may_take``)."""
        return False

    def wire(self) -> dict[str, Any]:
        """The fields this model was given, as Firestore stores them (timestamps stay datetimes)."""
        return self.model_dump(exclude_unset=True)


class ResubmissionRefused(_Wire):
    """A job's note that a newer spec for it was not taken (it still ran, or it was invalid):
    which spec, and why (``error`` when the spec itself was refused)."""

    model_config = ConfigDict(frozen=True, extra="ignore", coerce_numbers_to_str=True)

    spec_uri: str
    spec_generation: str
    reason: str
    error: ErrorBlock | None = None


class HandedBack(_Wire):
    """A worker's note that it gave a job's request back: its task had too little time left
    for the render's estimate (``scenerender.pipeline.worker``)."""

    execution: str
    estimate_s: float
    task_left_s: float


class JobDocument(_Document):
    """``render_jobs/{job_id}`` (docs/contract.md section 4).

    Read back from the store as this model (``ports.Jobs.get``, ``unfinished``, ``batch_jobs``,
    ``JobStore.watch``): the contract's fields and the pipeline's own bookkeeping are typed; a
    field a later version adds is kept as stored (``extra="allow"``).
    """

    job_id: str = ""
    stage: str = ""
    progress: float = 0.0
    attempt: int = 0
    project_id: str | None = None
    scene_id: str | None = None
    batch_id: str | None = None
    run_id: str = ""
    spec_hash: str | None = None
    weight_s: float | None = None
    output: JobOutput | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    # The pipeline's own bookkeeping: the worker's heartbeat, the request's publish claim, the
    # launches of executions (cloud.launcher, the sweeper) and the last error a worker met.
    worker: str = ""
    heartbeat_at: datetime | None = None
    request_published: bool = False
    execution: str = ""
    execution_tasks: int | None = None
    launch_state: str | None = None
    launch_requested_at: datetime | None = None
    launched_at: datetime | None = None
    launches: int = 0
    launch_error: ErrorBlock | None = None
    last_error: ErrorBlock | None = None
    resubmission_refused: ResubmissionRefused | None = None
    handed_back: HandedBack | None = None
    # Earlier runs as they were stored (``EARLIER_RUN``), each by the version that ran it:
    # kept free-form, read only for whether one rendered anything and shown to clients as is.
    history: list[dict[str, Any]] = Field(default_factory=list)

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

    @property
    def rendered(self) -> bool:
        return self.output is not None or any(isinstance(h, dict) and h.get("output") for h in self.history)

    def rerun(self, current: JobDocument) -> dict[str, Any]:
        """The fields that turn an ended job (``current``, as stored) into this new run of it:
        the earlier run kept in ``history``, everything of it reset (its execution too: the new
        run is launched afresh). Not ``created_at``: the store stamps it."""
        stored = current.wire()
        earlier = {k: stored.get(k) for k in EARLIER_RUN}
        return {**self.wire(), "history": [*current.history, earlier], **NEW_RUN}


class BatchDocument(_Document):
    """``render_batches/{batch_id}`` (docs/contract.md section 4): the batch's scenes and the
    summary of their jobs (``scenerender.pipeline.batch.summarize``), as read back.

    Read leniently like ``JobDocument``: fields the pipeline adds later are kept as stored.
    """

    batch_id: str = ""
    status: JobStatus = JobStatus.QUEUED
    scenes: list[str] = Field(default_factory=list)
    counts: dict[str, int] = Field(default_factory=dict)
    total: int = 0
    progress: float = 0.0
    eta_s: float | None = None
    failed: list[str] = Field(default_factory=list)


_D = TypeVar("_D", bound=_Document)


def read_job(fields: dict[str, Any], job_id: str) -> JobDocument:
    """A stored job document as the model, its id from the document's name (a document written
    by hand, or before the id was a field, has none of its own).

    One that does not read as a job (hand-edited, or from a version that wrote it otherwise) is
    an ``UnreadableDocumentError`` naming the document and its first wrong field, not pydantic's
    traceback.
    """
    return _read(JobDocument, {**fields, "job_id": job_id}, f"job document {job_id} does not read as a job")


def read_batch(fields: dict[str, Any], batch_id: str) -> BatchDocument:
    """A stored batch document as the model; one that does not read as a batch is refused as
    ``read_job`` refuses a job's."""
    return _read(BatchDocument, fields, f"batch document {batch_id} does not read as a batch")


def _read(model: type[_D], fields: dict[str, Any], what: str) -> _D:
    try:
        return model.model_validate(fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "document"
        owner = fields.get("owner_uid")
        raise UnreadableDocumentError(
            f"{what}: {where}: {first['msg']}", owner_uid=owner if isinstance(owner, str) else None
        ) from None


class BatchSummary(_Wire):
    """The aggregate a batch document carries (``scenerender.pipeline.batch.summarize``): written on
    every refresh, ``eta_s`` as ``null`` when there is none (clients read the key)."""

    status: JobStatus
    counts: dict[str, int]
    total: int
    progress: float
    eta_s: float | None
    failed: list[str]

    def wire(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


# ---------------------------------------------------------------------------- the HTTP doors' answers


class JobReceipt(_Wire):
    """``POST /`` took a spec (202): the job it becomes and the spec object written (docs/api.md)."""

    model_config = ConfigDict(frozen=True, extra="ignore", coerce_numbers_to_str=True)

    job_id: str
    spec_uri: str
    spec_generation: str


class BatchReceipt(_Wire):
    """``POST /`` took a batch (202): its scenes' job ids, in order, and the batch object written."""

    model_config = ConfigDict(frozen=True, extra="ignore", coerce_numbers_to_str=True)

    batch_id: str
    job_ids: list[str]
    spec_uri: str
    spec_generation: str


class UploadGrant(_Wire):
    """``POST /uploads`` (200): PUT the file to ``url`` with ``headers`` before ``expires_at``,
    then name ``uri`` in a spec; ``exists``: an object of that content is there already."""

    uri: str
    url: str
    method: Literal["PUT"] = "PUT"
    headers: dict[str, str]
    expires_at: datetime
    exists: bool

    @field_serializer("expires_at")
    def _iso(self, value: datetime) -> str:
        return value.isoformat()  # as the API wrote it before this model: "+00:00", not "Z"


class SweepReport(_Wire):
    """The sweeper's answer to Cloud Scheduler (``scenerender.pipeline.sweeper.sweep``): how many
    unfinished jobs it read, the execution it launched and for which jobs (job -> why), the
    jobs it failed (job -> why), and what it could not do this round (tried again next round)."""

    model_config = ConfigDict(frozen=False, extra="ignore")  # the sweep fills it in as it goes

    checked: int = 0
    launched: str | None = None
    launched_for: dict[str, str] = Field(default_factory=dict)
    failed: dict[str, str] = Field(default_factory=dict)
    errors: list[str] = Field(default_factory=list)

    def wire(self) -> dict[str, Any]:
        return self.model_dump(mode="json")  # ``launched: null`` when nothing was launched
