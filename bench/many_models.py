"""Many models on one server: memory, hit rate and latency with and without a memory budget,
against MLServer's multi-model serving, in one run (issue 19, point 10).

N RandomForestRegressor models of about 40 MB each (different seeds and data, trained once and
cached under .cache/bench-many-models/), each deployed to its own endpoint of one `cloche up`
with 2 workers. Each server gets the same two sweeps, one request (one row) at a time:

- random: every model, in a new random order each round (``--rounds``);
- skewed: ``--skewed`` requests, 80% of them to 5 models, the rest spread over the others.

Every answer is checked against the model's own predict on the same row, computed here. The
servers: cloche with no budget (every worker loads every model), cloche with
``--model-memory 600MiB`` (skipped, with the reason, while `cloche up` lacks the flag) and
MLServer (its own venv under .cache/bench-mlserver-venv, one model-settings.json per model, its
V2 REST infer endpoint). A thread samples the resident memory of each server's whole process
tree every 50 ms. Then one table and the issue's goals, pass or fail.

    .venv/bin/python bench/many_models.py        # 50 models: ~6 min (+10-40 s a model, once)
    .venv/bin/python bench/many_models.py --models 10 --skewed 200
    .venv/bin/python bench/many_models.py --models 6 --no-mlserver

Loopback only; each server runs at most ``--server-seconds`` and is stopped on exit, Ctrl-C or
an error.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import pickle
import random
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
from _many_models_report import (
    MIB,
    Run,
    Sample,
    cache_mark,
    judge,
    parse_size,
    prometheus_sum,
    table,
)
from _many_models_servers import (
    REPO,
    PeakMemory,
    cloche_command,
    cloche_env,
    ensure_mlserver,
    free_port,
    knows_model_memory,
    mlserver_models_dir,
    running,
    wait_ready,
)

N_FEATURES = 20
N_ROWS = 20_000  # training rows: fully grown trees of ~1.5 MB each
ROWS_PER_MODEL = 8  # distinct request rows per model, their answers computed here
LOADS_METRIC = "cloche_model_loads_total"  # by model and worker, with the memory budget
HOT = 5  # the skewed sweep's hot models
HOT_SHARE = 0.8
CACHE = REPO / ".cache" / "bench-many-models"


# --- models --------------------------------------------------------------------------------


def model_files(count: int, megabytes: int) -> dict[str, Path]:
    """``count`` model files, trained now or found in the cache (keyed by size, data and the
    library versions that pickled them)."""
    import sklearn

    key = hashlib.sha256(
        f"rf|{megabytes}|{N_ROWS}|{N_FEATURES}|{sklearn.__version__}|{np.__version__}".encode()
    ).hexdigest()[:12]
    folder = CACHE / f"rf-{megabytes}mb-{key}"
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for i in range(count):
        path = folder / f"many-{i:03d}.joblib"
        if not path.exists():
            started = time.monotonic()
            _train(i, megabytes * 10**6, path)
            print(
                f"trained {path.name} ({path.stat().st_size / 1e6:.0f} MB, "
                f"{time.monotonic() - started:.1f} s)",
                file=sys.stderr,
            )
        files[path.stem] = path
    return files


def _train(seed: int, target_bytes: int, path: Path) -> None:
    import joblib
    from sklearn.ensemble import RandomForestRegressor

    rng = np.random.default_rng(seed)
    X = rng.normal(size=(N_ROWS, N_FEATURES))
    w = rng.normal(size=N_FEATURES)
    y = X @ w + np.sin(X[:, 0] * 3) * X[:, 1] + rng.normal(scale=0.5, size=N_ROWS)
    # One tree first, to learn how many make the target size; then grow the rest onto it.
    model = RandomForestRegressor(
        n_estimators=1, max_features=0.3, random_state=seed, n_jobs=1, warm_start=True
    )
    model.fit(X, y)
    per_tree = len(pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL))
    model.set_params(n_estimators=max(1, round(target_bytes / per_tree)))
    model.fit(X, y)
    partial = path.with_suffix(".partial")
    joblib.dump(model, partial)
    partial.rename(path)  # never a half-written file in the cache


@dataclass(frozen=True)
class Expected:
    rows: list[list[float]]
    answers: list[float]


def expected_answers(files: dict[str, Path], seed: int) -> dict[str, Expected]:
    """Request rows per model and the model's own predict on each, one model in memory at a
    time (this process's memory is not the servers')."""
    import joblib

    rng = np.random.default_rng(seed + 1000)
    out = {}
    for name, path in files.items():
        rows = rng.normal(size=(ROWS_PER_MODEL, N_FEATURES)).round(6)
        model = joblib.load(path)
        out[name] = Expected(rows.tolist(), [float(v) for v in model.predict(rows)])
        del model
    return out


# --- sweeps --------------------------------------------------------------------------------

Plan = list[tuple[str, int]]  # (model, row index) per request


def plans(names: list[str], rounds: int, skewed: int, seed: int) -> dict[str, Plan]:
    """The same request order for every server: ``rounds`` shuffles of all models, then the
    skewed sweep (80% to ``HOT`` models)."""
    rng = random.Random(seed)
    sweep: Plan = []
    for _ in range(rounds):
        order = names[:]
        rng.shuffle(order)
        sweep += [(name, rng.randrange(ROWS_PER_MODEL)) for name in order]
    hot = rng.sample(names, min(HOT, len(names)))
    cold = [n for n in names if n not in hot] or hot
    skew: Plan = [
        (rng.choice(hot if rng.random() < HOT_SHARE else cold), rng.randrange(ROWS_PER_MODEL))
        for _ in range(skewed)
    ]
    return {"random": sweep, "skewed": skew}


class Target:
    """How to ask one kind of server for one row's prediction."""

    def __init__(self, base: str, protocol: str) -> None:
        self.base, self.protocol = base, protocol

    def ask(self, client: httpx.Client, model: str, row: list[float]) -> tuple[float, str | None]:
        if self.protocol == "v1":
            r = client.post(f"{self.base}/v1/models/{model}:predict", json={"instances": [row]})
            r.raise_for_status()
            return float(r.json()["predictions"][0]), cache_mark(r.headers)
        body = {"inputs": [{"name": "input-0", "shape": [1, len(row)], "datatype": "FP64",
                            "data": row}]}  # fmt: skip
        r = client.post(f"{self.base}/v2/models/{model}/infer", json=body)
        r.raise_for_status()
        return float(r.json()["outputs"][0]["data"][0]), None


