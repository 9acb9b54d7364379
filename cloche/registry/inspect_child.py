"""The child process of ``ChildInspector``: read an InspectRequest as JSON on stdin, answer
``{"signature": ...}`` or ``{"error": {"code", "message", "hint"}}`` as JSON on stdout.

The model's own code may print; its output goes to stderr, so that stdout carries the answer
alone.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any


def main() -> int:
    request_bytes = sys.stdin.buffer.read()
    # Keep the real stdout for the answer and point file descriptor 1 (print, C libraries) at
    # stderr before any model code runs.
    answer_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    answer = _inspect(request_bytes)
    with os.fdopen(answer_fd, "wb") as out:
        out.write(json.dumps(answer).encode())
    return 0


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
