"""In-memory stand-ins for the stores, for unit tests of the pipeline's doors.

The integration tests run the same doors on the real emulators.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from scenerender.cloud.jobs import may_take


class FakeBlobs:
    """Objects by URI; ``generations`` holds an object's generation when a test sets one (as
    GCS without versioning, only the latest generation can be read)."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.generations: dict[str, str] = {}
        self.reads: list[str] = []  # every URI whose bytes were read

    def _check_generation(self, uri: str, generation: str | None) -> None:
        if uri not in self.objects:
            raise FileNotFoundError(uri)
        if generation is not None and uri in self.generations and self.generations[uri] != generation:
            raise FileNotFoundError(f"{uri}#{generation}")

    def read_bytes(self, uri: str, *, generation: str | None = None, max_bytes: int | None = None) -> bytes:
        self._check_generation(uri, generation)
        self.reads.append(uri)
        data = self.objects[uri]
        return data if max_bytes is None else data[: max_bytes + 1]

    def size(self, uri: str, *, generation: str | None = None) -> int:
        self._check_generation(uri, generation)
        return len(self.objects[uri])

    def write_bytes(self, uri: str, data: bytes, *, content_type: str, if_generation_match: int | None = None) -> int:
        self.objects[uri] = data
        self.generations.pop(uri, None)
        return len(self.objects)

    def download(self, uri: str, dest: Path, *, max_bytes: int | None = None) -> None:
        dest.write_bytes(self.read_bytes(uri))

    def upload_file(self, src: Path, uri: str, *, content_type: str) -> None:
        self.objects[uri] = src.read_bytes()

    def signed_url(self, uri: str, ttl_s: int) -> tuple[str, datetime]:
        return f"https://signed.example/{uri[5:]}?X-Goog-Signature=abc", datetime.now(UTC) + timedelta(seconds=ttl_s)

    def signed_upload_url(self, uri: str, ttl_s: int, *, content_type: str, max_bytes: int) -> tuple[str, datetime]:
        return f"https://signed.example/{uri[5:]}?put=1", datetime.now(UTC) + timedelta(seconds=ttl_s)

    def exists(self, uri: str) -> bool:
        return uri in self.objects


