"""The job spec, version 1 (CONTRACT.md section 1): parsed and validated once, here.

Everything downstream receives these frozen models, never dicts. Every problem is
reported with the JSON path of the field (``audio.clips[3].segment_id``), all at once.

Size: the models (about 200 lines) and the code that turns pydantic's errors into located,
all-at-once messages are one contract (CONTRACT.md section 1): apart, a field's rule and its
message would live in two places.
"""

from __future__ import annotations

import difflib
import json
import re
import types
import typing
from collections.abc import Iterable
from typing import Annotated, Any, Literal, Union, get_args, get_origin

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
    "caption_glyph_missing",
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


def _friendly(error: dict[str, Any], model: type[BaseModel] | None = None) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        loc = tuple(error.get("loc", ()))
        known = _fields_at(model or JobSpec, loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]) if loc else "", known, n=1, cutoff=0.6)
        return f"unknown field (did you mean `{close[0]}`?)" if close else "unknown field"
    if kind == "missing":
        return "required"
    if kind == "string_pattern_mismatch":
        pattern = error.get("ctx", {}).get("pattern", "")
        return f"{error['input']!r} does not match {pattern}" if len(str(error["input"])) < 200 else str(error["msg"])
    message = str(error["msg"])
    return message.removeprefix("Value error, ")


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The models an annotation can hold (through Optional, list[...] and Annotated)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType, list, typing.Annotated) or origin is Annotated:
        return [m for arg in get_args(annotation) for m in _models_in(arg)]
    return []


def _fields_at(model: type[BaseModel], loc: Iterable[int | str]) -> list[str]:
    """The field names a model accepts at ``loc`` (``('audio', 'clips', 3)`` -> Clip's fields)."""
    models = [model]
    for part in loc:
        if isinstance(part, int):
            continue
        nxt: list[type[BaseModel]] = []
        for current in models:
            field = current.model_fields.get(part)
            if field is not None:
                nxt += _models_in(field.annotation)
        models = nxt
    return sorted({name for m in models for name in m.model_fields})


def _semantic_errors(spec: JobSpec) -> list[ErrorDetail]:
    """Rules that span fields, on a valid spec; probes are not needed for these."""
    return cross_reference_errors(spec.model_dump(exclude_none=True)) + _sidecar_errors(spec)


def _dicts(value: Any) -> list[tuple[int, dict[str, Any]]]:
    return [(i, item) for i, item in enumerate(value) if isinstance(item, dict)] if isinstance(value, list) else []


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def cross_reference_errors(data: dict[str, Any]) -> list[ErrorDetail]:
    """Rules that span fields, checked on the raw JSON object so that they are reported in the
    same round as type errors elsewhere in the spec (a field of the wrong type is skipped here:
    the model's own check reports it)."""
    details: list[ErrorDetail] = []
    seen: dict[str, int] = {}
    for index, segment in _dicts(data.get("segments")):
        seg_id = segment.get("id")
        if not isinstance(seg_id, str):
            continue
        if seg_id in seen:
            details.append(
                ErrorDetail(f"segments[{index}].id", f'duplicate id "{seg_id}" (also segments[{seen[seg_id]}])')
            )
        else:
            seen[seg_id] = index
    audio = data.get("audio")
    clips = _dicts(audio.get("clips")) if isinstance(audio, dict) else []
    for index, clip in clips:
        where = f"audio.clips[{index}]"
        segment_id = clip.get("segment_id")
        if clip.get("start") is not None and segment_id is not None:
            details.append(ErrorDetail(f"{where}.start", "give either start or segment_id, not both"))
        if clip.get("offset") is not None and segment_id is None:
            details.append(ErrorDetail(f"{where}.offset", "offset needs segment_id"))
        if isinstance(segment_id, str) and segment_id not in seen:
            close = difflib.get_close_matches(segment_id, list(seen), n=1, cutoff=0.6)
            hint = f' (did you mean "{close[0]}"?)' if close else ""
            details.append(ErrorDetail(f"{where}.segment_id", f'no segment "{segment_id}"{hint}'))
        if clip.get("type") in ("music", "sfx"):
            for field in ("character", "text"):
                if clip.get(field) is not None:
                    details.append(ErrorDetail(f"{where}.{field}", f"only narration and dialogue clips carry {field}"))
        duration = _number(clip.get("duration"))
        fades = [_number(clip.get("fade_in", 0.0)), _number(clip.get("fade_out", 0.0))]
        if duration is not None and None not in fades and sum(f or 0.0 for f in fades) > duration:
            details.append(ErrorDetail(f"{where}.fade_out", "fade_in + fade_out is longer than the clip"))
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


