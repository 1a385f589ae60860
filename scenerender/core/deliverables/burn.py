"""Captions burned into the picture (``output.burn_captions``): one encode of the whole scene after the render."""

from __future__ import annotations

from pathlib import Path

from scenerender.core import plan
from scenerender.core.deliverables import captions, stills
from scenerender.core.ffmpeg import FFmpegRunner, write_files
from scenerender.core.spec import JobSpec
from scenerender.core.timeline import Timeline

BURN_BLOCKER = "output.burn_captions: the captions are burned into the picture (one encode of the whole scene)"


def burn_captions(spec: JobSpec, timeline: Timeline, mp4: Path, work: Path, runner: FFmpegRunner) -> None:
    """Burn the captions into ``mp4``'s picture (libass, bundled font), in place; the sound is copied.

    One encode of the joined picture after the render, with the segments' encoder settings:
    a render that copied its segments encodes once here, one that normalised them twice.
    """
    cues = captions.build_cues(spec, timeline)
    script = work / "captions.ass"
    graph = work / "burn.filtergraph"
    write_files(
        {
            script: captions.to_ass(cues, timeline.width, timeline.height),
            # The path is escaped for the filter's option parser, then for the graph's.
            graph: "subtitles=filename='" + str(script).replace("\\", "/").replace("'", "") + "'",
        }
    )
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
