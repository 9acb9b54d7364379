"""Rich display in IPython and Jupyter: SDK results as tables (``tables.py``) through IPython's
own formatters, so lists of models or alerts render too, not only single objects."""

from __future__ import annotations

import sys
from typing import Any

from cloche.notebook.tables import COLUMNS, columns_for, detail_html, table_html
from cloche.registry.entities import ModelDetail


def html_for(obj: object) -> str | None:
    """The HTML a notebook shows for ``obj``, or None to leave it to its plain form."""
    if isinstance(obj, ModelDetail):
        return detail_html(obj)
    if isinstance(obj, list | tuple):
        return table_html(obj)
    if columns_for(obj) is not None:
        return table_html([obj])
    return None


def current_shell() -> Any | None:
    """The running IPython shell (a Jupyter kernel, the ipython prompt), or None."""
    ipython = sys.modules.get("IPython")  # never imported here: outside it, nothing to do
    return ipython.get_ipython() if ipython is not None else None


def enable(shell: Any | None = None) -> bool:
    """Show the SDK's results as tables in this IPython session; False when there is none.
    Idempotent: ``cloche.Client()`` calls it in every notebook."""
    shell = shell or current_shell()
    if shell is None:
        return False
    formatter = shell.display_formatter.formatters["text/html"]
    for kind in (*COLUMNS, list, tuple):
        formatter.for_type(kind, html_for)
    return True
