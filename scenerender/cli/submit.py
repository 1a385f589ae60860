"""The commands that use the pipeline as a signed-in user: ``submit``, ``watch`` and ``demo``
(the local cloud up, the sample scene submitted, followed and downloaded).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from scenerender.cli.console import (
    ForceOption,
    JsonOption,
    UserOption,
    err,
    guarded,
    out,
    print_error_json,
    progress_bar,
)
from scenerender.cli.dev import cloud_clients, dev_stack
from scenerender.cli.specfiles import check_id, local_input_problems, output_target, read_spec_file
from scenerender.core.spec import load_json, repaired_spec, spec_errors
from scenerender.errors import SpecError, collected
from scenerender.settings import get_settings

if TYPE_CHECKING:
    from scenerender.cloud.clients import Clients
    from scenerender.messages import BatchDocument, JobDocument

Followed = TypeVar("Followed")


def signed_in(user: str | None, clients: Clients) -> tuple[Any, Any, Any]:
    """(session, API client, job store) of the signed-in user: what they submit goes through the
    API with their ID token, and what they read from Firestore is read with it (the rules apply)."""
    from scenerender.cloud.session import ApiClient, sign_in, user_jobs

    settings = clients.settings
    session = sign_in(user, settings)
    api = ApiClient(settings.api_url, session)
    # Against the cloud the command line reads with the operator's own credentials (IAM).
    jobs = user_jobs(settings, session) if settings.firestore_emulator_host else clients.jobs
    return session, api, jobs


def follow_with_bar(
    job_id: str, generation: int | None, clients: Clients, jobs: Any, *, grace_s: float | None = None
) -> JobDocument:
    from scenerender.cli.remote import follow
    from scenerender.pipeline.steps import spec_object_name

    spec_uri = f"gs://{clients.settings.spec_bucket}/{spec_object_name(job_id)}"
    with progress_bar(sys.stderr.isatty()) as bar:
        task = bar.add_task("queued", total=1.0)

        def show(doc: JobDocument) -> None:
            bar.update(task, completed=doc.progress, description=doc.stage or doc.status.value.lower())

        doc = follow(
            jobs,
            job_id,
            on_update=show,
            generation=generation,
            grace_s=grace_s,
            spec_exists=lambda: clients.blobs.exists(spec_uri),
        )
    return doc


def following(job_id: str, follow_fn: Callable[[], Followed], what: str = "job") -> Followed:
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
    doc: JobDocument, download_to: Path | None, *, as_json: bool = False, names: dict[str, str] | None = None
) -> None:
    from scenerender.cli.remote import download, exit_code_for
    from scenerender.errors import SceneRenderError
    from scenerender.messages import ErrorBlock, JobStatus

    names = names or {}
    job_id = doc.job_id
    if doc.status == JobStatus.FAILED:
        error = doc.error or ErrorBlock.internal("the job FAILED without saying why")
        code, message = error.code, with_user_paths(error.message, names)
        details = [{"path": d.path, "problem": with_user_paths(d.problem, names)} for d in error.details]
        err.print(f"[red]job {job_id} FAILED[/red] [{code}] {message}", highlight=False)
        for detail in details:
            err.print(f"  {detail['path']}: {detail['problem']}", markup=False, highlight=False)
        if as_json:
            print_error_json(code, message, details)
        raise typer.Exit(exit_code_for(code))
    output = doc.output
    if output is None:
        raise SceneRenderError(f"job {job_id} is {doc.status.value} but its document has no output")
    err.print(
        f"job {job_id} {JobStatus.COMPLETED}: {output.duration_s} s {output.width}x{output.height}, {output.uri}",
        highlight=False,
    )
    if download_to is not None:
        download(output.url, download_to)
        err.print(f"downloaded to {download_to}")
        from scenerender.core.deliverables import SUFFIXES

        # Captions, stills and stems beside it, named as `scenerender render` names them.
        for kind, sidecar in output.sidecars.items():
            if kind in SUFFIXES:
                beside = download_to.with_name(download_to.stem + SUFFIXES[kind])
                download(sidecar.url, beside)
                err.print(f"downloaded to {beside}")
    if as_json:
        # The output block as the job document holds it, nulls included.
        result: dict[str, Any] = {"job_id": job_id, "status": doc.status.value, "output": output.wire()}
        if download_to is not None:
            result["downloaded"] = str(download_to)
        out.print_json(json.dumps(result, default=str))


def follow_batch_with_bar(batch_id: str, clients: Clients, jobs: Any, *, grace_s: float | None = None) -> BatchDocument:
    from scenerender.cli.remote import follow_batch
    from scenerender.messages import JobStatus
    from scenerender.pipeline.steps import spec_object_name

    spec_uri = f"gs://{clients.settings.spec_bucket}/{spec_object_name(batch_id)}"
    with progress_bar(sys.stderr.isatty()) as bar:
        task = bar.add_task("batch", total=1.0)

        def show(doc: BatchDocument) -> None:
            failed = doc.counts.get(JobStatus.FAILED)
            bar.update(
                task,
                completed=doc.progress,
                description=f"{doc.counts.get(JobStatus.COMPLETED, 0)}/{doc.total} done"
                + (f", {failed} failed" if failed else "")
                + (f", ETA {doc.eta_s:.0f} s" if doc.eta_s else ""),
            )

        return follow_batch(
            jobs,
            batch_id,
            on_update=show,
            grace_s=grace_s,
            spec_exists=lambda: clients.blobs.exists(spec_uri),
        )


def finish_batch(doc: BatchDocument, jobs: Any, *, as_json: bool = False, names: dict[str, str] | None = None) -> None:
    from scenerender.cli.remote import exit_code_for
    from scenerender.messages import ErrorBlock, JobStatus

    names = names or {}
    counts = doc.counts
    err.print(
        f"batch {doc.batch_id} {doc.status.value}: {counts.get(JobStatus.COMPLETED, 0)} of "
        f"{doc.total} scenes completed",
        highlight=False,
    )
    if doc.error is not None:
        message = with_user_paths(doc.error.message, names)
        err.print(f"  {message}", markup=False, highlight=False)
        if as_json:
            print_error_json(doc.error.code or SpecError.code, message, [])
        raise typer.Exit(2)
    details: list[dict[str, str]] = []
    codes: list[str] = []
    for job_id in doc.failed:
        job = jobs.get(job_id)
        error = (job.error if job is not None else None) or ErrorBlock.internal("no error recorded")
        message = with_user_paths(error.message, names)
        codes.append(error.code)
        details.append({"path": job_id, "problem": f"[{error.code}] {message}"})
        err.print(f"  {job_id}: [{error.code}] {message}", markup=False, highlight=False)
    if doc.failed:
        if as_json:
            print_error_json(codes[0], f"{len(doc.failed)} of {doc.total} scenes failed", details)
        raise typer.Exit(exit_code_for(codes[0]))
    if as_json:
        out.print_json(json.dumps({"batch_id": doc.batch_id, "status": doc.status.value, "counts": counts}))


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
        clients = cloud_clients(settings)
        from scenerender.cli.remote import submit_batch_with_api

        session, api, jobs = signed_in(user, clients)
        names: dict[str, str] = {}
        receipt = submit_batch_with_api(spec_path, api, allow_outside=allow_outside, names=names)
        batch_id, uri = receipt.batch_id, receipt.spec_uri
        err.print(f"submitted {uri} as batch {batch_id} (user {session.email or session.uid})", highlight=False)
        if not as_json:
            out.print(batch_id)
        if wait or download_to is not None:
            api.wait_until_visible("batch_id", batch_id)
            batch_doc = following(batch_id, lambda: follow_batch_with_bar(batch_id, clients, jobs), "batch")
            finish_batch(batch_doc, jobs, as_json=as_json, names=names)
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
    clients = cloud_clients(settings)
    from scenerender.cli.remote import submit_with_api

    session, api, jobs = signed_in(user, clients)
    names = {}
    answer = submit_with_api(spec_path, api, clients.settings, allow_outside=allow_outside, names=names)
    job_id, uri, generation = answer.job_id, answer.spec_uri, int(answer.spec_generation)
    err.print(f"submitted {uri} as job {job_id} (user {session.email or session.uid})", highlight=False)
    if not as_json:
        out.print(job_id)
    if wait or target is not None:
        api.wait_until_visible("job_id", job_id)
        doc = following(job_id, lambda: follow_with_bar(job_id, generation, clients, jobs))
        finish(doc, target, as_json=as_json, names=names)
    elif as_json:
        out.print_json(json.dumps({"job_id": job_id, "spec_uri": uri}))


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
    clients = cloud_clients(get_settings())
    grace = clients.settings.watch_grace_s
    _, _, jobs = signed_in(user, clients)  # read as the user: another user's job is as missing as none
    if batch:
        finish_batch(follow_batch_with_bar(job_id, clients, jobs, grace_s=grace), jobs, as_json=as_json)
    else:
        finish(follow_with_bar(job_id, None, clients, jobs, grace_s=grace), None, as_json=as_json)


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
    from scenerender.dev.sample import make_sample_scene

    settings = get_settings()
    out_dir.mkdir(parents=True, exist_ok=True)
    err.print(f"making the sample scene in {out_dir}")
    spec_path = make_sample_scene(out_dir, job_id=f"demo-{time.strftime('%Y%m%d-%H%M%S')}", ffmpeg=settings.ffmpeg)
    stack = dev_stack(settings)
    with err.status("starting the local cloud (Pub/Sub, Firestore, GCS emulators, functions, worker)"):
        started = stack.up()
    for note in stack.notes:
        err.print(note, highlight=False)
    from scenerender.cloud.clients import Clients

    clients = Clients(stack.client_settings())
    try:
        session, api, jobs = signed_in(user, clients)
        answer = submit_with_api(spec_path, api, clients.settings)
        job_id, uri, generation = answer.job_id, answer.spec_uri, int(answer.spec_generation)
        err.print(
            f"submitted {uri} as job {job_id} (user {session.email}); following render_jobs/{job_id}", highlight=False
        )
        target = out_dir / f"{job_id}.mp4"
        api.wait_until_visible("job_id", job_id)
        finish(following(job_id, lambda: follow_with_bar(job_id, generation, clients, jobs)), target, as_json=as_json)
        if not as_json:
            out.print(str(target.resolve()))
    finally:
        if started and not keep_running:
            stack.down()
