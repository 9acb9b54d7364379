"""The pinned closure of what a bundle needs to run `cloche serve` with its runtime.

Pins are the versions installed in this (the exporting) environment, so the parity check at
export runs the very versions the edge will. Dependencies come from each distribution's
``Requires-Dist``, with environment markers evaluated for the target Python and platform and
extras ignored.
"""

from __future__ import annotations

import importlib.metadata as metadata
import platform as host
import re
import sys
from dataclasses import dataclass

from packaging.markers import InvalidMarker
from packaging.requirements import InvalidRequirement, Requirement

from cloche.errors import InvalidInput, MissingDependency

# What `cloche serve` itself imports in a bundle's lean runtime, whatever the model.
EDGE_BASE: tuple[str, ...] = ("numpy", "orjson", "uvicorn", "h11", "click", "httptools")

# The modules each runtime imports (cloche/runtimes/*.py), looked up to the distributions that
# installed them here (xgboost comes as "xgboost" or "xgboost-cpu").
RUNTIME_MODULES: dict[str, tuple[str, ...]] = {
    # onnxruntime alone: the exporter writes a converted model's class labels into its metadata,
    # which cloche's ONNX runtime reads when the onnx package (~50 MB with ml_dtypes) is absent.
    "onnx": ("onnxruntime",),
    # The sklearn runtime rebuilds a DataFrame for estimators fitted with feature names.
    "sklearn": ("sklearn", "joblib", "pandas"),
    "xgboost": ("xgboost",),
    "lightgbm": ("lightgbm",),
    "torch": ("torch",),
    "custom": (),  # a custom model's own imports are read from its files (export/imports.py)
}

# A registered ONNX model that cloche did not convert has no class labels in its metadata: the
# runtime reads them from the graph, with the onnx package.
ONNX_READER = ("onnx",)

# Declared dependencies that the serving path never imports, left out of the closure.
# onnxruntime declares flatbuffers, packaging, protobuf (and, in older releases, sympy, mpmath,
# coloredlogs, humanfriendly) for its tooling: quantization, transformer optimizers, the
# converters. InferenceSession needs numpy alone. Checked with onnxruntime 1.32 on Python 3.11:
# a venv holding only numpy and onnxruntime (installed with --no-deps) ran skl2onnx-converted
# LogisticRegression, RandomForestRegressor and HistGradientBoostingClassifier models, and none
# of these modules was imported; the slow test in tests/integration/test_export.py installs a
# bundle's closure alone, offline, and predicts through cloche's ONNX runtime.
TOOLING_ONLY: dict[str, frozenset[str]] = {
    "onnxruntime": frozenset(
        {"flatbuffers", "packaging", "protobuf", "sympy", "mpmath", "coloredlogs", "humanfriendly"}
    ),
}
# Installers, never runtime dependencies (torch declares setuptools).
EXCLUDED = frozenset({"pip", "setuptools", "wheel"})

# --platform values and the interpreter's machine name on them.
PLATFORM_MACHINES = {"manylinux_x86_64": "x86_64", "manylinux_aarch64": "aarch64"}


@dataclass(frozen=True)
class Pin:
    name: str  # the distribution's own spelling, e.g. "scikit-learn"
    version: str

    @property
    def key(self) -> str:
        return canonical(self.name)

    def __str__(self) -> str:
        return f"{self.name}=={self.version}"


def canonical(name: str) -> str:
    """A distribution name normalised as PEP 503 says (``Scikit_Learn`` -> ``scikit-learn``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def default_platform() -> str | None:
    """This machine's --platform value, or None where it is not one of PLATFORM_MACHINES."""
    if sys.platform != "linux":
        return None
    machine = host.machine().lower()
    machine = {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)
    return next((p for p, m in PLATFORM_MACHINES.items() if m == machine), None)


def check_platform(value: str | None) -> str | None:
    if value is not None and value not in PLATFORM_MACHINES:
        raise InvalidInput(
            f"unknown platform {value!r}", hint=f"use one of: {', '.join(PLATFORM_MACHINES)}"
        )
    return value


