"""cloche in a notebook (``pip install 'cloche[notebook]'``, then ``cloche notebook``).

    import cloche
    from cloche.notebook import start

    client = cloche.Client()          # CLOCHE_URL and the token are set by `cloche notebook`
    client.models.list()              # a table
    run = start(my_pipeline, {"n": 5})
    run.watch()                       # the graph, its steps coloured as they run

See docs/guides/notebooks.md.
"""

from cloche.notebook.display import enable
from cloche.notebook.runs import RunHandle, start, watch

__all__ = ["RunHandle", "enable", "start", "watch"]
