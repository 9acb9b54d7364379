"""`make demo`'s script end to end: what the README's first command promises, it shows."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_demo_predicts_serves_the_split_logs_every_answer_scores_a_batch_and_names_the_console(
    tmp_path: Path,
) -> None:
    # A copy, so that its registry (.cloche-demo beside examples/) lands in tmp_path.
    (tmp_path / "examples").mkdir()
    script = tmp_path / "examples" / "demo.py"
    shutil.copyfile(REPO / "examples" / "demo.py", script)
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
    split = re.search(r"200 requests answered by version: \{1: (\d+), 2: (\d+)\}", out)
    assert split is not None, out[-3000:]
    assert int(split[1]) + int(split[2]) == 200 and 0 < int(split[1]) < int(split[2])
    logged = re.search(r"(\d+) shown; (\d+) logged in all by \d+ worker\(s\); 0 could not", out)
    assert logged is not None and int(logged[1]) > 0, out[-3000:]
    assert "succeeded: scored 20000 rows" in out
    assert (tmp_path / ".cloche-demo").is_dir()
    # The server's banner names its console, and the demo ends by saying how to open it.
    assert re.search(r"server \| +Console: http://127\.0\.0\.1:\d+/console", out), out[:3000]
    tour = out[out.index("open http://127.0.0.1:8080/console") :]
    assert "Sign in with this machine's local credential" in tour
    assert "churn:2 90% and churn:1 10%" in tour
