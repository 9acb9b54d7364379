"""The files the guides use: two churn models, their training data and customers to score.

Run it in an empty folder (`python examples/make_churn.py [FOLDER]`); it writes, in a few seconds:

- `churn.joblib`: a logistic regression (scikit-learn pipeline) on four features, `plan`,
  `tenure_months`, `monthly_spend` and `support_calls`;
- `churn-v2.joblib`: gradient boosting on the same features, the better model;
- `train.parquet`: the 2,000 rows both were trained on (the baseline monitors compare with);
- `data/customers/part-0.parquet` ... `part-2.parquet`: 3,000 customers to score, with a
  `customer_id` and a `region` beside the features.

The guides' examples run in that folder (tests/e2e/test_docs.py runs every one of them there).
"""

from __future__ import annotations

import sys
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

NUMERIC = ["tenure_months", "monthly_spend", "support_calls"]


def customers(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Synthetic customers; churn rises with support calls and falls with tenure."""
    rng = np.random.default_rng(seed)
    plan = rng.choice(["basic", "pro", "enterprise"], size=n, p=[0.5, 0.35, 0.15])
    tenure = rng.integers(1, 72, size=n)
    spend = rng.gamma(2.0, 30.0, size=n) + np.select(
        [plan == "pro", plan == "enterprise"], [20.0, 80.0], 0.0
    )
    calls = rng.poisson(1.5, size=n)
    logit = (
        -1.0
        + 2.5 * (tenure < 12)
        - 0.01 * tenure
        + 2.0 * (calls >= 4)
        - 1.2 * (plan == "enterprise")
    )
    churned = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    frame = pd.DataFrame(
        {
            "plan": plan,
            "tenure_months": tenure,
            "monthly_spend": spend.round(2),
            "support_calls": calls,
        }
    )
    return frame, churned


def pipeline(classifier: object) -> Pipeline:
    features = ColumnTransformer(
        [
            ("plan", OneHotEncoder(handle_unknown="ignore"), ["plan"]),
            ("numeric", StandardScaler(), NUMERIC),
        ]
    )
    return Pipeline([("features", features), ("classifier", classifier)])


def main(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    X, y = customers(2000, seed=7)
    joblib.dump(pipeline(LogisticRegression(max_iter=200)).fit(X, y), folder / "churn.joblib")
    boosted = pipeline(GradientBoostingClassifier(n_estimators=30, random_state=0)).fit(X, y)
    joblib.dump(boosted, folder / "churn-v2.joblib")
    X.to_parquet(folder / "train.parquet")
    parts = folder / "data" / "customers"
    parts.mkdir(parents=True, exist_ok=True)
    for i in range(3):
        rows, _ = customers(1000, seed=100 + i)
        ids = pd.RangeIndex(i * 1000, (i + 1) * 1000)
        rows.insert(0, "customer_id", [f"c{n:05d}" for n in ids])
        rows.insert(1, "region", np.where(ids % 2 == 0, "eu", "us"))
        rows.to_parquet(parts / f"part-{i}.parquet")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path.cwd())
