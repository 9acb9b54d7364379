"""Reading an edge bundle: its manifest, checked, and the deployment it describes.

A bundle is what `cloche export` writes (cloche/export/): ``manifest.json`` beside ``model/``,
``requirements.txt`` and the rest. Before anything loads the model, every file the manifest lists
(wheels aside: pip checks those against requirements.txt's hashes) is hashed and compared, and a
file in ``model/`` that the manifest does not list is refused too: a loader may read it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cloche import __version__
from cloche.errors import BundleIncompatible, BundleInvalid, BundleTampered
from cloche.export.manifest import BUNDLE_FORMAT, MANIFEST, MODEL_DIR, file_entry
from cloche.serving.spec import DeploymentSpec, Snapshot
from cloche.signatures import Signature

# pip checks these against requirements.txt's --hash lines, where the bundle has them.
UNCHECKED_PREFIX = "wheels/"


@dataclass(frozen=True)
class Bundle:
    root: Path
    manifest: dict[str, Any]

    @property
    def endpoint(self) -> str:
        """The name it serves under: the model's name, as an endpoint of it would be."""
        return str(self.manifest["model"]["name"])

    @property
    def model_dir(self) -> Path:
        return self.root / MODEL_DIR

    def spec(self, *, max_batch_size: int | None = None) -> DeploymentSpec:
        model, serving = self.manifest["model"], self.manifest.get("serving") or {}
        return DeploymentSpec(
            deployment_id=0,  # no store: the log's rows say so, and sync keeps it
            endpoint=self.endpoint,
            model=str(model["name"]),
            version=int(model["version"]),
            framework=str(self.manifest["runtime"]),
            artifact_key="",
            files={},
            sha256=str(model.get("sha256", "")),
            signature=self.manifest["signature"],
            traffic=100,
            shadow=False,
            max_batch_size=max_batch_size or int(serving.get("max_batch_size", 64)),
            timeout_ms=int(serving.get("timeout_ms", 30_000)),
        )

    def snapshot(self, **options: Any) -> Snapshot:
        return Snapshot(generation=1, endpoints={self.endpoint: [self.spec(**options)]})


def open_bundle(root: Path, *, verify: bool = True) -> Bundle:
    """The bundle in ``root``, its format checked and (with ``verify``) every file's hash."""
    root = Path(root)
    path = root / MANIFEST
    if not path.is_file():
        raise BundleInvalid(
            f"{root} is not a cloche bundle: it has no {MANIFEST}",
            hint="point at the folder `cloche export MODEL --out DIR` wrote",
        )
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise BundleInvalid(f"{path} cannot be read: {exc}") from None
    _check_format(manifest, path)
    bundle = Bundle(root, manifest)
    if verify:
        verify_files(bundle)
    return bundle


def _check_format(manifest: Any, path: Path) -> None:
    if not isinstance(manifest, dict) or "bundle_format" not in manifest:
        raise BundleInvalid(f"{path} is not a cloche bundle manifest (no bundle_format)")
    found = manifest["bundle_format"]
    if not isinstance(found, int) or found > BUNDLE_FORMAT or found < 1:
        made_by = manifest.get("cloche_version", "an unknown version")
        raise BundleIncompatible(
            f"this bundle has format {found!r} (made by cloche {made_by}); cloche {__version__} "
            f"reads bundle formats 1 to {BUNDLE_FORMAT}",
            hint=f"serve it with cloche {made_by}, or export the model again with this cloche",
        )
    missing = [k for k in ("model", "runtime", "signature", "files") if k not in manifest]
    if missing:
        raise BundleInvalid(f"{path} lacks {', '.join(missing)}; export the model again")
    try:
        Signature.from_dict(manifest["signature"])
    except Exception as exc:
        raise BundleInvalid(f"{path} holds an unreadable signature: {exc}") from None


def verify_files(bundle: Bundle) -> None:
    """Raise BundleTampered naming the first file that differs from the manifest or is extra."""
    files: dict[str, Any] = bundle.manifest["files"]
    # Bundles written before "hashes" was recorded held wheels/ only with hashes.
    hashed = bundle.manifest.get("requirements", {}).get("hashes", True)
    for name, entry in sorted(files.items()):
        if hashed and name.startswith(UNCHECKED_PREFIX):
            continue
        path = _inside(bundle.root, name)
        if not path.is_file():
            raise BundleTampered(
                f"bundle file {name} is missing",
                hint="copy the whole bundle folder again, or export the model again",
            )
        digest = file_entry(path)["sha256"]
        if digest != entry.get("sha256"):
            raise BundleTampered(
                f"bundle file {name} has changed since export (sha256 {digest[:12]}…, "
                f"manifest says {str(entry.get('sha256'))[:12]}…); refusing to serve it",
                hint="copy the bundle again from where it was exported, or export it again",
            )
    for path in sorted(bundle.model_dir.rglob("*")):
        name = path.relative_to(bundle.root).as_posix()
        if path.is_file() and name not in files:
            raise BundleTampered(
                f"bundle file {name} is not in the manifest; refusing to serve it",
                hint="remove the file, or export the model again",
            )


def _inside(root: Path, name: str) -> Path:
    """``root / name``, refusing a manifest entry that points outside the bundle."""
    path = (root / name).resolve()
    if not path.is_relative_to(root.resolve()):
        raise BundleInvalid(f"the manifest lists {name!r}, which is outside the bundle")
    return path
