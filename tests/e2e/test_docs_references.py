"""The references generated from the code stay complete: every REST route of the app's OpenAPI
document and every setting of ``cloche.config.Settings`` is on the built site, and the table of
data-plane routes (which are dispatched by hand, not declared) matches what the dispatcher serves.
"""

from __future__ import annotations

import ast
import asyncio
import importlib.util
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from cloche.api.app import create_app
from cloche.config import Settings
from cloche.serving.app import DataPlane
from cloche.serving.auth import TokenCache
from cloche.serving.model_cache import ModelCache
from cloche.serving.router import Router
from cloche.serving.spec import Snapshot
from cloche.store.store import Store

ROOT = Path(__file__).resolve().parents[2]


def _hook(name: str) -> ModuleType:
    """A docs hook module, loaded from its file as MkDocs loads it."""
    path = ROOT / "docs" / "hooks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"docs_hooks_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


rest = _hook("rest_reference")
settings_hook = _hook("settings_reference")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture(scope="module")
def openapi(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    settings = Settings(home=tmp_path_factory.mktemp("home"))
    store = Store.open(settings)
    try:
        yield create_app(settings, store).openapi()
    finally:
        store.close()


def test_every_openapi_route_is_on_the_built_rest_page(site: Path, openapi: dict[str, Any]) -> None:
    page = (site / "reference" / "rest.html").read_text()
    routes = [(m.upper(), p) for p, ops in openapi["paths"].items() for m in ops]
    assert len(routes) > 40  # the whole API, not a stub
    missing = [f"{m} {p}" for m, p in routes if f"{m} {p}" not in page]
    assert not missing
    # Schemas are rendered as field tables, linked from the routes.
    assert 'id="schema-modelversion"' in page
    assert "sha256 over the version&#39;s files" in page or "sha256 over the version's" in page


def test_every_data_plane_route_is_on_the_built_rest_page(site: Path) -> None:
    page = (site / "reference" / "rest.html").read_text()
    for route in rest.DATA_PLANE_ROUTES:
        assert route.path in page, route


def test_every_setting_is_on_the_built_settings_page_with_what_it_does(site: Path) -> None:
    page = (site / "reference" / "settings.html").read_text()
    expected = []
    for name, field in Settings.model_fields.items():
        sub = getattr(field.annotation, "model_fields", None)
        if sub is None:
            expected.append(f"CLOCHE_{name}".upper())
        else:
            expected += [f"CLOCHE_{name}__{key}".upper() for key in sub]
    assert len(expected) > 30
    assert not [env for env in expected if env not in page]
    undocumented = [s.env for s in settings_hook.settings() if not s.description]
    assert not undocumented


def test_every_route_that_needs_a_token_names_the_permission_it_checks() -> None:
    document = rest.openapi_document()
    vague = [
        f"{method} {path}"
        for method, path, operation in rest.operations(document)
        if operation.get("security") and not operation.get("x-permission")
    ]
    assert not vague
    tokens = document["paths"]["/api/v1/tokens"]
    assert tokens["post"]["x-permission"] == "admin"
    assert document["paths"]["/api/v1/models"]["get"]["x-permission"] == "read"


class _Empty:
    """A store with no endpoints: the dispatcher's routes answer without any model."""

    def generation(self) -> int:
        return 1

    def snapshot(self) -> Snapshot:
        return Snapshot(1, {})


def _concrete(path: str) -> str:
    return path.replace("{endpoint}", "churn").replace("{version}", "1")


async def _answers(requests: list[tuple[str, str]]) -> list[tuple[int, dict[str, Any] | str]]:
    router = Router(_Empty(), ModelCache(lambda spec: Path("/nonexistent")))
    await router.apply(_Empty().snapshot())
    plane = DataPlane(
        router,
        TokenCache(lambda token: pytest.fail("no token is sent"), required=False),
        max_body_bytes=2**20,
        render_metrics=lambda: "# no metrics\n",
    )
    transport = httpx.ASGITransport(app=plane)  # type: ignore[arg-type]
    out: list[tuple[int, dict[str, Any] | str]] = []
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        for method, path in requests:
            response = await client.request(method, path, content=b"{}")
            body = response.json() if "json" in response.headers["content-type"] else response.text
            out.append((response.status_code, body))
    return out


def _no_such_route(answer: tuple[int, dict[str, Any] | str]) -> bool:
    status, body = answer
    return status == 404 and "no such route" in str(body)


def test_the_data_plane_table_lists_routes_the_dispatcher_serves() -> None:
    listed = [(r.method, _concrete(r.path)) for r in rest.DATA_PLANE_ROUTES]
    answers = asyncio.run(_answers(listed))
    for (method, path), answer in zip(listed, answers, strict=True):
        # With no endpoint deployed, a route that exists says the endpoint is unknown (or, for
        # feedback on a server without a store, that it keeps no labels): never "no such route".
        assert not _no_such_route(answer), (method, path, answer)
        status, body = answer
        assert status in (200, 404), (method, path, answer)
        if status == 404:
            assert "endpoint_not_found" in str(body) or "keeps no labels" in str(body), answer


def test_routes_off_the_table_are_not_served() -> None:
    # The same paths with another method or action, which the table does not list.
    unlisted = [
        ("GET", "/v1/models/churn:predict"),
        ("POST", "/v1/models/churn:classify"),
        ("DELETE", "/v2/models/churn"),
        ("POST", "/v2/models/churn/ready"),
        ("GET", "/v2/models/churn/infer"),
        ("POST", "/v1/models/churn"),
    ]
    listed = {(r.method, _concrete(r.path)) for r in rest.DATA_PLANE_ROUTES}
    assert not listed & set(unlisted)
    for request, answer in zip(unlisted, asyncio.run(_answers(unlisted)), strict=True):
        assert _no_such_route(answer), (request, answer)


# The layer diagram (docs/img/layers.svg) draws these as the interfaces, above everything else.
INTERFACES = (
    "cloche.cli",
    "cloche.client",
    "cloche.api",
    "cloche.edge",
    "cloche.server",
    "cloche.console",
    "cloche.serving.app",
    "cloche.serving.grpc_server",
    "cloche.__main__",
)


def _imports(path: Path) -> set[str]:
    """Every cloche module a file imports, at its top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.startswith("cloche.")}


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _within(name: str, packages: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def test_the_code_keeps_the_layers_the_diagram_draws() -> None:
    diagram = (ROOT / "docs" / "img" / "layers.svg").read_text()
    packages = sorted(p.name for p in (ROOT / "cloche").iterdir() if (p / "__init__.py").exists())
    # Every package of cloche is on the diagram, by its folder or (for auth, audit) its name.
    assert not [p for p in packages if f"cloche/{p}" not in diagram and p not in diagram]
    upward = []
    store_imports = set()
    for path in sorted((ROOT / "cloche").rglob("*.py")):
        module = _module(path)
        if module == "cloche" or _within(module, INTERFACES):  # (cloche/__init__ is the SDK's)
            continue
        upward += [f"{module} -> {n}" for n in _imports(path) if _within(n, INTERFACES)]
        if _within(module, ("cloche.store",)):
            store_imports |= {n.split(".")[1] for n in _imports(path)}
    assert not upward  # no service, engine or foundation module reaches up to an interface
    assert store_imports <= {"store", "config", "errors"}
