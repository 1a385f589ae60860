"""The command line's console: its two streams, the error reporting every command shares
(``guarded``: the error tree to one message and the contract's exit code, CONTRACT.md
section 3), the progress bar, and the options several commands take.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
from collections.abc import Callable
from typing import Annotated, ParamSpec, TypeVar

import typer
import typer.core
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from typer import _click as click  # typer 0.29 carries its own click; its exceptions are these

from scenerender.errors import SceneRenderError, Stopped

_display_type_rich = typer.core.TyperOption.display_type_rich


def _no_type_for_flags(self: typer.core.TyperOption, ctx: click.Context) -> str | None:
    # typer labels on/off flags `<bool>` in --help, as if they took a value: they do not.
    return None if self.is_flag else _display_type_rich(self, ctx)


typer.core.TyperOption.display_type_rich = _no_type_for_flags  # type: ignore[method-assign]  # one place, see above


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
                print_error_json(SceneRenderError.code, f"{type(exc).__name__}: {exc}", [])
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
