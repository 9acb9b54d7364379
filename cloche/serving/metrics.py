"""Prometheus metrics, counted in each worker and added up across workers when scraped.

The hot path only bumps integers in dicts (about a microsecond per request). Each worker
publishes its totals to a small JSON file once a second, and whichever worker answers
``GET /metrics`` sums every worker's file of this server, so the scrape sees the whole server
whatever worker the kernel hands it to.
"""

from __future__ import annotations

import bisect
import json
import os
import secrets
from collections import defaultdict
from pathlib import Path
from typing import Any

from cloche.processes import pid_alive

LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
# Cold-start stages take from milliseconds (a hash check) to minutes (a large download).
LOAD_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
LOAD_STAGES = ("fetch", "hash_check", "deserialise", "warm_up")
# Superseded by the histogram of the same name (by stage): a gauge a router still reports under
# it is left out of /metrics, where one name can have one type only.
LEGACY_LOAD_GAUGE = "cloche_model_load_seconds"
_instances: dict[int, str] = {}


def instance_id() -> str:
    """This process's name for its metrics file: its pid and a random part, so a process that
    reuses a dead worker's pid (a restarted container's workers do) never overwrites the dead
    one's totals. Per pid, so a forked child gets its own."""
    pid = os.getpid()
    if pid not in _instances:
        _instances[pid] = f"{pid}-{secrets.token_hex(4)}"
    return _instances[pid]


class Histogram:
    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    def to_dict(self) -> dict[str, Any]:
        return {"counts": self.counts, "sum": self.total}


class WorkerMetrics:
    """One worker's counters. All calls come from its event loop.

    Explanations are counted apart from predictions (``cloche_explain_*``): one takes up to
    seconds, and mixed in it would swamp the prediction latency histogram.
    """

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, int], int] = defaultdict(int)
        # Per (endpoint, deployment), so a canary's latency is seen beside its incumbent's;
        # /metrics adds them up per endpoint.
        self.latency: dict[tuple[str, str], Histogram] = {}
        self.batch_rows: dict[str, Histogram] = {}
        self.explain_requests: dict[tuple[str, str, int], int] = defaultdict(int)
        self.explain_latency: dict[str, Histogram] = {}
        # Made up front: loads observe from predict threads, and a dict that never grows can be
        # read by the snapshot meanwhile.
        self.model_load: dict[str, Histogram] = {s: Histogram(LOAD_BUCKETS_S) for s in LOAD_STAGES}

    def model_load_stage(self, stage: str, seconds: float) -> None:
        """One stage of one model load (model_cache.py), from whatever thread loaded it."""
        hist = self.model_load.get(stage)
        if hist is not None:
            hist.observe(seconds)

    def request(self, endpoint: str, deployment: str, status: int, seconds: float) -> None:
        self.requests[(endpoint, deployment, status)] += 1
        hist = self.latency.get((endpoint, deployment))
        if hist is None:
            hist = self.latency[(endpoint, deployment)] = Histogram(LATENCY_BUCKETS_S)
        hist.observe(seconds)

    def explain(self, endpoint: str, deployment: str, status: int, seconds: float) -> None:
        self.explain_requests[(endpoint, deployment, status)] += 1
        hist = self.explain_latency.get(endpoint)
        if hist is None:
            hist = self.explain_latency[endpoint] = Histogram(LATENCY_BUCKETS_S)
        hist.observe(seconds)

    def batch(self, deployment: str, rows: int) -> None:
        hist = self.batch_rows.get(deployment)
        if hist is None:
            hist = self.batch_rows[deployment] = Histogram(BATCH_BUCKETS)
        hist.observe(rows)

    def snapshot(self, gauges: dict[str, dict[str, float]]) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "instance": instance_id(),
            "requests": [[*k, v] for k, v in self.requests.items()],
            "latency": _per_endpoint(self.latency),
            "deployment_latency": [
                [endpoint, deployment, h.counts, h.total]
                for (endpoint, deployment), h in self.latency.items()
            ],
            "batch_rows": {k: h.to_dict() for k, h in self.batch_rows.items()},
            "explain_requests": [[*k, v] for k, v in self.explain_requests.items()],
            "explain_latency": {k: h.to_dict() for k, h in self.explain_latency.items()},
            "model_load": {k: h.to_dict() for k, h in self.model_load.items()},
            "gauges": gauges,
        }


