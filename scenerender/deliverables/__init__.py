"""What a render delivers beside the MP4: captions, a poster, a contact sheet, stems, a QC report.

``render`` calls two hooks: ``burn`` (before the output is measured: burning captions
re-encodes the picture) and ``make`` (on the finished MP4, before it is published). Each
sidecar is made in the render's private dir and moved beside the MP4 only with it, named
``<mp4 stem><suffix>`` (``SUFFIXES``). The contract side is docs/deliverables.md.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scenerender.deliverables import captions
from scenerender.ffmpeg import FFmpegRunner, publish_file, write_files
from scenerender.spec import JobSpec
from scenerender.timeline import Timeline

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


def make(
    spec: JobSpec,
    timeline: Timeline,
    mp4: Path,
    work: Path,
    runner: FFmpegRunner,
) -> Deliverables:
    """Every sidecar the spec asks for, made from the finished (not yet published) ``mp4``."""
    out_dir = work / "deliverables"
    out_dir.mkdir(exist_ok=True)
    made = Deliverables()
    started = time.monotonic()
    cues = captions.build_cues(spec, timeline)
    for kind in caption_formats(spec):
        path = out_dir / f"captions.{kind}"
        write_files({path: captions.to_vtt(cues) if kind == "vtt" else captions.to_srt(cues)})
        made.files[kind] = path
    made.timings["captions_s"] = time.monotonic() - started
    return made
