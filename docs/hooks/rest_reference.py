"""MkDocs hook: the REST reference, rendered at build time from the app's own OpenAPI document.

docs/reference/rest.md holds the prose and a marker; this hook replaces the marker with every
control-plane route (from ``create_app(...).openapi()``, so the page cannot drift from the code),
the permission each route's dependencies demand, and the schemas as field tables. The data-plane
routes are dispatched by hand (cloche/serving/app.py), so they come from ``DATA_PLANE_ROUTES``
below, which tests/e2e/test_docs_references.py checks against the real dispatcher.
"""

from __future__ import annotations

import inspect
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MARKER = "<!-- rest-reference -->"
DATA_PLANE_MARKER = "<!-- data-plane-reference -->"
REF = "#/components/schemas/"


@dataclass(frozen=True)
class DataPlaneRoute:
    method: str
    path: str
    needs: str  # the permission a token must grant, or "" for none
    what: str


# Every route DataPlane (cloche/serving/app.py) answers; "{endpoint}" and "{version}" are
# placeholders. A token is checked when one is sent or the server requires them
# (CLOCHE_AUTH__REQUIRED, or any bind beyond loopback).
DATA_PLANE_ROUTES = (
    DataPlaneRoute(
        "POST",
        "/v1/models/{endpoint}:predict",
        "predict",
        'V1 prediction: `{"instances": [...]}` (rows as lists or objects) or '
        '`{"inputs": {...}}` (columns); answers `{"predictions": [...]}`',
    ),
    DataPlaneRoute(
        "POST",
        "/v1/models/{endpoint}:explain",
        "predict",
        "feature attributions (SHAP) of the rows sent, one explanation at a time per worker",
    ),
    DataPlaneRoute(
        "POST",
        "/v1/models/{endpoint}:feedback",
        "predict",
        'ground-truth labels by request id: `{"labels": [{"request_id": "...", "label": 1}]}` '
        "(not on an edge server, which keeps no labels)",
    ),
    DataPlaneRoute(
        "GET",
        "/v1/models/{endpoint}",
        "predict",
        'whether the endpoint has a deployment taking traffic: `{"name", "ready"}`',
    ),
    DataPlaneRoute(
        "POST",
        "/v2/models/{endpoint}/infer",
        "predict",
        "Open Inference Protocol v2 inference (JSON, or the binary tensor data extension)",
    ),
    DataPlaneRoute(
        "POST",
        "/v2/models/{endpoint}/versions/{version}/infer",
        "predict",
        "OIP v2 inference on one deployed version, bypassing the traffic split and shadows",
    ),
    DataPlaneRoute(
        "GET",
        "/v2/models/{endpoint}",
        "predict",
        "OIP v2 model metadata: inputs and outputs with datatype and shape",
    ),
    DataPlaneRoute(
        "GET",
        "/v2/models/{endpoint}/versions/{version}",
        "predict",
        "OIP v2 metadata of one deployed version",
    ),
    DataPlaneRoute(
        "GET",
        "/v2/models/{endpoint}/ready",
        "predict",
        "OIP v2 model readiness (404 or 503 when not ready)",
    ),
    DataPlaneRoute(
        "GET",
        "/v2/models/{endpoint}/versions/{version}/ready",
        "predict",
        "OIP v2 readiness of one deployed version",
    ),
    DataPlaneRoute("GET", "/v2", "", "OIP v2 server metadata: name, version, extensions"),
    DataPlaneRoute("GET", "/v2/health/live", "", "liveness: the worker answers"),
    DataPlaneRoute(
        "GET",
        "/v2/health/ready",
        "",
        "readiness: 200 once the models are loaded, 503 while loading or draining",
    ),
    DataPlaneRoute("GET", "/metrics", "read", "Prometheus metrics of every worker (text format)"),
)


def on_page_markdown(markdown: str, **_: Any) -> str:
    if MARKER in markdown:
        markdown = markdown.replace(MARKER, render(openapi_document()))
    if DATA_PLANE_MARKER in markdown:
        markdown = markdown.replace(DATA_PLANE_MARKER, render_data_plane())
    return markdown