def sweep(
    target: Target, plan: Plan, expected: dict[str, Expected], deadline: float
) -> list[Sample]:
    """One request at a time, each timed and checked; stops at ``deadline``."""
    samples = []
    with httpx.Client(timeout=120) as client:
        for model, i in plan:
            if time.monotonic() > deadline:
                print(f"  time is up after {len(samples)} of {len(plan)} requests", file=sys.stderr)
                break
            want = expected[model]
            started = time.perf_counter()
            try:
                got, mark = target.ask(client, model, want.rows[i])
                ok = bool(np.isclose(got, want.answers[i], rtol=1e-9, atol=0))
            except (httpx.HTTPError, KeyError, IndexError, ValueError) as exc:
                print(f"  {model}: {exc}", file=sys.stderr)
                mark, ok = None, False
            samples.append(Sample(model, (time.perf_counter() - started) * 1000, ok, mark))
    return samples


def warm(target: Target, expected: dict[str, Expected], passes: int) -> None:
    """A few requests to every model, uncounted: with 2 workers, each likely served once."""
    with httpx.Client(timeout=120) as client:
        for _ in range(passes):
            for model, want in expected.items():
                # A model that fails here fails in the sweeps too, where it is counted.
                with contextlib.suppress(httpx.HTTPError, KeyError, IndexError, ValueError):
                    target.ask(client, model, want.rows[0])


def loads_total(base: str, settle: float = 0.0) -> float | None:
    """All workers' model loads so far, from cloche's /metrics (None when it has no such
    count). ``settle``: the workers publish their cache state a moment after it changes."""
    time.sleep(settle)
    try:
        r = httpx.get(f"{base}/metrics", timeout=10)
    except httpx.HTTPError:
        return None
    return prometheus_sum(r.text, LOADS_METRIC) if r.status_code == 200 else None


