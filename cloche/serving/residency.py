"""Where each worker's model cache writes its state, and how the control plane reads them all.

Files, not a table: the state changes on every load and eviction (and its last-used times on
every batch), which is worker-local news that the metadata database need not carry; the metrics
files (metrics.py) already work this way. Each worker of a server writes
``<home>/run/<server id>/models/<worker instance>.json``; servers sharing a home (replicas on one
machine or one shared volume) are all read. A file whose process has exited is ignored.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cloche.processes import pid_alive


def state_file(home: Path, server_id: str, instance: str) -> Path:
    return home / "run" / server_id / "models" / f"{instance}.json"


def read_states(home: Path) -> list[dict[str, Any]]:
    """Every live worker's state, each with its ``server`` and ``worker`` (pid) named."""
    states = []
    for path in sorted((home / "run").glob("*/models/*.json")):
        try:
            state = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # being replaced, or from a crash mid-write of an older release
        pid = int(state.get("pid", 0))
        if not pid_alive(pid):
            continue
        state["server"] = path.parent.parent.name
        state["worker"] = pid
        states.append(state)
    return states


def loaded_models(home: Path, *, resident_only: bool = True) -> list[dict[str, Any]]:
    """One row per model per worker: what `cloche models loaded` prints."""
    rows = []
    for state in read_states(home):
        for model in state.get("models", []):
            if resident_only and not model.get("resident"):
                continue
            rows.append({**model, "server": state["server"], "worker": state["worker"]})
    rows.sort(key=lambda r: (r["model"], r["version"], r["server"], r["worker"]))
    return rows


def worker_budget(home: Path) -> int | None:
    """The smallest per-worker share of a model memory budget among live workers on this home,
    or None when none has a budget: a model larger than it can never be held by that worker."""
    budgets = [s["budget_bytes"] for s in read_states(home) if s.get("budget_bytes")]
    return min(budgets) if budgets else None
