"""What a render delivers beside the MP4: captions, a poster, a contact sheet, stems, a QC report.

``render`` calls two hooks: ``burn`` (before the output is measured: burning captions
re-encodes the picture) and ``make`` (on the finished MP4, before it is published). Each
sidecar is made in the render's private dir and moved beside the MP4 only with it, named
``<mp4 stem><suffix>`` (``SUFFIXES``). The contract side is docs/deliverables.md.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scenerender.core import plan
from scenerender.core.deliverables import captions, qc, roles, stills
from scenerender.core.ffmpeg import FFmpegRunner, publish_file, write_files
from scenerender.core.mp4 import VideoSample, video_samples
from scenerender.core.spec import SPEECH_TYPES, JobSpec
from scenerender.core.timeline import Timeline
from scenerender.errors import ErrorDetail, QcFailedError

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
    *,
    loudness_lufs: float | None,
    sources_copied: bool = False,
) -> Deliverables:
    """Every sidecar the spec asks for and the quality report, from the finished (not yet
    published) ``mp4``; ``QcFailedError`` when a finding is one ``qc.fail_on`` names.

    ``loudness_lufs``: the output's measured loudness (the stems are brought to the mix's gain).
    ``sources_copied``: the output's picture is its segments' sources, copied (the copy path,
    nothing burned in): frames are decoded from the sources, each distinct one once.
    """
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

    samples = video_samples(mp4)
    frame_s = 1 / float(timeline.fps)
    runs = qc.still_runs(samples, frame_s, qc.tiny_frame_bytes(timeline.width, timeline.height))
    speaks = any(c.type in SPEECH_TYPES for c in timeline.clips)
    role_outputs = []
    if speaks:
        role_outputs += [
            roles.RoleOutput(roles.SPEECH, out_dir / "speech.f32", levels=True),
            roles.RoleOutput(roles.MUSIC, out_dir / "music.f32", levels=True),
        ]
    if spec.output.stems:
        role_outputs += [
            roles.RoleOutput(role, out_dir / f"stem-{role.name}.wav", levels=False) for role in roles.STEM_ROLES
        ]
    output_audio = out_dir / "output.f32"
    wanted = qc.frames_wanted(runs, timeline)
    scan: list[plan.LoudnessScan] = []

    def timed(name: str, job: Callable[[], object]) -> Callable[[], None]:
        def run() -> None:
            began = time.monotonic()
            job()
            made.timings[name] = round(time.monotonic() - began, 3)

        return run

    def stills_job() -> None:
        made.files.update(make_stills(spec, timeline, mp4, samples, out_dir, runner))

    def roles_job() -> None:
        command = roles.roles_command(
            timeline, role_outputs, out_dir / "roles.filtergraph", scan=spec.output.stems and loudness_lufs is not None
        )
        write_files(command.files)
        log = runner.capture_stderr(command.argv)
        if spec.output.stems and loudness_lufs is not None:
            scan.append(plan.parse_ebur128(log))

    def measure_job() -> None:
        runner.run(roles.output_audio_command(mp4, output_audio))

    frames: dict[float, bytes] = {}

    def frames_job() -> None:
        # Two stages: each run's first and last frame; then, only for the confirmed runs that
        # start a segment, the previous segment's last frame (the costly one: most of a GOP).
        frames.update(grey_frames(mp4, wanted, timeline, out_dir / "confirm-1.grey", runner, sources_copied))
        more = [t for t in qc.previous_frames_wanted(runs, frames, timeline) if t not in frames]
        frames.update(grey_frames(mp4, more, timeline, out_dir / "confirm-2.grey", runner, sources_copied))

    # The longest first: the frames (when there are runs to confirm), then the stills.
    jobs = [timed("qc_frames_s", frames_job)] if wanted else []
    jobs += [timed("stills_s", stills_job), timed("qc_audio_s", measure_job)]
    if role_outputs:
        jobs.insert(len(jobs) - 1, timed("roles_s", roles_job))
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="deliverables") as pool:
        for future in [pool.submit(job) for job in jobs]:
            future.result()

    started = time.monotonic()
    findings = qc.picture_findings(runs, frames, timeline, stills.ANALYSIS_SIZE)
    output_levels = roles.read_levels(output_audio, rate=plan.SAMPLE_RATE, channels=2)
    speech = roles.read_levels(out_dir / "speech.f32", rate=roles.LEVEL_RATE, channels=1) if speaks else None
    music = roles.read_levels(out_dir / "music.f32", rate=roles.LEVEL_RATE, channels=1) if speaks else None
    findings += qc.sound_findings(spec, timeline, cues, output_levels, speech, music)
    made.qc = qc.report(spec, findings)
    made.timings["qc_s"] = round(time.monotonic() - started, 3)
    if made.qc["failed"]:
        failing = [f for f in made.qc["findings"] if f["severity"] == "error"]
        raise QcFailedError(
            f"quality check failed: {failing[0]['message']}"
            + (f" (and {len(failing) - 1} more)" if len(failing) > 1 else ""),
            details=[ErrorDetail(f"qc.fail_on ({f['check']})", f["message"]) for f in failing],
        )

    if spec.output.stems:
        started = time.monotonic()
        # The stems at the gain that brought the mix to its measured loudness: they add up to it.
        gain = (
            loudness_lufs - scan[0].integrated_lufs
            if scan and loudness_lufs is not None and not scan[0].silent
            else 0.0
        )
        stems = [o for o in role_outputs if not o.levels]
        outs = [out_dir / f"stem-{o.role.name}.flac" for o in stems]
        runner.run(roles.stem_encode_command([o.path for o in stems], gain, outs))
        for o, out in zip(stems, outs, strict=True):
            made.files[f"stem_{o.role.name}"] = out
        made.timings["stems_s"] = round(time.monotonic() - started, 3)
    return made


GREY_FRAMES_PER_PROCESS = 8


def grey_frames(
    mp4: Path,
    times: list[float],
    timeline: Timeline,
    out: Path,
    runner: FFmpegRunner,
    sources_copied: bool,
) -> dict[float, bytes]:
    """Small grey frames (``stills.ANALYSIS_SIZE``) of the output at ``times``, by time.

    When the output's picture is its sources copied, a frame is the source's frame at the same
    place in the segment: two segments made of one file (a reused shot) share their decodes.
    """
    if not times:
        return {}
    frame_s = 1 / float(timeline.fps)
    where: dict[float, tuple[Path, float]] = {}
    for t in times:
        middle = t + frame_s / 2
        seg = next((s for s in timeline.segments if s.start <= middle < s.start + s.duration), None)
        if sources_copied and seg is not None:
            where[t] = (seg.source.path.resolve(), round(t - float(seg.start) + seg.trim_start, 6))
        else:
            where[t] = (mp4, round(t, 6))
    distinct = list(dict.fromkeys(where.values()))
    size = stills.ANALYSIS_SIZE[0] * stills.ANALYSIS_SIZE[1]
    decoded: dict[tuple[Path, float], bytes] = {}
    # A few inputs per process: each holds a decoder and the file's index (17 MB at 1080p;
    # a 100-segment scene's 250 frames in one process took 4.2 GB).
    for first in range(0, len(distinct), GREY_FRAMES_PER_PROCESS):
        batch = distinct[first : first + GREY_FRAMES_PER_PROCESS]
        # Each is sought a quarter frame early: the first frame at or after the seek point is
        # it, whatever the rounding of its time.
        runner.run(stills.grey_frames_command([(path, at - frame_s / 4) for path, at in batch], out))
        blob = out.read_bytes()
        decoded |= {key: blob[i * size : (i + 1) * size] for i, key in enumerate(batch) if (i + 1) * size <= len(blob)}
    return {t: decoded[key] for t, key in where.items() if key in decoded}


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
        "-protocol_whitelist",
        "file",
        "-i",
        str(mp4),
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


def make_stills(
    spec: JobSpec, timeline: Timeline, mp4: Path, samples: list[VideoSample], out_dir: Path, runner: FFmpegRunner
) -> dict[str, Path]:
    """The poster and the contact sheet (scenerender.core.deliverables.stills), from one decode of keyframes."""
    keyframes = [s.time_s for s in samples if s.key]
    duration = float(timeline.duration)
    poster = out_dir / "poster.jpg"
    candidates = [] if spec.output.poster_at is not None else stills.poster_candidates(keyframes, duration)
    tiles = stills.sheet_times(timeline, keyframes) if keyframes else []
    made: dict[str, Path] = {}
    if candidates or tiles:
        argv, files = stills.keyframe_pass(mp4, timeline, poster_times=candidates, tile_times=tiles, work=out_dir)
        write_files(files)
        runner.run(argv)
        if tiles:
            made["contact_sheet"] = out_dir / "sheet.jpg"
    if candidates:
        chosen = _choose_poster(out_dir, len(candidates))
        if chosen is None:
            # Every candidate of the middle is black: the same over the whole scene.
            wider = stills.evenly(keyframes)
            argv, files = stills.keyframe_pass(mp4, timeline, poster_times=wider, tile_times=[], work=out_dir)
            write_files(files)
            runner.run(argv)
            chosen = _choose_poster(out_dir, len(wider), brightest=True)
        assert chosen is not None
        (out_dir / f"cand-{chosen + 1:02d}.jpg").replace(poster)
        made["poster"] = poster
    else:
        at = spec.output.poster_at if spec.output.poster_at is not None else duration / 2
        last = max(0.0, duration - 1 / float(timeline.fps))
        runner.run(stills.frame_command(mp4, min(at, last), poster))
        made["poster"] = poster
    return made


def _choose_poster(out_dir: Path, count: int, *, brightest: bool = False) -> int | None:
    width, height = stills.ANALYSIS_SIZE
    grey = (out_dir / "cand.grey").read_bytes()
    size = width * height
    stats = [stills.frame_stats(grey[i * size : (i + 1) * size], width, height) for i in range(len(grey) // size)]
    chosen = stills.choose_poster(stats)
    if chosen is None and brightest and stats:
        chosen = max(range(len(stats)), key=lambda i: stats[i].mean_luma)
    return chosen if chosen is None or chosen < count else None
