"""The root ``cloche`` command: global options, command groups, and the one error mapping.

Every command raises; only ``ClocheGroup.invoke`` turns an exception into a message on stderr and
an exit code (from the error class), so no command needs a try/except of its own.
"""

import json
import os
import sys
from typing import Annotated, Any

import typer
from rich.text import Text
from typer.core import TyperGroup

from cloche import __version__
from cloche.cli import (
    audit,
    backup,
    baselines,
    batch,
    endpoints,
    feedback,
    lineage,
    logs,
    models,
    monitors,
    notebook,
    pipelines,
    tokens,
    up,
)
from cloche.cli._common import Globals
from cloche.cli._help import tidy_params, tidy_tree
from cloche.cli._output import err
from cloche.cli.export import export
from cloche.edge.cli import SERVE_HELP, SYNC_HELP
from cloche.edge.cli import main as edge_main
from cloche.errors import ClocheError

# Typer's own exceptions (usage errors, Exit, Abort) carry their exit codes already.
_PASS_THROUGH = (typer.Exit, typer.Abort, typer.TyperException, KeyboardInterrupt, EOFError)


def report_error(exc: ClocheError, *, as_json: bool) -> None:
    """Print a ClocheError on stderr: its message and hint, or its JSON body with --json."""
    if as_json:
        sys.stderr.write(json.dumps(exc.to_dict()) + "\n")
        return
    err.print(Text("error: ", style="bold red") + Text(exc.message, style="red"), soft_wrap=True)
    if exc.hint:
        err.print(Text("hint: ", style="bold") + Text(exc.hint), soft_wrap=True)


class ClocheGroup(TyperGroup):
    """The root group; wraps every subcommand, so errors are mapped in exactly one place, and
    gives every command's help the same labels and literal text (cli/_help.py)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        tidy_tree(self)

    def get_params(self, ctx: typer.Context) -> list[Any]:  # type: ignore[override]
        return tidy_params(super().get_params(ctx))

    def invoke(self, ctx: typer.Context) -> Any:  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except _PASS_THROUGH:
            raise
        except ClocheError as exc:
            report_error(exc, as_json=bool(ctx.meta.get("cloche.json")))
            raise typer.Exit(exc.exit_code) from None
        except Exception as exc:
            if os.environ.get("CLOCHE_DEBUG") == "1":
                raise
            message = f"unexpected error: {type(exc).__name__}: {exc}"
            err.print(Text(message, style="red"), soft_wrap=True)
            err.print("hint: run again with CLOCHE_DEBUG=1 for the full traceback")
            raise typer.Exit(1) from None


app = typer.Typer(
    cls=ClocheGroup,
    name="cloche",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
app.add_typer(models.app, name="models")
app.add_typer(endpoints.app, name="endpoints")
app.add_typer(batch.app, name="batch")
app.add_typer(monitors.app, name="monitors")
app.add_typer(monitors.alerts_app, name="alerts")
app.add_typer(baselines.app, name="baselines")
app.add_typer(tokens.app, name="tokens")
app.add_typer(pipelines.app, name="pipelines")
app.add_typer(backup.app, name="backup")
app.command("audit")(audit.audit)
app.command("lineage")(lineage.lineage)
app.command("logs")(logs.logs)
app.command("feedback")(feedback.feedback)
app.command("up")(up.up)
app.command("export")(export)
app.command("notebook")(notebook.notebook)


# `serve` and `edge` run on argparse (cloche/cli/launch.py sends them there before Typer loads,
# because an edge bundle's runtime has no Typer). These stubs only make them appear in
# `cloche --help`; should Typer be reached anyway (CliRunner, `python -m cloche.cli.app`), they
# pass their arguments on to the same argparse CLI.
_DISPATCH = {"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []}
EDGE_PANEL = "Edge machine (no control plane needed)"


@app.command(
    "serve",
    context_settings=_DISPATCH,
    rich_help_panel=EDGE_PANEL,
    help=f"{SERVE_HELP} Options: `cloche serve --help`.",
)
def serve(ctx: typer.Context) -> None:
    raise typer.Exit(edge_main(["serve", *ctx.args]))


@app.command(
    "edge",
    context_settings=_DISPATCH,
    rich_help_panel=EDGE_PANEL,
    help=f"`cloche edge sync DIR --to URL`: {SYNC_HELP[0].lower()}{SYNC_HELP[1:]}",
)
def edge(ctx: typer.Context) -> None:
    raise typer.Exit(edge_main(["edge", *ctx.args]))


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"cloche {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    url: Annotated[
        str | None,
        typer.Option(
            envvar="CLOCHE_URL",
            metavar="URL",
            help="URL of a cloche server; without it, commands act on CLOCHE_HOME directly.",
        ),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            envvar="CLOCHE_TOKEN",
            metavar="TOKEN",
            help="API token for --url (default for a loopback URL: the local admin token "
            "`cloche up` wrote to CLOCHE_HOME).",
            show_default=False,
        ),
    ] = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_show_version, is_eager=True, help="Show the version and exit."
        ),
    ] = False,
) -> None:
    """cloche: self-hosted model serving. Register, inspect and serve models."""
    ctx.obj = Globals(url=url or None, token=token or None)


def main() -> None:
    """Console-script entry point."""
    app()
