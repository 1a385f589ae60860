"""The client side of the pipeline: submit a spec, follow its job live, download the result."""

from __future__ import annotations

import json
import os
import queue
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from scenerender.cloud.jobs import JobStore
from scenerender.cloud.session import ApiClient
from scenerender.cloud.storage import GcsBlobStore
from scenerender.core.cache import file_digest
from scenerender.core.inputs import is_local_path, local_file
from scenerender.core.spec import JobSpec, default_job_id, load_json, parse_spec
from scenerender.errors import (
    ErrorDetail,
    InputUnreachableError,
    NotFoundError,
    SceneRenderError,
    SpecError,
    UnreadableDocumentError,
    all_error_classes,
)
from scenerender.messages import BatchDocument, BatchReceipt, JobDocument, JobReceipt
from scenerender.pipeline.steps import spec_object_name
from scenerender.settings import Settings


def exit_code_for(error_code: str) -> int:
    """The CLI exit code of a job that ended with ``error_code`` (the same mapping as local errors)."""
    codes = {cls.code: cls.exit_code for cls in all_error_classes() if cls.code != SceneRenderError.code}
    return codes.get(error_code, 1)


def upload_prefix(owner: Any) -> str:
    """Uploads go under the owner's own prefix, the only media of the bucket their spec may read."""
    return f"users/{owner}/uploads" if isinstance(owner, str) and owner else "uploads"


def upload_uri(local: Path, bucket: str, prefix: str = "uploads") -> str:
    """Where ``submit`` uploads a local file: named by its content, so an unchanged file is uploaded once."""
    return f"gs://{bucket}/{prefix}/{file_digest(local)[:16]}/{local.name}"


def _media_items(data: Any) -> list[tuple[str, dict[str, Any]]]:
    """(upload prefix, segment or clip) of a spec or of every scene of a batch."""
    specs = data.get("scenes") if isinstance(data, dict) and "scenes" in data else [data]
    items: list[tuple[str, dict[str, Any]]] = []
    for spec in specs if isinstance(specs, list) else []:
        if not isinstance(spec, dict):
            continue
        # A batch's scenes are its owner's (they name no owner of their own).
        prefix = upload_prefix(spec.get("owner_uid") or (data.get("owner_uid") if spec is not data else None))
        audio = spec.get("audio")
        audio = audio if isinstance(audio, dict) else {}
        for group in (spec.get("segments"), audio.get("clips")):
            if isinstance(group, list):
                items += [(prefix, item) for item in group if isinstance(item, dict)]
    return items


def user_paths(spec_path: Path, data: Any, bucket: str) -> dict[str, str]:
    """Each upload's URI -> the path the user's spec (or batch) gave for it, for messages."""
    base = spec_path.resolve().parent
    names: dict[str, str] = {}
    for prefix, item in _media_items(data):
        url = item.get("url")
        if isinstance(url, str) and "://" not in url and (base / url).is_file():
            names[upload_uri((base / url).resolve(), bucket, prefix)] = url
    return names


def upload_local_media(
    spec_path: Path, raw: dict[str, Any], blobs: GcsBlobStore, bucket: str, owner: str | None = None
) -> dict[str, Any]:
    """Upload inputs the spec names by local path, and point the spec at them (gs:// URLs).

    Objects are named by content hash, so an unchanged file is uploaded once; they go under
    the owner's own prefix (``users/{owner_uid}/``), the only media of the bucket their spec may read.
    """
    base = spec_path.resolve().parent
    prefix = upload_prefix(raw.get("owner_uid") or owner)
    uploaded: dict[str, str] = {}

    def rewrite(url: str) -> str:
        if "://" in url:
            return url
        if url not in uploaded:
            local = (base / url).resolve()
            uri = upload_uri(local, bucket, prefix)
            if not blobs.exists(uri):
                blobs.upload_file(local, uri, content_type="application/octet-stream")
            uploaded[url] = uri
        return uploaded[url]

    result: dict[str, Any] = json.loads(json.dumps(raw))
    for item in [*result.get("segments", []), *result.get("audio", {}).get("clips", [])]:
        if isinstance(item, dict) and isinstance(item.get("url"), str):
            item["url"] = rewrite(item["url"])
    return result


