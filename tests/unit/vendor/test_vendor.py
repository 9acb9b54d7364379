"""The vendored files match their manifest: hash, licence, version; and their URLs."""

from __future__ import annotations

import hashlib
import re

import pytest

from cloche import vendor

SPDX = {"Apache-2.0", "MIT", "MPL-2.0", "0BSD", "BSD-2-Clause", "BSD-3-Clause", "ISC"}


def test_every_listed_file_has_the_recorded_hash() -> None:
    for entry in vendor.manifest():
        assert entry.file.is_file() and not entry.file.is_symlink(), entry.path
        digest = hashlib.sha256(entry.file.read_bytes()).hexdigest()
        assert digest == entry.sha256, f"{entry.path}: vendored.toml records another sha256"


def test_every_listed_file_records_version_source_and_licence_file() -> None:
    for entry in vendor.manifest():
        assert re.fullmatch(r"\d+\.\d+\.\d+", entry.version), entry.path
        assert entry.source.startswith(f"npm:{entry.package}@{entry.version}/"), entry.path
        assert entry.license in SPDX, entry.path
        assert (vendor.VENDOR_DIR / entry.license_file).is_file(), entry.license_file


def test_every_file_in_the_folder_is_listed_or_a_licence() -> None:
    listed = {e.path for e in vendor.manifest()}
    licences = {e.license_file for e in vendor.manifest()}
    for path in vendor.VENDOR_DIR.rglob("*"):
        relative = path.relative_to(vendor.VENDOR_DIR).as_posix()
        if path.is_dir() or path.suffix == ".py" or path.name == "vendored.toml":
            continue
        if "__pycache__" in relative:
            continue
        beside_a_licence = any(relative.startswith(lf.rsplit("/", 1)[0] + "/") for lf in licences)
        is_notice = re.search(r"(LICEN[CS]E|NOTICE)", path.name) is not None
        assert relative in listed or (beside_a_licence and is_notice), relative


def test_the_manifest_lists_what_the_console_and_api_docs_load() -> None:
    packages = {e.package for e in vendor.manifest()}
    assert {"swagger-ui-dist", "uplot", "axe-core"} <= packages


def test_asset_url_carries_the_hash_prefix() -> None:
    entry = vendor.manifest()[0]
    assert vendor.asset_url(entry.path) == f"/static/vendor/{entry.path}?v={entry.sha256[:12]}"


@pytest.mark.parametrize(
    "path",
    [
        "nothing.js",
        "",
        "../vendor/swagger-ui/swagger-ui.css",
        "/swagger-ui/swagger-ui.css",
        "swagger-ui/LICENSE",
        "vendored.toml",
        "__init__.py",
    ],
)
def test_asset_url_of_an_unlisted_path_is_a_value_error(path: str) -> None:
    with pytest.raises(ValueError, match="not a vendored file"):
        vendor.asset_url(path)


def test_lookup_compares_paths_exactly() -> None:
    entry = vendor.manifest()[0]
    assert vendor.lookup(entry.path) == entry
    assert vendor.lookup(entry.path.upper()) is None
    assert vendor.lookup("./" + entry.path) is None
