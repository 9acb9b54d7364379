"""A model version's resident size: the memory its loaded model takes in a worker.

Measured in a fresh child process (child_pool.py, the same scrubbed process that inspects
uploads), never in the caller's: a process that has loaded and freed other models reuses that
memory, so its own growth would under-count, and the file size is not the loaded size (a pickled
forest grows, a compressed one more so). The child loads the model twice and reports the second
load's growth (see inspect_child._measure), so imports are not counted.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from cloche.errors import CorruptArtifact, InspectionTimeout
from cloche.registry.inspection import error_from_answer

STDERR_TAIL = 2000


def measure_resident_bytes(framework: str, model_path: Path, *, timeout_s: float) -> int:
    """Load the model in a child process and return the memory it took, in bytes."""
    from cloche.registry.child_pool import start_child

    # No framework preloaded: the child loads the model twice and counts the second load only,
    # so the first one imports just what this model needs.
    child = start_child()
    request = {"measure": {"framework": framework, "model_path": str(model_path)}}
    try:
        out, err = child.proc.communicate(json.dumps(request).encode(), timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise InspectionTimeout(
            f"loading the {framework} model to measure its memory took longer than {timeout_s:g} s",
            hint="raise CLOCHE_REGISTRY__INSPECT_TIMEOUT_S if this model loads this slowly",
        ) from None
    finally:
        child.kill()
    try:
        answer = json.loads(out)
    except ValueError:
        tail = err.decode(errors="replace")[-STDERR_TAIL:].strip()
        raise CorruptArtifact(
            f"loading the model crashed the process measuring it (exit code "
            f"{child.proc.returncode})" + (f": {tail}" if tail else ""),
            hint="check that the model loads with its framework's own loader",
        ) from None
    if "error" in answer:
        raise error_from_answer(answer["error"])
    return int(answer["resident_bytes"])
