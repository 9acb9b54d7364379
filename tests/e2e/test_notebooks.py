"""The starter notebooks run end to end against a real `cloche up` (nbclient, a real kernel),
their outputs checked; `cloche notebook` starts JupyterLab whose kernels reach the server."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

import cloche
from cloche.config import Settings
from cloche.notebook import workspace
from tests.e2e._servers import UpProcess, cloche_command, cloche_up, server_env

pytestmark = pytest.mark.slow
NOTEBOOKS = Path(__file__).resolve().parents[2] / "examples" / "notebooks"
FEATURES = ["tenure", "spend", "visits", "age"]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[UpProcess]:
    with cloche_up(tmp_path / "home") as up:
        yield up


@pytest.fixture
def kernel_env(server: UpProcess, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """What `cloche notebook` gives its kernels, set here so nbclient's kernel inherits it."""
    env = workspace.kernel_env(Settings(home=server.home), server.url, None)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def execute(name: str, workdir: Path, **params: object) -> list[dict[str, Any]]:
    """Run examples/notebooks/NAME in ``workdir``, ``params`` set after its parameters cell's
    defaults (as papermill does); its code cells."""
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    cell = next(c for c in notebook.cells if "parameters" in c.metadata.get("tags", []))
    cell.source += "".join(f"\n{key} = {value!r}" for key, value in params.items())
    client = NotebookClient(
        notebook, timeout=240, kernel_name="python3", resources={"metadata": {"path": workdir}}
    )
    client.execute()
    return [c for c in notebook.cells if c.cell_type == "code"]


def html_of(cell: dict[str, Any]) -> str:
    return "".join(o.get("data", {}).get("text/html", "") for o in cell["outputs"])


def plain_of(cell: dict[str, Any]) -> str:
    return "".join(o.get("data", {}).get("text/plain", "") for o in cell["outputs"])


def test_the_pipeline_notebook_runs_the_rollout_and_draws_it(
    server: UpProcess,
    kernel_env: dict[str, str],
    sklearn_model_file: Path,
    iris_like: tuple[np.ndarray, np.ndarray],
    tmp_path: Path,
) -> None:
    X, y = iris_like
    holdout = pd.DataFrame(X, columns=FEATURES).assign(label=y)
    holdout.to_parquet(tmp_path / "holdout.parquet")
    cells = execute(
        "pipeline_in_a_notebook.ipynb",
        tmp_path,
        MODEL_FILE=str(sklearn_model_file),
        HOLDOUT="holdout.parquet",
        MODEL_NAME="churn",
        ENDPOINT="churn",
        THRESHOLDS={"min_accuracy": 0.6},
    )
    source = {c["source"].splitlines()[-1]: c for c in cells}
    assert server.url in plain_of(source["client.url"])
    defined = html_of(source["rollout"])  # the graph before the run: no states yet
    assert set(re.findall(r'data-step="([^"]+)"', defined)) == {
        "upload_model", "create_endpoint", "evaluate_model", "deploy_model"
    }  # fmt: skip
    watched = html_of(source["result = run.watch()"])  # updated in place to the end
    states = dict(re.findall(r'data-step="([^"]+)" data-state="([^"]+)"', watched))
    assert states == dict.fromkeys(
        ["upload_model", "create_endpoint", "evaluate_model", "deploy_model"], "succeeded"
    )
    assert "<svg" in watched and "<script" not in watched and ": succeeded</p>" in watched
    assert plain_of(source["result.state, result.step_states()"]).startswith("('succeeded'")
    assert "<td>churn:1 100%</td>" in html_of(source["client.endpoints.get(ENDPOINT)"])
    assert "<td>churn:1</td>" in html_of(source["client.models.get(MODEL_NAME)"])
    with cloche.Client(server.url) as client:  # the server itself serves what the run deployed
        assert client.endpoints.get("churn").traffic() == {"churn:1": 100}


def _drifted_monitor(server: UpProcess, model_file: Path, tmp_path: Path) -> None:
    """churn:1 with a baseline, deployed, 400 requests drifted on spend, one monitor run."""
    rng = np.random.default_rng(1)
    baseline = tmp_path / "baseline.parquet"
    pd.DataFrame({f: rng.normal(size=3_000) for f in FEATURES}).to_parquet(baseline)
    X = rng.normal(size=(400, 4))
    X[:, 1] += 3.0
    with cloche.Client(server.url) as client:
        client.models.upload(model_file, name="churn")
        client.models.attach_baseline("churn:1", baseline)
        client.endpoints.create("churn")
        client.endpoints.deploy("churn", "churn:1")
        with httpx.Client(base_url=server.url, headers=server.auth, timeout=30) as http:
            ready = lambda: http.post("/v1/models/churn:predict", json={"instances": []})  # noqa: E731
            _wait_for(lambda: ready().status_code != 404, server.proc)  # the deploy reached it
            for chunk in np.array_split(X, 8):
                answer = http.post("/v1/models/churn:predict", json={"instances": chunk.tolist()})
                assert answer.status_code == 200, answer.text
        client.monitors.create("churn", name="churn", alerts=["log"])
        run = client.monitors.run("churn")
    assert run.status == "breached" and "skew:spend" in run.breaches


