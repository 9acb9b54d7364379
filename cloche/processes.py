"""Whether a process on this machine is still there: the test behind every "live worker" rule
(state files of serving workers, heartbeats of batch job runners)."""

from __future__ import annotations

import os


def pid_alive(pid: int) -> bool:
    """True while process ``pid`` exists (also one of another user's, which we may not signal)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
