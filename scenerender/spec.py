"""The job spec, version 1 (CONTRACT.md section 1): parsed and validated once, here.

Everything downstream receives these frozen models, never dicts. Every problem is
reported with the JSON path of the field (``audio.clips[3].segment_id``), all at once.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator

from scenerender.errors import ErrorDetail, SpecError

MAX_SPEC_BYTES = 1024 * 1024
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
RESOLUTION_PRESETS: dict[str, tuple[int, int]] = {
    "360p": (640, 360),
    "480p": (854, 480),
    "720p": (1280, 720),
    "1080p": (1920, 1080),
    "1440p": (2560, 1440),
    "2160p": (3840, 2160),
}
PREVIEW_MAX_HEIGHT = 480
_WXH = re.compile(r"^(\d{2,4})x(\d{2,4})$")

Id = Annotated[str, StringConstraints(pattern=ID_PATTERN)]
Url = Annotated[str, StringConstraints(min_length=1, max_length=4096)]
Seconds = Annotated[float, Field(ge=0, le=24 * 3600)]
PositiveSeconds = Annotated[float, Field(gt=0, le=24 * 3600)]
Gain = Annotated[float, Field(ge=0, le=4)]
ClipType = Literal["narration", "dialogue", "music", "sfx"]
SPEECH_TYPES: frozenset[str] = frozenset({"narration", "dialogue"})


class _Model(BaseModel):
    # strict: "1" is not 1 and true is not 1.0; extra=forbid: typos are errors.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class Output(_Model):
    """How the MP4 is made."""

    resolution: str = Field("1080p", description="Preset (360p..2160p, 16:9) or 'WxH' (even, 16..4096).")
    fps: Annotated[float, Field(ge=1, le=120)] | None = Field(
        None, description="Output frame rate; default the first segment's rate."
    )
    fit: Literal["letterbox", "crop", "stretch"] = "letterbox"
    preview: bool = Field(False, description="Quick low-resolution review render (at most 480p).")
    duration_policy: Literal["video", "longest"] = "video"
    filename: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]{1,124}\.mp4$")] | None = None
    # Sidecars (docs/deliverables.md): written beside the MP4.
    captions: Literal["srt", "vtt", "both", "none"] | None = Field(
        None, description="Caption files from the clips' text; default both when any clip has text."
    )
    burn_captions: bool = Field(False, description="Also burn the captions into the picture (re-encodes it).")
    poster_at: Seconds | None = Field(None, description="Scene time of the poster frame; default chosen (docs).")
    stems: bool = Field(False, description="Write a FLAC per role and an M&E track beside the MP4.")

    @field_validator("resolution")
    @classmethod
    def _known_resolution(cls, value: str) -> str:
        if value in RESOLUTION_PRESETS:
            return value
        match = _WXH.match(value)
        if not match:
            raise ValueError(f"must be one of {', '.join(RESOLUTION_PRESETS)} or 'WxH'")
        for side in (int(match[1]), int(match[2])):
            if side % 2 or not 16 <= side <= 4096:
                raise ValueError("width and height must be even and within 16..4096")
        return value

    def size(self) -> tuple[int, int]:
        """Output width and height, preview cap applied."""
        if self.resolution in RESOLUTION_PRESETS:
            width, height = RESOLUTION_PRESETS[self.resolution]
        else:
            w, h = self.resolution.split("x")
            width, height = int(w), int(h)
        if self.preview and height > PREVIEW_MAX_HEIGHT:
            width = max(16, round(width * PREVIEW_MAX_HEIGHT / height / 2) * 2)
            height = PREVIEW_MAX_HEIGHT
        return width, height


class Segment(_Model):
    """One generated video segment; segments play back to back in array order."""

    id: Id
    url: Url
    trim_start: Seconds = 0.0
    duration: PositiveSeconds | None = None
    volume: Gain = Field(0.0, description="The segment's own sound in the mix (0: muted).")


class Character(_Model):
    id: Id
    name: Annotated[str, StringConstraints(min_length=1, max_length=200)]


class Clip(_Model):
    """One audio clip, placed by ``start`` or by ``segment_id`` + ``offset``."""

    type: ClipType
    url: Url
    start: Seconds | None = None
    segment_id: Id | None = None
    offset: Seconds | None = None
    trim_start: Seconds = 0.0
    duration: PositiveSeconds | None = None
    volume: Gain = 1.0
    fade_in: Seconds = 0.0
    fade_out: Seconds = 0.0
    loop: bool = False
    character: Character | None = None
    text: Annotated[str, StringConstraints(max_length=10_000)] | None = None


class Tracks(_Model):
    narration: bool = True
    dialogue: bool = True
    music: bool = True
    sfx: bool = True

    def enabled(self, clip_type: str) -> bool:
        return bool(getattr(self, clip_type))


class Ducking(_Model):
    enabled: bool = True
    music_db: Annotated[float, Field(ge=-60, le=0)] = -12.0
    attack: Annotated[float, Field(ge=0, le=10)] = 0.2
    release: Annotated[float, Field(ge=0, le=10)] = 0.5


class Loudness(_Model):
    target_lufs: Annotated[float, Field(ge=-70, le=-5)] = -14.0
    true_peak_db: Annotated[float, Field(ge=-9, le=0)] = -1.0


class Audio(_Model):
    tracks: Tracks = Tracks()
    clips: Annotated[list[Clip], Field(max_length=1000)] = []
    ducking: Ducking = Ducking()
    loudness: Loudness | None = Loudness()


QcCheck = Literal[
    "black_picture",
    "frozen_picture",
    "dialogue_silent",
    "clipping",
    "dialogue_under_music",
    "caption_overrun",
    "still_copy",
]


class Qc(_Model):
    """The quality report (docs/deliverables.md): findings are warnings unless named here."""

    fail_on: Annotated[list[QcCheck], Field(max_length=16)] = []


class JobSpec(_Model):
    """A job spec, version 1."""

    version: Literal[1]
    job_id: Id | None = None
    project_id: Id
    scene_id: Id
    owner_uid: Id | None = None
    batch_id: Id | None = None
    output: Output = Output()
    segments: Annotated[list[Segment], Field(min_length=1, max_length=500)]
    audio: Audio = Audio()
    qc: Qc = Qc()

    def inputs(self, *, muted_tracks: bool = True) -> list[tuple[str, str]]:
        """Every input URL with its JSON path (``segments[2].url``), segments first, in spec order;
        without ``muted_tracks``, clips of a track the mix leaves out are not listed."""
        named = [(f"segments[{i}].url", seg.url) for i, seg in enumerate(self.segments)]
        named += [
            (f"audio.clips[{i}].url", clip.url)
            for i, clip in enumerate(self.audio.clips)
            if muted_tracks or self.audio.tracks.enabled(clip.type)
        ]
        return named

    def segment_index(self, segment_id: str) -> int | None:
        for index, segment in enumerate(self.segments):
            if segment.id == segment_id:
                return index
        return None


def json_path(loc: Iterable[int | str]) -> str:
    """``('audio', 'clips', 3, 'url')`` -> ``audio.clips[3].url``."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else part
    return path


