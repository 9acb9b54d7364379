"""Tiny synthetic data for the runtime tests: every test trains and saves its own model."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

FEATURES = ["tenure", "spend", "visits", "age"]


@dataclass(frozen=True)
class Tabular:
    X: np.ndarray  # 200 x 4 float64
    frame: pd.DataFrame  # the same values under FEATURES
    y_binary: np.ndarray
    y_multi: np.ndarray  # 3 classes
    y_reg: np.ndarray


@pytest.fixture(scope="session")
def tabular() -> Tabular:
    rng = np.random.default_rng(7)
    X = rng.normal(size=(200, 4))
    score = X[:, 0] + 0.5 * X[:, 1] - 0.3 * X[:, 2]
    return Tabular(
        X=X,
        frame=pd.DataFrame(X, columns=FEATURES),
        y_binary=(score > 0).astype(np.int64),
        y_multi=np.digitize(score, [-0.5, 0.5]).astype(np.int64),
        y_reg=2.0 * X[:, 0] - X[:, 3] + rng.normal(scale=0.1, size=200),
    )


@pytest.fixture
def churn() -> tuple[pd.DataFrame, np.ndarray]:
    """A frame with a string column, for pipelines that encode it themselves."""
    rng = np.random.default_rng(11)
    frame = pd.DataFrame(
        {
            "tenure": rng.integers(1, 60, size=200).astype(np.float64),
            "spend": rng.gamma(2.0, 30.0, size=200),
            "city": rng.choice(["lyon", "nice", "paris"], size=200),
        }
    )
    y = ((frame["tenure"] < 20) | (frame["city"] == "nice")).to_numpy().astype(np.int64)
    return frame, y


@pytest.fixture
def artifact_dir(tmp_path: Path) -> Path:
    """The folder a model version's files live in, as the store hands it to a runtime."""
    folder = tmp_path / "artifact"
    folder.mkdir()
    return folder


def _truncate(path: Path, fraction: float = 0.5) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


@pytest.fixture
def truncate() -> Callable[..., Path]:
    """Cut a saved model file short, as an interrupted upload or copy would."""
    return _truncate
