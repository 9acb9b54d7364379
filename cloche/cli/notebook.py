"""``cloche notebook``: JupyterLab with the SDK already pointed at the server."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Annotated

import typer

from cloche.cli._common import Globals, load_settings
from cloche.cli._output import err
from cloche.notebook import workspace


def notebook(
    ctx: typer.Context,
    directory: Annotated[
        Path,
        typer.Option(
            "--dir",
            metavar="DIR",
            help="The folder JupyterLab opens; seeded with the starter notebooks when empty.",
        ),
    ] = Path("notebooks"),
    port: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=65535,
            metavar="N",
            help="Port of JupyterLab on 127.0.0.1 (default: 8888 or the next free one).",
            show_default=False,
        ),
    ] = None,
    no_browser: Annotated[
        bool, typer.Option("--no-browser", help="Print JupyterLab's URL; open no browser.")
    ] = False,
) -> None:
    """Open JupyterLab in DIR, its kernels' `cloche.Client()` reaching the server (CLOCHE_URL,
    CLOCHE_TOKEN and CLOCHE_HOME set). Needs `pip install 'cloche[notebook]'`."""
    workspace.require_extra()
    options = ctx.find_root().obj
    options = options if isinstance(options, Globals) else Globals()
    settings = load_settings()
    url = options.url or workspace.server_url(settings)
    env = {**os.environ, **workspace.kernel_env(settings, url, options.token)}
    for copied in workspace.prepare_dir(directory):
        err.print(f"added the starter notebook {copied}", highlight=False)
    err.print(f"notebooks in {directory.resolve()}; cloche.Client() reaches {url}", highlight=False)
    command = workspace.jupyter_command(directory, port=port, browser=not no_browser)
    os.chdir(directory)  # kernels started without a notebook's path start here too
    if os.name == "posix":  # JupyterLab takes this process's place: Ctrl-C and signals reach it
        os.execve(command[0], command, env)
    raise typer.Exit(subprocess.call(command, env=env))
