"""`cloche export`: a registered model version as an edge bundle (or one ONNX file).

The bundle is built in a hidden folder beside ``out`` and renamed into place once complete, so a
refused export (conversion, parity, download) leaves ``out`` as it was.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any, cast

import numpy as np

import cloche
from cloche.errors import (
    ClocheError,
    ConversionFailed,
    ExportOutputExists,
    InvalidInput,
    ParityFailed,
)
from cloche.export import convert, docs, parity
from cloche.export.downloads import download_wheels
from cloche.export.entities import ExportFormat, ExportResult
from cloche.export.imports import imported_modules, split_installed
from cloche.export.manifest import (
    BUNDLE_FORMAT,
    DOCKERFILE,
    MANIFEST,
    MODEL_DIR,
    ONNX_FILE,
    README,
    REQUIREMENTS,
    WHEELS_DIR,
    file_entry,
    utc_timestamp,
    write_manifest,
)
from cloche.export.requirements import (
    ONNX_READER,
    Pin,
    check_platform,
    check_python_version,
    closure,
    default_platform,
    requirement_lines,
)
from cloche.export.sample import Sample, parity_sample
from cloche.export.slim import RULES, SlimmedWheel, slim_wheel
from cloche.export.wheel import build_cloche_wheel
from cloche.registry import service as registry
from cloche.registry.entities import ModelVersion
from cloche.runtimes import get_runtime
from cloche.runtimes.base import LoadedModel, has_predict_proba
from cloche.signatures import Signature
from cloche.store.store import Store

FORMATS = ("bundle", "onnx")
SERVING = {"max_batch_size": 64, "timeout_ms": 30_000}


def export_model(
    store: Store,
    ref: str,
    out: Path,
    *,
    fmt: str = "bundle",
    native: bool = False,
    with_wheels: bool = False,
    slim: bool = True,
    platform: str | None = None,
    overwrite: bool = False,
    python_version: str | None = None,
) -> ExportResult:
    """Write the version ``ref`` names to ``out``: converted to ONNX (parity checked) unless
    ``native``; with ``fmt="onnx"``, only ``model.onnx`` and ``manifest.json``. With wheels,
    ``slim`` rewrites those a rule covers without files the runtime never loads (slim.py)."""
    _check_options(fmt, native=native, with_wheels=with_wheels, slim=slim)
    python = check_python_version(python_version)
    platform = check_platform(platform)
    if with_wheels and platform is None:
        platform = default_platform()
    out = Path(out)
    _check_out(out, overwrite=overwrite)
    version, key = registry.artifact_location(store, ref)
    folder = store.artifacts.local_dir(key, version.files)  # hashes verified
    staging = _staging_dir(out)
    try:
        runtime, commands = _build(
            store, version, folder, staging, fmt=fmt, native=native, with_wheels=with_wheels,
            slim=slim, python=python, platform=platform,
        )  # fmt: skip
        _publish(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return ExportResult(
        model=version.ref,
        out=out,
        format=cast(ExportFormat, fmt),
        runtime=runtime,
        manifest=json.loads((out / MANIFEST).read_text(encoding="utf-8")),
        commands=commands,
    )


def _build(
    store: Store,
    version: ModelVersion,
    folder: Path,
    staging: Path,
    *,
    fmt: str,
    native: bool,
    with_wheels: bool,
    slim: bool,
    python: str,
    platform: str | None,
) -> tuple[str, list[str]]:
    """Write the export into ``staging``; its runtime and install commands."""
    original = get_runtime(version.framework).load(folder)
    stored = Signature.from_dict(version.signature)
    signature = original.signature() if stored.is_empty else stored
    model_dir = staging / MODEL_DIR if fmt == "bundle" else staging
    model_dir.mkdir(exist_ok=True)
    checked = None
    if native or version.framework == "onnx":  # an ONNX model needs no conversion
        runtime = version.framework
        _copy_native(folder, version, model_dir, single_onnx=fmt == "onnx")
    else:
        runtime = "onnx"
        checked = _convert_checked(store, version, original, signature, model_dir)
    extra, unpinned = _model_modules(runtime, model_dir, converted=checked is not None)
    pins = closure(runtime, python_version=python, platform=platform, extra_modules=extra)
    manifest = _manifest(version, runtime, signature, checked, pins, python, platform)
    # hashes: whether requirements.txt pins every wheel's hash, which pip then checks at install
    # (and `cloche serve` need not); without --with-wheels, wheels/ holds cloche's own alone.
    manifest["requirements"].update(unpinned_imports=list(unpinned), hashes=with_wheels)
    commands: list[str] = []
    if fmt == "bundle":
        commands = _write_bundle_files(staging, manifest, pins, with_wheels=with_wheels, slim=slim)
    write_manifest(staging, manifest)
    return runtime, commands


def _model_modules(
    runtime: str, model_dir: Path, *, converted: bool
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Modules the model needs beyond its runtime's, to pin; and those that cannot be."""
    if runtime == "custom":
        return split_installed(imported_modules(model_dir))
    # A registered ONNX model keeps its class labels in its graph, which needs onnx to read.
    return (ONNX_READER if runtime == "onnx" and not converted else ()), ()


