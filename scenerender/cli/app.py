"""The ``scenerender`` command line (CONTRACT.md section 3): the commands, gathered.

    render, validate      scenerender.cli.local     on this machine alone
    submit, watch, demo   scenerender.cli.submit    through the pipeline, as a signed-in user
    dev up|down|status    scenerender.cli.dev       the local cloud
    (errors, progress)    scenerender.cli.console   what every command shares

Exit codes: 0 done; 2 invalid spec or arguments; 3 an input could not be used;
4 the render failed; 1 anything else; 130 after Ctrl-C and 128 + N after signal N
(SIGTERM 143, SIGHUP 129), with nothing of the render left behind. Errors are one clear
message each, never a trace.
"""

from __future__ import annotations

import json
import logging
import sys

import typer
import typer.core
from typer import _click as click  # typer 0.29 carries its own click; its exceptions are these

from scenerender.cli import dev, local, submit
from scenerender.cli.console import err, out, print_error_json
from scenerender.core.spec import json_schema
from scenerender.errors import SpecError

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Render a scene's segments and audio into one MP4, locally or on the pipeline.",
)
app.command("render")(local.render_cmd)
app.command("validate")(local.validate_cmd)
app.command("submit")(submit.submit_cmd)
app.command("watch")(submit.watch_cmd)
app.command("demo")(submit.demo_cmd)
app.add_typer(dev.dev_app, name="dev")


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
            problem = exc.format_message()
            print_error_json(SpecError.code, problem, [{"path": where, "problem": problem}])
        sys.exit(exc.exit_code)
    except typer.Abort:
        err.print("[red]aborted[/red]")
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
