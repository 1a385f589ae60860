"""Input resolution: every spec URL becomes a local file in the job's private temp dir.

ffmpeg never reads a URL itself; it only ever sees local files (and is run with
``-protocol_whitelist file``), so a spec cannot make it open hosts or protocols.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urljoin, urlsplit

from scenerender.errors import InputRefusedError, InputUnreachableError, SceneRenderError

if TYPE_CHECKING:
    import httpx

    from scenerender.core.tenancy import MediaScope
    from scenerender.settings import Settings

GsDownloader = Callable[[str, Path, int], None]
"""``(gs_uri, dest, max_bytes)``: copies one object to ``dest``; raises FileNotFoundError if missing."""

HostResolver = Callable[[str, int], list[str]]
"""``(host, port)`` -> the addresses it resolves to (injectable, so tests can map names)."""

MAX_REDIRECTS = 5
# Names that reach the machine's own metadata server, whatever they resolve to.
BLOCKED_HOSTS = frozenset({"metadata.google.internal", "metadata", "metadata.goog"})


def system_resolver(host: str, port: int) -> list[str]:
    return sorted({str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)})


def address_refusal(address: str) -> str | None:
    """Why an address may not be fetched from (private, loopback, link-local, ...), or None."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for label, flag in (
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("private", ip.is_private),
        ("multicast", ip.is_multicast),
        ("reserved", ip.is_reserved),
        ("unspecified", ip.is_unspecified),
    ):
        if flag:
            return f"{label} address {ip}"
    return None if ip.is_global else f"non-public address {ip}"


@dataclass(frozen=True)
class FetchPolicy:
    """Where inputs may come from and how much of them is read."""

    local_base: Path | None = None  # local renders only: relative paths are resolved against the spec's folder
    allowed_gs_buckets: tuple[str, ...] = ()
    max_bytes: int = 2 * 1024**3
    timeout_s: float = 30.0  # connect and per-read
    total_timeout_s: float = 600.0  # a whole download, so a slow drip cannot hold a worker
    max_redirects: int = MAX_REDIRECTS
    # Which resolved addresses are refused, and why; tests of the fetch mechanics (a server
    # on loopback, no TLS) hand in a narrower check and allow plain HTTP.
    address_check: Callable[[str], str | None] = address_refusal
    allow_plain_http: bool = False
    # The pipeline's renders: only the media the job's owner may read (checked again at each
    # fetch although the spec function checked the spec: the request may not come from it).
    # None for local renders, where the user reads with their own credentials.
    media_scope: MediaScope | None = None
    # The pipeline's memory budget: bytes it leaves for what inputs become when decoded (an
    # animated WebP's frames, scenerender.core.webp); None without a budget.
    memory_left: int | None = None

    @classmethod
    def from_settings(
        cls, settings: Settings, local_base: Path | None = None, *, media_scope: MediaScope | None = None
    ) -> FetchPolicy:
        """The configured policy: every door (CLI, worker, helper) fetches under the same one."""
        return cls(
            local_base=local_base,
            allowed_gs_buckets=tuple(settings.allowed_gs_buckets),
            max_bytes=settings.max_input_bytes,
            timeout_s=settings.fetch_timeout_s,
            media_scope=media_scope,
        )


def is_local_path(url: str) -> bool:
    """A spec URL that names a file on this machine: no scheme, and no drive-like prefix."""
    return "://" not in url and ":" not in url.split("/", 1)[0]


def local_file(url: str, base: Path) -> Path:
    """The file a local spec URL names: a relative one is relative to ``base``, the spec's folder."""
    path = Path(url)
    return path if path.is_absolute() else base / path


