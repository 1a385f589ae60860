"""Cloud Storage behind a small interface (the GCS emulator when ``STORAGE_EMULATOR_HOST`` is set).

Google's errors become the error tree's by ``scenerender.cloud.google_errors``: a missing object is a
``MissingError`` (a ``FileNotFoundError``), a lost create-only race an ``AlreadyWrittenError``
(a ``FileExistsError``), an unavailable service a ``TransientError``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from google.api_core import exceptions as gexc
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from scenerender.cloud.google_errors import translate
from scenerender.errors import SceneRenderError
from scenerender.settings import SEVEN_DAYS_S, Settings


def parse_gs_uri(uri: str) -> tuple[str, str]:
    """``gs://bucket/name`` -> (bucket, name)."""
    if not uri.startswith("gs://"):
        raise ValueError(f"not a gs:// URI: {uri!r}")
    bucket, _, name = uri[5:].partition("/")
    if not bucket or not name:
        raise ValueError(f"gs:// URI needs a bucket and an object name: {uri!r}")
    return bucket, name


def _translate(exc: Exception, uri: str) -> SceneRenderError:
    return translate(exc, f"Cloud Storage: {uri}")


class GcsBlobStore:
    """``scenerender.ports.Blobs`` on google-cloud-storage."""

    def __init__(self, settings: Settings, client: storage.Client | None = None) -> None:
        self.settings = settings
        self.emulated = bool(settings.storage_emulator_host)
        if client is None:
            if self.emulated:
                # The emulator's address from the settings, not STORAGE_EMULATOR_HOST: the
                # process's environment does not decide which cloud it talks to.
                client = storage.Client(
                    project=settings.project_id,
                    credentials=AnonymousCredentials(),
                    client_options={"api_endpoint": settings.storage_emulator_host},
                )
            else:
                client = storage.Client(project=settings.project_id)
        self.client = client

    def _blob(self, uri: str, generation: str | None = None) -> storage.Blob:
        bucket, name = parse_gs_uri(uri)
        blob: storage.Blob = self.client.bucket(bucket).blob(name, generation=int(generation) if generation else None)
        return blob

    def read_bytes(self, uri: str, *, generation: str | None = None, max_bytes: int | None = None) -> bytes:
        """The object's bytes; with ``generation``, exactly that generation (FileNotFoundError once
        it is replaced); with ``max_bytes``, never more than ``max_bytes + 1`` bytes are read."""
        try:
            end = None if max_bytes is None else max_bytes  # inclusive: one byte more tells "too large"
            return bytes(self._blob(uri, generation).download_as_bytes(start=0 if end is not None else None, end=end))
        except gexc.RequestRangeNotSatisfiable:
            return b""  # an empty object has no byte 0
        except Exception as exc:
            raise _translate(exc, uri) from exc

    def size(self, uri: str, *, generation: str | None = None) -> int:
        """The object's size from its metadata, without reading it."""
        blob = self._blob(uri, generation)
        try:
            blob.reload()
        except Exception as exc:
            raise _translate(exc, uri) from exc
        return int(blob.size or 0)

    def download(self, uri: str, dest: Path, *, max_bytes: int | None = None) -> None:
        blob = self._blob(uri)
        try:
            blob.reload()
            if max_bytes is not None and (blob.size or 0) > max_bytes:
                raise SceneRenderError(f"{uri} is {blob.size} bytes; the limit is {max_bytes}")
            blob.download_to_filename(str(dest))
        except SceneRenderError:
            raise
        except Exception as exc:
            dest.unlink(missing_ok=True)
            raise _translate(exc, uri) from exc

    def upload_file(self, src: Path, uri: str, *, content_type: str) -> None:
        # A GCS object becomes visible only when its upload completes: readers never see half.
        try:
            self._blob(uri).upload_from_filename(str(src), content_type=content_type)
        except Exception as exc:
            raise _translate(exc, uri) from exc

    def write_bytes(self, uri: str, data: bytes, *, content_type: str, if_generation_match: int | None = None) -> int:
        blob = self._blob(uri)
        try:
            blob.upload_from_string(data, content_type=content_type, if_generation_match=if_generation_match)
        except Exception as exc:
            raise _translate(exc, uri) from exc
        return int(blob.generation or 0)

    def exists(self, uri: str) -> bool:
        try:
            return bool(self._blob(uri).exists())
        except Exception as exc:
            raise _translate(exc, uri) from exc

    def delete(self, uri: str) -> None:
        try:
            self._blob(uri).delete()
        except gexc.NotFound:
            pass
        except Exception as exc:
            raise _translate(exc, uri) from exc

    def list_uris(self, prefix_uri: str) -> list[str]:
        bucket, _, prefix = prefix_uri[5:].partition("/")
        try:
            return [f"gs://{bucket}/{b.name}" for b in self.client.list_blobs(bucket, prefix=prefix)]
        except Exception as exc:
            raise _translate(exc, prefix_uri) from exc

    def ensure_bucket(self, name: str) -> None:
        """Create the bucket if it is missing (the local cloud; Terraform makes them on GCP)."""
        try:
            if self.client.lookup_bucket(name) is None:
                self.client.create_bucket(name)
        except gexc.Conflict:
            pass
        except Exception as exc:
            raise _translate(exc, f"gs://{name}") from exc

    def signed_url(self, uri: str, ttl_s: int) -> tuple[str, datetime]:
        """A V4 signed GET URL, at most 7 days. Signs with the key file when there is one,
        otherwise through IAM signBlob as the runtime service account (Cloud Run has no key)."""
        return self._sign(uri, ttl_s, method="GET")

    def signed_upload_url(self, uri: str, ttl_s: int, *, content_type: str, max_bytes: int) -> tuple[str, datetime]:
        """A V4 signed PUT URL for exactly this object: the signature covers its path, the content
        type and ``x-goog-content-length-range`` (0..max_bytes), so the holder can write this one
        object, of that type and at most that size, and nothing else."""
        return self._sign(
            uri,
            ttl_s,
            method="PUT",
            content_type=content_type,
            headers={"x-goog-content-length-range": f"0,{max_bytes}"},
        )

    def _sign(self, uri: str, ttl_s: int, **extra: Any) -> tuple[str, datetime]:
        ttl = timedelta(seconds=min(ttl_s, SEVEN_DAYS_S))
        expires = datetime.now(UTC).replace(microsecond=0) + ttl
        kwargs: dict[str, Any] = {"version": "v4", "expiration": ttl, **extra}
        if self.settings.signing_endpoint:
            kwargs["api_access_endpoint"] = self.settings.signing_endpoint
        key_file = self.settings.credentials_file
        try:
            if key_file and Path(key_file).is_file():
                from google.oauth2 import service_account

                kwargs["credentials"] = service_account.Credentials.from_service_account_file(key_file)
            else:
                import google.auth
                from google.auth.transport.requests import Request

                credentials, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
                credentials.refresh(Request())
                kwargs["service_account_email"] = self.settings.signer_service_account or getattr(
                    credentials, "service_account_email", ""
                )
                kwargs["access_token"] = credentials.token
            return str(self._blob(uri).generate_signed_url(**kwargs)), expires
        except Exception as exc:
            raise _translate(exc, uri) from exc