def openapi_document() -> dict[str, Any]:
    """The control-plane app's OpenAPI document, with each operation's permission added."""
    from fastapi.routing import APIRoute

    from cloche.api.app import API_PREFIX, ROUTERS, create_app
    from cloche.config import Settings
    from cloche.store.store import Store

    with tempfile.TemporaryDirectory(prefix="cloche-docs-") as home:
        settings = Settings(home=Path(home))
        store = Store.open(settings)
        try:
            app = create_app(settings, store)
            document = app.openapi()
            # The routers the app includes under API_PREFIX, as its own _upload_routes reads them.
            for route in (r for router in ROUTERS for r in router.routes):
                if not isinstance(route, APIRoute):
                    continue
                permission = _permission(route.dependant)
                path = API_PREFIX + route.path_format
                for method in route.methods or ():
                    operation = document["paths"].get(path, {}).get(method.lower())
                    if operation is not None:
                        operation["x-permission"] = permission
        finally:
            store.close()
    return document


def _permission(dependant: Any) -> str | None:
    """The permission a route's dependencies check (``deps.require(...)``), if any."""
    for dependency in dependant.dependencies:
        call = dependency.call
        if call is not None and inspect.isfunction(call) and call.__closure__:
            permission = inspect.getclosurevars(call).nonlocals.get("permission")
            if permission is not None:
                return str(getattr(permission, "value", permission))
        found = _permission(dependency)
        if found is not None:
            return found
    return None


def roles_with(permission: str) -> list[str]:
    from cloche.auth.roles import ROLE_PERMISSIONS

    return [role for role, perms in ROLE_PERMISSIONS.items() if permission in perms]