def _merge_details(*groups: list[ErrorDetail]) -> list[ErrorDetail]:
    """One list, in order; a later problem at a path already reported is left out."""
    merged: list[ErrorDetail] = []
    paths: set[str] = set()
    for group in groups:
        for detail in group:
            if detail.path in paths and detail.path:
                continue
            paths.add(detail.path)
            merged.append(detail)
    return merged


class _Duplicates(dict[str, Any]):
    """A JSON object that had some of its keys more than once (``json.loads`` keeps the last)."""

    duplicates: list[str]


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    repeated: list[str] = []
    for key, value in pairs:
        if key in obj and key not in repeated:
            repeated.append(key)
        obj[key] = value
    if not repeated:
        return obj
    marked = _Duplicates(obj)
    marked.duplicates = repeated
    return marked


def _duplicate_keys(value: Any, path: str = "") -> list[ErrorDetail]:
    found: list[ErrorDetail] = []
    if isinstance(value, dict):
        for key in getattr(value, "duplicates", []):
            where = f"{path}.{key}" if path else key
            found.append(
                ErrorDetail(where, "key given more than once (JSON keeps only one: which one you meant is unclear)")
            )
        for key, item in value.items():
            found += _duplicate_keys(item, f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _duplicate_keys(item, f"{path}[{index}]")
    return found


def load_json(raw: bytes | str, *, max_bytes: int = MAX_SPEC_BYTES, what: str = "spec") -> Any:
    """The JSON document of a spec or batch file, as the contract reads it: UTF-8 (a byte-order
    mark, which some editors write, is accepted), at most ``max_bytes``, no NaN/Infinity, and no
    key given twice in one object (refused with its path: JSON parsers disagree on which wins)."""
    blob = raw.encode("utf-8") if isinstance(raw, str) else raw
    if len(blob) > max_bytes:
        raise SpecError.from_details([ErrorDetail("", f"{what} is {len(blob)} bytes; the limit is {max_bytes}")])
    try:
        text = blob.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError.from_details(
            [ErrorDetail("", f"{what} is not UTF-8 ({exc.reason} at byte {exc.start})")]
        ) from exc
    text = text.removeprefix("\ufeff")
    try:
        data = json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_pairs)
    except (ValueError, RecursionError) as exc:
        raise SpecError.from_details([ErrorDetail("", f"{what} is not valid JSON: {exc}")]) from exc
    duplicates = _duplicate_keys(data)
    if duplicates:
        raise SpecError.from_details(duplicates)
    return data


def spec_errors(data: Any) -> tuple[JobSpec | None, list[ErrorDetail]]:
    """Validate a parsed spec object: (the spec, []) or (None, every problem, located)."""
    if not isinstance(data, dict):
        return None, [ErrorDetail("", "spec must be a JSON object")]
    try:
        spec = JobSpec.model_validate(data)
    except ValidationError as exc:
        typed = [ErrorDetail(json_path(e["loc"]), _friendly(dict(e))) for e in exc.errors()]
        return None, _merge_details(typed, cross_reference_errors(data))
    except RecursionError:
        return None, [ErrorDetail("", "spec is nested too deeply")]
    problems = _semantic_errors(spec)
    return (None, problems) if problems else (spec, [])


def parse_spec(raw: bytes | str | dict[str, Any], *, max_bytes: int = MAX_SPEC_BYTES) -> JobSpec:
    """Parse and validate a job spec; raises ``SpecError`` listing every located problem."""
    data: Any = raw if isinstance(raw, dict) else load_json(raw, max_bytes=max_bytes)
    spec, problems = spec_errors(data)
    if spec is None:
        raise SpecError.from_details(problems)
    return spec


def repaired_spec(data: Any) -> JobSpec | None:
    """A spec with the fields that have problems left out, for checks that need media
    (``validate --probe``): their problems are reported in the same round as the others.
    None when that leaves no valid spec (a required field is wrong)."""
    if not isinstance(data, dict):
        return None
    current: Any = json.loads(json.dumps(data))
    for _ in range(4):
        spec, problems = spec_errors(current)
        if spec is not None:
            return spec
        removed = False
        for detail in problems:
            removed |= _remove_path(current, detail.path)
        if not removed:
            return None
    return None


_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")
_REQUIRED_LEAVES = frozenset({"version", "project_id", "scene_id", "segments", "id", "url", "type", "name"})


def _remove_path(data: Any, path: str) -> bool:
    """Drop the optional field at ``path`` (so its default applies); False if it cannot be."""
    parts: list[str | int] = [m[1] if m[1] else int(m[2]) for m in _PART.finditer(path)]
    if not parts or not isinstance(parts[-1], str) or parts[-1] in _REQUIRED_LEAVES:
        return False
    node = data
    for part in parts[:-1]:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return False
    if isinstance(node, dict) and parts[-1] in node:
        del node[parts[-1]]
        return True
    return False


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
