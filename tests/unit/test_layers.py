"""The layering of cloche, pinned: a module imports only its own layer and the layers below.

Every ``import`` in cloche/ (at a module's top, inside a function, or for type checking only)
is read with ``ast`` and checked against the table below. A new package fails the test until it
is given a layer here; an import that breaks the rule is either moved or listed in EXCEPTIONS
with the reason it is right. docs/DESIGN.md ("The layers") describes the same table.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "cloche"

# Top to bottom. A module is in the layer of its longest matching prefix.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "interfaces",
        (
            "cloche.server",  # the composition root of `cloche up`
            "cloche.__main__",
            "cloche.cli",
            "cloche.client",
            "cloche.api",
            "cloche.console",  # (coming)
            "cloche.notebook",
        ),
    ),
    (
        "services",
        (
            "cloche.registry",
            "cloche.endpoints",
            "cloche.batch",
            "cloche.monitoring",
            "cloche.alerts",
            "cloche.logs",
            "cloche.export",
            "cloche.pipelines",
            "cloche.lineage",
            "cloche.edge",
            "cloche.auth",
            "cloche.audit",
            "cloche.scheduler",
        ),
    ),
    ("engine", ("cloche.serving", "cloche.runtimes", "cloche.store")),
    (
        "leaves",
        (
            # The package itself: importing any module runs it anyway, and it imports only
            # errors eagerly (Client on first use: see EXCEPTIONS).
            "cloche",
            "cloche.config",
            "cloche.errors",
            "cloche.hosts",
            "cloche.processes",  # is a pid alive: serving state files and batch heartbeats
            "cloche.egress",
            "cloche.durations",
            "cloche.sizes",  # memory sizes as users write them: settings and the CLI read them
            "cloche.guards",  # pure ASGI guards: the API, the data plane and the edge use them
            "cloche.signatures",  # model schemas: the registry, runtimes and serving share them
            "cloche.vendor",  # (coming) vendored browser assets
            # Pure rules and data that live beside the service they belong to, and that a
            # lower layer needs; being leaves, they may themselves import only leaves.
            "cloche.auth.roles",  # roles and permissions, checked by the data plane too
            "cloche.registry.refs",  # name rules, which the settings' channel specs use
            "cloche.batch.places",  # where batch output may go: a setting is checked by it
            "cloche.batch.spec",  # a job's plain data, which those checks read
            "cloche.alerts.settings",  # the delivery section of Settings
            "cloche.alerts.channels",  # the channel specs a setting names
            "cloche.alerts.masking",  # secrets masked in those specs
        ),
    ),
)

# Packages that stand beside each other in a layer but must not lean on their neighbours:
# the store and the runtimes are reused where no service or data plane exists (a bundle's
# lean runtime, a batch worker), so they import only leaves.
LEAF_ONLY = ("cloche.store", "cloche.runtimes")
# Web and command-line frameworks stay in the interfaces (the data plane is plain ASGI).
FRAMEWORKS = ("fastapi", "starlette", "typer", "click")
NO_FRAMEWORKS = ("cloche.store", "cloche.runtimes", "cloche.serving", "cloche.signatures")


@dataclass(frozen=True)
class Allowed:
    importer: str  # exactly this module: a prefix would let a whole package through
    imported: str  # this module or package
    reason: str


EXCEPTIONS = (
    Allowed(
        "cloche",
        "cloche.client",
        "`cloche.Client` is the SDK's front door for users; cloche/__init__.py imports it on "
        "first use (module __getattr__), so importing the package loads only cloche.errors",
    ),
)


@dataclass(frozen=True)
class Import:
    module: str
    imported: str
    line: int


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str, root: Path) -> bool:
    path = root.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imports_of(path: Path, root: Path = ROOT) -> list[Import]:
    """Every module ``path`` imports, anywhere in the file (``root`` holds the package)."""
    module, found = module_name(path, root), []
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolved against this module's package
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from cloche import audit` imports a module; `from cloche import __version__`
            # imports an attribute of the package.
            names = [
                f"{base}.{alias.name}" if _is_module(f"{base}.{alias.name}", root) else base
                for alias in node.names
            ]
        found += [Import(module, name, node.lineno) for name in dict.fromkeys(names)]
    return found


def _matches(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def layer_of(name: str) -> int | None:
    """The index in LAYERS (0 is the top) of the longest prefix matching ``name``."""
    best: tuple[int, int] | None = None
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if _matches(name, prefix) and (best is None or len(prefix) > best[0]):
                best = (len(prefix), index)
    return None if best is None else best[1]


def _excepted(found: Import) -> bool:
    return any(
        found.module == e.importer and _matches(found.imported, e.imported) for e in EXCEPTIONS
    )


def _where(found: Import) -> str:
    return f"{found.module} (line {found.line}) imports {found.imported}"


def all_imports() -> list[Import]:
    return [found for path in sorted(PACKAGE.rglob("*.py")) for found in imports_of(path)]


def cloche_imports() -> list[Import]:
    return [found for found in all_imports() if _matches(found.imported, "cloche")]


def test_every_module_has_a_layer() -> None:
    modules = sorted(module_name(path) for path in PACKAGE.rglob("*.py"))
    # The package itself is a leaf only by its exact name: a new subpackage must be placed.
    unplaced = [m for m in modules if m != "cloche" and _layer_below_root(m) is None]
    assert not unplaced, f"give these a layer in LAYERS (tests/unit/test_layers.py): {unplaced}"


def _layer_below_root(name: str) -> int | None:
    prefixes = [p for _, ps in LAYERS for p in ps if p != "cloche" and _matches(name, p)]
    return layer_of(name) if prefixes else None


def upward(imports: list[Import]) -> list[str]:
    """The imports that reach a higher layer and are not listed exceptions, each described."""
    return [
        f"{_where(found)}: {LAYERS[layer_of(found.module) or 0][0]} may not import "
        f"{LAYERS[layer_of(found.imported) or 0][0]}"
        for found in imports
        if _matches(found.imported, "cloche")
        and (layer_of(found.imported) or 0) < (layer_of(found.module) or 0)
        and not _excepted(found)
    ]


def test_no_module_imports_a_layer_above_its_own() -> None:
    found = upward(cloche_imports())
    assert not found, "\n".join(found)


def test_the_store_and_the_runtimes_import_only_leaves() -> None:
    leaves = len(LAYERS) - 1
    wrong = [
        _where(found)
        for found in cloche_imports()
        if any(_matches(found.module, p) for p in LEAF_ONLY)
        and not any(_matches(found.imported, p) for p in LEAF_ONLY if _matches(found.module, p))
        and layer_of(found.imported) != leaves
    ]
    assert not wrong, "\n".join(wrong)


def test_the_lower_layers_import_no_web_or_cli_framework() -> None:
    wrong = [
        _where(found)
        for found in all_imports()
        if any(_matches(found.module, p) for p in NO_FRAMEWORKS)
        and any(_matches(found.imported, f) for f in FRAMEWORKS)
    ]
    assert not wrong, "\n".join(wrong)


def test_every_exception_is_still_needed() -> None:
    used = {(e.importer, e.imported) for e in EXCEPTIONS for f in cloche_imports() if _hit(e, f)}
    stale = [e for e in EXCEPTIONS if (e.importer, e.imported) not in used]
    assert not stale, f"remove these from EXCEPTIONS, nothing needs them now: {stale}"


def _hit(exception: Allowed, found: Import) -> bool:
    return (
        found.module == exception.importer
        and _matches(found.imported, exception.imported)
        and (layer_of(found.imported) or 0) < (layer_of(found.module) or 0)
    )


def test_the_check_reports_each_upward_import_with_its_module_and_line(tmp_path: Path) -> None:
    store = tmp_path / "cloche" / "store"
    store.mkdir(parents=True)
    (tmp_path / "cloche" / "api").mkdir()
    for package in (tmp_path / "cloche", store, tmp_path / "cloche" / "api"):
        (package / "__init__.py").touch()
    (tmp_path / "cloche" / "api" / "app.py").touch()
    (store / "bad.py").write_text(
        "from cloche.config import Settings\n"
        "def f():\n"
        "    from ..api import app\n"  # relative, inside a function: still seen
        "    import cloche.serving.auth\n"
        "    from cloche.client import Client\n"  # allowed to the package itself, not here
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from cloche.api.app import create_app\n"
    )
    assert upward(imports_of(store / "bad.py", tmp_path)) == [
        "cloche.store.bad (line 3) imports cloche.api.app: engine may not import interfaces",
        "cloche.store.bad (line 5) imports cloche.client: engine may not import interfaces",
        "cloche.store.bad (line 8) imports cloche.api.app: engine may not import interfaces",
    ]
