"""Inspecting an upload: load the model once and infer its signature (from the model, then from
a sample or the baseline).

Loading may run the upload's code (see ``trust.py``), so where it happens is a seam:
:func:`inspect_here` runs in the caller's process, for the SDK and CLI on the user's own
``CLOCHE_HOME``, where the uploader already owns the process; :class:`ChildInspector` runs it in a
fresh Python process whose environment holds no secrets, for a server handling an upload, so that
code in a model never shares the memory or the environment of the process that holds the
database URL, the SMTP password and the tokens' sessions.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cloche.errors import ClocheError, CorruptArtifact, InspectionTimeout, error_class_for_code
from cloche.registry.signatures import Signature

CHILD_MODULE = "cloche.registry.inspect_child"
# Environment variables the child keeps although their names start with CLOCHE_: none so far,
# since the request carries every path the child reads.
KEEP_CLOCHE_VARS: frozenset[str] = frozenset()
# Any variable whose name holds one of these (case-insensitive) is dropped: credentials by their
# usual names, and webhook URLs, whose path is their secret (``webhook:env:SLACK_HOOK``).
SECRET_MARKERS = ("PASSWORD", "PASSWD", "SECRET", "TOKEN", "KEY", "CREDENTIAL", "HOOK", "DSN")
SECRET_NAMES = frozenset({"DATABASE_URL", "PGPASSFILE", "PGSERVICEFILE"})
STDERR_TAIL = 2000


@dataclass(frozen=True)
class InspectRequest:
    """What to load and which datasets to read the signature from."""

    framework: str
    model_path: Path
    sample: Path | None = None
    baseline: Path | None = None

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "framework": self.framework,
                "model_path": str(self.model_path),
                "sample": str(self.sample) if self.sample else None,
                "baseline": str(self.baseline) if self.baseline else None,
            }
        ).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> InspectRequest:
        data = json.loads(raw)
        return cls(
            framework=str(data["framework"]),
            model_path=Path(data["model_path"]),
            sample=Path(data["sample"]) if data.get("sample") else None,
            baseline=Path(data["baseline"]) if data.get("baseline") else None,
        )


Inspector = Callable[[InspectRequest], Signature]


def inspect_here(request: InspectRequest) -> Signature:
    """Load the model in this process and infer its signature."""
    from cloche.registry.datasets import read_table
    from cloche.registry.signatures import from_table
    from cloche.runtimes import get_runtime

    loaded = get_runtime(request.framework).load(request.model_path)
    signature = loaded.signature()
    data = request.sample or request.baseline
    if data is not None:
        source = "sample" if request.sample is not None else "baseline"
        signature = signature.merged_with(
            from_table(read_table(data, max_rows=10_000), source=source)
        )
    return signature


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


@dataclass(frozen=True)
class ChildInspector:
    """Inspect in ``python -m cloche.registry.inspect_child``: the request as JSON on stdin, the
    signature or a cloche error as JSON on stdout."""

    timeout_s: float

    def __call__(self, request: InspectRequest) -> Signature:
        # -P keeps the working directory off sys.path, so a file of the upload can never stand
        # in for a module the child imports; the cwd is an empty folder besides.
        command = [sys.executable, "-P", "-m", CHILD_MODULE]
        with tempfile.TemporaryDirectory(prefix="cloche-inspect-") as cwd:
            proc = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=cwd,
                env=child_env(os.environ),
                start_new_session=True,  # one process group: a timeout kills what it spawned
            )
            try:
                out, err = proc.communicate(request.to_json(), timeout=self.timeout_s)
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                proc.communicate()  # close the pipes
                raise InspectionTimeout(
                    f"loading the {request.framework} model to read its signature took longer "
                    f"than {self.timeout_s:g} s",
                    hint="raise CLOCHE_REGISTRY__INSPECT_TIMEOUT_S if this model is expected "
                    "to load this slowly",
                ) from None
            finally:
                _kill_group(proc)  # whatever the model left running
        return _answer(proc.returncode, out, err)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    # ProcessLookupError: the child and everything it started have already exited.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _answer(returncode: int, out: bytes, err: bytes) -> Signature:
    """The child's signature, or its error raised here as the same cloche error."""
    try:
        answer: dict[str, Any] = json.loads(out)
    except ValueError:
        tail = err.decode(errors="replace")[-STDERR_TAIL:].strip()
        raise CorruptArtifact(
            f"loading the model crashed the process inspecting it (exit code {returncode})"
            + (f": {tail}" if tail else ""),
            hint="check that the model loads with its framework's own loader",
        ) from None
    if "error" in answer:
        raise error_from_answer(answer["error"])
    return Signature.from_dict(answer["signature"])


def error_from_answer(body: Mapping[str, Any]) -> ClocheError:
    cls = error_class_for_code(str(body.get("code", "")))
    return cls(str(body.get("message", "")), hint=body.get("hint"), **(body.get("details") or {}))
