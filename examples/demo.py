"""cloche in two minutes: train a churn model, register two versions, serve one, watch it.

Run with `make demo` (or `python examples/demo.py`); it also works pasted into a notebook cell.
Everything lands in `.cloche-demo/` next to the repo, wiped at the start so re-runs are clean.
It leaves the registry ready for the console's first walk (docs/guides/console.md): churn:1 on
`prod` serving the endpoint, churn:2 on `staging` to canary, an open drift alert that part of the
demo's traffic (drifted on purpose) set off, and the continuous-rollout pipeline registered.
"""

from __future__ import annotations

import dataclasses
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import joblib
import numpy as np
import pandas as pd
from rich.console import Console
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

import cloche

if TYPE_CHECKING:  # imported by the steps after the first prediction, which use it
    import httpx

# In a notebook there is no __file__; run the cell from the repository root then.
ROOT = Path(__file__).resolve().parents[1] if "__file__" in globals() else Path.cwd()
HOME = ROOT / ".cloche-demo"
WORK = HOME / "work"
NUMERIC = ["tenure_months", "monthly_spend", "support_calls"]
console = Console(highlight=False)


@dataclasses.dataclass
class Split:
    """The customers the models train on and the held-out ones they are judged on."""

    X_train: pd.DataFrame
    y_train: np.ndarray
    X_test: pd.DataFrame
    y_test: np.ndarray
    auc1: float = 0.0


def step(title: str) -> None:
    console.rule(f"[bold cyan]{title}", align="left")


def cloche_command() -> list[str]:
    """The `cloche` script of this interpreter's environment, else the one on PATH."""
    beside = Path(sys.executable).with_name("cloche")
    found = str(beside) if beside.exists() else shutil.which("cloche")
    if found is None:
        raise SystemExit("the `cloche` command is not installed: run `pip install -e .` first")
    return [found]


