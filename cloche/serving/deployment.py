"""A deployment live in one worker: its model, signature, input spec and batcher."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cloche.registry.signatures import Signature
from cloche.runtimes.base import LoadedModel, has_predict_proba
from cloche.serving.batcher import AdaptiveBatcher
from cloche.serving.inputs import InputSpec
from cloche.serving.state import DeploymentSpec

QUEUE_BATCHES = 16  # a queue holds this many full batches before it answers 503


@dataclass
class LiveDeployment:
    spec: DeploymentSpec
    model: LoadedModel
    signature: Signature
    inputs: InputSpec
    outputs: frozenset[str]
    batcher: AdaptiveBatcher

    @classmethod
    def start(cls, spec: DeploymentSpec, model: LoadedModel) -> LiveDeployment:
        signature = Signature.from_dict(spec.signature)
        if signature.is_empty:
            signature = model.signature()
        outputs = {"predict"} | ({"probabilities"} if has_predict_proba(model) else set())

        def predict(X: np.ndarray, wanted: frozenset[str]) -> dict[str, np.ndarray]:
            result = {}
            if "predict" in wanted:
                result["predict"] = np.asarray(model.predict(X))
            if "probabilities" in wanted:
                result["probabilities"] = np.asarray(model.predict_proba(X))  # type: ignore[attr-defined]
            return result

        batcher = AdaptiveBatcher(
            predict,
            max_batch_size=spec.max_batch_size,
            max_queue_rows=spec.max_batch_size * QUEUE_BATCHES,
            name=f"{spec.endpoint}/{spec.ref}",
        )
        return cls(
            spec, model, signature, InputSpec.from_signature(signature), frozenset(outputs), batcher
        )

    def same_runtime(self, spec: DeploymentSpec) -> bool:
        """True when ``spec`` can keep this live deployment (only traffic or shadow changed)."""
        return (
            spec.deployment_id == self.spec.deployment_id
            and spec.max_batch_size == self.spec.max_batch_size
        )

    async def predict(self, X: np.ndarray, outputs: frozenset[str]) -> dict[str, np.ndarray]:
        return await self.batcher.submit(X, outputs, self.spec.timeout_ms / 1000)
