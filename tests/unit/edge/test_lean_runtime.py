"""The edge runtime installs numpy, orjson, uvicorn and a framework, nothing of the control plane.

These imports run in a child interpreter where the control plane's packages cannot be imported,
as in a bundle's virtual environment.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

CONTROL_PLANE = (
    "sqlalchemy alembic pyarrow fastapi starlette pydantic pydantic_settings typer rich httpx "
    "datasketches fsspec croniter pandas sklearn scipy"
)

CHILD = textwrap.dedent(
    f"""
    import importlib.abc, sys
    BLOCKED = set({CONTROL_PLANE.split()!r})

    class Absent(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"{{name}} is not installed in an edge runtime")

    sys.meta_path.insert(0, Absent())
    import cloche.edge.cli, cloche.edge.server, cloche.edge.sync, cloche.cli.launch
    print("imported")
    """
)


def test_the_edge_commands_import_without_the_control_plane_packages() -> None:
    done = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "imported"
