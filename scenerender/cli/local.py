"""The commands that run on this machine alone: ``render`` and ``validate`` (with ``--probe``,
a dry run that shows the timeline).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from scenerender.cli.console import ForceOption, JsonOption, err, guarded, out, progress_bar
from scenerender.cli.specfiles import output_target, read_spec, read_spec_file
from scenerender.cloud.gs_inputs import lazy_gs_download
from scenerender.core.fetch import fetch_and_probe
from scenerender.core.inputs import FetchPolicy, InputResolver
from scenerender.core.render import RenderOptions, private_dir, render
from scenerender.core.spec import JobSpec, load_json, repaired_spec, spec_errors
from scenerender.core.timeline import Timeline, build_timeline
from scenerender.errors import ErrorDetail, SceneRenderError, SpecError, collected
from scenerender.settings import Settings, get_settings


def local_policy(spec_path: Path, settings: Settings) -> FetchPolicy:
    return FetchPolicy.from_settings(settings, local_base=spec_path.resolve().parent)


def local_resolver(work: Path, policy: FetchPolicy, settings: Settings) -> InputResolver:
    """Inputs fetched for a render on this machine: gs:// ones with the user's own credentials."""
    return InputResolver(work, policy, gs_download=lazy_gs_download(settings))


def render_options(settings: Settings, *, all_errors: bool = False) -> RenderOptions:
    from scenerender.core.cache import LocalSegmentCache, default_cache_dir

    cache = LocalSegmentCache(
        Path(settings.cache_dir) if settings.cache_dir else default_cache_dir(settings.cache_home)
    )
    return RenderOptions.from_settings(
        settings,
        segment_cache=cache if settings.segment_cache else None,
        all_errors=all_errors,
    )


def probe_timeline(spec: JobSpec, spec_path: Path, settings: Settings) -> Timeline:
    """Fetch and probe every input and place it; every input's and placement's problem at once."""
    from scenerender.errors import InputError

    policy = local_policy(spec_path, settings)
    problems: list[SceneRenderError] = []
    with private_dir(settings.work_dir or None) as work:
        # A dry run: an animated WebP's length and size from its header, not from a conversion.
        probes = fetch_and_probe(
            spec,
            local_resolver(work, policy, settings),
            settings.ffprobe,
            problems=problems,
            ffmpeg=settings.ffmpeg,
            convert=False,
        )
        try:
            timeline = build_timeline(spec, probes)
        except (SpecError, InputError) as exc:
            problems.append(exc)
        except SceneRenderError:
            if not problems:  # an input without a probe: only when its own problem is listed
                raise
    if problems:
        raise collected(problems)
    return timeline


def probe_problems(spec: JobSpec | None, spec_path: Path, settings: Settings) -> list[SceneRenderError]:
    """What probing the inputs finds wrong with ``spec`` (a spec repaired around its static
    problems, so those found by probing come in the same round); [] if there is no spec."""
    if spec is None:
        return []
    try:
        probe_timeline(spec, spec_path, settings)
    except SceneRenderError as exc:
        return [exc]
    return []


@guarded
def render_cmd(
    spec_path: Annotated[Path, typer.Argument(metavar="SPEC", help="job_spec.json")],
    output: Annotated[
        str,
        typer.Option(
            "-o",
            "--output",
            metavar="OUT",
            help="The MP4 to write, or an existing folder (the file is then named output.filename, "
            "else JOB_ID.mp4, as in the pipeline).",
        ),
    ],
    force: ForceOption = False,
    as_json: JsonOption = False,
) -> None:
    """Render SPEC on this machine (no cloud needed)."""
    settings = get_settings()
    spec, problems, data = read_spec(spec_path)
    checked = spec or repaired_spec(data)
    target, output_problems = output_target(checked, spec_path, output, force=force)
    if output_problems:
        # Before anything is fetched: a wrong -o would only show once the inputs are downloaded.
        raise SpecError.from_details(problems + output_problems)
    if spec is None:
        raise collected([SpecError.from_details(problems), *probe_problems(checked, spec_path, settings)])
    policy = local_policy(spec_path, settings)
    with progress_bar(sys.stderr.isatty() and not as_json) as bar:
        task = bar.add_task("render", total=1.0)
        result = render(
            spec,
            target,
            lambda d: local_resolver(d, policy, settings),
            options=render_options(settings, all_errors=True),
            progress=lambda stage, f: bar.update(task, completed=f, description=stage),
        )
    if as_json:
        out.print_json(json.dumps({"output": str(target), **result.to_dict()}))
    else:
        path = "copy (fast path)" if result.fast_path else f"{result.segments_encoded} segments normalised"
        loudness = "silent" if result.loudness_lufs is None else f"{result.loudness_lufs} LUFS"
        err.print(
            f"wrote {target}: {result.duration_s:.3f} s {result.width}x{result.height}@{result.fps:g}, "
            f"{result.size_bytes / 1e6:.1f} MB, {loudness}, video by {path}, "
            f"{result.timings.get('total_s', 0):.1f} s",
            highlight=False,
        )


