"""A version's baseline as the monitors see it: attached (or replaced) after upload, and
profiled once per dataset, whether it came with the upload or later.

The dataset itself is stored by the registry (``registry.service.attach_baseline``); its
profile is cached in the store under the dataset's sha256, so every monitor run and every
version sharing the file reuses it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from cloche.monitoring import window
from cloche.monitoring.feature_profiles import FeatureProfile, Kind
from cloche.monitoring.profiles import Profile
from cloche.registry import service as registry
from cloche.registry.entities import ModelVersion
from cloche.store.store import Store
from cloche.store.tables import ProfileRow


def create_baseline(store: Store, *, ref: str, path: Path, actor: str = "local") -> dict[str, Any]:
    """Attach (or replace) the baseline dataset of the version ``ref`` names and profile it
    now, as its monitors will compare with it: the dataset's description with ``model`` (the
    version) and ``profile`` (the profile's summary)."""
    meta = registry.attach_baseline(store, ref=ref, path=Path(path), actor=actor)
    version = registry.get_version(store, ref)
    profile = baseline_profile(store, version)
    summary = profile.to_summary() if profile is not None else None
    return {"model": version.ref, **meta, "profile": summary}


def baseline_profile(store: Store, version: ModelVersion) -> Profile | None:
    """The profile of the version's baseline (the features its signature names that the
    dataset holds), built once per dataset; None when the version has no baseline."""
    meta = version.baseline or {}
    if "sha256" not in meta:
        return None

    def build() -> Profile | None:
        table = window.baseline_table(store, version)
        if table is None:
            return None
        kinds = window.feature_kinds(version)
        present = [n for n in kinds if n in table.column_names]
        return Profile.from_table(table.select(present), {n: kinds[n] for n in present})

    return _cached(store, f"baseline:{meta['sha256']}", build)


def baseline_predictions(
    store: Store, version: ModelVersion, column: str, kind: Kind
) -> FeatureProfile | None:
    """The profile of the baseline's ``column`` (its recorded predictions, e.g. the training
    set scored by the model) as ``kind``; None when the version has no baseline or the
    dataset has no such column. Built once per dataset, like the features' profile."""
    meta = version.baseline or {}
    if "sha256" not in meta:
        return None

    def build() -> Profile:
        table = window.baseline_table(store, version)
        # A dataset without the column is remembered as an empty profile: no re-read per run.
        if table is None or column not in table.column_names:
            return Profile(rows=0, features={})
        return Profile.from_table(table.select([column]), {column: kind})

    key = f"baseline-predictions:{meta['sha256']}:{column}:{kind}"
    found = _cached(store, key, build)
    return found.features.get(column) if found is not None else None


def _cached(store: Store, key: str, build: Callable[[], Profile | None]) -> Profile | None:
    """The profile stored under ``key``, else ``build()``'s, stored for next time."""
    with store.transaction() as session:
        cached = session.get(ProfileRow, key)
        if cached is not None:
            return Profile.from_bytes(cached.data)
    profile = build()
    if profile is None:
        return None
    with store.transaction() as session:
        if session.get(ProfileRow, key) is None:  # another run may have stored it meanwhile
            session.add(ProfileRow(key=key, data=profile.to_bytes(), rows=profile.rows))
    return profile
