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

import json
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from cloche.errors import ClocheError, CorruptArtifact, InspectionTimeout, error_class_for_code
from cloche.signatures import FieldSpec, Signature

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
    from cloche.runtimes import get_runtime, has_predict_proba
    from cloche.signatures import from_table

    loaded = get_runtime(request.framework).load(request.model_path)
    signature = with_serving_outputs(loaded.signature(), has_predict_proba(loaded))
    data = request.sample or request.baseline
    if data is not None:
        source = "sample" if request.sample is not None else "baseline"
        signature = signature.merged_with(
            from_table(read_table(data, max_rows=10_000), source=source)
        )
    return signature


def with_serving_outputs(signature: Signature, probabilities: bool) -> Signature:
    """``signature`` with the outputs a server answers with recorded: ``predict``, and
    ``probabilities`` when the model has predict_proba. A server reads them from the registry
    (serving/deployment.py) instead of asking the loaded model. The built-in runtimes already
    list both; a custom model's own signature() may not."""
    names = {f.name for f in signature.outputs}
    missing = []
    if "predict" not in names:
        missing.append(FieldSpec(name="predict", dtype=_label_dtype(signature.classes)))
    if probabilities and "probabilities" not in names:
        width = len(signature.classes) if signature.classes else -1
        missing.append(FieldSpec(name="probabilities", dtype="float64", shape=(-1, width)))
    return replace(signature, outputs=(*signature.outputs, *missing)) if missing else signature


def _label_dtype(classes: tuple[object, ...] | None) -> str:
    if classes and all(isinstance(c, str) for c in classes):
        return "string"
    if classes and all(isinstance(c, int) for c in classes):
        return "int64"
    return "float64"


@dataclass(frozen=True)
class ChildInspector:
    """Inspect in a child process (``child_pool.py``): the request as JSON on its stdin, the
    signature or a cloche error as JSON on its stdout."""

    timeout_s: float

    def __call__(self, request: InspectRequest) -> Signature:
        from cloche.registry.child_pool import SPARES
        from cloche.runtimes import get_runtime

        framework = get_runtime(request.framework).name
        child = SPARES.take(framework)
        try:
            out, err = child.proc.communicate(request.to_json(), timeout=self.timeout_s)
        except subprocess.TimeoutExpired:
            child.kill()
            raise InspectionTimeout(
                f"loading the {request.framework} model to read its signature took longer "
                f"than {self.timeout_s:g} s",
                hint="raise CLOCHE_REGISTRY__INSPECT_TIMEOUT_S if this model is expected "
                "to load this slowly",
            ) from None
        finally:
            child.kill()  # whatever the model left running
            SPARES.refill(framework)
        return _answer(child.proc.returncode, out, err)


def _answer(returncode: int, out: bytes, err: bytes) -> Signature:
    """The child's signature, or its error raised here as the same cloche error."""
    try:
        answer: Any = json.loads(out)
        if not isinstance(answer, dict) or not ({"error", "signature"} & answer.keys()):
            raise ValueError("not an answer")
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