def _prefixed(exc: SceneRenderError, prefix: str) -> SceneRenderError:
    """The same problem located inside a batch (``scenes[2].segments[0].url``)."""
    from scenerender.errors import InputError

    details = [ErrorDetail(f"{prefix}.{d.path}" if d.path else prefix, d.message) for d in exc.details]
    if isinstance(exc, InputError):
        moved = type(exc)(f"{prefix}.{exc.input_path}", exc.reason, url=exc.url)
        moved.details = details
        return moved
    if isinstance(exc, SpecError):
        return SpecError.from_details(details)
    return exc


def validate_batch(raw: bytes, spec_path: Path, probe_inputs: bool, as_json: bool) -> None:
    from scenerender.pipeline.batch import parse_batch, scene_spec

    settings = get_settings()
    batch = parse_batch(raw)
    if probe_inputs:
        found = [
            _prefixed(problem, f"scenes[{index}]")
            for index in range(len(batch.scenes))
            for problem in probe_problems(scene_spec(batch, index), spec_path, settings)
        ]
        if found:
            raise collected(found)
    if as_json:
        out.print_json(json.dumps({"valid": True, "batch_id": batch.batch_id, "scenes": len(batch.scenes)}))
    else:
        err.print(f"{spec_path}: valid batch {batch.batch_id} ({len(batch.scenes)} scenes)", highlight=False)


@guarded
def validate_cmd(
    spec_path: Annotated[Path, typer.Argument(metavar="SPEC", help="A job spec or a batch file.")],
    probe_inputs: Annotated[
        bool, typer.Option("--probe", help="Fetch and probe every input; show the timeline.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Check SPEC (every problem in one round); with --probe, a dry run that shows the timeline without rendering."""
    from scenerender.pipeline.batch import is_batch

    settings = get_settings()
    raw = read_spec_file(spec_path)
    if is_batch(raw):
        validate_batch(raw, spec_path, probe_inputs, as_json)
        return
    data = load_json(raw, max_bytes=settings.max_spec_bytes)
    spec, problems = spec_errors(data)
    if not probe_inputs:
        if spec is None:
            raise SpecError.from_details(problems)
        if as_json:
            out.print_json(json.dumps({"valid": True}))
        else:
            err.print(f"{spec_path}: valid ({len(spec.segments)} segments, {len(spec.audio.clips)} clips)")
        return
    if spec is None:
        checked = repaired_spec(data)
        raise collected([SpecError.from_details(problems), *probe_problems(checked, spec_path, settings)])
    timeline = probe_timeline(spec, spec_path, settings)
    from scenerender.core.plan import copy_blockers

    report = dry_run_report(spec, timeline, copy_blockers(timeline))
    if as_json:
        out.print_json(json.dumps(report))
        return
    table = Table(
        title=f"{spec_path} — {report['duration_s']:.3f} s, {report['width']}x{report['height']}@{report['fps']:g}"
    )
    for column in ("item", "type", "start", "end", "note"):
        table.add_column(column)
    for row in report["segments"]:
        table.add_row(row["path"], "segment", f"{row['start']:.3f}", f"{row['end']:.3f}", row["note"])
    for row in report["clips"]:
        table.add_row(row["path"], row["type"], f"{row['start']:.3f}", f"{row['end']:.3f}", row["note"])
    out.print(table)
    out.print(
        "video: " + ("copied (fast path)" if not report["reencode"] else "re-encoded: " + "; ".join(report["reencode"]))
    )
    for a, b in report["overlaps"]:
        out.print(f"overlap: {a} and {b} sound at the same time")


def dry_run_report(spec: JobSpec, timeline: Any, blockers: list[str]) -> dict[str, Any]:
    scene_end = float(timeline.duration)
    return {
        "valid": True,
        "duration_s": scene_end,
        "width": timeline.width,
        "height": timeline.height,
        "fps": float(timeline.fps),
        "segments": [
            {
                "path": f"segments[{s.index}]",
                "id": s.id,
                "start": float(s.start),
                "end": float(s.start + s.duration),
                "note": next((b.split(": ", 1)[1] for b in blockers if b.startswith(f"segments[{s.index}]:")), ""),
            }
            for s in timeline.segments
        ],
        "clips": [
            {
                "path": c.path,
                "type": c.type,
                "start": c.start,
                "end": min(c.end, scene_end),
                "note": ("looped; " if c.loop else "")
                + (f"runs past the scene end ({c.end:.3f} s), cut" if c.index in timeline.overruns else ""),
            }
            for c in timeline.clips
        ],
        "overlaps": [[f"audio.clips[{a}]", f"audio.clips[{b}]"] for a, b in timeline.overlaps],
        "overruns": [f"audio.clips[{i}]" for i in timeline.overruns],
        "reencode": blockers,
        "hold_frames": timeline.hold_frames,
    }
