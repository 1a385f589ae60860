"""The ``scenerender`` command line (CONTRACT.md section 3).

Exit codes: 0 done; 2 invalid spec or arguments; 3 an input could not be used;
4 the render failed; 1 anything else; 130 after Ctrl-C and 128 + N after signal N
(SIGTERM 143, SIGHUP 129), with nothing of the render left behind. Errors are one clear
message each, never a trace.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from scenerender.errors import ErrorDetail, SceneRenderError, SpecError, Stopped
from scenerender.inputs import FetchPolicy, InputResolver, is_local_path, local_file
from scenerender.render import RenderOptions, fetch_and_probe, private_dir, render
from scenerender.settings import Settings, get_settings
from scenerender.spec import JobSpec, json_schema, parse_spec
from scenerender.timeline import build_timeline

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Render a scene's segments and audio into one MP4, locally or on the pipeline.",
)
err = Console(stderr=True, soft_wrap=True)
out = Console()
P = ParamSpec("P")
R = TypeVar("R")


def guarded(fn: Callable[P, R]) -> Callable[P, R]:
    """Translate the error tree into a message and the contract's exit code."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except SceneRenderError as exc:
            report_error(exc)
            raise typer.Exit(exc.exit_code) from None
        except Stopped as stopped:
            err.print(f"[red]{stopped}[/red]")
            raise typer.Exit(stopped.exit_code) from None
        except KeyboardInterrupt:
            err.print("[red]interrupted[/red]")
            raise typer.Exit(130) from None
        except typer.Exit:
            raise
        except Exception as exc:
            logging.getLogger(__name__).debug("internal error", exc_info=True)
            err.print(f"[red]internal error:[/red] {type(exc).__name__}: {exc}", markup=True, highlight=False)
            raise typer.Exit(1) from None

    return wrapper


def report_error(exc: SceneRenderError) -> None:
    err.print(f"[red]error[/red] [{exc.code}] {exc.message}", highlight=False)
    if len(exc.details) > 1:
        for detail in exc.details:
            err.print(f"  {detail}", highlight=False, markup=False)
    tail = getattr(exc, "stderr_tail", "")
    if tail:
        err.print(tail, highlight=False, markup=False)


def load_spec(path: Path) -> JobSpec:
    if not path.is_file():
        raise SpecError.from_details([ErrorDetail("SPEC", f"no such file: {path}")])
    settings = get_settings()
    return parse_spec(path.read_bytes(), max_bytes=settings.max_spec_bytes)


def output_clashes(spec: JobSpec, spec_path: Path, output: Path, option: str = "--output") -> list[ErrorDetail]:
    """The spec or a local input the output would replace: refused before anything is rendered.

    Publishing the MP4 replaces whatever is at the output path, so ``-o media/seg-0.mp4``
    would destroy the very segment it was made from. Other names of the same file count too
    (a hard link, a path through a linked folder).
    """
    base = spec_path.resolve().parent
    named = [("SPEC", str(spec_path), spec_path)]
    named += [(where, url, local_file(url, base)) for where, url in spec.inputs() if is_local_path(url)]
    return [
        ErrorDetail(option, f"is {where} ({url}): the render would overwrite it")
        for where, url, path in named
        if _same_file(output, path)
    ]


def _same_file(a: Path, b: Path) -> bool:
    if os.path.abspath(a) == os.path.abspath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # either does not exist (yet): only the names could clash
        return False


def local_policy(spec_path: Path, settings: Settings) -> FetchPolicy:
    return FetchPolicy.from_settings(settings, local_base=spec_path.resolve().parent)


def render_options(settings: Settings) -> RenderOptions:
    from scenerender.cache import LocalSegmentCache, default_cache_dir

    cache = LocalSegmentCache(Path(settings.cache_dir) if settings.cache_dir else default_cache_dir())
    return RenderOptions.from_settings(settings, segment_cache=cache if settings.segment_cache else None)


