from __future__ import annotations

import json
from pathlib import Path

import pytest

from cloche.edge.bundle import open_bundle
from cloche.errors import BundleIncompatible, BundleInvalid, BundleTampered
from cloche.export.manifest import write_manifest
from tests.unit.edge._bundles import native_bundle


@pytest.fixture
def bundle_dir(tmp_path: Path) -> Path:
    return native_bundle(tmp_path / "churn-edge")


def edit_manifest(root: Path, **changes: object) -> None:
    path = root / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest.update(changes)
    path.write_text(json.dumps(manifest))


def test_a_bundle_opens_as_one_deployment_named_after_its_model(bundle_dir: Path) -> None:
    bundle = open_bundle(bundle_dir)
    spec = bundle.spec()
    assert (bundle.endpoint, spec.ref, spec.framework, spec.traffic) == (
        "churn",
        "churn:1",
        "sklearn",
        100,
    )
    assert [f["name"] for f in spec.signature["inputs"]] == ["tenure", "spend", "visits", "age"]


def test_a_changed_model_file_is_refused_naming_the_file(bundle_dir: Path) -> None:
    with (bundle_dir / "model" / "model.joblib").open("ab") as fh:
        fh.write(b"\0")
    with pytest.raises(BundleTampered, match=r"model/model\.joblib has changed"):
        open_bundle(bundle_dir)


def test_a_file_added_to_the_model_folder_is_refused(bundle_dir: Path) -> None:
    (bundle_dir / "model" / "extra.pkl").write_bytes(b"x")
    with pytest.raises(BundleTampered, match=r"model/extra\.pkl is not in the manifest"):
        open_bundle(bundle_dir)


def test_a_missing_file_is_refused(bundle_dir: Path) -> None:
    (bundle_dir / "requirements.txt").unlink()
    with pytest.raises(BundleTampered, match=r"requirements\.txt is missing"):
        open_bundle(bundle_dir)


def test_a_folder_without_a_manifest_is_not_a_bundle(tmp_path: Path) -> None:
    with pytest.raises(BundleInvalid, match=r"no manifest\.json") as info:
        open_bundle(tmp_path)
    assert "cloche export" in (info.value.hint or "")


def test_a_corrupt_manifest_is_refused(bundle_dir: Path) -> None:
    (bundle_dir / "manifest.json").write_text("{not json")
    with pytest.raises(BundleInvalid, match="cannot be read"):
        open_bundle(bundle_dir)


def test_a_bundle_of_a_newer_format_names_both_versions(bundle_dir: Path) -> None:
    edit_manifest(bundle_dir, bundle_format=99, cloche_version="9.0.0")
    with pytest.raises(BundleIncompatible, match=r"format 99 \(made by cloche 9\.0\.0\)") as info:
        open_bundle(bundle_dir)
    assert "9.0.0" in (info.value.hint or "")


def test_a_manifest_entry_outside_the_bundle_is_refused(bundle_dir: Path) -> None:
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    manifest["files"]["../outside"] = {"sha256": "0" * 64, "size": 1}
    (bundle_dir / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleInvalid, match="outside the bundle"):
        open_bundle(bundle_dir)


@pytest.mark.parametrize("hashes", [True, False])
def test_a_changed_wheel_is_refused_unless_pip_checks_its_hash(
    bundle_dir: Path, hashes: bool
) -> None:
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    manifest["requirements"]["hashes"] = hashes
    (bundle_dir / "wheels").mkdir()
    wheel = bundle_dir / "wheels" / "cloche-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"PK wheel")
    write_manifest(bundle_dir, manifest)
    wheel.write_bytes(b"PK changed")
    if hashes:
        open_bundle(bundle_dir)  # pip refuses it at install, against requirements.txt
    else:
        with pytest.raises(BundleTampered, match=r"wheels/cloche-0\.1\.0-py3-none-any\.whl"):
            open_bundle(bundle_dir)
