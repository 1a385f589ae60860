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
import re
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar

import typer
import typer.core
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from typer import _click as click  # typer 0.29 carries its own click; its exceptions are these

from scenerender.core.fetch import fetch_and_probe
from scenerender.core.inputs import FetchPolicy, InputResolver, is_local_path, local_file
from scenerender.core.render import RenderOptions, private_dir, render
from scenerender.core.spec import (
    ID_PATTERN,
    JobSpec,
    default_job_id,
    json_schema,
    load_json,
    repaired_spec,
    spec_errors,
)
from scenerender.core.timeline import Timeline, build_timeline
from scenerender.errors import (
    CloudUnavailableError,
    ErrorDetail,
    InputUnreachableError,
    SceneRenderError,
    SpecError,
    Stopped,
    collected,
)
from scenerender.settings import Settings, get_settings

_display_type_rich = typer.core.TyperOption.display_type_rich


def _no_type_for_flags(self: typer.core.TyperOption, ctx: click.Context) -> str | None:
    # typer labels on/off flags `<bool>` in --help, as if they took a value: they do not.
    return None if self.is_flag else _display_type_rich(self, ctx)


typer.core.TyperOption.display_type_rich = _no_type_for_flags  # type: ignore[method-assign]  # one place, see above

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
    """Translate the error tree into a message and the contract's exit code; with ``--json``
    (an ``as_json`` parameter), the error object on stdout too."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        as_json = bool(kwargs.get("as_json"))
        try:
            return fn(*args, **kwargs)
        except SceneRenderError as exc:
            report_error(exc, as_json)
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
            if as_json:
                print_error_json("INTERNAL", f"{type(exc).__name__}: {exc}", [])
            raise typer.Exit(1) from None

    return wrapper


def print_error_json(code: str, message: str, details: list[dict[str, str]]) -> None:
    """CONTRACT.md section 3: ``{"error": {"code", "message", "details": [{"path", "problem"}]}}`` on stdout."""
    sys.stdout.write(json.dumps({"error": {"code": code, "message": message, "details": details}}, indent=2) + "\n")
    sys.stdout.flush()


def report_error(exc: SceneRenderError, as_json: bool = False) -> None:
    err.print(f"[red]error[/red] [{exc.code}] {exc.message}", highlight=False)
    if len(exc.details) > 1:
        for detail in exc.details:
            err.print(f"  {detail}", highlight=False, markup=False)
    tail = getattr(exc, "stderr_tail", "")
    if tail:
        err.print(tail, highlight=False, markup=False)
    if as_json:
        print_error_json(exc.code, exc.message, [d.to_dict() for d in exc.details])


def read_spec_file(path: Path, what: str = "SPEC") -> bytes:
    """The bytes of the spec file the command line names (exit 2, located, if there are none)."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        problem = f"no such file: {path}"
    except IsADirectoryError:
        problem = f"is a folder, not a spec file: {path}"
    except OSError as exc:
        problem = f"cannot read {path}: {exc.strerror}"
    raise SpecError.from_details([ErrorDetail(what, problem)])


def load_spec(path: Path) -> JobSpec:
    spec, problems, _ = read_spec(path)
    if spec is None:
        raise SpecError.from_details(problems)
    return spec


def read_spec(path: Path) -> tuple[JobSpec | None, list[ErrorDetail], Any]:
    """(the spec at ``path`` or None, every problem with it, its JSON); a file that is not
    JSON at all stops here."""
    data = load_json(read_spec_file(path), max_bytes=get_settings().max_spec_bytes)
    spec, problems = spec_errors(data)
    return spec, problems, data


def check_id(value: str, what: str) -> str:
    """A job or batch id given on the command line (exit 2 if it is not one)."""
    if not re.fullmatch(ID_PATTERN, value):
        raise SpecError.from_details(
            [ErrorDetail(what, f"{value!r} is not a valid id (letters, digits, `_`, `.`, `-`; at most 128)")]
        )
    return value