class InputResolver:
    """Fetches each distinct URL once into ``dest_dir``."""

    def __init__(
        self,
        dest_dir: Path,
        policy: FetchPolicy,
        *,
        gs_download: GsDownloader | None = None,
        resolver: HostResolver = system_resolver,
    ) -> None:
        self.dest_dir = dest_dir
        self.policy = policy
        self._gs_download = gs_download
        self._resolve_host = resolver
        self._fetched: dict[str, Path] = {}
        self._stopped = threading.Event()

    def stop(self) -> None:
        """The render is over (an input failed, or the user stopped it): downloads still
        running end at their next chunk instead of fetching what nobody will read."""
        self._stopped.set()

    def resolve(self, url: str, input_path: str) -> Path:
        """Local path of ``url``; errors name ``input_path`` (``segments[2].url``)."""
        if url in self._fetched:
            return self._fetched[url]
        scheme = urlsplit(url).scheme.lower() if "://" in url else ""
        if scheme == "gs":
            path = self._fetch_gs(url, input_path)
        elif scheme == "https" or (scheme == "http" and self.policy.allow_plain_http):
            path = self._fetch_https(url, input_path)
        elif is_local_path(url):
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
        path = local_file(url, base)
        if not path.is_file():
            raise InputUnreachableError(input_path, f"file not found: {path}", url=url)
        size = path.stat().st_size
        if size > self.policy.max_bytes:
            raise InputRefusedError(input_path, f"file is {size} bytes; the limit is {self.policy.max_bytes}", url=url)
        # A symlink keeps every input inside the private dir without copying gigabytes.
        link = self._target(str(path.resolve()), path.suffix)
        # Two spellings of one file, resolved at once by two probe threads, make the same link.
        with contextlib.suppress(FileExistsError):
            os.symlink(path.resolve(), link)
        return link

    def _fetch_gs(self, url: str, input_path: str) -> Path:
        bucket = urlsplit(url).netloc
        if self.policy.allowed_gs_buckets and bucket not in self.policy.allowed_gs_buckets:
            raise InputRefusedError(input_path, f"bucket {bucket!r} is not an allowed input bucket", url=url)
        refusal = self.policy.media_scope.refusal(url) if self.policy.media_scope is not None else None
        if refusal is not None:
            raise InputRefusedError(input_path, refusal, url=url)
        if self._gs_download is None:
            # The door hands in a downloader (scenerender.cloud.gs_inputs.lazy_gs_download):
            # the render core knows no cloud client.
            raise InputUnreachableError(input_path, "gs:// inputs cannot be read here (no storage client)", url=url)
        dest = self._target(url, Path(urlsplit(url).path).suffix)
        partial = dest.with_name(dest.name + ".part")
        try:
            self._gs_download(url, partial, self.policy.max_bytes)
        except FileNotFoundError as exc:
            raise InputUnreachableError(input_path, "object not found", url=url) from exc
        except SceneRenderError as exc:
            if exc.retryable:
                raise InputUnreachableError(input_path, f"storage unavailable: {exc.message}", url=url) from exc
            raise InputUnreachableError(input_path, exc.message, url=url) from exc
        os.replace(partial, dest)
        return dest

    def _checked_address(self, url: str, input_path: str, original: str) -> tuple[str, str, int, str]:
        """(scheme, host, port, address) of ``url``, after the host passed the address policy."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme != "https" and not (scheme == "http" and self.policy.allow_plain_http):
            raise InputRefusedError(
                input_path, f"redirect to a {scheme or 'relative'} URL is not allowed", url=original
            )
        host = (parts.hostname or "").lower().rstrip(".")
        if not host or host in BLOCKED_HOSTS:
            raise InputRefusedError(input_path, f"host {host or '(none)'} is not allowed", url=original)
        port = parts.port or (443 if scheme == "https" else 80)
        try:
            addresses = self._resolve_host(host, port)
        except OSError as exc:
            raise InputUnreachableError(input_path, f"cannot resolve {host}: {exc}", url=original) from exc
        if not addresses:
            raise InputUnreachableError(input_path, f"{host} has no address", url=original)
        for address in addresses:
            reason = self.policy.address_check(address)
            if reason:
                raise InputRefusedError(input_path, f"{host} resolves to a {reason}", url=original)
        return scheme, host, port, addresses[0]

    def _fetch_https(self, url: str, input_path: str) -> Path:
        """Download with the address checked at every hop and pinned for the connection.

        The request goes to the address that was checked (the name is kept for the Host
        header and TLS), so a DNS answer that changes between check and connect cannot
        redirect the fetch to an internal host; each redirect is checked the same way.
        """
        import httpx  # only remote renders fetch over HTTP: not imported at every CLI start

        dest = self._target(url, Path(urlsplit(url).path).suffix)
        partial = dest.with_name(dest.name + ".part")
        deadline = time.monotonic() + self.policy.total_timeout_s
        current = url
        try:
            with httpx.Client(
                follow_redirects=False, timeout=httpx.Timeout(self.policy.timeout_s), trust_env=False
            ) as client:
                for _ in range(self.policy.max_redirects + 1):
                    scheme, host, port, address = self._checked_address(current, input_path, url)
                    parts = urlsplit(current)
                    literal = f"[{address}]" if ":" in address else address
                    pinned = f"{scheme}://{literal}:{port}{parts.path or '/'}" + (
                        f"?{parts.query}" if parts.query else ""
                    )
                    request = client.build_request(
                        "GET",
                        pinned,
                        headers={"Host": parts.netloc.rsplit("@", 1)[-1]},
                        extensions={"sni_hostname": host} if scheme == "https" else {},
                    )
                    response = client.send(request, stream=True)
                    try:
                        if response.is_redirect:
                            location = response.headers.get("location", "")
                            current = urljoin(current, location)
                            continue
                        self._save(response, partial, input_path, url, deadline)
                        break
                    finally:
                        response.close()
                else:
                    raise InputRefusedError(input_path, f"more than {self.policy.max_redirects} redirects", url=url)
        except httpx.HTTPError as exc:
            partial.unlink(missing_ok=True)
            raise InputUnreachableError(input_path, f"{type(exc).__name__}: {exc}", url=url) from exc
        except (InputRefusedError, InputUnreachableError):
            partial.unlink(missing_ok=True)
            raise
        os.replace(partial, dest)
        return dest

    def _save(self, response: httpx.Response, partial: Path, input_path: str, url: str, deadline: float) -> None:
        if response.status_code >= 400:
            raise InputUnreachableError(input_path, f"HTTP {response.status_code}", url=url)
        declared = int(response.headers.get("content-length", "0") or 0)
        if declared > self.policy.max_bytes:
            raise InputRefusedError(input_path, f"{declared} bytes; the limit is {self.policy.max_bytes}", url=url)
        written = 0
        with open(partial, "wb") as out:
            for chunk in response.iter_bytes():  # as it arrives, so the deadline is seen
                written += len(chunk)
                if written > self.policy.max_bytes:
                    raise InputRefusedError(input_path, f"more than {self.policy.max_bytes} bytes", url=url)
                if self._stopped.is_set():
                    raise InputUnreachableError(input_path, "download stopped: the render ended", url=url)
                if time.monotonic() > deadline:
                    raise InputUnreachableError(
                        input_path, f"download took longer than {self.policy.total_timeout_s:g} s", url=url
                    )
                out.write(chunk)