def upload_local_files(
    spec_path: Path,
    raw: dict[str, Any],
    upload: Callable[[Path], str],
    *,
    allow_outside: bool = False,
    prefix: str = "",
    names: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Upload inputs the spec names by local path with ``upload`` (-> gs:// URI), and point the
    spec at them.

    Only files in the spec's folder (or below it) are sent unless ``allow_outside``: a spec
    from elsewhere must not be able to make the command line upload ``../../.ssh/id_rsa``.
    """
    base = spec_path.resolve().parent
    uploaded: dict[str, str] = {}
    outside: list[ErrorDetail] = []

    def rewrite(where: str, url: str) -> str:
        if not is_local_path(url):
            return url
        if url not in uploaded:
            local = local_file(url, base).resolve()
            if not allow_outside and not local.is_relative_to(base):
                outside.append(
                    ErrorDetail(where, f"{url} is outside the spec's folder {base}; pass --allow-outside to upload it")
                )
                return url
            if not local.is_file():
                raise InputUnreachableError(where, "no such file", url=str(local))
            uploaded[url] = upload(local)
            if names is not None:  # the upload's URI -> the path the user wrote, for messages
                names[uploaded[url]] = url
        return uploaded[url]

    result: dict[str, Any] = json.loads(json.dumps(raw))
    for index, item in enumerate(result.get("segments", [])):
        if isinstance(item, dict) and isinstance(item.get("url"), str):
            item["url"] = rewrite(f"{prefix}segments[{index}].url", item["url"])
    for index, item in enumerate((result.get("audio") or {}).get("clips", [])):
        if isinstance(item, dict) and isinstance(item.get("url"), str):
            item["url"] = rewrite(f"{prefix}audio.clips[{index}].url", item["url"])
    if outside:
        raise SpecError.from_details(outside)
    return result


def submit_with_api(
    spec_path: Path,
    api: ApiClient,
    settings: Settings,
    *,
    allow_outside: bool = False,
    names: dict[str, str] | None = None,
) -> JobReceipt:
    """Validate the spec at ``spec_path`` here, upload its local media through the API's upload
    door, and POST it: the API's receipt."""
    raw_bytes = spec_path.read_bytes()
    spec = parse_spec(raw_bytes, max_bytes=settings.max_spec_bytes)
    raw = load_json(raw_bytes, max_bytes=settings.max_spec_bytes)
    data = upload_local_files(spec_path, raw, api.upload, allow_outside=allow_outside, names=names)
    data["job_id"] = spec.job_id or default_job_id(spec_path.name)
    return api.submit(json.dumps(data).encode())


def submit_batch_with_api(
    batch_path: Path, api: ApiClient, *, allow_outside: bool = False, names: dict[str, str] | None = None
) -> BatchReceipt:
    """``submit_with_api`` for a batch file: every scene's local media uploaded, then the batch POSTed."""
    from scenerender.pipeline.batch import parse_batch

    raw_bytes = batch_path.read_bytes()
    parse_batch(raw_bytes)
    data = load_json(raw_bytes, max_bytes=len(raw_bytes) + 1, what="batch")
    data["scenes"] = [
        upload_local_files(
            batch_path, scene, api.upload, allow_outside=allow_outside, prefix=f"scenes[{i}].", names=names
        )
        for i, scene in enumerate(data["scenes"])
    ]
    return api.submit_batch(json.dumps(data).encode())


def submit_batch(path: Path, settings: Settings, blobs: GcsBlobStore) -> tuple[str, str, int]:
    """Validate a batch file, upload its scenes' local media, drop it in the spec bucket."""
    from scenerender.pipeline.batch import parse_batch

    raw = path.read_bytes()
    batch = parse_batch(raw)
    data = load_json(raw, max_bytes=len(raw) + 1, what="batch")
    data["scenes"] = [
        upload_local_media(path, scene, blobs, settings.media_bucket, owner=batch.owner_uid) for scene in data["scenes"]
    ]
    uri = f"gs://{settings.spec_bucket}/{spec_object_name(batch.batch_id)}"
    generation = blobs.write_bytes(uri, json.dumps(data).encode(), content_type="application/json")
    return batch.batch_id, uri, generation


def follow_batch(
    jobs: JobStore,
    batch_id: str,
    *,
    on_update: Callable[[BatchDocument], None],
    timeout_s: float = 3 * 3600.0,
    grace_s: float | None = None,
    spec_exists: Callable[[], bool] | None = None,
) -> BatchDocument:
    """Follow a batch document with a realtime listener until every scene has ended
    (``grace_s``, ``spec_exists``: as for ``follow``)."""
    if grace_s is not None and jobs.get_batch(batch_id) is None and not (spec_exists and spec_exists()):
        raise _not_found("batch", batch_id)
    updates: queue.Queue[BatchDocument | UnreadableDocumentError | None] = queue.Queue()
    watch = jobs.watch_batch(batch_id, updates.put)
    started = time.monotonic()
    deadline = started + timeout_s
    seen = False
    try:
        while time.monotonic() < deadline:
            try:
                doc = updates.get(timeout=0.5)
            except queue.Empty:
                doc = None
            if doc is None:
                if not seen and grace_s is not None and time.monotonic() - started > grace_s:
                    raise _not_found("batch", batch_id, grace_s)
                continue
            if isinstance(doc, UnreadableDocumentError):
                raise doc
            seen = True
            on_update(doc)
            if doc.status.ended:
                return doc
        raise SceneRenderError(f"batch {batch_id} did not end within {timeout_s:.0f} s")
    finally:
        watch.unsubscribe()


def submit(spec_path: Path, settings: Settings, blobs: GcsBlobStore) -> tuple[str, str, int]:
    """Validate ``spec_path`` here, upload its local media, drop it in the spec bucket: (job_id, uri, generation)."""
    raw_bytes = spec_path.read_bytes()
    spec: JobSpec = parse_spec(raw_bytes, max_bytes=settings.max_spec_bytes)
    job_id = spec.job_id or default_job_id(spec_path.name)
    data = upload_local_media(
        spec_path, load_json(raw_bytes, max_bytes=settings.max_spec_bytes), blobs, settings.media_bucket
    )
    data["job_id"] = job_id
    uri = f"gs://{settings.spec_bucket}/{spec_object_name(job_id)}"
    generation = blobs.write_bytes(uri, json.dumps(data).encode(), content_type="application/json")
    return job_id, uri, generation


def follow(
    jobs: JobStore,
    job_id: str,
    *,
    on_update: Callable[[JobDocument], None],
    generation: int | None = None,
    timeout_s: float = 3600.0,
    grace_s: float | None = None,
    spec_exists: Callable[[], bool] | None = None,
) -> JobDocument:
    """Follow the job with a realtime listener until it ends; returns the final document.

    With ``generation``, states of an earlier run of the same job id are ignored. With
    ``grace_s``, a job that does not exist is ``NotFoundError``: at once if ``spec_exists``
    says no spec is on its way either, else once ``grace_s`` has passed without it appearing.
    """
    if grace_s is not None and jobs.get(job_id) is None and not (spec_exists and spec_exists()):
        raise _not_found("job", job_id)
    updates: queue.Queue[JobDocument | UnreadableDocumentError | None] = queue.Queue()
    watch = jobs.watch(job_id, updates.put)
    started = time.monotonic()
    deadline = started + timeout_s
    seen = False
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise SceneRenderError(f"job {job_id} did not end within {timeout_s:.0f} s")
            try:
                doc = updates.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                doc = None
            if doc is None:
                if not seen and grace_s is not None and time.monotonic() - started > grace_s:
                    raise _not_found("job", job_id, grace_s)
                continue
            if isinstance(doc, UnreadableDocumentError):
                raise doc
            seen = True
            if generation is not None and doc.spec_generation != str(generation):
                continue
            on_update(doc)
            if doc.status.ended:
                return doc
    finally:
        watch.unsubscribe()


def _not_found(what: str, ident: str, waited_s: float | None = None) -> NotFoundError:
    if waited_s is None:
        problem = f"no {what} {ident!r}, and no spec for it (jobs/{ident}.json) in the spec bucket"
    else:
        problem = f"its spec is in the spec bucket, but no {what} {ident!r} appeared within {waited_s:g} s"
    return NotFoundError(f"{what} {ident}: {problem}", details=[ErrorDetail("ID", problem)])


def download(url: str, out: Path) -> None:
    """Download a signed URL to ``out`` (temp name first, then renamed into place)."""
    part = out.with_name(f".{out.name}.part-{os.getpid()}")
    try:
        with httpx.stream("GET", url, timeout=60, follow_redirects=True) as response:
            if response.status_code != 200:
                raise SceneRenderError(f"download failed: HTTP {response.status_code}")
            with open(part, "wb") as fh:
                for chunk in response.iter_bytes():
                    fh.write(chunk)
        os.replace(part, out)
    except httpx.HTTPError as exc:
        raise SceneRenderError(f"download failed: {exc}") from exc
    finally:
        part.unlink(missing_ok=True)