def output_name(spec: JobSpec, spec_path: Path) -> str:
    """The MP4's name when only a folder is given: the same as the pipeline's object
    (``output.filename``, else ``{job_id}.mp4``, the job id defaulting to the spec file's name)."""
    return spec.output.filename or f"{spec.job_id or default_job_id(spec_path.name)}.mp4"


def output_target(
    spec: JobSpec | None, spec_path: Path, given: str, *, force: bool, option: str = "--output"
) -> tuple[Path, list[ErrorDetail]]:
    """Where the MP4 goes, and every problem with it, found before anything is fetched.

    A folder (existing, or written with a trailing ``/``) gets the file named as in the
    pipeline; a file that exists is replaced only with ``--force``; the folder must exist
    and be writable; the spec and its local inputs are never overwritten.
    """
    path = Path(given)
    as_folder = given.endswith(("/", os.sep)) or path.is_dir()
    if as_folder:
        if not path.is_dir():
            return path, [ErrorDetail(option, f"folder does not exist: {given} (create it first, or name a file)")]
        if spec is None:
            return path, []
        path = path / output_name(spec, spec_path)
    problems: list[ErrorDetail] = []
    folder = path.parent
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        return path, [ErrorDetail(option, f"folder {what}: {folder}")]
    if path.is_dir():
        return path, [ErrorDetail(option, f"{path} is a folder")]
    if not _writable(folder):
        problems.append(ErrorDetail(option, f"cannot write in {folder} (permission denied or read-only)"))
    if not force:
        from scenerender.core.deliverables import SUFFIXES, sidecar_path

        # The sidecars go beside the MP4 under its stem: an earlier render's are not replaced silently either.
        existing = [p for p in (path, *(sidecar_path(path, kind) for kind in SUFFIXES)) if p.exists()]
        problems += [ErrorDetail(option, f"{p} exists; pass --force to replace it") for p in existing]
    if spec is not None:
        problems += output_clashes(spec, spec_path, path, option)
    return path, problems


def _writable(folder: Path) -> bool:
    # A real try, not os.access: root passes access() on folders it still cannot write (/proc, read-only mounts).
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".scenerender-write-test-"):
            return True
    except OSError:
        return False


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


def render_options(settings: Settings, *, all_errors: bool = False) -> RenderOptions:
    from scenerender.core.cache import LocalSegmentCache, default_cache_dir

    cache = LocalSegmentCache(Path(settings.cache_dir) if settings.cache_dir else default_cache_dir())
    return RenderOptions.from_settings(
        settings,
        segment_cache=cache if settings.segment_cache else None,
        all_errors=all_errors,
    )


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


def probe_timeline(spec: JobSpec, spec_path: Path, settings: Settings) -> Timeline:
    """Fetch and probe every input and place it; every input's and placement's problem at once."""
    from scenerender.errors import InputError

    policy = local_policy(spec_path, settings)
    problems: list[SceneRenderError] = []
    with private_dir(settings.work_dir or None) as work:
        probes = fetch_and_probe(spec, InputResolver(work, policy), settings.ffprobe, problems=problems)
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


JsonOption = Annotated[bool, typer.Option("--json", help="Print the result (or the error) as JSON on stdout.")]
ForceOption = Annotated[bool, typer.Option("--force", help="Replace an existing output file.")]
UserOption = Annotated[
    str | None,
    typer.Option(
        "--user",
        metavar="EMAIL",
        help="Who you are on the local cloud: signed in to its Auth emulator "
        "(default: $SCENERENDER_USER, then local-user@example.com).",
    ),
]


@app.command("render")
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
            lambda d: InputResolver(d, policy),
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


@app.command("validate")
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


dev_app = typer.Typer(no_args_is_help=True, help="The local cloud: emulators, functions and workers.")
app.add_typer(dev_app, name="dev")


