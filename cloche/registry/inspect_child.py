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
    answer = _inspect(request_bytes)
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


if __name__ == "__main__":
    sys.exit(main())