def check_python_version(value: str | None) -> str:
    """``X.Y`` (this interpreter's by default)."""
    if value is None:
        return f"{sys.version_info.major}.{sys.version_info.minor}"
    if not re.fullmatch(r"3\.\d{1,2}", value):
        raise InvalidInput(f"invalid Python version {value!r}", hint="write it as 3.11")
    return value


def marker_environment(python_version: str, platform: str | None) -> dict[str, str]:
    """The marker variables of the target: its Python, and its OS and machine when given."""
    env = {
        "python_version": python_version,
        "python_full_version": f"{python_version}.0",
        "extra": "",  # extras are ignored: a marker that needs one is false
    }
    if platform is not None:
        machine = PLATFORM_MACHINES[platform]
        env.update(
            sys_platform="linux",
            platform_system="Linux",
            os_name="posix",
            platform_machine=machine,
            implementation_name="cpython",
            platform_python_implementation="CPython",
        )
    return env


def runtime_distributions(runtime: str, extra_modules: tuple[str, ...] = ()) -> list[str]:
    """The distributions installed here that provide the modules ``runtime`` imports."""
    provided = metadata.packages_distributions()
    names: list[str] = []
    for module in RUNTIME_MODULES.get(runtime, ()) + extra_modules:
        dists = provided.get(module)
        if not dists:
            raise MissingDependency(
                f"the {runtime} runtime needs the Python module '{module}', which is not "
                "installed here, so its version cannot be pinned",
                hint=f"install it where you run `cloche export` (pip install 'cloche[{runtime}]')",
            )
        names.append(dists[0])
    return names


def closure(
    runtime: str,
    *,
    python_version: str | None = None,
    platform: str | None = None,
    extra_modules: tuple[str, ...] = (),
) -> list[Pin]:
    """EDGE_BASE plus the distributions of ``runtime`` (and of ``extra_modules``) and their
    dependencies, pinned, by name."""
    env = marker_environment(check_python_version(python_version), check_platform(platform))
    pins: dict[str, Pin] = {}
    todo: list[tuple[str, str | None]] = [(n, None) for n in EDGE_BASE]
    todo += [(n, None) for n in runtime_distributions(runtime, extra_modules)]
    while todo:
        name, parent = todo.pop()
        key = canonical(name)
        if key in pins or key in EXCLUDED:
            continue
        dist = _installed(name, parent)
        pins[key] = Pin(dist.metadata["Name"], dist.version)
        skipped = TOOLING_ONLY.get(key, frozenset())
        for dep in _dependencies(dist, env):
            if canonical(dep) not in skipped:
                todo.append((dep, dist.metadata["Name"]))
    return sorted(pins.values(), key=lambda p: p.key)


def _installed(name: str, parent: str | None) -> metadata.Distribution:
    try:
        return metadata.distribution(name)
    except metadata.PackageNotFoundError:
        needed = f" (needed by {parent})" if parent else ""
        raise MissingDependency(
            f"{name}{needed} is not installed here, so its version cannot be pinned",
            hint=f"pip install {name} where you run `cloche export`, or export for this "
            "machine's Python version and platform",
        ) from None


def _dependencies(dist: metadata.Distribution, env: dict[str, str]) -> list[str]:
    found = []
    for line in dist.requires or ():
        try:
            req = Requirement(line)
            if req.marker is not None and not req.marker.evaluate(env):
                continue
        except (InvalidRequirement, InvalidMarker):
            continue  # a malformed line in someone's metadata; pip would skip it too
        found.append(req.name)
    return found


def requirement_lines(pins: list[Pin], hashes: dict[str, str] | None = None) -> list[str]:
    """``name==version`` lines, each with ``--hash=sha256:...`` when ``hashes`` has its key."""
    lines = []
    for pin in pins:
        digest = (hashes or {}).get(pin.key)
        lines.append(f"{pin} --hash=sha256:{digest}" if digest else str(pin))
    return lines
