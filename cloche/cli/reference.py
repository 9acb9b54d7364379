"""The ``cloche`` command as a plain click command, for the docs site's CLI reference.

mkdocs-click documents click commands; Typer builds one only when asked, so this module builds it
once (``docs/reference/cli.md`` points its ``:::`` directive at ``click_cmd``).

The page uses mkdocs-click's ``plain`` style (each command's own ``--help`` text): its ``table``
style keeps only parameters that are ``click.Option`` instances, and Typer 0.29 builds its
commands on its own copy of click (``typer._click``), so that style silently lists no options.
"""

import typer

from cloche.cli.app import app

click_cmd = typer.main.get_command(app)
