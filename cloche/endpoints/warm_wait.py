"""Waiting for a deployment to be warm on every serving worker (`endpoints deploy --wait`).

Workers say what they hold in their model cache's state files (serving/residency.py): a model
is warm in a worker once it is resident there, which it is only after it answered its warm-up.
Under a memory budget a worker preloads a model only into free room, so a model that does not fit
there counts as done (it is routable and loads on its first request).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from cloche.errors import Unavailable
from cloche.serving.residency import read_states

POLL_S = 0.2


def wait_warm(
    home: Path, endpoint: str, ref: str, key: str, *, size_bytes: int, timeout_s: float
) -> list[int]:
    """Block until every live serving worker on ``home`` holds version ``ref`` warm; the
    workers' pids. Raises Unavailable at once when a worker failed to load it, and when
    ``timeout_s`` passes, naming the workers that are not warm; either way the deployment
    stays recorded (the wait follows the commit). ``key``: the model cache's key
    (framework and content hash): two versions of the same files share one cache entry, which
    the state files list under the version that loaded it first."""
    deadline = time.monotonic() + timeout_s
    while True:
        states = read_states(home)
        pending = []
        for state in states:
            status, reason = _worker_status(state, key, size_bytes)
            if status == "failed":
                raise Unavailable(
                    f"{ref} is deployed but failed to warm on worker {state['worker']} of "
                    f"server {state['server']}: {reason}",
                    hint=f"the deployment is recorded and takes no traffic from a warm one; see "
                    f"`cloche endpoints show {endpoint}` and the server log, fix the cause, and "
                    "the worker retries it (or undeploy it)",
                )
            if status == "pending":
                pending.append(f"{state['server']}/{state['worker']}")
        if not pending:
            return [int(s["worker"]) for s in states]
        if time.monotonic() >= deadline:
            raise Unavailable(
                f"{ref} is deployed but not warm after {timeout_s:g} s on worker(s) "
                f"{', '.join(pending)} (server/pid)",
                hint=f"the deployment is recorded (do not deploy it again): it serves once "
                f"warm. Watch it with `cloche endpoints show {endpoint}` or `cloche models "
                "loaded`; a large model may need a longer --wait-timeout; if it never warms, "
                "see the server log",
            )
        time.sleep(POLL_S)


def _worker_status(state: dict[str, Any], key: str, size_bytes: int) -> tuple[str, str | None]:
    """ "warm", "failed" (with the reason) or "pending" for one worker's state."""
    entry = next((m for m in state.get("models", []) if m.get("key") == key), None)
    if entry is not None and entry.get("resident"):
        return "warm", None
    if entry is not None and entry.get("last_error"):
        return "failed", str(entry["last_error"])
    budget = state.get("budget_bytes")
    if budget and size_bytes > budget - int(state.get("used_bytes") or 0):
        return "warm", None  # no room to preload it: it loads on its first request
    return "pending", None
