"""What a custom model's own Python files import, so that its bundle pins those packages too.

A custom ``model.py`` may import anything (its framework, a tokenizer, scipy). The modules its
``.py`` files import at any depth (``import x``, ``from x import y``; inside functions and
``try`` blocks too, since a model may import lazily) are read from their syntax, without running
them. The standard library, the folder's own modules, relative imports and cloche are left out.
What is installed here, where the model loaded, is pinned; what is not (an optional import, or a
lazy one the model never ran) is named in the manifest and the bundle's README.
"""

from __future__ import annotations

import ast
import importlib.metadata as metadata
import sys
from pathlib import Path

from cloche.errors import CorruptArtifact

NOT_PINNED = frozenset({"cloche", "__future__"})


def imported_modules(folder: Path) -> list[str]:
    """The top-level names of the modules ``folder``'s Python files import, sorted, with the
    standard library, the folder's own modules and cloche left out."""
    files = sorted(folder.rglob("*.py"))
    own = {path.stem for path in files} | {p.name for p in folder.iterdir() if p.is_dir()}
    found: set[str] = set()
    for path in files:
        found |= _top_level_imports(path, folder)
    return sorted(found - own - NOT_PINNED - set(sys.stdlib_module_names))


def split_installed(modules: list[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``modules`` as (provided by a distribution installed here, not installed here). The
    second are imports the model did not need to load here, an optional or lazy one."""
    provided = metadata.packages_distributions()
    installed = tuple(name for name in modules if name in provided)
    return installed, tuple(name for name in modules if name not in provided)


def _top_level_imports(path: Path, folder: Path) -> set[str]:
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except SyntaxError as exc:
        raise CorruptArtifact(
            f"{path.relative_to(folder)} is not valid Python (line {exc.lineno}): {exc.msg}"
        ) from None
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names
