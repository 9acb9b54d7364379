import os
from pathlib import Path

from cloche.serving.metrics import WorkerMetrics, publish, render


def _worker(pid: int, requests: int, queue: float) -> dict:
    m = WorkerMetrics()
    for _ in range(requests):
        m.request("churn", "churn:1", 200, 0.003)
    m.batch("churn:1", requests)
    snap = m.snapshot({"cloche_queue_rows": {'deployment="churn:1"': queue}})
    snap["pid"], snap["instance"] = pid, f"{pid}-{requests}"
    return snap


def test_workers_add_up_and_a_dead_workers_gauges_drop_out(tmp_path: Path) -> None:
    publish(tmp_path, _worker(os.getpid(), 3, 2.0))
    publish(tmp_path, _worker(2**22 + 12345, 4, 5.0))  # no such process
    text = render(tmp_path)
    assert "cloche_workers 1" in text
    assert 'cloche_requests_total{endpoint="churn",deployment="churn:1",status="200"} 7' in text
    assert 'cloche_request_seconds_bucket{endpoint="churn",le="0.005"} 7' in text
    assert 'cloche_request_seconds_count{endpoint="churn"} 7' in text
    assert 'cloche_queue_rows{deployment="churn:1"} 2' in text


def test_a_worker_reusing_a_dead_workers_pid_keeps_the_dead_ones_totals(tmp_path: Path) -> None:
    dead = _worker(os.getpid(), 3, 9.0)  # a killed worker whose pid the next one got
    publish(tmp_path, dead)
    past = os.stat(tmp_path / f"{dead['instance']}.json").st_mtime - 10
    os.utime(tmp_path / f"{dead['instance']}.json", (past, past))
    publish(tmp_path, _worker(os.getpid(), 4, 2.0))
    text = render(tmp_path)
    assert 'cloche_requests_total{endpoint="churn",deployment="churn:1",status="200"} 7' in text
    assert "cloche_workers 1" in text
    assert 'cloche_queue_rows{deployment="churn:1"} 2' in text  # the dead one's gauge dropped


def test_label_values_are_escaped(tmp_path: Path) -> None:
    m = WorkerMetrics()
    m.request('we"ird\\', "x:1", 404, 0.1)
    snap = m.snapshot({})
    snap["pid"] = os.getpid()
    publish(tmp_path, snap)
    assert 'endpoint="we\\"ird\\\\"' in render(tmp_path)


def test_explanations_are_counted_apart_from_predictions(tmp_path: Path) -> None:
    m = WorkerMetrics()
    m.request("churn", "churn:1", 200, 0.003)
    m.explain("churn", "churn:1", 200, 1.5)
    m.explain("churn", "churn:1", 422, 0.001)
    snap = m.snapshot({})
    snap["pid"] = os.getpid()
    publish(tmp_path, snap)
    old = m.snapshot({})  # a worker of a release without explain figures
    for key in ("explain_requests", "explain_latency"):
        del old[key]
    old["pid"], old["instance"] = 2**22 + 12345, "old"
    publish(tmp_path, old)
    text = render(tmp_path)
    assert 'cloche_requests_total{endpoint="churn",deployment="churn:1",status="200"} 2' in text
    assert 'cloche_request_seconds_count{endpoint="churn"} 2' in text
    assert (
        'cloche_explain_requests_total{endpoint="churn",deployment="churn:1",status="200"} 1'
        in text
    )
    assert (
        'cloche_explain_requests_total{endpoint="churn",deployment="churn:1",status="422"} 1'
        in text
    )
    assert 'cloche_explain_seconds_bucket{endpoint="churn",le="2.5"} 2' in text
    assert 'cloche_explain_seconds_count{endpoint="churn"} 2' in text


def test_latency_is_kept_per_deployment_and_added_up_per_endpoint(tmp_path: Path) -> None:
    m = WorkerMetrics()
    m.request("churn", "churn:1", 200, 0.003)
    m.request("churn", "churn:2", 200, 0.3)
    snap = m.snapshot({})
    by_deployment = {d: counts for _, d, counts, _ in snap["deployment_latency"]}
    assert sum(by_deployment["churn:1"]) == 1 and by_deployment["churn:1"][2] == 1
    assert by_deployment["churn:2"][8] == 1  # 0.3 s: the (0.25, 0.5] bucket
    snap["pid"] = os.getpid()
    publish(tmp_path, snap)
    assert 'cloche_request_seconds_count{endpoint="churn"} 2' in render(tmp_path)
