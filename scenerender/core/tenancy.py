"""What one user's spec may ask for (CONTRACT.md section 5): ids, media, cost. Pure: no I/O.

Every door checks a spec here before any work starts: the spec function (a bucket drop),
the HTTP API (``pipeline.submit_spec_bytes``) and, for what only probing tells, the
worker right after probing (``SceneLimits.check``, before any frame is rendered).

    job id      the spec's ``job_id``, or the object's whole path under ``jobs/``
                (``jobs/team-a/scene.json`` -> ``team-a..scene``); a name that would not
                map one-to-one is refused, never squeezed into another job's id
    media       gs:// objects under ``users/{owner_uid}/`` in the media bucket, or under a
                prefix the operator shares; https under the fetch policy; nothing else
    cost        segments, clips, scene length, output pixels x seconds: each a setting
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from scenerender.core.spec import ID_PATTERN, JobSpec
from scenerender.errors import ErrorDetail, InputRefusedError, LimitExceededError, SpecError

if TYPE_CHECKING:
    from scenerender.settings import Settings

SPEC_PREFIX = "jobs/"
_ID = re.compile(ID_PATTERN)
# One folder or file name of a spec object's path: an id's characters, no "..", not ending
# in "." (the separator "..", which no part may hold, keeps the mapping one-to-one).
_PART = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_-]|\.(?!\.))*(?<!\.)$")
PATH_SEPARATOR = ".."


def valid_job_id(value: str) -> bool:
    """A job or batch id as the contract spells it: also a safe Firestore document id and
    object-name part (no ``/``, never ``.``, ``..`` or ``__x__``, at most 128 characters)."""
    return bool(_ID.fullmatch(value))


def job_id_from_object(name: str) -> str:
    """The job id a spec object without a ``job_id`` gets: its whole path under ``jobs/``.

    ``jobs/scene-42.json`` -> ``scene-42``; ``jobs/team-a/scene.json`` -> ``team-a..scene``.
    Two objects never get the same id: a name that cannot be written in an id's characters
    (``jobs/日本.json``), or that holds the separator, is refused (``SpecError`` at
    ``job_id``), never cleaned into something another name also becomes.
    """
    stem = name.removeprefix(SPEC_PREFIX).removesuffix(".json")
    parts = stem.split("/")
    for part in parts:
        if not _PART.fullmatch(part):
            problem = (
                f"the spec has no job_id and its object name {name!r} does not make one: "
                f"{part!r} is not A-Z a-z 0-9 _ - . (starting with a letter or digit, no '..', not ending in '.'); "
                "give the spec a job_id or rename the object"
            )
            raise SpecError.from_details([ErrorDetail("job_id", problem)])
    job_id = PATH_SEPARATOR.join(parts)
    if not valid_job_id(job_id):
        problem = (
            f"the spec has no job_id and its object name {name!r} makes an id of {len(job_id)} characters "
            "(at most 128); give the spec a job_id"
        )
        raise SpecError.from_details([ErrorDetail("job_id", problem)])
    return job_id


def require_owner(spec: JobSpec, path: str = "owner_uid") -> str:
    """The owner a bucket drop must name (the trusted backend speaks for its user)."""
    if not spec.owner_uid:
        raise SpecError.from_details([ErrorDetail(path, "required: a spec dropped in the bucket names its owner")])
    return spec.owner_uid


# --- media -------------------------------------------------------------------------------


def _is_local_path(url: str) -> bool:
    return "://" not in url and ":" not in url.split("/", 1)[0]


@dataclass(frozen=True)
class MediaScope:
    """The media one owner's spec may read: the spec function checks it at accept, the worker
    again at every fetch (the render request could come from elsewhere than the function)."""

    owner_uid: str | None
    media_bucket: str
    shared_prefixes: tuple[str, ...] = ()
    allowed_buckets: tuple[str, ...] = ()

    @classmethod
    def from_settings(cls, settings: Settings, owner_uid: str | None) -> MediaScope:
        return cls(
            owner_uid=owner_uid,
            media_bucket=settings.media_bucket,
            shared_prefixes=tuple(settings.shared_media_prefixes),
            allowed_buckets=tuple(settings.allowed_gs_buckets),
        )

    @property
    def own_prefix(self) -> str | None:
        return f"gs://{self.media_bucket}/users/{self.owner_uid}/" if self.owner_uid else None

    def refusal(self, url: str) -> str | None:
        """Why this owner's spec may not read ``url``, or None when it may.

        gs:// objects: under ``users/{owner_uid}/`` in the media bucket, or a shared prefix.
        https: allowed here; the fetch policy (public addresses only, size, time) rules at fetch.
        Other schemes are left to the resolver, which refuses them with its own reason.
        """
        if _is_local_path(url):
            return "local paths are only allowed for local renders (upload the file, then name its gs:// URL)"
        if urlsplit(url).scheme.lower() != "gs":
            return None
        # The same split the download makes (storage.parse_gs_uri), so the object checked is the object read.
        bucket, _, name = url[len("gs://") :].partition("/")
        if not bucket or not name:
            return "a gs:// URL names a bucket and an object"
        if self.allowed_buckets and bucket not in self.allowed_buckets:
            return f"bucket {bucket!r} is not an allowed input bucket"
        own = self.own_prefix
        if any(url.startswith(prefix) for prefix in (*self.shared_prefixes, *([own] if own else []))):
            return None
        allowed = [p for p in (own, *self.shared_prefixes) if p]
        return "not media this spec's owner may read (allowed: " + (", ".join(allowed) or "none") + ")"


def check_media(spec: JobSpec, owner_uid: str | None, settings: Settings) -> None:
    """Every input ``owner_uid`` may not read, refused at once (``INPUT_REFUSED``, each located)."""
    scope = MediaScope.from_settings(settings, owner_uid)
    refused = [(path, url, reason) for path, url in spec.inputs() if (reason := scope.refusal(url)) is not None]
    if refused:
        path, url, reason = refused[0]
        error = InputRefusedError(path, reason, url=url)
        error.details += [ErrorDetail(p, r) for p, _, r in refused[1:]]
        raise error


# --- cost --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SceneLimits:
    """The limits a scene's probed length is held to (the worker, right after probing)."""

    max_scene_s: float
    max_pixel_seconds: float

    @classmethod
    def from_settings(cls, settings: Settings) -> SceneLimits:
        return cls(max_scene_s=settings.max_scene_s, max_pixel_seconds=settings.max_pixel_seconds)

    def problems(self, seconds: float, size: tuple[int, int], *, known: bool) -> list[ErrorDetail]:
        """What ``seconds`` of output at ``size`` exceeds; ``known``: the length is probed, not a lower bound."""
        length = f"{seconds:.1f} s ({seconds / 3600:.2f} h)" if seconds >= 3600 else f"{seconds:.1f} s"
        scene = f"the scene is {length} long" if known else f"the scene is at least {length} long"
        found = []
        if seconds > self.max_scene_s:
            found.append(ErrorDetail("segments", f"{scene}; the limit is {self.max_scene_s:g} s (limit: max_scene_s)"))
        width, height = size
        pixel_seconds = width * height * seconds
        if pixel_seconds > self.max_pixel_seconds:
            found.append(
                ErrorDetail(
                    "output.resolution",
                    f"{width}x{height} for {seconds:.1f} s is {pixel_seconds:.3g} pixel-seconds; "
                    f"the limit is {self.max_pixel_seconds:.3g} (limit: max_pixel_seconds)",
                )
            )
        return found

    def check(self, seconds: float, size: tuple[int, int]) -> None:
        """Raise ``LimitExceededError`` if the probed scene is too long or too large."""
        problems = self.problems(seconds, size, known=True)
        if problems:
            raise LimitExceededError.from_details(problems)