class FakeJobs:
    def __init__(self) -> None:
        self.docs: dict[str, dict[str, Any]] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self.refusals: dict[str, dict[str, Any]] = {}

    def create_job(self, job_id: str, fields: dict[str, Any]) -> bool:
        if job_id in self.docs:
            return False
        self.docs[job_id] = {"job_id": job_id, **copy.deepcopy(fields)}
        return True

    def get(self, job_id: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.docs.get(job_id))

    def count_active(self, owner_uid: str) -> int:
        active = ("QUEUED", "RUNNING")
        return sum(d.get("owner_uid") == owner_uid and d.get("status") in active for d in self.docs.values())

    def mark_running(self, job_id: str, worker: str = "", execution: str = "") -> int:
        doc = self.docs[job_id]
        if doc["status"] in ("COMPLETED", "FAILED"):
            return 0
        doc["status"] = "RUNNING"
        doc["attempt"] = doc.get("attempt", 0) + 1
        return int(doc["attempt"])

    def heartbeat(self, job_id: str) -> None:
        self.docs[job_id]["heartbeat"] = True

    def claim_publish(self, job_id: str, generation: str) -> bool:
        doc = self.docs[job_id]
        if doc["status"] != "QUEUED" or doc.get("request_published") or str(doc.get("spec_generation")) != generation:
            return False
        doc["request_published"] = True
        return True

    def release_publish(self, job_id: str) -> None:
        self.docs[job_id]["request_published"] = False

    def requeue(self, job_id: str, fields: dict[str, Any]) -> bool:
        doc = self.docs[job_id]
        if doc["status"] not in ("COMPLETED", "FAILED") or not may_take(doc, fields.get("owner_uid")):
            return False
        history = [*doc.get("history", []), {"status": doc["status"], "output": doc.get("output")}]
        self.docs[job_id] = {"job_id": job_id, **copy.deepcopy(fields), "history": history}
        return True

    def get_batch(self, batch_id: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.batches.get(batch_id))

    def claim_batch(
        self, batch_id: str, owner_uid: str | None, fields: dict[str, Any], initial: dict[str, Any] | None = None
    ) -> str | None:
        doc = self.batches.get(batch_id)
        if doc is None:
            self.batches[batch_id] = {
                **copy.deepcopy(initial or {}),
                "batch_id": batch_id,
                "progress": 0.0,
                **copy.deepcopy(fields),
                "owner_uid": owner_uid,
            }
            return None
        if not may_take(doc, owner_uid):
            return str(doc.get("owner_uid"))
        doc.update({**copy.deepcopy(fields), "owner_uid": owner_uid})
        return None

    def record_refusal(self, refusal_id: str, fields: dict[str, Any]) -> None:
        self.refusals.setdefault(refusal_id, copy.deepcopy(fields))

    def unfinished(self) -> list[dict[str, Any]]:
        return [copy.deepcopy(d) for d in self.docs.values() if d["status"] in ("QUEUED", "RUNNING")]

    def claim_launch(self, job_id: str, expected_execution: str, stale_s: float) -> bool:
        doc = self.docs[job_id]
        if doc["status"] not in ("QUEUED", "RUNNING") or not doc.get("request_published"):
            return False
        if str(doc.get("execution") or "") != expected_execution or doc.get("launch_state") == "requested":
            return False
        doc.update(launch_state="requested")
        return True

    def record_launch(self, job_id: str, execution: str, task_count: int) -> None:
        doc = self.docs[job_id]
        doc.update(launch_state="launched", execution=execution, execution_tasks=task_count, launch_error=None)
        doc.update(launches=doc.get("launches", 0) + 1)

    def release_launch(self, job_id: str, error: dict[str, Any]) -> None:
        self.docs[job_id].update(launch_state="failed", launch_error=copy.deepcopy(error))

    def batch_jobs(self, batch_id: str) -> list[dict[str, Any]]:
        return [copy.deepcopy(d) for d in self.docs.values() if d.get("batch_id") == batch_id]

    def save_batch(self, batch_id: str, fields: dict[str, Any], summary: Any) -> None:
        doc = self.batches.setdefault(batch_id, {"batch_id": batch_id})
        new = {**fields, **summary(0.0, {**doc, **fields})}
        new["progress"] = max(doc.get("progress", 0.0), new["progress"])
        doc.update(new)

    def note(self, job_id: str, fields: dict[str, Any]) -> None:
        self.docs[job_id].update(copy.deepcopy(fields))

    def set_progress(self, job_id: str, stage: str, progress: float) -> None:
        doc = self.docs[job_id]
        if doc["status"] == "RUNNING" and progress >= doc.get("progress", 0.0):
            doc.update(stage=stage, progress=progress)

    def complete(self, job_id: str, output: dict[str, Any]) -> bool:
        doc = self.docs[job_id]
        if doc["status"] in ("COMPLETED", "FAILED"):
            return False
        doc.update(status="COMPLETED", output=output, progress=1.0)
        return True

    def fail(self, job_id: str, error: dict[str, Any]) -> bool:
        doc = self.docs[job_id]
        if doc["status"] in ("COMPLETED", "FAILED"):
            return False
        doc.update(status="FAILED", error=error)
        return True


class FakeBus:
    def __init__(self) -> None:
        self.published: list[tuple[str, dict[str, Any], dict[str, str]]] = []

    def publish(self, topic_name: str, payload: dict[str, Any], **attributes: str) -> str:
        self.published.append((topic_name, copy.deepcopy(payload), attributes))
        return str(len(self.published))

    def publish_many(self, topic_name: str, payloads: list[dict[str, Any]], **attributes: str) -> None:
        for payload in payloads:
            self.publish(topic_name, payload, **attributes)
