"""The sidecars' names beside the MP4, their content types, and moving them there (``Deliverables``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scenerender.core.ffmpeg import publish_file
from scenerender.core.spec import JobSpec

SUFFIXES: dict[str, str] = {
    "vtt": ".vtt",
    "srt": ".srt",
    "poster": ".poster.jpg",
    "contact_sheet": ".sheet.jpg",
    "stem_dialogue": ".dialogue.flac",
    "stem_narration": ".narration.flac",
    "stem_music": ".music.flac",
    "stem_sfx": ".sfx.flac",
    "stem_me": ".me.flac",
}
CONTENT_TYPES: dict[str, str] = {
    ".vtt": "text/vtt; charset=utf-8",
    ".srt": "application/x-subrip; charset=utf-8",
    ".jpg": "image/jpeg",
    ".flac": "audio/flac",
}


def content_type(kind: str) -> str:
    suffix = SUFFIXES[kind]
    return CONTENT_TYPES[suffix[suffix.rfind(".") :]]


def sidecar_path(mp4: Path, kind: str) -> Path:
    """Where sidecar ``kind`` of ``mp4`` goes: beside it, ``scene.mp4`` -> ``scene.poster.jpg``."""
    return mp4.with_name(mp4.stem + SUFFIXES[kind])


def caption_formats(spec: JobSpec) -> list[str]:
    """The caption files the spec asks for; by default both when any speech clip has text."""
    wanted = spec.output.captions
    if wanted is None:
        has_text = any(c.text and c.text.strip() for c in spec.audio.clips if c.type in ("narration", "dialogue"))
        wanted = "both" if has_text else "none"
    return {"srt": ["srt"], "vtt": ["vtt"], "both": ["vtt", "srt"], "none": []}[wanted]


@dataclass
class Deliverables:
    """Sidecars made in the private dir, and the QC report; ``publish`` moves them beside the MP4."""

    files: dict[str, Path] = field(default_factory=dict)
    qc: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    def publish(self, mp4: Path) -> dict[str, str]:
        """Move every sidecar beside ``mp4``; returns kind -> file name."""
        names: dict[str, str] = {}
        for kind, made in self.files.items():
            final = sidecar_path(mp4, kind)
            publish_file(made, final)
            names[kind] = final.name
        return names