def progress_bar(enabled: bool) -> Progress:
    return Progress(
        TextColumn("{task.description:<8}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        console=err,
        disable=not enabled,
        transient=False,
    )


@app.command("render")
@guarded
def render_cmd(
    spec_path: Annotated[Path, typer.Argument(metavar="SPEC", help="job_spec.json")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Where the MP4 goes (a file or a folder).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the result object as JSON.")] = False,
) -> None:
    """Render SPEC on this machine (no cloud needed)."""
    settings = get_settings()
    spec = load_spec(spec_path)
    if output.is_dir():
        output = output / (spec.output.filename or f"{spec.job_id or spec.scene_id}.mp4")
    if not output.parent.is_dir():
        raise SpecError.from_details([ErrorDetail("--output", f"folder does not exist: {output.parent}")])
    clashes = output_clashes(spec, spec_path, output)
    if clashes:
        raise SpecError.from_details(clashes)
    policy = local_policy(spec_path, settings)
    with progress_bar(sys.stderr.isatty() and not as_json) as bar:
        task = bar.add_task("render", total=1.0)
        result = render(
            spec,
            output,
            lambda d: InputResolver(d, policy),
            options=render_options(settings),
            progress=lambda stage, f: bar.update(task, completed=f, description=stage),
        )
    if as_json:
        out.print_json(json.dumps({"output": str(output), **result.to_dict()}))
    else:
        path = "copy (fast path)" if result.fast_path else f"{result.segments_encoded} segments normalised"
        loudness = "silent" if result.loudness_lufs is None else f"{result.loudness_lufs} LUFS"
        err.print(
            f"wrote {output}: {result.duration_s:.3f} s {result.width}x{result.height}@{result.fps:g}, "
            f"{result.size_bytes / 1e6:.1f} MB, {loudness}, video by {path}, "
            f"{result.timings.get('total_s', 0):.1f} s",
            highlight=False,
        )


@app.command("validate")
@guarded
def validate_cmd(
    spec_path: Annotated[Path, typer.Argument(metavar="SPEC")],
    probe_inputs: Annotated[
        bool, typer.Option("--probe", help="Fetch and probe every input; show the timeline.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Check SPEC; with --probe, a dry run that shows the timeline without rendering."""
    spec = load_spec(spec_path)
    if not probe_inputs:
        if as_json:
            out.print_json(json.dumps({"valid": True}))
        else:
            err.print(f"{spec_path}: valid ({len(spec.segments)} segments, {len(spec.audio.clips)} clips)")
        return
    settings = get_settings()
    policy = local_policy(spec_path, settings)
    with private_dir(settings.work_dir or None) as work:
        probes = fetch_and_probe(spec, InputResolver(work, policy), settings.ffprobe)
        timeline = build_timeline(spec, probes)
    from scenerender.plan import copy_blockers

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


dev_app = typer.Typer(no_args_is_help=True, help="The local cloud: emulators, functions and workers.")
app.add_typer(dev_app, name="dev")


def dev_stack(workers: int = 1, **ports: int) -> Any:
    from scenerender.devstack import DevStack, Ports

    defaults = Ports()
    chosen = Ports(**{k: v or getattr(defaults, k) for k, v in ports.items()}) if ports else defaults
    return DevStack(get_settings(), ports=chosen, workers=workers)


def use_dev_env() -> None:
    """Point this process at the local cloud when one is running and no cloud is configured."""
    if os.environ.get("PUBSUB_EMULATOR_HOST") or os.environ.get("SCENERENDER_CLOUD") == "gcp":
        return
    stack = dev_stack()
    state = stack.load()
    if state is None:
        raise SpecError.from_details(
            [
                ErrorDetail(
                    "",
                    "no local cloud is running: start it with `scenerender dev up` "
                    "(or set the Google Cloud environment)",
                )
            ]
        )
    stack.state = state
    os.environ.update(stack.env())
    get_settings.cache_clear()


@dev_app.command("up")
@guarded
def dev_up(
    workers: Annotated[int, typer.Option(min=0, help="Renderer worker processes.")] = 1,
    pubsub_port: Annotated[int, typer.Option()] = 0,
    firestore_port: Annotated[int, typer.Option()] = 0,
    gcs_port: Annotated[int, typer.Option()] = 0,
    functions_port: Annotated[int, typer.Option(help="First of three ports for the functions.")] = 0,
) -> None:
    """Start the local cloud (or reuse the running one) and print the environment a shell needs."""
    stack = dev_stack(workers, pubsub=pubsub_port, firestore=firestore_port, gcs=gcs_port, functions=functions_port)
    with err.status("starting the local cloud (Pub/Sub, Firestore, GCS emulators, functions, workers)"):
        started = stack.up()
    err.print("local cloud " + ("started" if started else "already running, reused") + f" ({stack.state_dir})")
    if stack.web_running():
        if started:
            publish_web_samples(stack)
        err.print(f"web client: {stack.web_url}", highlight=False)
    for key, value in stack.env().items():
        out.print(f"export {key}={value}", highlight=False, soft_wrap=True)


def publish_web_samples(stack: Any) -> None:
    """The sample scene's media in the media bucket, offered on the web client's New render screen."""
    from scenerender import clients
    from scenerender.webserve import sample_specs

    os.environ.update(stack.env())
    get_settings.cache_clear()
    clients.reset()
    with err.status("making the sample scene for the web client"):
        stack.publish_web_samples(sample_specs(get_settings()))


@dev_app.command("down")
@guarded
def dev_down() -> None:
    """Stop what `dev up` started (and nothing else)."""
    stopped = dev_stack().down()
    err.print("stopped: " + (", ".join(stopped) or "nothing was running"))


@dev_app.command("status")
@guarded
def dev_status() -> None:
    """Which parts of the local cloud are running."""
    status = dev_stack().status()
    out.print_json(json.dumps(status))
    if not status["running"]:
        raise typer.Exit(1)


def follow_with_bar(job_id: str, generation: int | None) -> dict[str, Any]:
    from scenerender import clients
    from scenerender.remote import follow

    with progress_bar(sys.stderr.isatty()) as bar:
        task = bar.add_task("queued", total=1.0)

        def show(doc: dict[str, Any]) -> None:
            bar.update(
                task,
                completed=float(doc.get("progress") or 0.0),
                description=str(doc.get("stage") or doc.get("status", "").lower()),
            )

        doc = follow(clients.jobs(), job_id, on_update=show, generation=generation)
    return doc


def finish(doc: dict[str, Any], download_to: Path | None) -> None:
    from scenerender.remote import download, exit_code_for

    job_id = doc.get("job_id")
    if doc.get("status") == "FAILED":
        error = doc.get("error") or {}
        err.print(f"[red]job {job_id} FAILED[/red] [{error.get('code')}] {error.get('message')}", highlight=False)
        for detail in error.get("details") or []:
            err.print(f"  {detail.get('path')}: {detail.get('message')}", markup=False, highlight=False)
        raise typer.Exit(exit_code_for(str(error.get("code"))))
    output = doc.get("output") or {}
    err.print(
        f"job {job_id} COMPLETED: {output.get('duration_s')} s {output.get('width')}x{output.get('height')}, "
        f"{output.get('uri')}",
        highlight=False,
    )
    if download_to is not None:
        download(str(output["url"]), download_to)
        err.print(f"downloaded to {download_to}")


@app.command("submit")
@guarded
def submit_cmd(
    spec_path: Annotated[Path, typer.Argument(metavar="SPEC")],
    wait: Annotated[bool, typer.Option("--wait", help="Follow the job live until it ends.")] = False,
    download_to: Annotated[
        Path | None, typer.Option("--download", help="Download the MP4 here, a file or a folder (implies --wait).")
    ] = None,
) -> None:
    """Put SPEC (a job spec or a batch file) in the spec bucket, local media uploaded first; optionally follow it."""
    from scenerender import clients
    from scenerender.batch import is_batch
    from scenerender.remote import submit, submit_batch

    if not spec_path.is_file():
        raise SpecError.from_details([ErrorDetail("SPEC", f"no such file: {spec_path}")])
    batch = is_batch(spec_path.read_bytes())
    # Checked now, not after the render: a wrong path would only show once the MP4 is made.
    if download_to is not None and not batch and not download_to.is_dir():
        if not download_to.parent.is_dir():
            problem = f"folder does not exist: {download_to.parent}"
            raise SpecError.from_details([ErrorDetail("--download", problem)])
        clashes = output_clashes(load_spec(spec_path), spec_path, download_to, "--download")
        if clashes:
            raise SpecError.from_details(clashes)
    use_dev_env()
    if batch:
        batch_id, uri, _ = submit_batch(spec_path, get_settings(), clients.blobs())
        err.print(f"submitted {uri} as batch {batch_id}", highlight=False)
        out.print(batch_id)
        if wait or download_to is not None:
            finish_batch(follow_batch_with_bar(batch_id))
        return
    job_id, uri, generation = submit(spec_path, get_settings(), clients.blobs())
    err.print(f"submitted {uri} as job {job_id}", highlight=False)
    out.print(job_id)
    if wait or download_to is not None:
        if download_to is not None and download_to.is_dir():
            download_to = download_to / f"{job_id}.mp4"
        finish(follow_with_bar(job_id, generation), download_to)


@app.command("watch")
@guarded
def watch_cmd(
    job_id: Annotated[str, typer.Argument(metavar="ID", help="A job id (or, with --batch, a batch id).")],
    batch: Annotated[bool, typer.Option("--batch", help="ID is a batch: follow all its scenes.")] = False,
) -> None:
    """Follow one job (or a batch) live until it ends."""
    use_dev_env()
    if batch:
        finish_batch(follow_batch_with_bar(job_id))
    else:
        finish(follow_with_bar(job_id, None), None)


def follow_batch_with_bar(batch_id: str) -> dict[str, Any]:
    from scenerender import clients
    from scenerender.remote import follow_batch

    with progress_bar(sys.stderr.isatty()) as bar:
        task = bar.add_task("batch", total=1.0)

        def show(doc: dict[str, Any]) -> None:
            counts = doc.get("counts") or {}
            eta = doc.get("eta_s")
            bar.update(
                task,
                completed=float(doc.get("progress") or 0.0),
                description=f"{counts.get('COMPLETED', 0)}/{doc.get('total', 0)} done"
                + (f", {counts.get('FAILED')} failed" if counts.get("FAILED") else "")
                + (f", ETA {eta:.0f} s" if eta else ""),
            )

        return follow_batch(clients.jobs(), batch_id, on_update=show)


def finish_batch(doc: dict[str, Any]) -> None:
    from scenerender import clients
    from scenerender.remote import exit_code_for

    counts = doc.get("counts") or {}
    err.print(
        f"batch {doc.get('batch_id')} {doc.get('status')}: {counts.get('COMPLETED', 0)} of "
        f"{doc.get('total', 0)} scenes completed",
        highlight=False,
    )
    if doc.get("error"):
        err.print(f"  {doc['error'].get('message')}", markup=False, highlight=False)
        raise typer.Exit(2)
    failed = doc.get("failed") or []
    for job_id in failed:
        error = (clients.jobs().get(job_id) or {}).get("error") or {}
        err.print(f"  {job_id}: [{error.get('code')}] {error.get('message')}", markup=False, highlight=False)
    if failed:
        first = (clients.jobs().get(failed[0]) or {}).get("error") or {}
        raise typer.Exit(exit_code_for(str(first.get("code"))))


@app.command("demo")
@guarded
def demo_cmd(
    out_dir: Annotated[Path, typer.Option("--out", help="Where the sample scene and the MP4 go.")] = Path("out/demo"),
    keep_running: Annotated[bool, typer.Option("--keep-running", help="Leave the local cloud up afterwards.")] = False,
) -> None:
    """The main job end to end: local cloud up, sample media, submit, follow, download."""
    import time

    from scenerender import clients
    from scenerender.remote import submit
    from scenerender.sample import make_sample_scene

    out_dir.mkdir(parents=True, exist_ok=True)
    err.print(f"making the sample scene in {out_dir}")
    spec_path = make_sample_scene(out_dir, job_id=f"demo-{time.strftime('%Y%m%d-%H%M%S')}")
    stack = dev_stack()
    with err.status("starting the local cloud (Pub/Sub, Firestore, GCS emulators, functions, worker)"):
        started = stack.up()
    os.environ.update(stack.env())
    get_settings.cache_clear()
    clients.reset()
    try:
        job_id, uri, generation = submit(spec_path, get_settings(), clients.blobs())
        err.print(f"submitted {uri} as job {job_id}; following render_jobs/{job_id}", highlight=False)
        target = out_dir / f"{job_id}.mp4"
        finish(follow_with_bar(job_id, generation), target)
        out.print(str(target.resolve()))
    finally:
        if started and not keep_running:
            stack.down()


@app.command("schema")
def schema_cmd() -> None:
    """Print the JSON Schema of job spec v1."""
    out.print_json(json.dumps(json_schema()))


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    app()


if __name__ == "__main__":
    main()