def _friendly(error: dict[str, Any]) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "missing":
        return "required"
    if kind == "string_pattern_mismatch":
        pattern = error.get("ctx", {}).get("pattern", "")
        return f"{error['input']!r} does not match {pattern}" if len(str(error["input"])) < 200 else str(error["msg"])
    message = str(error["msg"])
    return message.removeprefix("Value error, ")


def _semantic_errors(spec: JobSpec) -> list[ErrorDetail]:
    """Rules that span fields; probes are not needed for these."""
    details: list[ErrorDetail] = []
    seen: dict[str, int] = {}
    for index, segment in enumerate(spec.segments):
        if segment.id in seen:
            details.append(
                ErrorDetail(
                    f"segments[{index}].id",
                    f'duplicate id "{segment.id}" (also segments[{seen[segment.id]}])',
                )
            )
        else:
            seen[segment.id] = index
    for index, clip in enumerate(spec.audio.clips):
        where = f"audio.clips[{index}]"
        if clip.start is not None and clip.segment_id is not None:
            details.append(ErrorDetail(f"{where}.start", "give either start or segment_id, not both"))
        if clip.offset is not None and clip.segment_id is None:
            details.append(ErrorDetail(f"{where}.offset", "offset needs segment_id"))
        if clip.segment_id is not None and clip.segment_id not in seen:
            details.append(ErrorDetail(f"{where}.segment_id", f'no segment "{clip.segment_id}"'))
        if clip.type not in SPEECH_TYPES:
            for field in ("character", "text"):
                if getattr(clip, field) is not None:
                    details.append(ErrorDetail(f"{where}.{field}", f"only narration and dialogue clips carry {field}"))
        if clip.duration is not None and clip.fade_in + clip.fade_out > clip.duration:
            details.append(ErrorDetail(f"{where}.fade_out", "fade_in + fade_out is longer than the clip"))
    details += _sidecar_errors(spec)
    return details


