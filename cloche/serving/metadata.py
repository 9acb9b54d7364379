"""OIP v2 model metadata for an endpoint (the GET /v2/models/{name} answer)."""

from __future__ import annotations

from typing import Any

from cloche.serving.protocols.v2_rest import BY_NAME
from cloche.serving.router import EndpointRoute
from cloche.signatures import FieldSpec


def model_metadata(route: EndpointRoute, version: str | None) -> dict[str, Any]:
    """Metadata of the deployment ``version`` names, or of the endpoint's first live one."""
    deployment = (
        route.version(version) if version else (route.live or tuple(route.by_version.values()))[0]
    )
    sig = deployment.signature
    return {
        "name": route.name,
        "versions": sorted({str(d.spec.version) for d in route.by_version.values()}),
        "platform": deployment.spec.framework,
        "inputs": [_tensor(f) for f in sig.inputs],
        "outputs": [_tensor(f) for f in sig.outputs],
        "parameters": {
            "model": deployment.spec.model,
            "task": sig.task,
            "classes": list(sig.classes) if sig.classes is not None else None,
        },
    }


def _tensor(field: FieldSpec) -> dict[str, Any]:
    return {
        "name": field.name,
        "datatype": BY_NAME.get(field.dtype, "BYTES"),
        "shape": list(field.shape),
    }
