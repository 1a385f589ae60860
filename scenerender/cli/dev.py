"""``scenerender dev``: the local cloud (up, down, status), and which cloud the other
commands talk to (``cloud_settings``): Google Cloud, the emulators the settings name, or the
stack this folder runs. Nothing here changes the process environment: the stack's settings
are handed down.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer

from scenerender.cli.console import JsonOption, err, guarded, out
from scenerender.dev.functions import FUNCTIONS
from scenerender.errors import CloudUnavailableError
from scenerender.settings import Settings, get_settings

if TYPE_CHECKING:
    from scenerender.cloud.clients import Clients


dev_app = typer.Typer(no_args_is_help=True, help="The local cloud: emulators, functions and workers.")


def dev_stack(settings: Settings, workers: int = 1, executions: bool = False, **ports: int) -> Any:
    from scenerender.dev.devstack import DevStack, Ports

    defaults = Ports()
    chosen = Ports(**{k: v or getattr(defaults, k) for k, v in ports.items()}) if ports else defaults
    fixed = {k for k, v in ports.items() if v}
    return DevStack(settings, ports=chosen, workers=workers, fixed_ports=fixed, executions=executions)


def cloud_settings(settings: Settings) -> Settings:
    """The settings that point this command at its cloud: Google Cloud (``SCENERENDER_CLOUD=gcp``),
    the emulators the settings name, or else the local cloud this folder runs.

    Fails at once (exit 1, in well under 2 s) when nothing answers: no stack in this folder,
    or variables left in the shell by an earlier ``eval "$(scenerender dev up)"`` that point
    at a stack since stopped. Never a long retry against a closed port.
    """
    from scenerender.cloud.health import addresses, require_cloud

    if settings.cloud == "gcp":
        return settings
    if settings.emulated:
        require_cloud(addresses(settings), 'set in this shell (by an earlier `eval "$(scenerender dev up)"`?)')
        return settings
    stack = dev_stack(settings)
    state = stack.load()
    if state is None:
        raise CloudUnavailableError(
            f"no local cloud is running (none in {stack.state_dir.resolve()}): start it with "
            '`eval "$(scenerender dev up)"` (or set SCENERENDER_CLOUD=gcp and the Google Cloud environment)'
        )
    stack.state = state
    require_cloud(stack.env(), f"recorded in {stack.state_file}")
    chosen: Settings = stack.client_settings()
    return chosen


def cloud_clients(settings: Settings) -> Clients:
    """The clients of the cloud this command talks to (``cloud_settings``)."""
    from scenerender.cloud.clients import Clients

    return Clients(cloud_settings(settings))


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
        get_settings(),
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
    return (
        f"First of {len(FUNCTIONS)} consecutive ports for the functions ({', '.join(FUNCTIONS)}); "
        "default 8090, or a free run."
    )


def publish_web_samples(stack: Any) -> None:
    """The sample scene's media in the media bucket, offered on the web client's New render screen."""
    from scenerender.dev.webserve import sample_specs

    with err.status("making the sample scene for the web client"):
        stack.publish_web_samples(sample_specs(stack.client_settings()))


@dev_app.command("down")
@guarded
def dev_down(as_json: JsonOption = False) -> None:
    """Stop what `dev up` started in this folder (and nothing else)."""
    stopped = dev_stack(get_settings()).down()
    if as_json:
        out.print_json(json.dumps({"stopped": stopped}))
    err.print("stopped: " + (", ".join(stopped) or "nothing was running"))


@dev_app.command("status")
@guarded
def dev_status(as_json: JsonOption = False) -> None:
    """Whether this folder's local cloud is running: each process alive and answering on its own port."""
    status = dev_stack(get_settings()).status()
    out.print_json(json.dumps(status))
    if not status["running"]:
        raise typer.Exit(1)