def _sidecar_errors(spec: JobSpec) -> list[ErrorDetail]:
    """Sidecars asked for without what they are made from."""
    has_text = any(clip.text and clip.text.strip() for clip in spec.audio.clips if clip.type in SPEECH_TYPES)
    details: list[ErrorDetail] = []
    if not has_text:
        if spec.output.captions in ("srt", "vtt", "both"):
            details.append(ErrorDetail("output.captions", "no narration or dialogue clip has text"))
        if spec.output.burn_captions:
            details.append(ErrorDetail("output.burn_captions", "no narration or dialogue clip has text"))
    return details


def parse_spec(raw: bytes | str | dict[str, Any], *, max_bytes: int = MAX_SPEC_BYTES) -> JobSpec:
    """Parse and validate a job spec; raises ``SpecError`` listing every located problem."""
    if isinstance(raw, dict):
        data: Any = raw
    else:
        blob = raw.encode("utf-8") if isinstance(raw, str) else raw
        if len(blob) > max_bytes:
            raise SpecError.from_details([ErrorDetail("", f"spec is {len(blob)} bytes; the limit is {max_bytes}")])
        try:
            text = blob.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SpecError.from_details(
                [ErrorDetail("", f"spec is not UTF-8 ({exc.reason} at byte {exc.start})")]
            ) from exc
        try:
            data = json.loads(text, parse_constant=_reject_constant)
        except (ValueError, RecursionError) as exc:
            raise SpecError.from_details([ErrorDetail("", f"spec is not valid JSON: {exc}")]) from exc
    if not isinstance(data, dict):
        raise SpecError.from_details([ErrorDetail("", "spec must be a JSON object")])
    try:
        spec = JobSpec.model_validate(data)
    except ValidationError as exc:
        details = [ErrorDetail(json_path(e["loc"]), _friendly(dict(e))) for e in exc.errors()]
        raise SpecError.from_details(details) from None
    except RecursionError as exc:
        raise SpecError.from_details([ErrorDetail("", "spec is nested too deeply")]) from exc
    problems = _semantic_errors(spec)
    if problems:
        raise SpecError.from_details(problems)
    return spec


def _reject_constant(name: str) -> float:
    # json.loads accepts NaN/Infinity by default; the contract's JSON does not.
    raise ValueError(f"{name} is not a number in JSON")


def default_job_id(name: str) -> str:
    """A valid job id from a file or object name (``jobs/Scene 42.json`` -> ``Scene-42``)."""
    stem = name.rsplit("/", 1)[-1]
    stem = stem[: -len(".json")] if stem.endswith(".json") else stem
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "-", stem).strip("-._")[:128]
    return cleaned or "job"


def json_schema() -> dict[str, Any]:
    """JSON Schema of spec v1."""
    schema = JobSpec.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "SceneRender job spec v1"
    return schema
