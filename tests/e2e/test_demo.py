"""`make demo`'s script end to end: what the README's first command promises, it shows."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import cloche

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_demo_predicts_serves_logs_every_answer_scores_a_batch_and_leaves_the_console_walk(
    tmp_path: Path,
) -> None:
    # A copy, so that its registry (.cloche-demo beside examples/) lands in tmp_path.
    (tmp_path / "examples").mkdir()
    script = tmp_path / "examples" / "demo.py"
    shutil.copyfile(REPO / "examples" / "demo.py", script)
    shutil.copytree(REPO / "examples" / "pipelines", tmp_path / "examples" / "pipelines")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOCHE_")}
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env={**env, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "first prediction made (SDK, churn@prod)" in out
    # Only prod (churn:1) serves: churn:2 waits on staging for the console walk's canary.
    assert "200 requests answered by version: {1: 200}" in out, out[-3000:]
    logged = re.search(r"(\d+) shown; (\d+) logged in all by \d+ worker\(s\); 0 could not", out)
    assert logged is not None and int(logged[1]) > 0, out[-3000:]
    assert "succeeded: scored 20000 rows" in out
    assert (tmp_path / ".cloche-demo").is_dir()
    # The server's banner names its console, and the demo ends by saying how to open it.
    assert re.search(r"server \| +Console: http://127\.0\.0\.1:\d+/console", out), out[:3000]
    tour = out[out.index("open http://127.0.0.1:8080/console") :]
    assert "Sign in with this machine's local credential" in tour
    assert "deploy churn:2 as a 10% canary" in tour and "approve its waiting step" in tour
    # What the walk needs is in the registry the demo leaves.
    home = tmp_path / ".cloche-demo"
    with cloche.Client(home=home) as client:
        assert client.models.show("churn@prod").version == 1
        assert client.models.show("churn@staging").version == 2
        alerts = {a.key: a for a in client.alerts.list(state="open", monitor="churn")}
        assert alerts["skew:tenure_months"].acked_at is None, alerts
        assert [p.name for p in client.pipelines.list()] == ["continuous-rollout"]
    assert re.search(r"open alert \d+: skew:tenure_months", out), out[-3000:]
    assert {"churn-v2.joblib", "holdout.parquet", "train.parquet"} <= {
        f.name for f in (home / "work").iterdir()
    }
