"""Unloading frees memory (issue 19, point 3): after 100 cycles of deploy, predict and undeploy of
the same model, a real `cloche up` holds within 5% of its resident memory after the first."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import joblib
import numpy as np
import pandas as pd
import psutil
import pytest
from sklearn.ensemble import RandomForestClassifier

import cloche
from tests.e2e._servers import cloche_up

FEATURES = ["tenure", "spend", "visits", "age"]
CYCLES = 100


def _until(check: object, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def test_a_hundred_deploy_predict_undeploy_cycles_leave_memory_where_the_first_did(
    tmp_path: Path,
) -> None:
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(2000, 4)), columns=FEATURES)
    y = (X["tenure"] + rng.normal(size=2000) > 0).astype(int)
    # A few MiB once loaded: a leak of one copy per cycle would be hundreds of MiB.
    joblib.dump(
        RandomForestClassifier(n_estimators=60, random_state=0).fit(X, y), tmp_path / "f.joblib"
    )
    rows = {"instances": X.head(2).to_numpy().tolist()}
    with cloche_up(tmp_path / "home") as server, cloche.Client(server.url) as sdk:
        sdk.models.upload(tmp_path / "f.joblib", name="forest")
        sdk.endpoints.create("forest")
        process = psutil.Process(server.pid)
        with httpx.Client(base_url=server.url, timeout=30) as http:

            def answers() -> bool:
                return http.post("/v1/models/forest:predict", json=rows).status_code == 200

            def gone() -> bool:
                return http.post("/v1/models/forest:predict", json=rows).status_code == 404

            after_first = 0
            for cycle in range(CYCLES):
                sdk.endpoints.deploy("forest", "forest:1")
                _until(answers, f"cycle {cycle}'s deployment to answer")
                sdk.endpoints.undeploy("forest", "forest:1")
                _until(gone, f"cycle {cycle}'s undeploy to take effect")
                if cycle == 0:
                    after_first = process.memory_info().rss
            after_all = process.memory_info().rss
    assert after_all <= after_first * 1.05, (
        f"resident memory grew from {after_first / 2**20:.0f} MiB after the first cycle to "
        f"{after_all / 2**20:.0f} MiB after {CYCLES}"
    )
