"""A version's resident size, measured in a child process as a budgeted worker holds it."""

from __future__ import annotations

from pathlib import Path

import joblib
import numpy as np
from sklearn.ensemble import RandomForestRegressor

from cloche.registry.resident import measure_resident_bytes


def test_a_forest_is_measured_near_its_array_bytes_not_with_the_unpicklings_freed_buffers(
    tmp_path: Path,
) -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20_000, 8))
    forest = RandomForestRegressor(n_estimators=10, random_state=0, n_jobs=1).fit(X, X[:, 0])
    joblib.dump(forest, tmp_path / "model.joblib")  # uncompressed: the file is the arrays
    arrays = sum(t.tree_.__getstate__()["nodes"].nbytes for t in forest.estimators_)
    arrays += sum(t.tree_.__getstate__()["values"].nbytes for t in forest.estimators_)
    measured = measure_resident_bytes("sklearn", tmp_path, timeout_s=120)
    # With glibc's default allocator the freed unpickling buffers stayed resident and the
    # measure came out near twice the arrays (76 MB for a 40 MB forest).
    assert arrays * 0.9 <= measured <= arrays * 1.4, (measured, arrays)
