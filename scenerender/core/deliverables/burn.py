"""Captions burned into the picture (``output.burn_captions``).

Where the segments are normalised, each piece burns them in its own encode
(``caption_script`` handed to ``normalize_segments``); where they are copied, the joined
picture is encoded once more after the render (``burn_captions``). Either way the picture is
encoded once, and ``check_glyphs`` tells which characters no font has.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from scenerender.core import plan
from scenerender.core.deliverables import captions, stills
from scenerender.core.ffmpeg import FFmpegRunner, write_files
from scenerender.core.spec import JobSpec
from scenerender.core.timeline import Timeline

BURN_BLOCKER = "output.burn_captions: the captions are burned into the picture (it is encoded)"
# libass, when neither the caption font nor any fallback fontconfig offers has a character
# (it then draws an empty box): "fontselect: failed to find any fallback with glyph 0x13000 ...".
_NO_GLYPH = re.compile(r"failed to find any fallback with glyph 0x([0-9A-Fa-f]+)")
GLYPH_CHECK_SIZE = (320, 180)  # font lookup does not depend on the size; a small frame renders fast


def glyph_check_command(cues: list[captions.Cue], work: Path) -> tuple[list[str], dict[Path, str]]:
    """Every cue drawn once by libass, one a frame, on a small blank picture, so that its
    log names each character no font has. Apart from the burn: that logs a missing glyph
    on every frame its cue is up (megabytes over a long scene), this once a cue."""
    width, height = GLYPH_CHECK_SIZE
    once = [dataclasses.replace(cue, start=float(n), end=n + 1.0) for n, cue in enumerate(cues)]
    script = work / "glyphs.ass"
    argv = [
        "ffmpeg",
        *("-v", "warning"),  # libass's missing glyph is a warning; the rest of its log is not needed
        *("-f", "lavfi", "-i", f"color=c=black:s={width}x{height}:r=1:d={len(cues)}"),
        *("-vf", plan.subtitles_filter(script)),
        *("-f", "null", "-"),
    ]
    return argv, {script: captions.to_ass(once, width, height)}


def missing_glyphs(log: str) -> frozenset[int]:
    """The code points libass found no glyph for, from its log."""
    return frozenset(int(found, 16) for found in _NO_GLYPH.findall(log))


def caption_script(spec: JobSpec, timeline: Timeline, work: Path) -> Path:
    """The cues as the ASS script libass burns (the scene's clock, the output's size)."""
    script = work / "captions.ass"
    write_files({script: captions.to_ass(captions.build_cues(spec, timeline), timeline.width, timeline.height)})
    return script


def check_glyphs(spec: JobSpec, timeline: Timeline, work: Path, runner: FFmpegRunner) -> frozenset[int]:
    """The characters of the burned cues that no installed font has (burned as empty boxes:
    ``qc.glyph_findings``)."""
    cues = captions.build_cues(spec, timeline)
    if not cues:  # none when every clip with text is left out of the mix (its track set false)
        return frozenset()
    check, check_files = glyph_check_command(cues, work)
    write_files(check_files)
    return missing_glyphs(runner.capture_stderr(check))


def burn_captions(spec: JobSpec, timeline: Timeline, mp4: Path, work: Path, runner: FFmpegRunner) -> None:
    """Burn the captions into ``mp4``'s picture (libass, bundled font), in place; the sound is
    copied. For a render that copied its segments: one encode of the joined picture, with the
    segments' encoder settings."""
    graph = work / "burn.filtergraph"
    write_files({graph: plan.subtitles_filter(caption_script(spec, timeline, work))})
    enc = plan.EncodeSettings.for_timeline(timeline)
    burned = mp4.with_name(mp4.name + ".burned.mp4")
    argv = [
        "ffmpeg",
        "-y",
        *stills.picture_input(mp4),
        "-filter_script:v",
        str(graph),
        "-map",
        "0:v:0",
        "-map",
        "0:a:0",
        *enc.encoder_args(),
        "-profile:v",
        "high",
        "-pix_fmt",
        "yuv420p",
        "-g",
        str(max(1, round(enc.gop_seconds * timeline.fps))),
        "-c:a",
        "copy",
        "-map_metadata",
        "-1",
        "-video_track_timescale",
        str(plan.track_timescale(timeline.fps)),
        "-movflags",
        "+faststart",
        "-f",
        "mp4",
        str(burned),
    ]
    runner.run(argv, duration_s=float(timeline.duration))
    burned.replace(mp4)
