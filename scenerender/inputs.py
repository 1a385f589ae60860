"""Input resolution: every spec URL becomes a local file in the job's private temp dir.

ffmpeg never reads a URL itself; it only ever sees local files (and is run with
``-protocol_whitelist file``), so a spec cannot make it open hosts or protocols.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from scenerender.errors import InputRefusedError, InputUnreachableError, SceneRenderError

GsDownloader = Callable[[str, Path, int], None]
"""``(gs_uri, dest, max_bytes)``: copies one object to ``dest``; raises FileNotFoundError if missing."""

CHUNK = 1024 * 1024
MAX_REDIRECTS = 5


@dataclass(frozen=True)
class FetchPolicy:
    """Where inputs may come from and how much of them is read."""

    local_base: Path | None = (
        None  # local renders only: relative paths are resolved against the spec's folder
    )
    allowed_gs_buckets: tuple[str, ...] = ()
    max_bytes: int = 4 * 1024**3
    timeout_s: float = 30.0


class InputResolver:
    """Fetches each distinct URL once into ``dest_dir``."""

    def __init__(
        self,
        dest_dir: Path,
        policy: FetchPolicy,
        *,
        gs_download: GsDownloader | None = None,
        http_client: httpx.Client | None = None,
    ) -> None:
        self.dest_dir = dest_dir
        self.policy = policy
        self._gs_download = gs_download
        self._http = http_client
        self._fetched: dict[str, Path] = {}

    def resolve(self, url: str, input_path: str) -> Path:
        """Local path of ``url``; errors name ``input_path`` (``segments[2].url``)."""
        if url in self._fetched:
            return self._fetched[url]
        scheme = urlsplit(url).scheme.lower() if "://" in url else ""
        if scheme == "gs":
            path = self._fetch_gs(url, input_path)
        elif scheme == "https":
            path = self._fetch_https(url, input_path)
        elif scheme == "" and ":" not in url.split("/", 1)[0]:
            path = self._local(url, input_path)
        else:
            raise InputRefusedError(
                input_path,
                f"scheme {scheme or url.split(':', 1)[0]!r} is not allowed "
                "(use gs://, https:// or, locally, a relative path)",
                url=url,
            )
        self._fetched[url] = path
        return path

    def _target(self, url: str, suffix: str) -> Path:
        digest = hashlib.sha256(url.encode()).hexdigest()[:16]
        return self.dest_dir / f"in-{digest}{suffix.lower()[:8]}"

    def _local(self, url: str, input_path: str) -> Path:
        base = self.policy.local_base
        if base is None:
            raise InputRefusedError(input_path, "local paths are only allowed for local renders", url=url)
        path = Path(url)
        path = path if path.is_absolute() else (base / path)
        if not path.is_file():
            raise InputUnreachableError(input_path, f"file not found: {path}", url=url)
        size = path.stat().st_size
        if size > self.policy.max_bytes:
            raise InputRefusedError(
                input_path, f"file is {size} bytes; the limit is {self.policy.max_bytes}", url=url
            )
        # A symlink keeps every input inside the private dir without copying gigabytes.
        link = self._target(str(path.resolve()), path.suffix)
        if not link.exists():
            os.symlink(path.resolve(), link)
        return link

    def _fetch_gs(self, url: str, input_path: str) -> Path:
        bucket = urlsplit(url).netloc
        if self.policy.allowed_gs_buckets and bucket not in self.policy.allowed_gs_buckets:
            raise InputRefusedError(input_path, f"bucket {bucket!r} is not an allowed input bucket", url=url)
        if self._gs_download is None:
            from scenerender.settings import get_settings
            from scenerender.storage import GcsBlobStore

            store = GcsBlobStore(get_settings())
            self._gs_download = lambda uri, dest, cap: store.download(uri, dest, max_bytes=cap)
        dest = self._target(url, Path(urlsplit(url).path).suffix)
        partial = dest.with_name(dest.name + ".part")
        try:
            self._gs_download(url, partial, self.policy.max_bytes)
        except FileNotFoundError as exc:
            raise InputUnreachableError(input_path, "object not found", url=url) from exc
        except SceneRenderError as exc:
            if exc.retryable:
                raise InputUnreachableError(
                    input_path, f"storage unavailable: {exc.message}", url=url
                ) from exc
            raise InputUnreachableError(input_path, exc.message, url=url) from exc
        os.replace(partial, dest)
        return dest

    def _fetch_https(self, url: str, input_path: str) -> Path:
        dest = self._target(url, Path(urlsplit(url).path).suffix)
        partial = dest.with_name(dest.name + ".part")
        client = self._http or httpx.Client(
            follow_redirects=True,
            max_redirects=MAX_REDIRECTS,
            timeout=httpx.Timeout(self.policy.timeout_s),
        )
        try:
            with client.stream("GET", url) as response:
                if response.status_code >= 400:
                    raise InputUnreachableError(input_path, f"HTTP {response.status_code}", url=url)
                declared = int(response.headers.get("content-length", "0") or 0)
                if declared > self.policy.max_bytes:
                    raise InputRefusedError(
                        input_path, f"{declared} bytes; the limit is {self.policy.max_bytes}", url=url
                    )
                written = 0
                with open(partial, "wb") as out:
                    for chunk in response.iter_bytes(CHUNK):
                        written += len(chunk)
                        if written > self.policy.max_bytes:
                            raise InputRefusedError(
                                input_path, f"more than {self.policy.max_bytes} bytes", url=url
                            )
                        out.write(chunk)
        except httpx.HTTPError as exc:
            partial.unlink(missing_ok=True)
            raise InputUnreachableError(input_path, f"{type(exc).__name__}: {exc}", url=url) from exc
        except InputRefusedError:
            partial.unlink(missing_ok=True)
            raise
        finally:
            if self._http is None:
                client.close()
        os.replace(partial, dest)
        return dest
