"""Scheduled monitor runs in a child process: ``python -m cloche.monitoring.child NOW NAME...``.

A run parses log rows and merges sketches in Python. Run on a thread of a serving worker (where
the scheduler of `cloche up` lives), it holds the GIL against the event loop: measured with
`bench/serving.py --monitor`, LogisticRegression at one connection fell from 1.10x the baseline
to 0.54x, and from 4.68x to 3.25x at 64. So the scheduler runs due monitors in a niced child,
as compaction already does, and the worker only waits for it on the scheduler's thread.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Sequence
from datetime import datetime

from cloche.config import Settings

log = logging.getLogger("cloche.monitoring")
SETTINGS_ENV = "CLOCHE_CHILD_SETTINGS"  # the parent's settings, exactly (JSON)
TIMEOUT_S = 3600.0


def run_in_child(settings: Settings, names: Sequence[str], now: datetime) -> None:
    """Run the monitors ``names`` as of ``now`` in a niced child; wait for it."""
    env = {**os.environ, SETTINGS_ENV: settings.model_dump_json()}
    cmd = ["nice", "-n", "10", sys.executable, "-m", "cloche.monitoring.child", now.isoformat()]
    done = subprocess.run(
        [*cmd, *names], env=env, capture_output=True, text=True, timeout=TIMEOUT_S
    )
    if done.returncode != 0:
        log.warning("monitor runs %s failed: %s", ", ".join(names), done.stderr[-1000:])


def main(argv: Sequence[str]) -> int:
    from cloche.monitoring.runs import run_monitor
    from cloche.store.store import Store

    settings = Settings.model_validate_json(os.environ[SETTINGS_ENV])
    now = datetime.fromisoformat(argv[0])
    store = Store.open(settings)
    try:
        for name in argv[1:]:  # a run that fails is stored as failed; the next still runs
            run_monitor(store, name, settings=settings, now=now)
    finally:
        store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