def _per_endpoint(hists: dict[tuple[str, str], Histogram]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for (endpoint, _), hist in hists.items():
        _add(out, {endpoint: hist.to_dict()})
    return out


def publish(folder: Path, snapshot: dict[str, Any]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    name = snapshot.get("instance") or str(snapshot["pid"])
    tmp = folder / f".{name}.tmp"
    tmp.write_text(json.dumps(snapshot))
    tmp.replace(folder / f"{name}.json")


def render(folder: Path) -> str:
    """The Prometheus text exposition of every worker's last snapshot, added up."""
    requests: dict[tuple[str, str, int], int] = defaultdict(int)
    latency: dict[str, dict[str, Any]] = {}
    batches: dict[str, dict[str, Any]] = {}
    explains: dict[tuple[str, str, int], int] = defaultdict(int)
    explain_latency: dict[str, dict[str, Any]] = {}
    model_load: dict[str, dict[str, Any]] = {}
    gauges: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    workers = 0
    for snap, alive in _snapshots(folder):
        workers += alive
        for endpoint, deployment, status, count in snap["requests"]:
            requests[(endpoint, deployment, int(status))] += int(count)
        _add(latency, snap["latency"])
        _add(batches, snap["batch_rows"])
        # .get: a worker of an older release publishes no explain figures.
        for endpoint, deployment, status, count in snap.get("explain_requests", []):
            explains[(endpoint, deployment, int(status))] += int(count)
        _add(explain_latency, snap.get("explain_latency", {}))
        _add(model_load, snap.get("model_load", {}))
        # A dead worker's counts stay in the totals (counters never go down); its gauges,
        # which described a process that is gone, do not.
        for name, series in snap["gauges"].items():
            if name == LEGACY_LOAD_GAUGE:
                continue
            if not alive and not name.endswith("_total"):
                continue
            for label, value in series.items():
                gauges[name][label] += value
    out = [
        "# HELP cloche_workers Worker processes that reported metrics.",
        "# TYPE cloche_workers gauge",
        f"cloche_workers {workers}",
    ]
    out += _counter(
        "cloche_requests_total", "Data-plane requests by endpoint, deployment, status.", requests
    )
    out += _histogram(
        "cloche_request_seconds",
        "Request latency in seconds.",
        "endpoint",
        latency,
        LATENCY_BUCKETS_S,
    )
    out += _histogram(
        "cloche_batch_rows", "Rows per model call.", "deployment", batches, BATCH_BUCKETS
    )
    out += _counter(
        "cloche_explain_requests_total",
        "Explain requests by endpoint, deployment, status.",
        explains,
    )
    out += _histogram(
        "cloche_explain_seconds",
        "Explain latency in seconds.",
        "endpoint",
        explain_latency,
        LATENCY_BUCKETS_S,
    )
    out += _histogram(
        "cloche_model_load_seconds",
        "Model load time in seconds, by stage (fetch, hash_check, deserialise, warm_up).",
        "stage",
        model_load,
        LOAD_BUCKETS_S,
    )
    for name, series in _residency_gauges(folder.parent / "models").items():
        for label_text, value in series.items():
            gauges[name][label_text] += value
    help_text = {
        "cloche_queue_rows": "Rows waiting for the model, by deployment.",
        "cloche_model_resident_bytes": "Memory of each resident model, by worker.",
        "cloche_model_loads_total": "Loads of each model, by worker.",
        "cloche_model_evictions_total": "Evictions of each model to make room, by worker.",
        "cloche_model_last_used_seconds": "When each resident model last served (Unix time).",
        "cloche_model_memory_budget_bytes": "Each worker's share of the model memory budget.",
        "cloche_model_memory_used_bytes": "Memory of the models each worker holds.",
        "cloche_payload_log_rows_total": "Rows written to the payload log.",
        "cloche_payload_log_dropped_total": "Rows that could not be written to the payload log.",
    }
    for name, series in sorted(gauges.items()):
        kind = "counter" if name.endswith("_total") else "gauge"
        out += [f"# HELP {name} {help_text.get(name, name)}", f"# TYPE {name} {kind}"]
        for label, value in sorted(series.items()):
            text = _number(value)
            out.append(f"{name}{{{label}}} {text}" if label else f"{name} {text}")
    return "\n".join(out) + "\n"


def _residency_gauges(folder: Path) -> dict[str, dict[str, float]]:
    """Gauges from this server's model cache state files (model_cache.py): one series per model
    per worker, so a scrape shows what each worker holds. Dead workers' files are skipped."""
    out: dict[str, dict[str, float]] = defaultdict(dict)
    for path in sorted(folder.glob("*.json")):
        try:
            state = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        pid = int(state.get("pid", 0))
        if not pid_alive(pid):
            continue
        worker = str(pid)
        if state.get("budget_bytes"):
            out["cloche_model_memory_budget_bytes"][label(worker=worker)] = state["budget_bytes"]
        out["cloche_model_memory_used_bytes"][label(worker=worker)] = state.get("used_bytes", 0)
        for m in state.get("models", []):
            labels = label(model=str(m["model"]), version=str(m["version"]), worker=worker)
            out["cloche_model_loads_total"][labels] = m.get("loads", 0)
            out["cloche_model_evictions_total"][labels] = m.get("evictions", 0)
            if m.get("resident"):
                out["cloche_model_resident_bytes"][labels] = m.get("size_bytes") or 0
                if m.get("last_used"):
                    out["cloche_model_last_used_seconds"][labels] = m["last_used"]
    return out


def _snapshots(folder: Path) -> list[tuple[dict[str, Any], bool]]:
    """Every readable snapshot, and whether its process still runs: of several files naming one
    live pid, only the newest is that process; the others were dead workers' before it."""
    found: list[tuple[float, Path, dict[str, Any]]] = []
    for path in sorted(folder.glob("*.json")):
        try:
            found.append((path.stat().st_mtime, path, json.loads(path.read_text())))
        except (OSError, ValueError):
            continue
    newest: dict[int, Path] = {}
    for _, path, snap in sorted(found, key=lambda f: f[0]):
        newest[int(snap.get("pid", 0))] = path
    return [
        (snap, newest.get(pid := int(snap.get("pid", 0))) == path and pid_alive(pid))
        for _, path, snap in found
    ]


def _add(into: dict[str, dict[str, Any]], hists: dict[str, dict[str, Any]]) -> None:
    for key, hist in hists.items():
        if key not in into:
            into[key] = {"counts": list(hist["counts"]), "sum": hist["sum"]}
        else:
            into[key]["counts"] = [
                a + b for a, b in zip(into[key]["counts"], hist["counts"], strict=True)
            ]
            into[key]["sum"] += hist["sum"]


def _counter(name: str, help_text: str, counts: dict[tuple[str, str, int], int]) -> list[str]:
    out = [f"# HELP {name} {help_text}", f"# TYPE {name} counter"]
    for (endpoint, deployment, status), count in sorted(counts.items()):
        labels = f'endpoint="{_esc(endpoint)}",deployment="{_esc(deployment)}",status="{status}"'
        out.append(f"{name}{{{labels}}} {count}")
    return out


def _histogram(
    name: str,
    help_text: str,
    label: str,
    hists: dict[str, dict[str, Any]],
    bounds: tuple[float, ...],
) -> list[str]:
    out = [f"# HELP {name} {help_text}", f"# TYPE {name} histogram"]
    for key, hist in sorted(hists.items()):
        running = 0
        for bound, count in zip([*bounds, float("inf")], hist["counts"], strict=True):
            running += count
            le = "+Inf" if bound == float("inf") else f"{bound:g}"
            out.append(f'{name}_bucket{{{label}="{_esc(key)}",le="{le}"}} {running}')
        out.append(f'{name}_sum{{{label}="{_esc(key)}"}} {hist["sum"]:g}')
        out.append(f'{name}_count{{{label}="{_esc(key)}"}} {running}')
    return out


def _number(value: float) -> str:
    """A gauge's value in full: bytes and Unix times would lose digits to ``:g``."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _esc(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def label(**labels: str) -> str:
    return ",".join(f'{k}="{_esc(v)}"' for k, v in labels.items())


def read_snapshots(folder: Path) -> list[dict[str, Any]]:
    """Every worker's last snapshot in ``folder``, dead workers' included (their counts stand)."""
    return [snap for snap, _ in _snapshots(folder)]
