"""``cloche backup``: write the store of CLOCHE_HOME (or CLOCHE_DB_URL) to one archive, and
restore it. Acts on this machine's store directly, never through --url."""

from pathlib import Path
from typing import Annotated

import typer

from cloche.cli._common import JsonOpt, load_settings
from cloche.cli._output import err, out, print_json, size, success

app = typer.Typer(
    help="Back up the store (database, artifacts, payload log) to one file, and restore it.",
    no_args_is_help=True,
)

FileArg = Annotated[Path, typer.Argument(metavar="FILE", help="The archive (.tar.gz).")]


@app.command()
def create(
    file: FileArg,
    force: Annotated[bool, typer.Option("--force", help="Replace FILE if it exists.")] = False,
    json_: JsonOpt = False,
) -> None:
    """Back up the store; servers may keep running. FILE is written 0600: it holds the
    registry, token hashes and the payload log (requests and answers)."""
    from cloche.store.backup import create_backup  # the store stack loads for this command only

    summary = create_backup(load_settings(), file, force=force)
    if json_:
        print_json(summary.to_dict())
        return
    success(
        f"backed up to {summary.path} ({size(summary.bytes)}): schema {summary.schema_revision}, "
        f"{sum(summary.tables.values())} rows, {summary.artifact_files} artifact files, "
        f"{summary.log_files} payload-log files"
    )
    err.print("Keep it private: it holds everything the store does (tokens only as hashes).")


@app.command()
def restore(
    file: FileArg,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Replace a store that already holds data (stop its servers first)."
        ),
    ] = False,
    json_: JsonOpt = False,
) -> None:
    """Restore a backup into CLOCHE_HOME (or CLOCHE_DB_URL), migrating it to this version's
    schema. The archive is verified whole before anything is written."""
    from cloche.store.restore import restore_backup

    summary = restore_backup(load_settings(), file, force=force)
    if json_:
        print_json(summary.to_dict())
        return
    success(
        f"restored {summary.path.name}: {sum(summary.tables.values())} rows, "
        f"{summary.artifact_files} artifact files, {summary.log_files} payload-log files"
    )
    out.print("Start `cloche up`: it writes a new local admin token; API tokens work as before.")