def test_the_monitor_notebook_shows_runs_and_alerts_as_tables(
    server: UpProcess, kernel_env: dict[str, str], sklearn_model_file: Path, tmp_path: Path
) -> None:
    _drifted_monitor(server, sklearn_model_file, tmp_path)
    cells = execute("monitor_runs.ipynb", tmp_path, MONITOR="churn")
    source = {c["source"].splitlines()[-1]: c for c in cells}
    monitor = html_of(source["client.monitors.get(MONITOR)"])
    assert "Monitors (1)" in monitor and "<td>churn</td>" in monitor
    runs = html_of(source["runs"])
    assert "Monitor runs (1)" in runs and "<td>breached</td>" in runs and "<td>400</td>" in runs
    assert "skew:spend" in runs
    features = plain_of(source["pd.DataFrame(rows)"])
    assert re.search(r"spend\s+skew\s+\S+\s+\S+\s+True", features), features
    alerts = html_of(source["client.alerts.list(monitor=MONITOR)"])
    assert "<td>skew:spend</td>" in alerts and "<td>open</td>" in alerts


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_cloche_notebook_starts_jupyterlab_whose_kernels_reach_the_server(
    server: UpProcess, tmp_path: Path
) -> None:
    from jupyter_client import BlockingKernelClient

    port, token, runtime = _free_port(), "nb-test-token", tmp_path / "runtime"
    env = server_env(server.home, {"JUPYTER_TOKEN": token, "JUPYTER_RUNTIME_DIR": str(runtime)})
    folder = tmp_path / "work" / "notebooks"
    log = (tmp_path / "lab.log").open("wb")
    proc = subprocess.Popen(
        cloche_command(
            "--url",
            server.url,
            "notebook",
            "--dir",
            str(folder),
            "--port",
            str(port),
            "--no-browser",
        ),
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        auth = {"Authorization": f"token {token}"}
        up = lambda: httpx.get(f"{base}/api/status", headers=auth).status_code == 200  # noqa: E731
        _wait_for(up, proc, tmp_path / "lab.log")
        listed = httpx.get(f"{base}/api/contents", headers=auth).json()["content"]
        assert sorted(item["name"] for item in listed) == [
            "continuous_rollout.ipynb", "monitor_runs.ipynb", "pipeline_in_a_notebook.ipynb",
            "weekly_scoring.ipynb",
        ]  # fmt: skip
        kernel = httpx.post(f"{base}/api/kernels", headers=auth, json={"name": "python3"}).json()
        client = BlockingKernelClient(connection_file=str(runtime / f"kernel-{kernel['id']}.json"))
        client.load_connection_file()
        client.start_channels()
        try:
            client.wait_for_ready(timeout=60)
            code = "import cloche, os; c = cloche.Client()\n"
            code += "print(c.endpoints.list(), c.url, os.getcwd())"
            found: list[str] = []
            reply = client.execute_interactive(
                code,
                timeout=60,
                output_hook=lambda m: found.append(m["content"].get("text", "")),
            )
        finally:
            client.stop_channels()
        assert reply["content"]["status"] == "ok", reply["content"]
        assert "".join(found).strip() == f"[] {server.url} {folder}"
    finally:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=20)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
    assert json.loads((folder / "monitor_runs.ipynb").read_text())["nbformat"] == 4


