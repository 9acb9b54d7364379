"""Loading one model, stage by stage: fetch, hash check, deserialisation and a warm-up
prediction, each timed (the cache reports them per load, `cloche_model_load_seconds`)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cloche.errors import Unavailable
from cloche.runtimes import get_runtime
from cloche.runtimes.base import LoadedModel
from cloche.serving.spec import DeploymentSpec

log = logging.getLogger("cloche.serving")

STAGES = ("fetch", "hash_check", "deserialise", "warm_up")

Locate = Callable[[DeploymentSpec], Path]
Check = Callable[[DeploymentSpec, Path], None]
# A version's stored sample rows for its warm-up prediction (the registry's baseline), or None.
Sample = Callable[[DeploymentSpec], Any]


@dataclass(frozen=True)
class StagedLoader:
    """``locate`` gives the folder of a deployment's model files on this machine, fetched (the
    artifact store's cache for `cloche up`, the bundle's model/ for an edge server); ``check``
    verifies their hashes, timed apart when given (``locate`` checks otherwise)."""

    locate: Locate
    check: Check | None = None
    warm_up: bool = True
    sample: Sample | None = None

    def __call__(self, spec: DeploymentSpec, stages: dict[str, float]) -> LoadedModel:
        """The loaded model; each stage's seconds into ``stages``."""
        t0 = time.perf_counter()
        folder = self.locate(spec)
        t1 = time.perf_counter()
        stages["fetch"] = t1 - t0
        if self.check is not None:
            self.check(spec, folder)
            t2 = time.perf_counter()
            stages["hash_check"] = t2 - t1
            t1 = t2
        model = get_runtime(spec.framework).load(folder)
        t2 = time.perf_counter()
        stages["deserialise"] = t2 - t1
        if self.warm_up:
            rows = self._warm_up_rows(spec)
            if rows is not None:
                try:
                    model.predict(rows)
                except Exception as exc:
                    # A model is ready only once it answered: one that cannot answer its own
                    # sample (or a zero row of its signature's types) would fail its requests.
                    raise Unavailable(
                        f"its warm-up prediction failed: {type(exc).__name__}: {exc}",
                        hint="predict locally on the version's sample to see why; deploy a "
                        "version that answers it",
                    ) from exc
                stages["warm_up"] = time.perf_counter() - t2
        return model

    def _warm_up_rows(self, spec: DeploymentSpec) -> Any:
        """The version's stored sample if it has one, else a row made from its signature."""
        if self.sample is not None:
            try:
                rows = self.sample(spec)
            except Exception as exc:  # an unreadable sample must not stop the load
                log.warning("cannot read the stored sample of %s: %s", spec.ref, exc)
            else:
                if rows is not None:
                    return rows
        return warm_up_rows(spec.signature)


def warm_up_rows(signature: dict[str, Any]) -> Any:
    """One row for a warm-up prediction, made from a tabular signature of numeric inputs: zeros,
    as the data plane hands a numeric request to the model (a float array; the runtime names the
    columns when the model needs them), so no pandas is needed (an edge bundle has none); None
    when the signature does not say enough to make one that the model would take."""
    inputs = signature.get("inputs") or []
    if signature.get("input_kind", "tabular") != "tabular" or not inputs:
        return None
    numeric = ("bool", "int", "uint", "float")
    if not all(str(f.get("dtype", "")).startswith(numeric) for f in inputs):
        return None
    return np.zeros((1, len(inputs)))
