"""``python -m cloche.logs.compact ROOT [--max-age-days D] [--max-mb M] [--shared URL --replica R
[--endpoint-url E] [--shared-retention]]``: compact closed payload-log segments into Parquet,
then apply retention.

Serving workers start this as a separate, lower-priority process: parsing and writing a 64 MiB
segment in a worker's own thread held the GIL for hundreds of milliseconds (measured: p99 of
230 ms with 64-row requests). It then applies retention (logs/retention.py) and profiles the
new partitions for the monitors (monitoring/log_profiles.py), for the same reason.

With ``--shared``, the partitions go to the shared location under ``--replica`` (its
credentials come from the environment, never the command line), and the shared log's retention
runs only with ``--shared-retention``: the worker passes it while it holds the retention lease.

It prints one JSON line: rows compacted, and what retention removed (for /metrics).
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime, timedelta
from pathlib import Path

from cloche.logs.location import LogLocation
from cloche.logs.retention import Removed, apply_retention
from cloche.logs.service import compact, compaction_lock
from cloche.store.layout import SharedLog


def main(argv: list[str] | None = None, *, now: datetime | None = None) -> int:
    """Compact, apply retention, then profile; ``now`` (default: the clock) is the time both
    retention and profiling count back from."""
    parser = argparse.ArgumentParser(prog="python -m cloche.logs.compact")
    parser.add_argument("root", type=Path)
    parser.add_argument("--max-age-days", type=float, default=0.0, help="0: keep any age")
    parser.add_argument("--max-mb", type=int, default=0, help="0: no size cap")
    parser.add_argument("--shared", help="the shared log's folder or URL (logs.shared)")
    parser.add_argument("--endpoint-url", help="its S3-compatible service (logs.endpoint_url)")
    parser.add_argument("--replica", help="this server's id in the shared log")
    parser.add_argument(
        "--shared-retention", action="store_true", help="also prune the shared log (lease held)"
    )
    args = parser.parse_args(argv)
    if args.shared and not args.replica:
        parser.error("--shared needs --replica")
    root: Path = args.root
    shared = None
    if args.shared:
        shared = LogLocation.shared(SharedLog(args.shared, args.endpoint_url), replica=args.replica)
    written: list[str] = []
    moved = compact(root, shared, written=written)
    removed = Removed()
    if args.max_age_days > 0 or args.max_mb > 0:
        places: list[Path | LogLocation] = [root]
        if shared is not None and args.shared_retention:
            places.append(shared)
        with compaction_lock(root) as held:  # never beside another compaction's writes
            for place in places if held else []:
                removed.add(
                    apply_retention(
                        place,
                        max_age=timedelta(days=args.max_age_days)
                        if args.max_age_days > 0
                        else None,
                        max_bytes=args.max_mb * 2**20 if args.max_mb > 0 else None,
                        now=now,
                    )
                )
    # Profiles of the new partitions, for the monitors: here, off every serving worker.
    from cloche.monitoring.log_profiles import profile_log

    profile_log(root, now=now)
    if shared is not None:
        profile_log(root, now=now, location=shared, only=written)
    print(json.dumps({"rows": moved, "removed": removed.as_dict()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