def _wait_for(
    check: Any, proc: subprocess.Popen[bytes], log: Path | None = None, timeout: float = 60
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            shown = log.read_text()[-3000:] if log is not None else ""
            raise AssertionError(f"{proc.args} exited with {proc.returncode}\n{shown}")
        with suppress(httpx.HTTPError):
            if check():
                return
        time.sleep(0.2)
    raise AssertionError("JupyterLab did not answer in time")


def test_without_the_extra_cloche_notebook_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from tests.e2e._cli import cloche as run_cli

    monkeypatch.setitem(sys.modules, "ipykernel", None)  # as if the extra were not installed
    result = run_cli("notebook", "--dir", tmp_path / "nb", "--no-browser")
    assert result.exit_code == 2, result.output
    assert "ipykernel" in result.output and "pip install 'cloche[notebook]'" in result.output
    assert not (tmp_path / "nb").exists()  # nothing prepared before the check


# The example pipelines as notebooks, on the guides' files (examples/make_churn.py)


@pytest.fixture
def churn_files(server: UpProcess) -> Path:
    """The folder the notebooks run in, with make_churn's models, data and customers; in the
    server's home, a folder its batch jobs may read and write."""
    folder = server.home / "work"
    subprocess.run(
        [sys.executable, str(NOTEBOOKS.parent / "make_churn.py"), str(folder)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return folder


def ending(cells: list[dict[str, Any]], line: str) -> list[dict[str, Any]]:
    """The cells whose last line is ``line``, in order."""
    return [c for c in cells if c["source"].splitlines()[-1] == line]


def graph_states(cell: dict[str, Any]) -> dict[str, str]:
    return dict(re.findall(r'data-step="([^"]+)" data-state="([^"]+)"', html_of(cell)))


def test_the_weekly_scoring_notebook_scores_drifted_customers_and_shows_the_drift(
    server: UpProcess, kernel_env: dict[str, str], churn_files: Path
) -> None:
    drifted = churn_files / "drifted"
    drifted.mkdir()
    for part in sorted((churn_files / "data" / "customers").glob("*.parquet")):
        rows = pd.read_parquet(part)
        rows["tenure_months"] = rows["tenure_months"] % 3 + 1  # only new customers this week
        rows.to_parquet(drifted / part.name)
    cells = execute("weekly_scoring.ipynb", churn_files, INPUT="drifted", OUTPUT="scored")
    [watched] = ending(cells, "result = run.watch()")
    assert graph_states(watched) == dict.fromkeys(
        ["batch_predict", "check_drift", "drift_report", "send_alert"], "succeeded"
    )
    [states] = ending(cells, "result.state, result.step_states()")
    assert plain_of(states).startswith("('succeeded'")
    [verdict] = ending(cells, "drift")
    assert "'drifted': True" in plain_of(verdict) and "'status': 'breached'" in plain_of(verdict)
    assert "skew:tenure_months" in plain_of(verdict)
    printed = "".join(o.get("text", "") for o in verdict["outputs"] if o["output_type"] == "stream")
    assert printed.startswith("This week's customers drifted: ") and "tenure_months" in printed
    [checked] = ending(cells, "checked")
    assert "<td>breached</td>" in html_of(checked) and "tenure_months" in html_of(checked)
    [features] = ending(cells, "pd.DataFrame(rows)")
    assert re.search(r"tenure_months\s+skew\s+\S+\s+\S+\s+True", plain_of(features))
    [scores] = ending(cells, "scores.head()")
    assert "<th>prediction</th>" in html_of(scores) and "<th>probability_1</th>" in html_of(scores)
    with cloche.Client(server.url) as client:  # the run is the server's record too
        [run] = client.pipelines.runs()
        assert (run.pipeline, run.state) == ("weekly-scoring", "succeeded")


def test_the_rollout_notebook_waits_for_its_approval_then_moves_prod(
    server: UpProcess, kernel_env: dict[str, str], churn_files: Path
) -> None:
    cells = execute("continuous_rollout.ipynb", churn_files, REQUESTS=50, COMMENT="looks fine")
    [waiting] = ending(cells, "now")
    states = graph_states(waiting)
    assert states["approval"] == "waiting" and states["check_endpoint"] == "succeeded"
    assert states["promote_alias"] == "pending"
    before, during, after = ending(cells, "client.endpoints.get(ENDPOINT)")
    assert "<td>churn:1 100%</td>" in html_of(before)
    assert "<td>churn:1 90%, churn:2 10%</td>" in html_of(during)  # prod has not moved yet
    [evidence] = ending(cells, "pd.DataFrame(evidence).T")
    assert re.search(r"check_endpoint\s.*True", plain_of(evidence)), plain_of(evidence)
    [ended] = ending(cells, 'result.state, result.latest()[("report", -1)].outputs["output"]')
    assert " ".join(plain_of(ended).split()) == (
        "('succeeded', {'traffic': {'churn:1': 0, 'churn:2': 100}, 'production': 'churn:2'})"
    )
    [prod] = ending(cells, "client.models.show(PRODUCTION).ref")
    assert plain_of(prod) == "'churn:2'"
    assert "<td>churn:1 0%, churn:2 100%</td>" in html_of(after)
    with cloche.Client(server.url) as client:  # the server itself serves what the run moved
        assert client.models.show("churn@prod").version == 2
        assert client.endpoints.get("churn").traffic() == {"churn:1": 0, "churn:2": 100}
        [listed] = client.pipelines.runs()
        decision = client.pipelines.get(listed.id).latest()[("approval", -1)].outputs
        assert decision["approved"] is True and decision["comment"] == "looks fine"