def least_length(spec: JobSpec) -> float:
    """A lower bound of the scene's length from the spec alone: the segments' given durations
    (and, with ``duration_policy: longest``, the clips placed by ``start`` with a duration)."""
    video = sum(seg.duration or 0.0 for seg in spec.segments)
    if spec.output.duration_policy != "longest":
        return video
    audio = max(
        (
            clip.start + clip.duration
            for clip in spec.audio.clips
            if clip.start is not None and clip.duration is not None and spec.audio.tracks.enabled(clip.type)
        ),
        default=0.0,
    )
    return max(video, audio)


def check_limits(spec: JobSpec, settings: Settings) -> None:
    """The cost limits the spec alone can be held to, before anything is fetched."""
    problems = []
    if len(spec.segments) > settings.max_segments:
        problems.append(
            ErrorDetail(
                "segments",
                f"{len(spec.segments)} segments; the limit is {settings.max_segments} (limit: max_segments)",
            )
        )
    if len(spec.audio.clips) > settings.max_clips:
        problems.append(
            ErrorDetail(
                "audio.clips",
                f"{len(spec.audio.clips)} clips; the limit is {settings.max_clips} (limit: max_clips)",
            )
        )
    problems += SceneLimits.from_settings(settings).problems(least_length(spec), spec.output.size(), known=False)
    if problems:
        raise LimitExceededError.from_details(problems)


def check_spec(spec: JobSpec, settings: Settings, *, owner_uid: str | None) -> None:
    """Everything a door checks before accepting ``spec`` for ``owner_uid``: cost, then media."""
    check_limits(spec, settings)
    check_media(spec, owner_uid, settings)


def object_size_refusal(size: int, limit: int, setting: str, what: str) -> LimitExceededError | None:
    """A spec or batch object too large to read (its size from the object's metadata)."""
    if size <= limit:
        return None
    return LimitExceededError.from_details(
        [ErrorDetail("", f"{what} is {size} bytes; the limit is {limit} (limit: {setting})")]
    )
