"""What starts a job: a spec object's notification, and reading that object safely.

Also the small rules on a job document's origin that every acceptance path shares: whether
a document came from this very event (a redelivery) or from a newer generation of its object.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any

from scenerender.core.spec import JobSpec
from scenerender.core.tenancy import SPEC_PREFIX, job_id_from_object, object_size_refusal, valid_job_id
from scenerender.errors import SpecError
from scenerender.messages import BatchDocument, JobDocument
from scenerender.pipeline.batch import is_batch
from scenerender.ports import Blobs
from scenerender.settings import Settings

FINALIZE = "OBJECT_FINALIZE"


@dataclass(frozen=True)
class SpecEvent:
    """A GCS object notification, as its Pub/Sub attributes carry it."""

    bucket: str
    name: str
    generation: str
    event_type: str

    @classmethod
    def from_attributes(cls, attributes: dict[str, str]) -> SpecEvent:
        return cls(
            bucket=attributes.get("bucketId", ""),
            name=attributes.get("objectId", ""),
            generation=attributes.get("objectGeneration", ""),
            event_type=attributes.get("eventType", ""),
        )

    @property
    def uri(self) -> str:
        return f"gs://{self.bucket}/{self.name}"

    @property
    def starts_a_job(self) -> bool:
        return self.event_type == FINALIZE and self.name.startswith(SPEC_PREFIX) and self.name.endswith(".json")


def read_spec_object(event: SpecEvent, settings: Settings, blobs: Blobs) -> bytes:
    """The event's generation of the spec object, its size read from the metadata first.

    A batch may be larger than a spec, and which one it is shows only in its bytes: an
    object over the larger limit is never read; one over the spec limit is refused when it
    turns out not to be a batch (``parse_spec``). Raises FileNotFoundError when that
    generation is no longer there, ``LimitExceededError`` when it is too large.
    """
    limit = max(settings.max_spec_bytes, settings.max_batch_bytes)
    setting = "max_batch_bytes" if settings.max_batch_bytes >= settings.max_spec_bytes else "max_spec_bytes"
    generation = event.generation or None
    size = blobs.size(event.uri, generation=generation)
    refused = object_size_refusal(size, limit, setting, "the spec object")
    if refused is not None:
        raise refused
    raw = blobs.read_bytes(event.uri, generation=generation, max_bytes=limit)
    refused = object_size_refusal(len(raw), limit, setting, "the spec object")
    if refused is not None:  # grew past its metadata: never trusted further than the limit
        raise refused
    if is_batch(raw):
        refused = object_size_refusal(len(raw), settings.max_batch_bytes, "max_batch_bytes", "the batch file")
        if refused is not None:
            raise refused
    return raw


def queued_document(
    event: SpecEvent, spec: JobSpec, *, owner_uid: str | None, batch_id: str | None, **more: Any
) -> JobDocument:
    """A new run's QUEUED document for the job of ``spec``, from the object ``event`` names."""
    return JobDocument.queued(
        spec_uri=event.uri,
        spec_generation=event.generation,
        project_id=spec.project_id,
        scene_id=spec.scene_id,
        owner_uid=owner_uid,
        batch_id=batch_id,
        run_id=new_run_id(),
        **more,
    )


def new_run_id() -> str:
    """Names one run of a job (its outputs' folder), so an old URL never serves a newer render."""
    return secrets.token_hex(6)


def spec_object_name(job_id: str) -> str:
    return f"{SPEC_PREFIX}{job_id}.json"


def same_event(doc: JobDocument | BatchDocument | None, event: SpecEvent) -> bool:
    """The document was written from this very event (this is a redelivery)."""
    return doc is not None and doc.spec_uri == event.uri and doc.spec_generation == str(event.generation)


def is_stale(doc: JobDocument | BatchDocument | None, event: SpecEvent) -> bool:
    """An older generation of the object whose newer generation the document was made from."""
    if doc is None or doc.spec_uri != event.uri:
        return False
    try:
        return int(doc.spec_generation) > int(event.generation)
    except ValueError:
        return False


def object_job_id(name: str) -> str | None:
    """The job id an object's name gives, or None when it gives none."""
    try:
        return job_id_from_object(name)
    except SpecError:
        return None


def id_from_raw(raw: bytes, key: str = "job_id") -> str | None:
    """The id an invalid spec asked for (or its owner), when it is readable and valid, so its user finds the job."""
    try:
        data = json.loads(raw)
        candidate = data.get(key) if isinstance(data, dict) else None
        if isinstance(candidate, str) and valid_job_id(candidate):
            return candidate
    except (ValueError, RecursionError):
        pass
    return None