def dev_stack(workers: int = 1, executions: bool = False, **ports: int) -> Any:
    from scenerender.dev.devstack import DevStack, Ports

    defaults = Ports()
    chosen = Ports(**{k: v or getattr(defaults, k) for k, v in ports.items()}) if ports else defaults
    fixed = {k for k, v in ports.items() if v}
    return DevStack(get_settings(), ports=chosen, workers=workers, fixed_ports=fixed, executions=executions)


def use_dev_env() -> None:
    """Point this process at the local cloud when one is running and no cloud is configured.

    Fails at once (exit 1, in well under 2 s) when nothing answers: no stack in this folder,
    or variables left in the shell by an earlier ``eval "$(scenerender dev up)"`` that point
    at a stack since stopped. Never a long retry against a closed port.
    """
    from scenerender.cloud.health import require_cloud

    if os.environ.get("SCENERENDER_CLOUD") == "gcp":
        return
    if any(os.environ.get(name) for name in ("PUBSUB_EMULATOR_HOST", "FIRESTORE_EMULATOR_HOST")):
        require_cloud(dict(os.environ), 'set in this shell (by an earlier `eval "$(scenerender dev up)"`?)')
        return
    stack = dev_stack()
    state = stack.load()
    if state is None:
        raise CloudUnavailableError(
            f"no local cloud is running (none in {stack.state_dir.resolve()}): start it with "
            '`eval "$(scenerender dev up)"` (or set SCENERENDER_CLOUD=gcp and the Google Cloud environment)'
        )
    stack.state = state
    require_cloud(stack.env(), f"recorded in {stack.state_file}")
    os.environ.update(stack.env())
    get_settings.cache_clear()


