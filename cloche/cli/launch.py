"""The `cloche` console script: the edge commands on argparse, everything else on Typer.

`cloche serve` and `cloche edge` must run in an edge bundle's runtime, which installs neither
Typer nor the control plane, so they are sent to cloche/edge/cli.py before anything else loads.
"""

from __future__ import annotations

import sys

EDGE_COMMANDS = ("serve", "edge")


def main() -> None:
    argv = sys.argv[1:]
    if argv and argv[0] in EDGE_COMMANDS:
        from cloche.edge.cli import main as edge_main

        raise SystemExit(edge_main(argv))
    from cloche.cli.app import main as full_main

    full_main()


if __name__ == "__main__":
    main()
