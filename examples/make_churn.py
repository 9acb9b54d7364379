"""The files the guides use: two churn models, their training data and customers to score.

Run it in an empty folder (`python examples/make_churn.py [FOLDER]`); it writes, in a few seconds:

- `churn.joblib`: a logistic regression (scikit-learn pipeline) on four features, `plan`,
  `tenure_months`, `monthly_spend` and `support_calls`;
- `churn-v2.joblib`: gradient boosting on the same features, the better model;
- `train.parquet`: the 2,000 rows both were trained on (the baseline monitors compare with);
- `holdout.parquet`: 1,000 other customers with their label, `churned` (to evaluate versions);
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

# The demo's customers and model pipeline (examples/demo.py), so the guides' models are its.
from demo import make_customers, pipeline
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LogisticRegression


def main(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    X, y = make_customers(2000, seed=7)
    joblib.dump(pipeline(LogisticRegression(max_iter=200)).fit(X, y), folder / "churn.joblib")
    boosted = pipeline(GradientBoostingClassifier(n_estimators=30, random_state=0)).fit(X, y)
    joblib.dump(boosted, folder / "churn-v2.joblib")
    X.to_parquet(folder / "train.parquet")
    holdout, labels = make_customers(1000, seed=11)
    holdout["churned"] = labels
    holdout.to_parquet(folder / "holdout.parquet")
    parts = folder / "data" / "customers"
    parts.mkdir(parents=True, exist_ok=True)
    for i in range(3):
        rows, _ = make_customers(1000, seed=100 + i)
        ids = pd.RangeIndex(i * 1000, (i + 1) * 1000)
        rows.insert(0, "customer_id", [f"c{n:05d}" for n in ids])
        rows.insert(1, "region", np.where(ids % 2 == 0, "eu", "us"))
        rows.to_parquet(parts / f"part-{i}.parquet")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path.cwd())
