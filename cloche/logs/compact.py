"""``python -m cloche.logs.compact ROOT``: compact closed payload-log segments into Parquet.

Serving workers start this as a separate, lower-priority process: parsing and writing a 64 MiB
segment in a worker's own thread held the GIL for hundreds of milliseconds (measured: p99 of
230 ms with 64-row requests). It then profiles the new partitions for the monitors
(monitoring/log_profiles.py), for the same reason.
"""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path

from cloche.logs.service import compact


def main(argv: list[str] | None = None, *, now: datetime | None = None) -> int:
    """Compact, then profile; ``now`` (default: the clock) bounds how far back profiling goes."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m cloche.logs.compact LOG_ROOT", file=sys.stderr)
        return 2
    root = Path(args[0])
    print(compact(root))
    # Profiles of the new partitions, for the monitors: here, off every serving worker.
    from cloche.monitoring.log_profiles import profile_log

    profile_log(root, now=now)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