def _check_options(fmt: str, *, native: bool, with_wheels: bool, slim: bool) -> None:
    if fmt not in FORMATS:
        raise InvalidInput(f"unknown export format {fmt!r}", hint="use --format bundle or onnx")
    if fmt == "onnx" and native:
        raise InvalidInput(
            "--format onnx writes an ONNX model, and --native keeps the model's own format",
            hint="drop --native, or use --format bundle for a native bundle",
        )
    if not slim and not with_wheels:
        raise InvalidInput(
            "--no-slim keeps downloaded wheels as they are, and only --with-wheels downloads any",
            hint="add --with-wheels, or drop --no-slim",
        )
    if fmt == "onnx" and with_wheels:
        raise InvalidInput(
            "--format onnx writes only model.onnx and manifest.json; wheels go in bundles",
            hint="use --format bundle --with-wheels",
        )


def _check_out(out: Path, *, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise InvalidInput(f"{out} is a file", hint="give --out a folder (new or empty)")
    if not out.is_dir() or not any(out.iterdir()):
        return
    if not overwrite:
        raise ExportOutputExists(
            f"{out} already exists and is not empty",
            hint="pass --overwrite to replace an earlier export, or choose another --out",
        )
    if not (out / MANIFEST).is_file():
        raise ExportOutputExists(
            f"{out} holds files but no {MANIFEST}: --overwrite replaces only an earlier export",
            hint="choose a new or empty folder for --out",
        )


def _staging_dir(out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    # Beside ``out``, on the same file system, so that publishing it is one rename.
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    staging.chmod(0o755)  # mkdtemp's 0700 would follow the bundle wherever it is copied
    return staging


def _publish(staging: Path, out: Path) -> None:
    if out.is_dir() and any(out.iterdir()):
        old = out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}.old")
        out.rename(old)
        staging.rename(out)
        shutil.rmtree(old, ignore_errors=True)
        return
    if out.is_dir():
        out.rmdir()
    staging.rename(out)


def _copy_native(
    folder: Path, version: ModelVersion, model_dir: Path, *, single_onnx: bool
) -> None:
    if single_onnx:  # a registered ONNX model, asked for as one file
        names = list(version.files)
        if len(names) != 1 or not names[0].lower().endswith(".onnx"):
            raise ConversionFailed(
                f"{version.ref} is an ONNX model of {len(names)} files, not one .onnx file",
                hint="use --format bundle, which keeps all of its files",
            )
        shutil.copyfile(folder / names[0], model_dir / ONNX_FILE)
        return
    for rel in version.files:
        target = model_dir.joinpath(*rel.split("/"))
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(folder / rel, target)  # not copy2: store files are read-only


def _convert_checked(
    store: Store, version: ModelVersion, original: LoadedModel, signature: Signature, into: Path
) -> dict[str, Any]:
    """Convert to ``into/model.onnx`` and check parity; the manifest's parity figures."""
    proto = convert.to_onnx(original, signature, framework=version.framework, ref=version.ref)
    for key, value in (("cloche.model", version.ref), ("cloche.sha256", version.sha256)):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    (into / ONNX_FILE).write_bytes(proto.SerializeToString())
    converted = get_runtime("onnx").load(into)
    sample = parity_sample(store, version, signature, width=_width(original))
    classification = (
        has_predict_proba(original)
        or signature.task == "classification"
        or signature.classes is not None
    )
    report = _compare(version, original, converted, sample, classification=classification)
    if not report.passed:
        failures = "; ".join(f"{o.name} {o.problem}" for o in report.failures())
        raise ParityFailed(
            f"the ONNX conversion of {version.ref} does not match the original on "
            f"{sample.rows} {sample.source} rows: {failures}",
            hint=convert.NATIVE_HINT,
            outputs=report.to_manifest()["outputs"],
        )
    return report.to_manifest()


def _compare(
    version: ModelVersion,
    original: LoadedModel,
    converted: LoadedModel,
    sample: Sample,
    *,
    classification: bool,
) -> parity.ParityReport:
    """Compare on the sample; if a model fails on rows with missing values, on the others."""
    try:
        return parity.compare(original, converted, sample, classification=classification)
    except ClocheError:
        raise
    except Exception as exc:
        complete = _complete_rows(sample)
        if complete is not None:
            return _compare(version, original, converted, complete, classification=classification)
        raise ParityFailed(
            f"parity of {version.ref} could not be checked: a model failed on the "
            f"{sample.source} sample: {str(exc).strip()[:300] or type(exc).__name__}",
            hint=convert.NATIVE_HINT,
        ) from exc


def _complete_rows(sample: Sample) -> Sample | None:
    """The sample without rows that hold a missing value; None if that changes nothing."""
    X = sample.X
    if X.dtype == object:
        missing = np.array([[v is None or v != v for v in row] for row in X], dtype=bool)
    else:
        missing = np.isnan(X.astype(np.float64))
    keep = ~missing.reshape(len(X), -1).any(axis=1)
    if keep.all() or not keep.any():
        return None
    return Sample(X[keep], sample.source)


def _width(model: LoadedModel) -> int | None:
    inputs = model.signature().inputs
    shape = inputs[0].shape if len(inputs) == 1 else ()
    return shape[1] if len(shape) == 2 and shape[1] > 0 else None


def _manifest(
    version: ModelVersion,
    runtime: str,
    signature: Signature,
    checked: dict[str, Any] | None,
    pins: list[Pin],
    python: str,
    platform: str | None,
) -> dict[str, Any]:
    return {
        "bundle_format": BUNDLE_FORMAT,
        "cloche_version": cloche.__version__,
        "created_at": utc_timestamp(),
        "model": {
            "name": version.name,
            "version": version.version,
            "framework": version.framework,
            "sha256": version.sha256,
        },
        "runtime": runtime,
        "signature": signature.to_dict(),
        "serving": dict(SERVING),
        "parity": checked,
        "requirements": {
            "python": python,
            "platform": platform,
            "packages": [str(p) for p in _with_cloche(pins)],
        },
    }


def _with_cloche(pins: list[Pin]) -> list[Pin]:
    return [*pins, Pin("cloche", cloche.__version__)]


def _write_bundle_files(
    root: Path, manifest: dict[str, Any], pins: list[Pin], *, with_wheels: bool, slim: bool
) -> list[str]:
    """requirements.txt (and wheels/), Dockerfile and README.md; the install commands."""
    requirements = manifest["requirements"]
    hashes: dict[str, str] | None = None
    pip_wheel = None
    if with_wheels:
        wheels = root / WHEELS_DIR
        found, pip_wheel = download_wheels(
            pins, wheels, python_version=requirements["python"], platform=requirements["platform"]
        )
        if slim:
            pins = _slim_wheels(found, pins, manifest)
        found["cloche"] = build_cloche_wheel(wheels)
        hashes = {key: file_entry(path)["sha256"] for key, path in found.items()}
    else:  # no index holds cloche: its wheel is in every bundle
        build_cloche_wheel(root / WHEELS_DIR)
    header = [
        f"# {manifest['model']['name']}:{manifest['model']['version']}, runtime "
        f"{manifest['runtime']}, Python {requirements['python']}: the pinned closure, "
        "installed with --no-deps",
    ]
    lines = header + requirement_lines(_with_cloche(pins), hashes)
    (root / REQUIREMENTS).write_text("\n".join(lines) + "\n", encoding="utf-8")
    (root / DOCKERFILE).write_text(
        docs.dockerfile(python_version=requirements["python"], pip_wheel=pip_wheel),
        encoding="utf-8",
    )
    # The README's install puts .venv in the bundle folder, and serving fills spool/: an image
    # built from that folder later must not copy either.
    (root / ".dockerignore").write_text(".venv\nspool\n", encoding="utf-8")
    commands = docs.install_commands(with_wheels=with_wheels)
    # The README shows the parity figures and file hashes of the manifest written after it.
    text = docs.readme(manifest, commands, with_wheels=with_wheels)
    (root / README).write_text(text, encoding="utf-8")
    return commands


def _slim_wheels(wheels: dict[str, Path], pins: list[Pin], manifest: dict[str, Any]) -> list[Pin]:
    """Rewrite the wheels a slim rule covers (``wheels`` then names the new files); the pins,
    with the new versions, which the manifest's packages and ``slimmed`` record follow."""
    slimmed: dict[str, SlimmedWheel] = {}
    for pin in pins:
        rule = RULES.get(pin.key)
        done = slim_wheel(wheels[pin.key], rule) if rule is not None else None
        if done is not None:
            slimmed[pin.key] = done
            wheels[pin.key] = done.path
    pins = [Pin(p.name, slimmed[p.key].version) if p.key in slimmed else p for p in pins]
    manifest["requirements"]["packages"] = [str(p) for p in _with_cloche(pins)]
    manifest["slimmed"] = {key: done.to_manifest() for key, done in slimmed.items()}
    return pins
