"""A native scikit-learn bundle written by hand with the export's manifest writer.

The edge server's tests need a bundle but not the converter: this one holds a joblib model and
the manifest `cloche export --native` would write (tests/integration/test_export.py covers the
exporter itself, and tests/e2e/test_cli_edge.py the two together).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cloche import __version__
from cloche.export.manifest import BUNDLE_FORMAT, write_manifest
from cloche.runtimes import get_runtime

FEATURES = ["tenure", "spend", "visits", "age"]


def native_bundle(root: Path, name: str = "churn") -> Path:
    import joblib
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 4))
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(int)
    model = LogisticRegression(max_iter=500).fit(pd.DataFrame(X, columns=FEATURES), y)
    (root / "model").mkdir(parents=True)
    joblib.dump(model, root / "model" / "model.joblib")
    signature = get_runtime("sklearn").load(root / "model").signature()
    (root / "requirements.txt").write_text("scikit-learn\n")
    write_manifest(
        root,
        {
            "bundle_format": BUNDLE_FORMAT,
            "cloche_version": __version__,
            "created_at": "2026-11-25T00:00:00Z",
            "model": {"name": name, "version": 1, "framework": "sklearn", "sha256": "0" * 64},
            "runtime": "sklearn",
            "signature": signature.to_dict(),
            "serving": {"max_batch_size": 64, "timeout_ms": 30000},
            "parity": None,
            "requirements": {"python": "3.11", "platform": None, "packages": []},
        },
    )
    return root
