"""The render's first stage: every distinct input fetched and probed, in parallel, once.

A file probed before (the same bytes) takes ffprobe's description from the segment cache.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from scenerender.core import webp
from scenerender.core.cache import Digests, SegmentCache
from scenerender.core.inputs import InputResolver
from scenerender.core.probe import MediaInfo, probe_data, read_probe, refuse_reference_files
from scenerender.core.spec import JobSpec
from scenerender.errors import InputError, SceneRenderError, collected

PROBE_CACHE_VERSION = "2"  # bump when probe_command asks ffprobe for something else


def _probe_cached(
    path: Path,
    input_path: str,
    ffprobe: str,
    cache: SegmentCache | None,
    digests: Digests,
    reused: list[str],
    url: str | None = None,
    *,
    ffmpeg: str = "ffmpeg",
    budget: webp.DecodedBudget | None = None,
    convert: bool = True,
) -> MediaInfo:
    """Probe, or take ffprobe's description of these bytes from the cache (a full render after
    its preview). An animated WebP is first converted (``webp.convert``): the MediaInfo is
    its MOV's, which the render reads instead; without ``convert`` (a dry run), the MOV's
    description is read from the WebP's header and nothing is decoded."""
    refuse_reference_files(path, input_path)  # on the bytes at hand, always
    if webp.is_animated_webp(path):
        budget = budget or webp.DecodedBudget(None, 2 * 1024**3)
        if not convert:
            header = webp.read_header(path, input_path)
            budget.take(header, input_path)  # a dry run says what the render would refuse
            return webp.describe(path, header)
        # Its frames, which ffmpeg 5.1 cannot decode, as a lossless MOV that the render reads.
        path = webp.convert(path, input_path=input_path, ffmpeg=ffmpeg, budget=budget).path

    def fresh() -> dict[str, Any]:
        return probe_data(path, input_path=input_path, ffprobe=ffprobe, url=url)

    if cache is None:
        return read_probe(path, fresh(), input_path)
    key = "probe-" + hashlib.sha256(f"{PROBE_CACHE_VERSION}\n{digests(path)}".encode()).hexdigest()
    with tempfile.TemporaryDirectory(prefix="scenerender-probe-") as tmp:
        entry = Path(tmp) / "probe.json"
        if cache.fetch(key, entry):
            try:
                data = json.loads(entry.read_text(encoding="utf-8"))
            except ValueError:
                data = None
            if isinstance(data, dict):
                reused.append(input_path)
                return read_probe(path, data, input_path)
        data = fresh()
        entry.write_text(json.dumps(data), encoding="utf-8")
        cache.store(key, entry)
    return read_probe(path, data, input_path)


def fetch_and_probe(
    spec: JobSpec,
    resolver: InputResolver,
    ffprobe: str,
    on_fraction: Callable[[float], None] | None = None,
    *,
    cache: SegmentCache | None = None,
    digests: Digests | None = None,
    reused: list[str] | None = None,
    all_errors: bool = False,
    problems: list[SceneRenderError] | None = None,
    ffmpeg: str = "ffmpeg",
    convert: bool = True,
) -> dict[str, MediaInfo]:
    """Fetch and probe every distinct input the render will use, in parallel.

    With a cache, a file probed before (same bytes) is not probed again; ``reused`` lists them.
    ``all_errors``: an input that fails does not stop the others; every input's problem is
    raised together (a user at a terminal fixes them in one round; the pipeline stops at the first).
    ``problems``: as ``all_errors``, but they are added to this list and the inputs that could
    be probed are returned (``validate --probe`` goes on to place those).
    ``convert``: False for a dry run, which reads an animated WebP's length and size from its
    header instead of converting it. Animated WebPs' decoded frames share what the memory
    budget leaves (``resolver.policy.memory_left``), checked before any is decoded.
    """
    all_errors = all_errors or problems is not None
    digests = digests or Digests()
    reused = reused if reused is not None else []
    wanted: dict[str, str] = {}
    for input_path, url in spec.inputs(muted_tracks=False):
        wanted.setdefault(url, input_path)
    lock = threading.Lock()
    done = 0
    # Several URLs may name one file (a reused sound, a link): it is probed once, and a
    # thread that wants a file another is probing waits for that probe instead of starting one.
    by_file: dict[Path, Future[MediaInfo]] = {}

    failed: list[tuple[int, InputError]] = []
    order = {url: n for n, url in enumerate(wanted)}
    budget = webp.DecodedBudget(resolver.policy.memory_left, resolver.policy.max_bytes)

    def one_or_record(item: tuple[str, str]) -> tuple[str, MediaInfo | None]:
        try:
            return one(item)
        except InputError as exc:
            if not all_errors:
                raise
            with lock:
                if all(exc is not seen for _, seen in failed):  # one file behind several URLs: once
                    failed.append((order[item[0]], exc))
            return item[0], None

    def one(item: tuple[str, str]) -> tuple[str, MediaInfo]:
        nonlocal done
        url, input_path = item
        local = resolver.resolve(url, input_path)
        with lock:
            known = by_file.get(local)
            if known is None:
                mine: Future[MediaInfo] = Future()
                by_file[local] = mine
        if known is not None:
            info = known.result()
        else:
            try:
                info = _probe_cached(
                    local,
                    input_path,
                    ffprobe,
                    cache,
                    digests,
                    reused,
                    url,
                    ffmpeg=ffmpeg,
                    budget=budget,
                    convert=convert,
                )
            except BaseException as exc:
                mine.set_exception(exc)
                raise
            mine.set_result(info)
        with lock:
            done += 1
            if on_fraction:
                on_fraction(done / len(wanted))
        return url, info

    # A few at a time: each probe is a process, and more than the cores only costs memory.
    pool = ThreadPoolExecutor(max_workers=min(4, len(wanted)))
    try:
        probed = dict(pool.map(one_or_record, wanted.items()))
        if failed:
            found: list[SceneRenderError] = [exc for _, exc in sorted(failed, key=lambda pair: pair[0])]
            if problems is None:
                raise collected(found)
            problems.extend(found)
        return {url: info for url, info in probed.items() if info is not None}
    except BaseException:
        # A failed input or a stop: downloads in flight end at their next chunk, and those not
        # started never start, so the error (or the exit) waits for no download of the rest.
        resolver.stop()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