@dev_app.command("up")
@guarded
def dev_up(
    workers: Annotated[int, typer.Option(min=0, help="Renderer worker processes.")] = 1,
    pubsub_port: Annotated[int, typer.Option(help="Pub/Sub emulator port (default 8085, or a free one).")] = 0,
    firestore_port: Annotated[int, typer.Option(help="Firestore emulator port (default 8086, or a free one).")] = 0,
    gcs_port: Annotated[int, typer.Option(help="fake-gcs-server port (default 4443, or a free one).")] = 0,
    functions_port: Annotated[int, typer.Option(help=functions_port_help())] = 0,
    executions: Annotated[
        bool,
        typer.Option(
            "--executions",
            help="Render as the cloud does: no always-on workers; the spec function and the sweeper launch "
            "executions of worker processes that exit when idle (Cloud Run job tasks). --workers is then unused.",
        ),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Start the local cloud (or reuse the one this folder runs) and print the environment a shell needs.

    A default port another process holds is replaced by a free one (and said so); a port
    given with an option that is taken is an error naming the process that holds it.
    Either way the sweeper is called every SCENERENDER_SWEEP_INTERVAL_S (120 s; 0: never), as
    Cloud Scheduler calls it: with always-on workers it only ends jobs whose worker died, with
    --executions it also launches executions for queued work no live execution serves.
    """
    stack = dev_stack(
        workers,
        executions,
        pubsub=pubsub_port,
        firestore=firestore_port,
        gcs=gcs_port,
        functions=functions_port,
    )
    with err.status("starting the local cloud (Pub/Sub, Firestore, GCS emulators, functions, workers)"):
        started = stack.up()
    for note in stack.notes:
        err.print(note, highlight=False)
    err.print("local cloud " + ("started" if started else "already running, reused") + f" ({stack.state_dir})")
    err.print(renderer_mode(stack), highlight=False)
    if stack.web_running():
        if started:
            publish_web_samples(stack)
        err.print(f"web client: {stack.web_url}", highlight=False)
    if as_json:
        out.print_json(json.dumps({"started": started, "state_dir": str(stack.state_dir), "env": stack.env()}))
        return
    for key, value in stack.env().items():
        out.print(f"export {key}={value}", highlight=False, soft_wrap=True)


def renderer_mode(stack: Any) -> str:
    every = stack.settings.sweep_interval_s
    sweeps = f"the sweeper runs every {every:g} s" if every > 0 else "no sweeps (SCENERENDER_SWEEP_INTERVAL_S=0)"
    if stack.executions:
        return f"renderer: executions launched by the spec function and the sweeper, as on Cloud Run; {sweeps}"
    workers = sum(1 for process in stack.state.processes if process.name.startswith("worker-"))
    return (
        f"renderer: {workers} always-on worker(s); {sweeps}, ending jobs whose worker died "
        "(--executions: render as the cloud does)"
    )


def functions_port_help() -> str:
    from scenerender.dev.devstack import FUNCTIONS

    return (
        f"First of {len(FUNCTIONS)} consecutive ports for the functions ({', '.join(FUNCTIONS)}); "
        "default 8090, or a free run."
    )


def publish_web_samples(stack: Any) -> None:
    """The sample scene's media in the media bucket, offered on the web client's New render screen."""
    from scenerender.cloud import clients
    from scenerender.dev.webserve import sample_specs

    os.environ.update(stack.env())
    get_settings.cache_clear()
    clients.reset()
    with err.status("making the sample scene for the web client"):
        stack.publish_web_samples(sample_specs(get_settings()))


@dev_app.command("down")
@guarded
def dev_down(as_json: JsonOption = False) -> None:
    """Stop what `dev up` started in this folder (and nothing else)."""
    stopped = dev_stack().down()
    if as_json:
        out.print_json(json.dumps({"stopped": stopped}))
    err.print("stopped: " + (", ".join(stopped) or "nothing was running"))


@dev_app.command("status")
@guarded
def dev_status(as_json: JsonOption = False) -> None:
    """Whether this folder's local cloud is running: each process alive and answering on its own port."""
    status = dev_stack().status()
    out.print_json(json.dumps(status))
    if not status["running"]:
        raise typer.Exit(1)


def signed_in(user: str | None) -> tuple[Any, Any, Any]:
    """(session, API client, job store) of the signed-in user: what they submit goes through the
    API with their ID token, and what they read from Firestore is read with it (the rules apply)."""
    from scenerender.cloud import clients
    from scenerender.cloud.session import ApiClient, sign_in, user_jobs

    session = sign_in(user)
    api = ApiClient(os.environ.get("SCENERENDER_API_URL", ""), session)
    # Against the cloud the command line reads with the operator's own credentials (IAM).
    jobs = user_jobs(get_settings(), session) if os.environ.get("FIRESTORE_EMULATOR_HOST") else clients.jobs()
    return session, api, jobs


def follow_with_bar(
    job_id: str, generation: int | None, *, grace_s: float | None = None, jobs: Any = None
) -> dict[str, Any]:
    from scenerender.cli.remote import follow
    from scenerender.cloud import clients
    from scenerender.pipeline.steps import spec_object_name

    spec_uri = f"gs://{get_settings().spec_bucket}/{spec_object_name(job_id)}"
    with progress_bar(sys.stderr.isatty()) as bar:
        task = bar.add_task("queued", total=1.0)

        def show(doc: dict[str, Any]) -> None:
            bar.update(
                task,
                completed=float(doc.get("progress") or 0.0),
                description=str(doc.get("stage") or doc.get("status", "").lower()),
            )

        doc = follow(
            jobs or clients.jobs(),
            job_id,
            on_update=show,
            generation=generation,
            grace_s=grace_s,
            spec_exists=lambda: clients.blobs().exists(spec_uri),
        )
    return doc


def following(job_id: str, follow_fn: Callable[[], dict[str, Any]], what: str = "job") -> dict[str, Any]:
    """Run ``follow_fn``; on Ctrl-C, say that the job goes on without us and how to follow it again."""
    try:
        return follow_fn()
    except KeyboardInterrupt:
        flag = " --batch" if what == "batch" else ""
        err.print(f"{what} {job_id} continues; watch it with `scenerender watch{flag} {job_id}`", highlight=False)
        raise


def with_user_paths(text: str, names: dict[str, str]) -> str:
    """A message about uploaded media, with the paths the user wrote instead of the uploads' URIs."""
    for uri, user in names.items():
        text = text.replace(uri, user)
    return text


def finish(
    doc: dict[str, Any], download_to: Path | None, *, as_json: bool = False, names: dict[str, str] | None = None
) -> None:
    from scenerender.cli.remote import download, exit_code_for

    names = names or {}
    job_id = doc.get("job_id")
    if doc.get("status") == "FAILED":
        error = doc.get("error") or {}
        code, message = str(error.get("code")), with_user_paths(str(error.get("message")), names)
        details = [
            {"path": str(d.get("path", "")), "problem": with_user_paths(str(d.get("problem", "")), names)}
            for d in error.get("details") or []
        ]
        err.print(f"[red]job {job_id} FAILED[/red] [{code}] {message}", highlight=False)
        for detail in details:
            err.print(f"  {detail['path']}: {detail['problem']}", markup=False, highlight=False)
        if as_json:
            print_error_json(code, message, details)
        raise typer.Exit(exit_code_for(code))
    output = doc.get("output") or {}
    err.print(
        f"job {job_id} COMPLETED: {output.get('duration_s')} s {output.get('width')}x{output.get('height')}, "
        f"{output.get('uri')}",
        highlight=False,
    )
    if download_to is not None:
        download(str(output["url"]), download_to)
        err.print(f"downloaded to {download_to}")
        from scenerender.core.deliverables import SUFFIXES

        # Captions, stills and stems beside it, named as `scenerender render` names them.
        for kind, sidecar in (output.get("sidecars") or {}).items():
            if kind in SUFFIXES and isinstance(sidecar, dict) and sidecar.get("url"):
                beside = download_to.with_name(download_to.stem + SUFFIXES[kind])
                download(str(sidecar["url"]), beside)
                err.print(f"downloaded to {beside}")
    if as_json:
        result = {"job_id": job_id, "status": doc.get("status"), "output": output}
        if download_to is not None:
            result["downloaded"] = str(download_to)
        out.print_json(json.dumps(result, default=str))


def local_input_problems(spec: JobSpec, spec_path: Path, prefix: str = "") -> list[SceneRenderError]:
    """Inputs the spec names by a local path that has no file (exit 3, each named), found
    before anything is uploaded."""
    base = spec_path.resolve().parent
    return [
        InputUnreachableError(prefix + where, f"file not found: {local_file(url, base)}", url=url)
        for where, url in spec.inputs()
        if is_local_path(url) and not local_file(url, base).is_file()
    ]


@app.command("submit")
@guarded
def submit_cmd(
    spec_path: Annotated[Path, typer.Argument(metavar="SPEC", help="A job spec or a batch file.")],
    wait: Annotated[bool, typer.Option("--wait", help="Follow the job live until it ends.")] = False,
    download_to: Annotated[
        str | None,
        typer.Option(
            "--download",
            metavar="OUT",
            help="Download the MP4 here, a file or an existing folder (named as in the pipeline; implies --wait).",
        ),
    ] = None,
    force: ForceOption = False,
    as_json: JsonOption = False,
    user: UserOption = None,
    allow_outside: Annotated[
        bool, typer.Option("--allow-outside", help="Also upload local files outside the spec's folder.")
    ] = False,
) -> None:
    """Send SPEC (a job spec or a batch file) to the API as the signed-in user, local media
    uploaded first through its upload door; optionally follow it."""
    from scenerender.pipeline.batch import is_batch, parse_batch, scene_spec

    settings = get_settings()
    raw = read_spec_file(spec_path)
    if is_batch(raw):
        batch = parse_batch(raw)
        missing = [
            p
            for i in range(len(batch.scenes))
            for p in local_input_problems(scene_spec(batch, i), spec_path, f"scenes[{i}].")
        ]
        if missing:
            raise collected(missing)
        use_dev_env()
        from scenerender.cli.remote import submit_with_api

        session, api, jobs = signed_in(user)
        names: dict[str, str] = {}
        answer = submit_with_api(spec_path, api, get_settings(), allow_outside=allow_outside, names=names)
        batch_id, uri = str(answer["batch_id"]), str(answer["spec_uri"])
        err.print(f"submitted {uri} as batch {batch_id} (user {session.email or session.uid})", highlight=False)
        if not as_json:
            out.print(batch_id)
        if wait or download_to is not None:
            api.wait_until_visible("batch_id", batch_id)
            doc = following(batch_id, lambda: follow_batch_with_bar(batch_id, jobs=jobs), "batch")
            finish_batch(doc, as_json=as_json, names=names)
        elif as_json:
            out.print_json(json.dumps({"batch_id": batch_id, "spec_uri": uri}))
        return
    data = load_json(raw, max_bytes=settings.max_spec_bytes)
    spec, problems = spec_errors(data)
    target: Path | None = None
    if download_to is not None:
        # Checked now, not after the render: a wrong path would only show once the MP4 is made.
        target, output_problems = output_target(
            spec or repaired_spec(data), spec_path, download_to, force=force, option="--download"
        )
        problems += output_problems
    if spec is None or problems:
        raise SpecError.from_details(problems)
    missing = local_input_problems(spec, spec_path)
    if missing:
        raise collected(missing)
    use_dev_env()
    from scenerender.cli.remote import submit_with_api

    session, api, jobs = signed_in(user)
    names = {}
    answer = submit_with_api(spec_path, api, get_settings(), allow_outside=allow_outside, names=names)
    job_id, uri, generation = str(answer["job_id"]), str(answer["spec_uri"]), int(answer["spec_generation"])
    err.print(f"submitted {uri} as job {job_id} (user {session.email or session.uid})", highlight=False)
    if not as_json:
        out.print(job_id)
    if wait or target is not None:
        api.wait_until_visible("job_id", job_id)
        doc = following(job_id, lambda: follow_with_bar(job_id, generation, jobs=jobs))
        finish(doc, target, as_json=as_json, names=names)
    elif as_json:
        out.print_json(json.dumps({"job_id": job_id, "spec_uri": uri}))


@app.command("watch")
@guarded
def watch_cmd(
    job_id: Annotated[str, typer.Argument(metavar="ID", help="A job id (or, with --batch, a batch id).")],
    batch: Annotated[bool, typer.Option("--batch", help="ID is a batch: follow all its scenes.")] = False,
    as_json: JsonOption = False,
    user: UserOption = None,
) -> None:
    """Follow one job (or a batch) live until it ends.

    An id that names no job, and no spec on its way to becoming one, is NOT_FOUND (exit 2)
    at once; one whose spec is there but whose job does not appear within
    SCENERENDER_WATCH_GRACE_S seconds, then.
    """
    check_id(job_id, "ID")
    use_dev_env()
    grace = get_settings().watch_grace_s
    _, _, jobs = signed_in(user)  # read as the user: another user's job is as missing as none
    if batch:
        finish_batch(follow_batch_with_bar(job_id, grace_s=grace, jobs=jobs), as_json=as_json)
    else:
        finish(follow_with_bar(job_id, None, grace_s=grace, jobs=jobs), None, as_json=as_json)


def follow_batch_with_bar(batch_id: str, *, grace_s: float | None = None, jobs: Any = None) -> dict[str, Any]:
    from scenerender.cli.remote import follow_batch
    from scenerender.cloud import clients
    from scenerender.pipeline.steps import spec_object_name

    spec_uri = f"gs://{get_settings().spec_bucket}/{spec_object_name(batch_id)}"
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

        return follow_batch(
            jobs or clients.jobs(),
            batch_id,
            on_update=show,
            grace_s=grace_s,
            spec_exists=lambda: clients.blobs().exists(spec_uri),
        )


def finish_batch(doc: dict[str, Any], *, as_json: bool = False, names: dict[str, str] | None = None) -> None:
    from scenerender.cli.remote import exit_code_for
    from scenerender.cloud import clients

    names = names or {}
    counts = doc.get("counts") or {}
    err.print(
        f"batch {doc.get('batch_id')} {doc.get('status')}: {counts.get('COMPLETED', 0)} of "
        f"{doc.get('total', 0)} scenes completed",
        highlight=False,
    )
    if doc.get("error"):
        message = with_user_paths(str(doc["error"].get("message")), names)
        err.print(f"  {message}", markup=False, highlight=False)
        if as_json:
            print_error_json(str(doc["error"].get("code") or "INVALID_SPEC"), message, [])
        raise typer.Exit(2)
    failed = doc.get("failed") or []
    details: list[dict[str, str]] = []
    codes: list[str] = []
    for job_id in failed:
        error = (clients.jobs().get(job_id) or {}).get("error") or {}
        message = with_user_paths(str(error.get("message")), names)
        codes.append(str(error.get("code")))
        details.append({"path": str(job_id), "problem": f"[{error.get('code')}] {message}"})
        err.print(f"  {job_id}: [{error.get('code')}] {message}", markup=False, highlight=False)
    if failed:
        if as_json:
            print_error_json(codes[0], f"{len(failed)} of {doc.get('total', 0)} scenes failed", details)
        raise typer.Exit(exit_code_for(codes[0]))
    if as_json:
        out.print_json(json.dumps({"batch_id": doc.get("batch_id"), "status": doc.get("status"), "counts": counts}))


@app.command("demo")
@guarded
def demo_cmd(
    out_dir: Annotated[Path, typer.Option("--out", help="Where the sample scene and the MP4 go.")] = Path("out/demo"),
    keep_running: Annotated[bool, typer.Option("--keep-running", help="Leave the local cloud up afterwards.")] = False,
    as_json: JsonOption = False,
    user: UserOption = None,
) -> None:
    """The main job end to end: local cloud up, sample media, submit, follow, download."""
    import time

    from scenerender.cli.remote import submit_with_api
    from scenerender.cloud import clients
    from scenerender.dev.sample import make_sample_scene

    out_dir.mkdir(parents=True, exist_ok=True)
    err.print(f"making the sample scene in {out_dir}")
    spec_path = make_sample_scene(out_dir, job_id=f"demo-{time.strftime('%Y%m%d-%H%M%S')}")
    stack = dev_stack()
    with err.status("starting the local cloud (Pub/Sub, Firestore, GCS emulators, functions, worker)"):
        started = stack.up()
    for note in stack.notes:
        err.print(note, highlight=False)
    os.environ.update(stack.env())
    get_settings.cache_clear()
    clients.reset()
    try:
        session, api, jobs = signed_in(user)
        answer = submit_with_api(spec_path, api, get_settings())
        job_id, uri, generation = str(answer["job_id"]), str(answer["spec_uri"]), int(answer["spec_generation"])
        err.print(
            f"submitted {uri} as job {job_id} (user {session.email}); following render_jobs/{job_id}", highlight=False
        )
        target = out_dir / f"{job_id}.mp4"
        api.wait_until_visible("job_id", job_id)
        finish(following(job_id, lambda: follow_with_bar(job_id, generation, jobs=jobs)), target, as_json=as_json)
        if not as_json:
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
    try:
        code = app(standalone_mode=False)
    except click.ClickException as exc:
        # A wrong option or argument: exit 2 as click has it, and with --json the contract's error object too.
        from typer import rich_utils

        rich_utils.rich_format_error(exc)
        if "--json" in sys.argv[1:]:
            param = getattr(exc, "param", None)
            where = ""
            if isinstance(param, typer.core.TyperOption):
                where = max(param.opts, key=len)
            elif param is not None:
                where = param.human_readable_name
            print_error_json("INVALID_SPEC", exc.format_message(), [{"path": where, "problem": exc.format_message()}])
        sys.exit(exc.exit_code)
    except typer.Abort:
        err.print("[red]aborted[/red]")
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