def measure(
    run: Run,
    cmd: list[str],
    env: dict[str, str] | None,
    target: Target,
    work: Path,
    plan: dict[str, Plan],
    expected: dict[str, Expected],
    seconds: float,
) -> Run:
    log = work / f"{run.label.replace(' ', '-').replace(',', '')}.log"
    print(f"{run.label}: starting (log {log})", file=sys.stderr)
    deadline = time.monotonic() + seconds
    with running(cmd, env or {}, log) as proc, PeakMemory(proc.pid) as memory:
        wait_ready(f"{target.base}/v2/health/ready", proc, log, timeout=seconds)
        if run.all_resident:
            warm(target, expected, passes=3)
        for name, requests in plan.items():
            before = loads_total(target.base)
            run.sweeps[name] = sweep(target, requests, expected, deadline)
            after = loads_total(target.base, settle=1.0)
            if before is not None and after is not None:
                run.loads[name] = int(after - before)
            print(f"{run.label}: {name} sweep done", file=sys.stderr)
    run.peak_rss = memory.peak
    return run


def seed_store(home: Path, files: dict[str, Path]) -> None:
    """Each model uploaded and deployed to an endpoint of its own name, in-process (SDK)."""
    import cloche

    client = cloche.Client(home=home)
    for name, path in files.items():
        client.models.upload(path, name=name, framework="sklearn")
        client.endpoints.create(name)
        client.endpoints.deploy(name, f"{name}:1", max_batch_size=8)
    print(f"uploaded and deployed {len(files)} models", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=50, help="how many models (default 50)")
    parser.add_argument("--model-mb", type=int, default=40, help="size of each model file, MB")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--model-memory", default="600MiB", help="the budgeted server's budget")
    parser.add_argument("--rounds", type=int, default=2, help="random-order passes over all")
    parser.add_argument("--skewed", type=int, default=500, help="requests in the skewed sweep")
    parser.add_argument("--server-seconds", type=float, default=900, help="bound per server")
    parser.add_argument("--no-mlserver", action="store_true", help="skip the MLServer column")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.models < 1 or args.model_mb < 1 or args.workers < 1:
        parser.error("--models, --model-mb and --workers must be at least 1")
    try:
        budget = parse_size(args.model_memory)
    except ValueError as exc:
        parser.error(f"--model-memory: {exc}")
    # SIGTERM unwinds like Ctrl-C, through the blocks that stop the servers (each runs in a
    # session of its own, so no signal to this process reaches them).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    files = model_files(args.models, args.model_mb)
    expected = expected_answers(files, args.seed)
    plan = plans(sorted(files), args.rounds, args.skewed, args.seed)
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="cloche-many-") as tmp:
        work = Path(tmp)
        home = work / "home"
        seed_store(home, files)
        env = cloche_env(home)
        port = free_port()
        target = Target(f"http://127.0.0.1:{port}", "v1")
        runs.append(
            measure(
                Run("cloche, no budget", None, all_resident=True),
                cloche_command(port, args.workers, None),
                env,
                target,
                work,
                plan,
                expected,
                args.server_seconds,
            )
        )
        budgeted = Run(f"cloche, {args.model_memory}", budget)
        if knows_model_memory():
            port = free_port()
            runs.append(
                measure(
                    budgeted,
                    cloche_command(port, args.workers, args.model_memory),
                    env,
                    Target(f"http://127.0.0.1:{port}", "v1"),
                    work,
                    plan,
                    expected,
                    args.server_seconds,
                )
            )
        else:
            budgeted.skipped = (
                "this `cloche up` has no --model-memory yet (the memory budget is not merged)"
            )
            print(f"{budgeted.label}: {budgeted.skipped}", file=sys.stderr)
            runs.append(budgeted)
        if args.no_mlserver:
            runs.append(Run("MLServer", None, skipped="--no-mlserver"))
        else:
            mlserver = ensure_mlserver()
            port = free_port()
            root = mlserver_models_dir(work / "mlserver", files, args.workers, port)
            runs.append(
                measure(
                    Run("MLServer", None, all_resident=True),
                    [str(mlserver), "start", str(root)],
                    {"PATH": f"{mlserver.parent}:/usr/bin:/bin", "HOME": str(work)},
                    Target(f"http://127.0.0.1:{port}", "v2"),
                    work,
                    plan,
                    expected,
                    args.server_seconds,
                )
            )
    print()
    print(
        f"{args.models} models of ~{args.model_mb} MB, {args.workers} workers each, "
        f"{args.rounds} random rounds + {args.skewed} skewed requests, one at a time; "
        f"budget {budget / MIB:.0f} MiB"
    )
    print(table(runs))
    print()
    for goal in judge(runs):
        print(goal.line())


if __name__ == "__main__":
    main()
