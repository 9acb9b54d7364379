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
tree every 50 ms, the server's own processes apart from its transient children (payload-log
compaction, a model-measuring child). Before the budgeted server, each model's resident size is
measured (as a deploy beside a budgeted server does) and a server of the same command with no
bench model gives the idle footprint: the memory goal is the own processes' peak less that,
against budget + 300 MB. The hit-rate goal is judged on the skewed sweep's hot models, with the
ceiling any policy could reach under that budget printed beside it. Then one table and the
issue's goals, pass or fail.

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
    ceiling,
    judge,
    memory_lines,
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
MB = 1_000_000


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


def plans(
    names: list[str], rounds: int, skewed: int, seed: int
) -> tuple[dict[str, Plan], frozenset[str]]:
    """The same request order for every server: ``rounds`` shuffles of all models, then the
    skewed sweep (80% to ``HOT`` models); and which models are the hot ones."""
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
    return {"random": sweep, "skewed": skew}, frozenset(hot)


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
    samples: list[Sample] = []
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
    run.peak_rss, run.peak_own, run.transient_peak = (
        memory.peak,
        memory.peak_own,
        (memory.transient_peak),
    )
    return run


IDLE_SECONDS = 5.0  # sampled after the idle server is ready


def idle_footprint(cmd: list[str], work: Path, base: str, seconds: float) -> int:
    """The resident memory of a server's own processes with no bench model: the same command
    (workers, budget), on a home with one tiny forest deployed, so that each worker has
    imported scikit-learn and answered a warm-up as the measured server's workers have. Its
    transient children (the start-up compaction) are left out, as they are from the peak."""
    home = work / "idle-home"
    tiny = work / "tiny.joblib"
    _train_tiny(tiny)
    seed_store(home, {"tiny": tiny})
    log = work / "idle.log"
    print(f"idle footprint: starting (log {log})", file=sys.stderr)
    with running(cmd, cloche_env(home), log) as proc, PeakMemory(proc.pid) as memory:
        wait_ready(f"{base}/v2/health/ready", proc, log, timeout=seconds)
        time.sleep(IDLE_SECONDS)
    return memory.peak_own


def _train_tiny(path: Path) -> None:
    import joblib
    from sklearn.ensemble import RandomForestRegressor

    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, N_FEATURES))
    joblib.dump(RandomForestRegressor(n_estimators=1, max_depth=2).fit(X, X[:, 0]), path)


def seed_store(home: Path, files: dict[str, Path]) -> None:
    """Each model uploaded and deployed to an endpoint of its own name, in-process (SDK)."""
    import cloche

    client = cloche.Client(home=home)
    for name, path in files.items():
        client.models.upload(path, name=name, framework="sklearn")
        client.endpoints.create(name)
        client.endpoints.deploy(name, f"{name}:1", max_batch_size=8)
    print(f"uploaded and deployed {len(files)} models", file=sys.stderr)


def measure_sizes(home: Path, names: list[str]) -> list[int]:
    """Each version's resident size, measured (a child process each, before any server starts,
    so never in a measured process tree) and recorded, as a deploy beside a server with a
    budget does: the budgeted server then counts each model at its measured size."""
    from cloche.config import Settings
    from cloche.registry.service import resident_size
    from cloche.store.store import Store

    store = Store.open(Settings(home=home))
    try:
        sizes = [resident_size(store, f"{name}:1")[1] for name in names]
    finally:
        store.close()
    print(
        f"resident sizes: {min(sizes) / MB:.1f}-{max(sizes) / MB:.1f} MB, "
        f"mean {sum(sizes) / len(sizes) / MB:.1f} MB",
        file=sys.stderr,
    )
    return sizes


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
    plan, hot = plans(sorted(files), args.rounds, args.skewed, args.seed)
    runs: list[Run] = []
    sizes: list[int] = []
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
            sizes = measure_sizes(home, sorted(files))
            port = free_port()
            budgeted.idle_rss = idle_footprint(
                cloche_command(port, args.workers, args.model_memory),
                work,
                f"http://127.0.0.1:{port}",
                args.server_seconds,
            )
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
    print(table(runs, hot))
    for line in memory_lines(runs):
        print(line)
    if sizes and plan["skewed"]:
        hot_share = sum(name in hot for name, _ in plan["skewed"]) / len(plan["skewed"])
        share = budget // args.workers
        print(f"* {ceiling(sizes, share, len(hot), len(files), hot_share).line()}")
    print()
    for goal in judge(runs, hot):
        print(goal.line())


if __name__ == "__main__":
    main()
