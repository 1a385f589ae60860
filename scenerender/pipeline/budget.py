"""What a render will cost before it starts: its time on a task, and its memory on Cloud Run.

Both are rough estimates from the spec alone (nothing is fetched or probed yet), built on the
planner's cost model (``scenerender.core.plan``), and both err on the high side:

- **Time.** CPU-seconds of the encodes (output megapixel-frames x the planner's
  ``ENCODE_S_PER_MEGAPIXEL_FRAME``, doubled for detailed sources as ``encode_cost`` allows)
  plus the audio pass, over this worker's cores, x ``TIME_SAFETY``, plus ``RENDER_OVERHEAD_S``
  for fetching, probing, uploading and reporting. A segment without a ``duration`` counts
  ``UNKNOWN_SEGMENT_S`` (as a batch weighs it). A worker whose task has less time left than
  this hands the request back (``scenerender.pipeline.worker``).
- **Memory.** On Cloud Run the filesystem, ``/tmp`` included, is memory: it counts against
  the instance's limit with the processes. A render holds its inputs (sizes from the
  bucket's metadata before anything is fetched), its normalised segments (estimated at
  ``NORMALISED_BITS_PER_PIXEL``; a segment without a ``duration``: as large as its input),
  the output (as large as its segments, plus the audio), the mix (32-bit float WAV,
  384 kB per scene second), and its encoders' memory (``plan.parallel_jobs`` and
  ``plan.encoder_mb``, as the render will size them) plus ``BASE_WORKING_MB``. If that sum
  exceeds ``memory_mb`` (Terraform: the job's limit) the request is refused up front with
  ``LIMIT_EXCEEDED`` and the numbers, instead of the task being killed for memory mid-render.
  https inputs' sizes are not known before the fetch; each is held to what is left
  (``input_cap``) while it downloads. An animated WebP becomes a lossless MOV many times its
  size (``scenerender.core.webp``): one named ``.webp`` in the bucket is read (it is small)
  and its frames' bound counted here (``animated_webp_frames``); any WebP, named so or not,
  is checked again once fetched, before a frame is decoded, against what this leaves.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from scenerender.core import plan, webp
from scenerender.core.render import RenderOptions
from scenerender.core.spec import JobSpec
from scenerender.errors import ErrorDetail, LimitExceededError, SceneRenderError
from scenerender.pipeline.batch import UNKNOWN_SEGMENT_S
from scenerender.settings import Settings

DEFAULT_FPS = 30.0
DETAIL_FACTOR = 2.0  # encode_cost's (1 + bits per pixel / DETAIL_BPP) for a detailed source
TIME_SAFETY = 1.5
RENDER_OVERHEAD_S = 10.0
NORMALISED_BITS_PER_PIXEL = 0.15  # x264 at the normalising settings on busy 1080p: ~9 Mbit/s at 30 fps
MIX_BYTES_PER_S = plan.SAMPLE_RATE * 2 * 4  # pcm_f32le stereo
AAC_BYTES_PER_S = 192_000 // 8
BASE_WORKING_MB = 384  # Python, the audio pass, ffprobe and copies beside the encoders
MB = 1024 * 1024


def _cores(settings: Settings) -> int:
    return RenderOptions.from_settings(settings).cores


def _seconds(spec: JobSpec) -> float:
    return sum(s.duration if s.duration is not None else UNKNOWN_SEGMENT_S for s in spec.segments)


def estimated_render_s(spec: JobSpec, settings: Settings) -> float:
    """Rough wall seconds the render of ``spec`` takes on this worker (see the module's docstring)."""
    width, height = spec.output.size()
    seconds = _seconds(spec)
    frames = seconds * (spec.output.fps or DEFAULT_FPS)
    cpu_s = frames * width * height / 1e6 * plan.ENCODE_S_PER_MEGAPIXEL_FRAME * DETAIL_FACTOR
    cpu_s += plan.AUDIO_S_PER_SCENE_S * seconds
    return RENDER_OVERHEAD_S + cpu_s / _cores(settings) * TIME_SAFETY


@dataclass(frozen=True)
class MemoryNeed:
    """Bytes a render holds at its peak, by kind, against the memory it has."""

    inputs: int
    intermediates: int
    working: int
    memory: int
    unknown_inputs: int  # https inputs, sized only while fetched
    decoded: int = 0  # animated WebPs' frames, as the MOVs they become (bounded from their headers)

    @property
    def total(self) -> int:
        return self.inputs + self.intermediates + self.working + self.decoded

    @property
    def input_cap(self) -> int:
        """The most any one input may be while it downloads: what the rest leaves."""
        return max(0, self.memory - self.total)

    def describe(self) -> str:
        return (
            f"inputs {_mib(self.inputs)} + intermediates {_mib(self.intermediates)} (normalised segments, "
            f"mix WAV, output) + encoders and working memory {_mib(self.working)}"
            + (f" + animated WebPs' frames {_mib(self.decoded)}" if self.decoded else "")
            + f" = {_mib(self.total)}; "
            f"the renderer has {_mib(self.memory)} of memory, and its /tmp is memory on Cloud Run"
        )


def _mib(n: int) -> str:
    if n < 1024 * 1024:
        return f"{n / 1024:,.1f} KiB" if n >= 1024 else f"{n} bytes"
    return f"{n / MB:,.0f} MiB"


# An object named .webp larger than this is not read before the fetch: its frames are
# counted once it is fetched (still before any is decoded).
WEBP_READ_MAX_BYTES = 64 * MB


def animated_webp_frames(
    spec: JobSpec, size_of: Callable[[str], int | None], read: Callable[[str, int], bytes]
) -> dict[str, int]:
    """url -> the bytes its frames take decoded (``webp.Header.decoded_bytes``), for every gs://
    input named ``.webp`` that is an animated WebP: ``read(url, max_bytes)`` gives its bytes.
    One that cannot be read or parsed here is left to the fetch, which says what is wrong."""
    found: dict[str, int] = {}
    for path, url in spec.inputs(muted_tracks=False):
        if url in found or not url.startswith("gs://") or not url.lower().endswith(".webp"):
            continue
        size = size_of(url)
        if not size or size > WEBP_READ_MAX_BYTES:
            continue
        try:
            data = read(url, size)
            if webp.is_animated_head(data[:21]):
                found[url] = webp.header_of(data, path).decoded_bytes
        except (SceneRenderError, FileNotFoundError):
            continue
    return found


def memory_need(
    spec: JobSpec,
    settings: Settings,
    size_of: Callable[[str], int | None],
    decoded: dict[str, int] | None = None,
) -> MemoryNeed:
    """The render's peak memory from the spec and its inputs' sizes (``size_of(url)``: None if
    unknown); ``decoded``: animated WebPs' frames by url (``animated_webp_frames``)."""
    width, height = spec.output.size()
    fps = spec.output.fps or DEFAULT_FPS
    sizes: dict[str, int | None] = {}
    for _, url in spec.inputs(muted_tracks=False):
        if url not in sizes:
            sizes[url] = size_of(url)
    byte_rate = width * height * fps * NORMALISED_BITS_PER_PIXEL / 8
    segments = 0.0
    seconds = 0.0
    for seg in spec.segments:
        if seg.duration is not None:
            segments += seg.duration * byte_rate
            seconds += seg.duration
        else:
            known = sizes.get(seg.url) or 0
            segments += known
            seconds += known / byte_rate if byte_rate else 0.0
    intermediates = 2 * segments + seconds * (MIX_BYTES_PER_S + AAC_BYTES_PER_S)  # segments, then the output
    workers, threads = plan.parallel_jobs(
        settings.parallelism,
        len(spec.segments),
        _cores(settings),
        memory_mb=settings.memory_mb,
        frame_size=(width, height),
    )
    working = (workers * plan.encoder_mb(width, height, threads) + BASE_WORKING_MB) * MB
    return MemoryNeed(
        inputs=sum(s for s in sizes.values() if s),
        intermediates=int(intermediates),
        working=int(working),
        memory=settings.memory_mb * MB,
        unknown_inputs=sum(1 for s in sizes.values() if s is None),
        decoded=sum((decoded or {}).get(url, 0) for url in sizes),
    )


def check_memory(
    spec: JobSpec,
    settings: Settings,
    size_of: Callable[[str], int | None],
    decoded: dict[str, int] | None = None,
) -> MemoryNeed | None:
    """Refuse a render that cannot fit in the renderer's memory (with its ``/tmp``); None without a budget."""
    if not settings.memory_mb:
        return None
    need = memory_need(spec, settings, size_of, decoded)
    if need.total > need.memory:
        raise memory_error(need, spec, size_of, decoded)
    return need


def memory_error(
    need: MemoryNeed,
    spec: JobSpec,
    size_of: Callable[[str], int | None],
    decoded: dict[str, int] | None = None,
) -> SceneRenderError:
    frames = decoded or {}
    held = {url: (size_of(url) or 0) + frames.get(url, 0) for _, url in spec.inputs(muted_tracks=False)}
    largest = sorted(((held[url], path, url) for path, url in spec.inputs(muted_tracks=False)), reverse=True)[:3]
    details = [
        ErrorDetail(
            path,
            f"{_mib(size_of(url) or 0)} to fetch"
            + (f", an animated WebP whose frames take up to {_mib(frames[url])} decoded" if url in frames else ""),
        )
        for size, path, url in largest
        if size
    ]
    return LimitExceededError(f"memory_mb: the render needs about {need.describe()}", details=details)