def make_customers(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Synthetic customers; churn rises with support calls and falls with tenure."""
    rng = np.random.default_rng(seed)
    plan = rng.choice(["basic", "pro", "enterprise"], size=n, p=[0.5, 0.35, 0.15])
    tenure = rng.integers(1, 72, size=n)
    spend = rng.gamma(2.0, 30.0, size=n) + np.select(
        [plan == "pro", plan == "enterprise"], [20.0, 80.0], 0.0
    )
    calls = rng.poisson(1.5, size=n)
    # Step effects (new customers, 4+ calls) that a linear model misses and boosting finds.
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(port: int) -> tuple[subprocess.Popen[str], queue.Queue[str]]:
    """`cloche up` in the background; its stdout lines arrive on a queue."""
    server = subprocess.Popen(
        [*cloche_command(), "up", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert server.stdout is not None
        for line in server.stdout:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return server, lines


def wait_for_banner(lines: queue.Queue[str], timeout: float = 60) -> tuple[str, str]:
    """The URL `cloche up` prints when it starts, and the local admin token it wrote."""
    url = ""
    started = False
    deadline = time.monotonic() + timeout
    while not started and time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            continue
        console.print(f"  [dim]server |[/] {line.rstrip()}", markup=True, soft_wrap=True)
        if m := re.search(r"running at (http://\S+)", line):
            url = m.group(1)
        started = "Ctrl-C" in line  # the banner's last line: the token file is written
    if not (url and started):
        raise SystemExit("cloche up did not start; see its output above")
    # What `cloche tokens local` prints; the CLI and SDK read it by themselves on loopback.
    return url, (HOME / "local-token").read_text().strip()


def register_first(client: cloche.Client) -> Split:
    """Steps 1-2: train v1 and register it as churn:1 on `prod`; returns the data split."""
    step("1. Train a churn classifier (v1: logistic regression)")
    X, y = make_customers(4000, seed=7)
    data = Split(X[:3000], y[:3000], X[3000:], y[3000:])
    v1 = pipeline(LogisticRegression(max_iter=200)).fit(data.X_train, data.y_train)
    data.auc1 = roc_auc_score(data.y_test, v1.predict_proba(data.X_test)[:, 1])
    joblib.dump(v1, WORK / "churn-v1.joblib")
    data.X_train.to_parquet(WORK / "train.parquet")  # the training data becomes the baseline
    # The rollout pipeline judges a candidate against prod on these labelled rows.
    data.X_test.assign(churned=data.y_test).to_parquet(WORK / "holdout.parquet")
    console.print(f"trained on {len(data.X_train)} rows; holdout AUC {data.auc1:.3f}")
    console.print(data.X_train.head(3).to_string(index=False))

    step("2. Register it as churn:1 and point `prod` at it")
    first = client.models.upload(
        WORK / "churn-v1.joblib",
        name="churn",
        baseline=WORK / "train.parquet",
        aliases=["prod"],
        labels={"team": "growth"},
        metrics={"auc": data.auc1},
        description="logistic regression",
    )
    console.print(f"registered {first.ref} ({first.framework}), aliases {first.aliases}")
    console.print(
        "  (CLI: cloche models upload churn-v1.joblib --name churn --baseline train.parquet "
        "--alias prod --label team=growth)",
        style="dim",
        soft_wrap=True,
    )
    return data


def predict_with_prod(client: cloche.Client, rows: pd.DataFrame) -> None:
    step("3. Load churn@prod through the SDK and predict")
    model = client.models.load("churn@prod")  # file hashes are checked before loading
    scored = rows.assign(
        churn=model.predict(rows), p_churn=model.predict_proba(rows)[:, 1].round(3)
    )
    console.print(scored.to_string(index=False))
    console.print("first prediction made (SDK, churn@prod)")


def register_second(client: cloche.Client, data: Split) -> None:
    """Step 4: train v2 and register it as churn:2 on `staging`."""
    # Imported here, after the first prediction: the demo's start is mostly imports.
    from sklearn.ensemble import GradientBoostingClassifier

    step("4. Train v2 (gradient boosting), register it on `staging`")
    v2 = pipeline(GradientBoostingClassifier(n_estimators=80, random_state=0))
    v2.fit(data.X_train, data.y_train)
    auc2 = roc_auc_score(data.y_test, v2.predict_proba(data.X_test)[:, 1])
    joblib.dump(v2, WORK / "churn-v2.joblib")
    second = client.models.upload(
        WORK / "churn-v2.joblib",
        name="churn",
        baseline=WORK / "train.parquet",
        aliases=["staging"],
        labels={"team": "growth"},
        metrics={"auc": auc2},
        description="gradient boosting",
    )
    console.print(f"registered {second.ref}: holdout AUC {auc2:.3f} vs {data.auc1:.3f} for v1")
    # Not promoted here: the console walk canaries it and the rollout pipeline promotes it.
    console.print("prod stays on churn:1 until churn:2 has been canaried (see the end)")
    console.print("  (CLI, when you are sure: cloche models alias churn:2 prod)", style="dim")


def show_cli() -> None:
    step("5. The registry through the CLI")
    commands = [["models", "list"], ["models", "show", "churn@prod"]]
    env = dict(os.environ)
    if console.is_terminal:  # keep the CLI's colours and width although we capture it
        env.update(FORCE_COLOR="1", COLUMNS=str(console.width))
    # Both start at once: each spends most of its time importing, and they only read.
    running = [
        subprocess.Popen(
            [*cloche_command(), *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for args in commands
    ]
    for args, proc in zip(commands, running, strict=True):
        output, _ = proc.communicate(timeout=60)
        console.print(f"[bold]$ cloche {' '.join(args)}[/]")
        sys.stdout.write(output)
        if proc.returncode != 0:
            raise SystemExit(f"`cloche {' '.join(args)}` failed with exit {proc.returncode}")
    console.print(
        "Look at: prod on churn:1, staging on churn:2; the signature cloche inferred from the "
        "pipeline and the baseline (plan is a string with its categories); each file's sha256.",
        style="yellow",
        soft_wrap=True,
    )


def show_rest(lines: queue.Queue[str]) -> tuple[str, str]:
    import httpx

    step("6. The same registry through REST (`cloche up`, started in the background)")
    url, token = wait_for_banner(lines)
    headers = {"Authorization": f"Bearer {token}"}
    deadline = time.monotonic() + 30
    while True:
        try:
            models = httpx.get(f"{url}/api/v1/models", headers=headers, timeout=5)
            break
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    models.raise_for_status()
    auth = '-H "Authorization: Bearer $(cloche tokens local)"'
    console.print(f"[bold]$ curl {auth} {url}/api/v1/models[/]", soft_wrap=True)
    console.print(f"  -> {[m['name'] for m in models.json()]}")
    prod = httpx.get(f"{url}/api/v1/models/churn/versions/@prod", headers=headers, timeout=5)
    prod.raise_for_status()
    body = prod.json()
    console.print(
        f"[bold]$ curl {auth} {url}/api/v1/models/churn/versions/@prod[/]", soft_wrap=True
    )
    console.print(
        f"  -> {body['name']}:{body['version']} {body['framework']}, aliases "
        f"{body['aliases']}, inputs {[f['name'] for f in body['signature']['inputs']]}",
        soft_wrap=True,
    )
    return url, token


def serve(client: cloche.Client, url: str, token: str, rows: pd.DataFrame) -> None:
    import httpx

    step("7. Serve it: an endpoint with churn@prod (churn:1) on all traffic")
    client.endpoints.create("churn", description="churn risk for the retention team")
    endpoint = client.endpoints.deploy("churn", "churn@prod")
    console.print(f"traffic: {endpoint.traffic()}")
    console.print(
        "  (CLI: cloche endpoints create churn && cloche endpoints deploy churn churn@prod)",
        style="dim",
        soft_wrap=True,
    )
    headers = {"Authorization": f"Bearer {token}"}
    instances = rows.head(2).to_dict(orient="records")
    predict = f"{url}/v1/models/churn:predict"
    with httpx.Client(headers=headers, timeout=10) as http:
        # The workers pick the deploy up within a second or so once its models are loaded;
        # on a busy machine the first load (importing scikit-learn) can take several.
        deadline = time.monotonic() + 60
        while http.post(predict, json={"instances": instances}).status_code != 200:
            if time.monotonic() > deadline:
                break
            time.sleep(0.2)
        seen = send_traffic(http, predict, rows)
        example = http.post(predict, json={"instances": instances}).json()
        body = '{"instances": [{"plan": "pro", "tenure_months": 3, ...}]}'
        console.print(f"[bold]$ curl -d '{body}' {predict}[/]", soft_wrap=True)
        console.print(f"  -> {example}", soft_wrap=True)
        console.print(f"200 requests answered by version: {dict(sorted(seen.items()))}")
        # OIP v2: one tensor per feature, strings as BYTES.
        tensors = [
            {"name": "plan", "datatype": "BYTES", "shape": [1], "data": ["pro"]},
            {"name": "tenure_months", "datatype": "INT64", "shape": [1], "data": [3]},
            {"name": "monthly_spend", "datatype": "FP64", "shape": [1], "data": [70.5]},
            {"name": "support_calls", "datatype": "INT64", "shape": [1], "data": [4]},
        ]
        v1 = http.post(f"{url}/v2/models/churn/versions/1/infer", json={"inputs": tensors})
        console.print(f"[bold]$ curl {url}/v2/models/churn/versions/1/infer[/] (OIP v2)")
        console.print(
            f"  -> {v1.status_code} {v1.json().get('outputs', v1.json())}", soft_wrap=True
        )
        metrics = http.get(f"{url}/metrics").text.splitlines()
    console.print(f"[bold]$ curl {url}/metrics[/] (excerpt)")
    for line in metrics:
        if line.startswith("cloche_requests_total"):
            console.print(f"  {line}")
    time.sleep(1.2)  # workers publish their payload-log counters once a second
    logs = subprocess.run(
        [*cloche_command(), "logs", "churn", "--limit", "5"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    console.print("[bold]$ cloche logs churn --limit 5[/]")
    sys.stdout.write(logs.stdout)
    console.print(
        "Look at: every answered request is in the payload log with its inputs, outputs and "
        "latency.",
        style="yellow",
        soft_wrap=True,
    )


def send_traffic(http: httpx.Client, predict: str, rows: pd.DataFrame) -> dict[int, int]:
    """200 requests of two customers each; the second half only new customers (tenure 1-3
    months), a drift on purpose for the monitor to find. Returns requests per version."""
    usual = rows.head(200)
    drifted = rows.iloc[200:400].assign(tenure_months=lambda f: f["tenure_months"] % 3 + 1)
    seen: dict[int, int] = {}
    for batch in (usual, drifted):
        for i in range(0, len(batch), 2):
            instances = batch.iloc[i : i + 2].to_dict(orient="records")
            r = http.post(predict, json={"instances": instances})
            if r.status_code == 200:
                seen[r.json()["version"]] = seen.get(r.json()["version"], 0) + 1
    return seen


def watch(client: cloche.Client) -> None:
    step("8. Watch it: a drift monitor, and the rollout pipeline for churn:2")
    # 0.1: half the traffic drifted gives a JS divergence near 0.17, the rest stays under 0.01.
    client.monitors.create("churn", skew_threshold=0.1)
    run = client.monitors.run("churn")  # the server would run it hourly; once now, by hand
    console.print(f"monitor churn: {run.status} over {run.rows} rows; breaches {run.breaches}")
    for alert in client.alerts.list(state="open"):
        console.print(f"open alert {alert.id}: {alert.key} {alert.value:.2f} > {alert.threshold}")
    console.print(
        "  (CLI: cloche monitors create churn --skew-threshold 0.1 && cloche monitors run churn)",
        style="dim",
        soft_wrap=True,
    )
    registered = client.pipelines.register(
        ROOT / "examples" / "pipelines" / "continuous_rollout.py"
    )
    console.print(f"pipeline {registered.name} registered (version {registered.version})")
    console.print(
        "Look at: the second half of the demo's traffic was only new customers (tenure 1-3 "
        "months), on purpose: the monitor found tenure_months skewed from the training data.",
        style="yellow",
        soft_wrap=True,
    )


def show_console_tour(url: str) -> None:
    """Where the web console is, and the first walk the demo left ready there."""
    console.print(f"  open {url}/console in a browser on this machine", soft_wrap=True)
    console.print(
        '    and press "Sign in with this machine\'s local credential". Then, without the CLI: '
        "Endpoints > churn: deploy churn:2 as a 10% canary beside churn:1 and watch both "
        "versions' latency as requests come in; Alerts: the drift alert the demo's traffic "
        "opened (tenure_months), acknowledge it; Pipelines > continuous-rollout: start a run, "
        "open it, approve its waiting step; Models > churn: prod has moved to the new version.",
        soft_wrap=True,
    )


def batch_score() -> None:
    step("Batch prediction: score a file of customers with churn@prod, no endpoint needed")
    customers, _ = make_customers(20_000, seed=7)
    customers.insert(0, "customer_id", [f"c{i:05d}" for i in range(len(customers))])
    source = WORK / "customers.parquet"
    customers.to_parquet(source, index=False)
    out = WORK / "scores"
    args = ["batch", "run", "churn@prod", "--input", str(source), "--output", str(out)]
    args += ["--id-column", "customer_id", "--chunk-rows", "5000", "--workers", "1"]
    console.print(f"[bold]$ cloche {' '.join(args)}[/]", soft_wrap=True)
    subprocess.run([*cloche_command(), *args], check=True, timeout=120)
    first = pd.read_parquet(sorted(out.glob("predictions-*.parquet"))[0])
    console.print(first.head(3).to_string(index=False))
    console.print(
        f"Look at: {out.relative_to(ROOT)}/ holds one predictions file per chunk and "
        "manifest.json (model hash, input files, row counts); `cloche batch list` shows the job.",
        style="yellow",
        soft_wrap=True,
    )


def stop(server: subprocess.Popen[str]) -> None:
    server.send_signal(signal.SIGTERM)
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()
    console.print(f"server stopped (exit {server.returncode})")


def main() -> None:
    shutil.rmtree(HOME, ignore_errors=True)
    WORK.mkdir(parents=True)
    os.environ["CLOCHE_HOME"] = str(HOME)  # the CLI and server subprocesses share this registry
    for key in ("CLOCHE_URL", "CLOCHE_TOKEN"):
        os.environ.pop(key, None)
    with cloche.Client(home=HOME) as client:
        client.models.list()  # creates the registry now, so the server does not race us to it
        data = register_first(client)
        predict_with_prod(client, data.X_test.head(5))
        # Started only now: on two cores, its processes' imports (the server's and two
        # workers') delayed the first prediction by seconds. It starts while v2 trains.
        server, lines = start_server(free_port())
        try:
            register_second(client, data)
            show_cli()
            url, token = show_rest(lines)
            serve(client, url, token, data.X_test)
        finally:
            stop(server)
        watch(client)  # the server has flushed its payload log: the monitor reads it all
    batch_score()

    step("Done")
    home = HOME.relative_to(ROOT)
    console.print(f"The demo registry stays in {home}/. Look around with:")
    console.print(f"  CLOCHE_HOME={home} cloche models show churn")
    console.print(f"  CLOCHE_HOME={home} cloche audit")
    console.print(f"  CLOCHE_HOME={home} cloche logs churn --since 1h")
    console.print(
        f"  CLOCHE_HOME={home} cloche export churn@prod --out churn-edge --with-wheels"
        "   # an offline bundle: see churn-edge/README.md",
        soft_wrap=True,
    )
    # From work/, where the rollout pipeline's default files (churn-v2.joblib, holdout.parquet)
    # are: the server runs the pipelines started in the console in its own folder.
    console.print(f"  cd {home}/work && CLOCHE_HOME=.. cloche up   # then, in another shell:")
    show_console_tour("http://127.0.0.1:8080")
    base = "http://127.0.0.1:8080/api/v1"
    auth = f'-H "Authorization: Bearer $(CLOCHE_HOME={home} cloche tokens local)"'
    console.print(f"  curl {auth} {base}/models/churn/versions/@prod", soft_wrap=True)
    console.print(
        f"  curl {auth} -X PUT {base}/models/churn/aliases/prod "
        "-H 'Content-Type: application/json' -d '{\"version\": 1}'",
        soft_wrap=True,
    )
    console.print("  open http://127.0.0.1:8080/api/docs")


if __name__ == "__main__":
    main()
