"""The child process of ``ChildInspector``: read an InspectRequest as JSON on stdin, answer
``{"signature": ...}`` or ``{"error": {"code", "message", "hint"}}`` as JSON on stdout.

Arguments name frameworks to import while waiting for the request (a spare child, see
``child_pool.py``). The model's own code may print; its output goes to stderr, so that stdout
carries the answer alone.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

# What loading a model of each runtime imports, as far as it is known ahead of the model.
PRELOAD = {
    "sklearn": ("joblib", "sklearn.pipeline", "sklearn.linear_model", "sklearn.ensemble"),
    "xgboost": ("xgboost",),
    "lightgbm": ("lightgbm",),
    "onnx": ("onnxruntime",),
    "torch": ("torch",),
}


def main() -> int:
    _preload(sys.argv[1:])
    request_bytes = sys.stdin.buffer.read()
    if not request_bytes:
        return 0  # a spare whose server stopped before it was needed
    # Keep the real stdout for the answer and point file descriptor 1 (print, C libraries) at
    # stderr before any model code runs.
    answer_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    answer = _measure(request_bytes) if _is_measure(request_bytes) else _inspect(request_bytes)
    with os.fdopen(answer_fd, "wb") as out:
        out.write(json.dumps(answer).encode())
    # Leave at once: tearing down an interpreter with a framework loaded takes a few hundred
    # milliseconds, and the server waits for the pipes to close; the process holds nothing to save.
    sys.stderr.flush()
    os._exit(0)


def _preload(frameworks: list[str]) -> None:
    import importlib

    import cloche.registry.datasets
    import cloche.registry.inspection  # noqa: F401

    for framework in frameworks:
        for module in PRELOAD.get(framework, ()):
            try:
                importlib.import_module(module)
            except Exception:  # not installed, or broken: the request will say so
                continue


def _inspect(request_bytes: bytes) -> dict[str, Any]:
    from cloche.errors import ClocheError
    from cloche.registry.inspection import InspectRequest, inspect_here

    try:
        signature = inspect_here(InspectRequest.from_json(request_bytes))
        return {"signature": signature.to_dict()}
    except ClocheError as exc:
        return exc.to_dict()
    except Exception as exc:  # what would be a 500 in-process is one here too
        return {"error": {"code": "internal_error", "message": f"inspecting failed: {exc!r}"}}


def _is_measure(request_bytes: bytes) -> bool:
    try:
        request = json.loads(request_bytes)
    except ValueError:
        return False  # _inspect answers with the error
    return isinstance(request, dict) and "measure" in request


def _measure(request_bytes: bytes) -> dict[str, Any]:
    """``{"measure": {"framework", "model_path"}}``: the memory one more copy of the model takes.

    The model is loaded twice and the second load's growth of the resident set is the answer:
    the first load pulls in whatever modules the model needs (which every worker has already),
    so only the model's own memory is counted. The allocator is set as a budgeted worker sets it
    (serving/heap.py) and the first load's freed buffers are returned before counting: with
    glibc's defaults the unpickling's freed buffers stay resident, and a 40 MB forest measured
    76 MB here against 45 MB in a worker.
    """
    import gc
    from pathlib import Path

    from cloche.errors import ClocheError
    from cloche.runtimes import get_runtime
    from cloche.serving.heap import map_large_blocks, release_freed

    map_large_blocks()
    try:
        request = json.loads(request_bytes)["measure"]
        runtime = get_runtime(str(request["framework"]))
        folder = Path(str(request["model_path"]))
        first = runtime.load(folder)
        gc.collect()
        release_freed()
        before = _rss_bytes()
        second = runtime.load(folder)
        gc.collect()
        after = _rss_bytes()
        del first, second
        return {"resident_bytes": max(after - before, 0)}
    except ClocheError as exc:
        return exc.to_dict()
    except Exception as exc:
        return {"error": {"code": "internal_error", "message": f"loading failed: {exc!r}"}}


def _rss_bytes() -> int:
    """This process's resident set size: /proc on Linux, else the peak from getrusage."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return int(peak if sys.platform == "darwin" else peak * 1024)


if __name__ == "__main__":
    sys.exit(main())