def anchor(method: str, path: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", f"{method} {path}".lower()).strip("-")


def schema_anchor(name: str) -> str:
    return "schema-" + re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            yield method.upper(), path, operation


def render(document: dict[str, Any]) -> str:
    by_tag: dict[str, list[tuple[str, str, dict[str, Any]]]] = {}
    for method, path, operation in operations(document):
        by_tag.setdefault((operation.get("tags") or ["other"])[0], []).append(
            (method, path, operation)
        )
    out = [
        f"The control plane of cloche {document['info']['version']}: "
        f"{sum(len(ops) for ops in by_tag.values())} routes. The running server serves the same "
        "document at `/api/openapi.json` and an interactive page at `/api/docs`.",
        "",
        "| Method | Path | What | Needs |",
        "| --- | --- | --- | --- |",
    ]
    for ops in by_tag.values():
        for method, path, operation in ops:
            link = f"[`{path}`](#{anchor(method, path)})"
            out.append(
                f"| {method} | {link} | {_cell(operation.get('summary', ''))} "
                f"| {_needs_short(operation)} |"
            )
    for tag, ops in by_tag.items():
        out += ["", f"## {tag.capitalize()}", ""]
        for method, path, operation in ops:
            out += _operation(method, path, operation, document["components"]["schemas"])
    out += ["", "## Schemas", "", "The bodies the routes above take and answer.", ""]
    for name, schema in document["components"]["schemas"].items():
        if not name.startswith("Body_"):  # forms are shown with their route
            out += _schema(name, schema)
    return "\n".join(out) + "\n"


def _needs_short(operation: dict[str, Any]) -> str:
    if not operation.get("security"):
        return "no token"
    permission = operation.get("x-permission")
    return f"`{permission}`" if permission else "any token"


def _needs(operation: dict[str, Any]) -> str:
    if not operation.get("security"):
        return "**Needs:** no token (liveness, for load balancers)."
    permission = operation.get("x-permission")
    if not permission:
        return "**Needs:** a token (`Authorization: Bearer ...`; 401 `unauthorized` without one)."
    roles = ", ".join(f"`{role}`" for role in roles_with(permission))
    return (
        f"**Needs:** a token whose role grants `{permission}`: {roles} "
        "(401 `unauthorized` without a valid token, 403 `forbidden` with another role)."
    )


def _operation(
    method: str, path: str, operation: dict[str, Any], schemas: dict[str, Any]
) -> list[str]:
    out = [f"### `{method} {path}` {{ #{anchor(method, path)} }}", ""]
    description = operation.get("description") or operation.get("summary") or ""
    out += [description.strip(), "", _needs(operation), ""]
    if "x-cloche-body-cap" in operation:
        out += [f"The body may be as large as `{operation['x-cloche-body-cap']}`.", ""]
    parameters = operation.get("parameters") or []
    if parameters:
        out += [
            "| Parameter | In | Type | Required | Description |",
            "| --- | --- | --- | --- | --- |",
        ]
        for p in parameters:
            schema = p.get("schema", {})
            description = p.get("description") or schema.get("description", "")
            out.append(
                f"| `{p['name']}` | {p['in']} | {_type(schema)} "
                f"| {'yes' if p.get('required') else 'no'} | {_cell(description)} |"
            )
        out.append("")
    body = operation.get("requestBody")
    if body:
        for media, content in body.get("content", {}).items():
            schema = content.get("schema", {})
            name = schema.get("$ref", "").removeprefix(REF)
            if name.startswith("Body_"):  # a form FastAPI named after the handler: inline it
                form = schemas[name]
                out += [f"**Body** (`{media}`):", "", *_schema(name, form)[2:]]
            else:
                out += [f"**Body** (`{media}`): {_type(schema)}", ""]
    out += ["| Answer | Body | Meaning |", "| --- | --- | --- |"]
    for status, response in operation.get("responses", {}).items():
        kinds = [
            f"{_type(c['schema'])} (`{media}`)" if c.get("schema") else f"`{media}`"
            for media, c in response.get("content", {}).items()
        ]
        meaning = response.get("description", "")
        if meaning == "Successful Response":
            meaning = "done"
        out.append(f"| {status} | {', '.join(kinds) or 'none'} | {_cell(meaning)} |")
    return [*out, ""]


def _schema(name: str, schema: dict[str, Any]) -> list[str]:
    out = [f"### {name} {{ #{schema_anchor(name)} }}", ""]
    if schema.get("description"):
        out += [schema["description"].strip(), ""]
    properties = schema.get("properties", {})
    if not properties:
        return [*out, f"Type: {_type(schema)}.", ""]
    required = set(schema.get("required", ()))
    out += [
        "| Field | Type | Required | Default | Description |",
        "| --- | --- | --- | --- | --- |",
    ]
    for field, prop in properties.items():
        default = f"`{prop['default']!r}`" if "default" in prop else ""
        out.append(
            f"| `{field}` | {_type(prop)} | {'yes' if field in required else 'no'} | "
            f"{_cell(default)} | {_cell(prop.get('description', ''))} |"
        )
    return [*out, ""]


def _type(schema: dict[str, Any]) -> str:
    """A JSON schema as a short readable type, with links to the named schemas."""
    if "$ref" in schema:
        name = schema["$ref"].removeprefix(REF)
        return f"[{name}](#{schema_anchor(name)})"
    for combinator in ("anyOf", "oneOf", "allOf"):
        if combinator in schema:
            kinds = " or ".join(_type(s) for s in schema[combinator])
            return kinds.replace(" or null", " or unset")
    if "enum" in schema:
        return "one of " + ", ".join(f"`{v}`" for v in schema["enum"])
    if "const" in schema:
        return f"`{schema['const']}`"
    kind = schema.get("type")
    if kind == "array":
        return f"list of {_type(schema.get('items', {}))}"
    if kind == "object":
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict) and extra:
            return f"object of {_type(extra)}"
        return "object"
    if kind == "string" and schema.get("format") in ("binary", "date-time", "uri", "email"):
        return "file" if schema["format"] == "binary" else f"string ({schema['format']})"
    if kind is None:
        return "any"
    return str(kind)


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return " ".join(str(text).split()).replace("|", "\\|")


def render_data_plane() -> str:
    out = ["| Method | Path | Needs | What |", "| --- | --- | --- | --- |"]
    for route in DATA_PLANE_ROUTES:
        needs = f"`{route.needs}`" if route.needs else "no token"
        out.append(f"| {route.method} | `{route.path}` | {needs} | {_cell(route.what)} |")
    return "\n".join(out) + "\n"
