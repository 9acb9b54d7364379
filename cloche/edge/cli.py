"""The edge commands, `cloche serve DIR` and `cloche edge sync DIR`, on argparse alone.

They run in a bundle's lean runtime, which has neither Typer nor Rich (cloche/cli/launch.py
sends these two commands here in every install). Errors map as everywhere in cloche: the
message and hint on stderr, the error class's exit code.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from cloche.errors import ClocheError

SERVE_HELP = "Serve an exported bundle with no store, registry or network."
SYNC_HELP = "Upload an edge server's spooled payload log to the central server, exactly once."


def serve_parser() -> argparse.ArgumentParser:
    from cloche.edge.spool import WhenFull

    p = argparse.ArgumentParser(prog="cloche serve", description=SERVE_HELP)
    p.add_argument("bundle", type=Path, metavar="DIR", help="the folder `cloche export` wrote")
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="bind address (beyond loopback needs CLOCHE_EDGE_TOKEN set)",
    )
    p.add_argument("--port", type=int, default=8080)
    p.add_argument(
        "--spool", type=Path, default=None, help="payload log folder (default DIR/spool)"
    )
    p.add_argument("--spool-max-mb", type=float, default=512.0, help="cap of the spool on disk")
    p.add_argument(
        "--spool-full",
        choices=[w.value for w in WhenFull],
        default="stop",
        help="at the cap: stop logging, or drop the oldest rows (both counted)",
    )
    p.add_argument("--no-log", action="store_true", help="do not log predictions at all")
    p.add_argument("--max-batch-size", type=int, default=None)
    return p


def sync_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cloche edge sync", description=SYNC_HELP)
    p.add_argument("bundle", type=Path, metavar="DIR", help="the bundle folder being served")
    p.add_argument(
        "--to",
        required=True,
        metavar="URL",
        help="the central cloche server (a loopback or private address needs "
        "CLOCHE_EGRESS__ALLOW, e.g. CLOCHE_EGRESS__ALLOW=10.0.0.0/8)",
    )
    p.add_argument(
        "--token",
        default=os.environ.get("CLOCHE_TOKEN"),
        help="central API token with the edge role, made there with `cloche tokens create "
        "--role edge` (default $CLOCHE_TOKEN)",
    )
    p.add_argument(
        "--endpoint",
        default=None,
        help="central endpoint the rows belong to (default: the bundle's model name)",
    )
    p.add_argument("--spool", type=Path, help="spool folder (default DIR/spool)")
    return p


def serve_command(argv: Sequence[str]) -> None:
    from cloche.edge.server import EdgeOptions, serve
    from cloche.edge.spool import WhenFull

    args = serve_parser().parse_args(argv)
    options = EdgeOptions(
        host=args.host,
        port=args.port,
        spool=args.spool,
        spool_max_mb=args.spool_max_mb,
        when_full=WhenFull(args.spool_full),
        log_predictions=not args.no_log,
        max_batch_size=args.max_batch_size,
    )
    serve(args.bundle, options)


def sync_command(argv: Sequence[str]) -> None:
    from cloche.edge.bundle import open_bundle
    from cloche.edge.sync import Central, sync_spool

    args = sync_parser().parse_args(argv)
    bundle = open_bundle(args.bundle, verify=False)  # its name only; serving checks the files
    central = Central(args.to, args.endpoint or bundle.endpoint, args.token)
    report = sync_spool(args.spool or bundle.root / "spool", central)
    print(
        f"uploaded {report.uploaded_rows} rows ({report.uploaded_bytes} bytes) to "
        f"{central.endpoint} at {args.to}; {report.repeated_chunks} chunks were already there; "
        f"{report.segments_removed} segments done and removed"
        + (f"; {len(report.pending)} still being written" if report.pending else "")
    )


EDGE_USAGE = "usage: cloche edge sync DIR --to URL [--token T] [--endpoint NAME]"
EDGE_HELP = f"""{EDGE_USAGE}

Commands of an edge machine; they run without the control plane installed.

commands:
  sync    {SYNC_HELP}

Its sibling `cloche serve DIR`: {SERVE_HELP}
`cloche edge sync --help` and `cloche serve --help` show their options.
"""
HELP_FLAGS = ("-h", "--help")


def main(argv: Sequence[str]) -> int:
    """``argv`` starts with the command: ``serve ...`` or ``edge sync ...``."""
    try:
        if argv[0] == "serve":
            serve_command(argv[1:])
        elif argv[1:2] == ["sync"]:
            sync_command(argv[2:])
        elif argv[1:] == [] or argv[1] in HELP_FLAGS:
            # Asking what `cloche edge` does is not a usage error: show its commands, exit 0.
            print(EDGE_HELP, end="")
        else:
            print(EDGE_USAGE, file=sys.stderr)
            return 2
    except ClocheError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"hint: {exc.hint}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    return 0
