"""Normalised segments stored under a content address, so no segment is encoded twice.

The address covers everything the encoded bytes depend on: the source file's content and
every normalisation parameter (the planned ffmpeg arguments, paths and thread count left
out). Re-rendering a scene after one segment changed encodes that one segment; the others
are copied from the cache.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import threading
from pathlib import Path
from typing import Protocol

from scenerender.errors import SceneRenderError
from scenerender.ports import Blobs

log = logging.getLogger(__name__)
CACHE_VERSION = "1"  # bump when the encoded output changes for the same arguments


class SegmentCache(Protocol):
    def fetch(self, key: str, dest: Path) -> bool:
        """Copy the entry to ``dest``; False when there is none."""

    def store(self, key: str, src: Path) -> bool:
        """Keep ``src`` under ``key``; False if it could not (a failed store never fails a render)."""


def file_digest(path: Path) -> str:
    # One reused buffer: a new megabyte per read would stay resident in each thread's heap.
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


SOURCE, OUTPUT = "<source>", "<output>"


def segment_template(argv: list[str], source: Path, output: Path) -> list[str]:
    """A normalisation command without its binary, paths or encoder thread count.

    This is what the encoded bytes depend on, so it is both the cache address's input and
    what a work item carries to another worker (which fills in its own paths and threads).
    The decoder's and filters' thread options are fixed by the plan and stay in.
    """
    after_input = len(argv) - 1 - argv[::-1].index("-i") if "-i" in argv else 0
    encoder_threads = next((i for i in range(after_input, len(argv)) if argv[i] == "-threads"), None)
    template: list[str] = []
    for i, arg in enumerate(argv[1:], start=1):
        if encoder_threads is not None and i in (encoder_threads, encoder_threads + 1):
            continue  # the encoder's thread count changes nothing a player can see
        template.append({str(source): SOURCE, str(output): OUTPUT}.get(arg, arg))
    return template


def materialize(template: list[str], *, ffmpeg: str, source: Path, output: Path, threads: int) -> list[str]:
    """The runnable command for ``template`` on this machine."""
    args = [{SOURCE: str(source), OUTPUT: str(output)}.get(arg, arg) for arg in template]
    # Output options go before the output file, which the plan always puts last.
    return [ffmpeg, *args[:-1], "-threads", str(threads), args[-1]]


def segment_key(source_digest: str, template: list[str]) -> str:
    """Content address of one normalised segment: the source's bytes and every parameter."""
    text = "\n".join([CACHE_VERSION, source_digest, *template])
    return hashlib.sha256(text.encode()).hexdigest()


# Besides normalised segments (a bare key), the cache keeps encoded audio and probes.
KINDS = {"audio-": ".m4a", "probe-": ".json"}
CONTENT_TYPES = {".mp4": "video/mp4", ".m4a": "audio/mp4", ".json": "application/json"}


def entry_name(key: str) -> str:
    suffix = next((s for prefix, s in KINDS.items() if key.startswith(prefix)), ".mp4")
    return f"{key}{suffix}"


class LocalSegmentCache:
    """A folder on this machine (local renders): ``~/.cache/scenerender/segments`` by default."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / entry_name(key)

    def fetch(self, key: str, dest: Path) -> bool:
        path = self._path(key)
        if not path.is_file():
            return False
        try:
            os.link(path, dest)
        except OSError:
            shutil.copyfile(path, dest)
        return True

    def store(self, key: str, src: Path) -> bool:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
            # Copied by the kernel: a whole segment read into this process would stay in its
            # heap (the render's memory peaks while segments are stored).
            shutil.copyfile(src, tmp)
            os.replace(tmp, path)  # readers see a whole entry or none
        except OSError as exc:
            log.warning("segment cache: could not store %s: %s", key, exc)
            return False
        return True


class BlobSegmentCache:
    """Objects under ``gs://RENDER_BUCKET/cache/segments/`` (the pipeline; a lifecycle rule expires them)."""

    def __init__(self, blobs: Blobs, bucket: str) -> None:
        self.blobs = blobs
        self.prefix = f"gs://{bucket}/cache/segments"

    def fetch(self, key: str, dest: Path) -> bool:
        try:
            self.blobs.download(f"{self.prefix}/{entry_name(key)}", dest)
        except FileNotFoundError:
            return False
        except SceneRenderError as exc:
            log.warning("segment cache: could not read %s: %s", key, exc.message)
            return False
        return True

    def store(self, key: str, src: Path) -> bool:
        try:
            name = entry_name(key)
            self.blobs.upload_file(src, f"{self.prefix}/{name}", content_type=CONTENT_TYPES[Path(name).suffix])
        except SceneRenderError as exc:
            log.warning("segment cache: could not store %s: %s", key, exc.message)
            return False
        return True


def default_cache_dir(cache_home: str = "") -> Path:
    """The segment cache under the user's cache folder (``Settings.cache_home``, else ~/.cache)."""
    base = cache_home or str(Path.home() / ".cache")
    return Path(base) / "scenerender" / "segments"


class Digests:
    """sha256 of each local file, computed once per render however many steps ask for it."""

    def __init__(self) -> None:
        self._known: dict[Path, str] = {}
        self._lock = threading.Lock()

    def __call__(self, path: Path) -> str:
        key = path.resolve()
        with self._lock:
            known = self._known.get(key)
        if known is None:
            known = file_digest(key)
            with self._lock:
                self._known[key] = known
        return known
