"""Child processes for inspecting uploads: started with a scrubbed environment, and kept one
step ahead.

Starting Python and importing a framework (scikit-learn: a second or more) would be paid on
every upload. So after each upload a spare child for its framework is started in the background;
it imports that framework and waits for a request on stdin. Each child still serves one upload
only and is killed afterwards: no model ever shares a process with another, and none with the
server.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

CHILD_MODULE = "cloche.registry.inspect_child"
# Environment variables the child keeps although their names start with CLOCHE_: none so far,
# since the request carries every path the child reads.
KEEP_CLOCHE_VARS: frozenset[str] = frozenset()
# Any variable whose name holds one of these (case-insensitive) is dropped: credentials by their
# usual names, and webhook URLs, whose path is their secret (``webhook:env:SLACK_HOOK``).
SECRET_MARKERS = ("PASSWORD", "PASSWD", "SECRET", "TOKEN", "KEY", "CREDENTIAL", "HOOK", "DSN")
SECRET_NAMES = frozenset({"DATABASE_URL", "PGPASSFILE", "PGSERVICEFILE"})


def child_env(environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` without cloche's settings and anything named like a secret."""
    kept = {}
    for name, value in environ.items():
        upper = name.upper()
        if upper.startswith("CLOCHE_") and upper not in KEEP_CLOCHE_VARS:
            continue
        if upper in SECRET_NAMES or any(marker in upper for marker in SECRET_MARKERS):
            continue
        kept[name] = value
    return kept


@dataclass
class Child:
    """A started inspecting process and the empty folder it runs in."""

    proc: subprocess.Popen[bytes]
    cwd: str

    def kill(self) -> None:
        """Kill the child and everything it started; close its pipes, remove its folder."""
        # ProcessLookupError: the child and everything it started have already exited.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()
        shutil.rmtree(self.cwd, ignore_errors=True)


def start_child(preload: Iterable[str] = ()) -> Child:
    """Start ``python -P -m cloche.registry.inspect_child``, importing ``preload`` frameworks
    while it waits for its request."""
    cwd = tempfile.mkdtemp(prefix="cloche-inspect-")
    # -P keeps the working directory off sys.path, so a file of an upload can never stand in for
    # a module the child imports; the working directory is an empty folder besides.
    command = [sys.executable, "-P", "-m", CHILD_MODULE, *sorted(set(preload))]
    proc = subprocess.Popen(
        command,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=cwd,
        env=child_env(os.environ),
        start_new_session=True,  # one process group: killing it kills what the model started
    )
    return Child(proc, cwd)


class SparePool:
    """Idle children, one per framework recently inspected, each with that framework imported.

    Only the ``keep`` most recently used frameworks keep a spare, which bounds the memory idle
    children hold (a process with torch imported holds a few hundred MB).
    """

    def __init__(self, keep: int = 2) -> None:
        self.keep = keep
        self._lock = threading.Lock()
        self._spares: dict[str, Child] = {}  # oldest first

    def take(self, framework: str) -> Child:
        """A child for one request: this framework's spare if it is alive, else a new one."""
        with self._lock:
            spare = self._spares.pop(framework, None)
        if spare is not None and spare.proc.poll() is None:
            return spare
        if spare is not None:
            spare.kill()  # it died while idle
        return start_child([framework])

    def refill(self, framework: str) -> None:
        """Start this framework's next spare, once a request is answered, so that its imports
        do not compete with that request for the CPU."""
        with self._lock:
            if framework in self._spares:
                return
            self._spares[framework] = start_child([framework])
            evicted = [self._spares.pop(f) for f in list(self._spares)[: -self.keep]]
        for child in evicted:
            child.kill()

    def close(self) -> None:
        with self._lock:
            spares, self._spares = list(self._spares.values()), {}
        for child in spares:
            child.kill()


SPARES = SparePool()
atexit.register(SPARES.close)
