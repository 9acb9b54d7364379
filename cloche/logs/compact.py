"""``python -m cloche.logs.compact ROOT [--max-age-days D] [--max-mb M]``: compact closed
payload-log segments into Parquet, then apply retention.

Serving workers start this as a separate, lower-priority process: parsing and writing a 64 MiB
segment in a worker's own thread held the GIL for hundreds of milliseconds (measured: p99 of
230 ms with 64-row requests). It then applies retention (logs/retention.py) and profiles the
new partitions for the monitors (monitoring/log_profiles.py), for the same reason.

It prints one JSON line: rows compacted, and what retention removed (for /metrics).
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime, timedelta
from pathlib import Path

from cloche.logs.retention import Removed, apply_retention
from cloche.logs.service import compact, compaction_lock


def main(argv: list[str] | None = None, *, now: datetime | None = None) -> int:
    """Compact, apply retention, then profile; ``now`` (default: the clock) is the time both
    retention and profiling count back from."""
    parser = argparse.ArgumentParser(prog="python -m cloche.logs.compact")
    parser.add_argument("root", type=Path)
    parser.add_argument("--max-age-days", type=float, default=0.0, help="0: keep any age")
    parser.add_argument("--max-mb", type=int, default=0, help="0: no size cap")
    args = parser.parse_args(argv)
    root: Path = args.root
    moved = compact(root)
    removed = Removed()
    if args.max_age_days > 0 or args.max_mb > 0:
        with compaction_lock(root) as held:  # never beside another compaction's writes
            if held:
                removed = apply_retention(
                    root,
                    max_age=timedelta(days=args.max_age_days) if args.max_age_days > 0 else None,
                    max_bytes=args.max_mb * 2**20 if args.max_mb > 0 else None,
                    now=now,
                )
    # Profiles of the new partitions, for the monitors: here, off every serving worker.
    from cloche.monitoring.log_profiles import profile_log

    profile_log(root, now=now)
    print(json.dumps({"rows": moved, "removed": removed.as_dict()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
