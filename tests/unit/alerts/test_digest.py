"""One run, one message: the headline, every breached key with value and threshold, JSON."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

from cloche.alerts.digest import (
    MAX_LINES_PER_SECTION,
    AlertMessage,
    Breach,
    breach_from_results,
    breaches_from_results,
    build_message,
)
from cloche.alerts.lifecycle import Decision

RUN_AT = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
JS = "Jensen-Shannon divergence, log base 2"


def message(*breaches: Breach, resolved: tuple[str, ...] = ()) -> AlertMessage:
    return AlertMessage(
        monitor="churn-drift",
        endpoint="churn",
        run_at=RUN_AT,
        window_start=RUN_AT - timedelta(hours=1),
        window_end=RUN_AT,
        breaches=breaches,
        resolved=resolved,
    )


def test_the_headline_counts_drifted_features() -> None:
    m = message(
        Breach("drift:tenure", 0.41, 0.3, JS), Breach("drift:spend", 0.52, 0.3, JS, new=False)
    )
    assert m.headline == "cloche: 2 features drifted on endpoint churn (monitor churn-drift)"
    assert m.text.splitlines()[0] == m.headline
    assert m.subject == "[cloche] 2 features drifted on churn (monitor churn-drift)"


def test_every_breach_is_named_with_its_value_threshold_and_definition() -> None:
    m = message(
        Breach("drift:tenure", 0.41234, 0.3, JS),
        Breach("quality:missing_rate:age", 0.35, 0.2, "share of rows with the feature missing"),
        Breach("latency:p99", 812.0, 500.0, new=False),
    )
    text = m.text
    assert "drift:tenure = 0.4123, threshold 0.3 (Jensen-Shannon divergence, log base 2)" in text
    assert "quality:missing_rate:age = 0.35, threshold 0.2 (share of rows" in text
    assert "latency:p99 = 812, threshold 500" in text
    new, ongoing = text.index("New:"), text.index("Still breached:")
    assert new < text.index("drift:tenure") < ongoing < text.index("latency:p99")
    assert "Run at 2025-06-01 12:00:00 UTC over 2025-06-01 11:00:00 UTC to" in text
    assert "(window 1h)" in text
    assert "cloche monitors show churn-drift" in text


def test_the_headline_lists_each_kind_of_breach_in_a_fixed_order() -> None:
    m = message(
        Breach("latency:p99", 900, 500),
        Breach("quality:missing_rate:age", 0.4, 0.2),
        Breach("drift:spend", 0.5, 0.3),
        Breach("skew:tenure", 0.5, 0.3),
        Breach("performance:accuracy", 0.7, 0.8),
        Breach("custom:thing", 1, 0),
    )
    assert m.headline == (
        "cloche: 1 feature skewed from the baseline, 1 feature drifted, "
        "1 data-quality check failed, 1 performance metric breached, "
        "1 latency threshold exceeded, 1 custom check breached "
        "on endpoint churn (monitor churn-drift)"
    )


def test_resolved_keys() -> None:
    only = message(resolved=("drift:a", "skew:b"))
    assert only.headline == "cloche: 2 alerts resolved on endpoint churn (monitor churn-drift)"
    assert "Resolved:\n  - drift:a\n  - skew:b" in only.text
    one = message(Breach("health:error_rate", 0.1, 0.05), resolved=("drift:a",))
    assert one.headline == (
        "cloche: 1 health check failed on endpoint churn (monitor churn-drift); 1 resolved"
    )
    assert message(resolved=("drift:a",)).headline.startswith("cloche: 1 alert resolved")


def test_an_unknown_value_is_said_so() -> None:
    assert "drift:a = unknown, threshold unknown" in message(Breach("drift:a")).text


def test_names_cannot_break_the_subject_or_the_lines() -> None:
    m = AlertMessage(
        monitor="m\r\nBcc: x@example.com",
        endpoint="e",
        run_at=RUN_AT,
        window_start=RUN_AT,
        window_end=RUN_AT,
        breaches=(Breach("drift:a\nb", 1, 0),),
    )
    assert "\n" not in m.subject and "\r" not in m.subject
    assert "  - drift:a b = 1, threshold 0" in m.text


def test_long_lists_are_cut_in_the_text_but_not_in_the_dict() -> None:
    many = [Breach(f"drift:f{i:03}", 0.5, 0.3) for i in range(MAX_LINES_PER_SECTION + 7)]
    m = message(*many)
    assert "... and 7 more" in m.text
    assert "drift:f056" not in m.text
    assert len(m.to_dict()["breaches"]) == MAX_LINES_PER_SECTION + 7
    assert m.headline.startswith(f"cloche: {MAX_LINES_PER_SECTION + 7} features drifted")


def test_to_dict_is_json() -> None:
    m = message(Breach("quality:missing_rate:age", 0.35, 0.2, "share"), resolved=("drift:a",))
    body = json.loads(json.dumps(m.to_dict()))
    assert body["monitor"] == "churn-drift" and body["endpoint"] == "churn"
    assert body["run_at"] == "2025-06-01T12:00:00+00:00"
    assert body["window_start"] == "2025-06-01T11:00:00+00:00"
    assert body["headline"] == m.headline
    assert body["resolved"] == ["drift:a"]
    assert body["breaches"] == [
        {
            "key": "quality:missing_rate:age",
            "check": "quality",
            "name": "age",
            "value": 0.35,
            "threshold": 0.2,
            "definition": "share",
            "new": True,
        }
    ]


def test_times_are_shown_in_utc() -> None:
    paris = timezone(timedelta(hours=2))
    m = AlertMessage(
        monitor="m",
        endpoint="e",
        run_at=datetime(2025, 6, 1, 14, 0, tzinfo=paris),
        window_start=datetime(2025, 6, 1, 13, 30, tzinfo=paris),
        window_end=datetime(2025, 6, 1, 14, 0, tzinfo=paris),
    )
    assert "Run at 2025-06-01 12:00:00 UTC" in m.text and "(window 30min)" in m.text
    assert m.to_dict()["run_at"] == "2025-06-01T12:00:00+00:00"


# --- from a decision and a run's results ---------------------------------------------------


def test_build_message_lists_open_alerts_and_resolved_not_pending() -> None:
    decision = Decision(
        open=("drift:b",),
        renotify=("drift:a",),
        resolve=("skew:z",),
        quiet=("drift:c",),
        pending=("drift:d",),
    )
    details = {k: Breach(k, 0.5, 0.3) for k in ("drift:a", "drift:b", "drift:d")}
    m = build_message(
        decision,
        details,
        monitor="m",
        endpoint="e",
        run_at=RUN_AT,
        window_start=RUN_AT - timedelta(hours=1),
        window_end=RUN_AT,
    )
    assert m is not None
    assert [(b.key, b.new) for b in m.breaches] == [
        ("drift:b", True),
        ("drift:a", False),
        ("drift:c", False),
    ]
    assert m.breaches[2].value is None  # no details given: listed anyway
    assert m.resolved == ("skew:z",)
    assert "drift:d" not in m.text
    assert m.headline == "cloche: 3 features drifted on endpoint e (monitor m); 1 resolved"


def test_build_message_sends_nothing_when_the_decision_is_quiet() -> None:
    quiet = Decision(quiet=("drift:a",), pending=("drift:b",))
    args = {"window_start": RUN_AT, "window_end": RUN_AT, "run_at": RUN_AT}
    assert build_message(quiet, {}, monitor="m", endpoint="e", **args) is None


RESULTS = {
    "features": {
        "tenure": {
            "kind": "numeric",
            "drift": {"value": 0.41, "threshold": 0.3, "metric": "js", "log_base": 2},
            "skew": {"value": 0.2, "threshold": 0.3, "definition": "PSI, 10 bins"},
            "quality": {"missing_rate": {"value": 0.35, "threshold": 0.2, "breached": True}},
        }
    },
    "health": {"p99_ms": {"value": 812.0, "threshold": 500.0, "breached": True}},
    "performance": {"accuracy": {"value": 0.71, "threshold": 0.8}},
}


def test_breaches_are_read_from_a_runs_results() -> None:
    found = breaches_from_results(
        [
            "drift:tenure",
            "skew:tenure",
            "quality:missing_rate:tenure",
            "health:p99_ms",
            "performance:accuracy",
        ],
        RESULTS,
    )
    assert found["drift:tenure"] == Breach("drift:tenure", 0.41, 0.3, JS)
    assert found["skew:tenure"].definition == "PSI, 10 bins"
    quality = found["quality:missing_rate:tenure"]
    assert (quality.value, quality.threshold, quality.name) == (0.35, 0.2, "tenure")
    assert quality.definition == "share of rows with the feature missing"
    assert found["health:p99_ms"] == Breach(
        "health:p99_ms", 812.0, 500.0, "99th percentile latency, ms"
    )
    assert (found["performance:accuracy"].value, found["performance:accuracy"].name) == (
        0.71,
        "accuracy",
    )


def test_a_key_missing_from_the_results_still_gives_a_breach() -> None:
    for key in ("drift:nope", "quality:missing_rate:nope", "latency:p99", "odd"):
        found = breach_from_results(key, RESULTS)
        assert found.key == key and found.value is None and found.threshold is None
    weird = {"features": {"tenure": {"drift": {"value": "n/a", "threshold": True}}}}
    assert breach_from_results("drift:tenure", weird).value is None
    assert breach_from_results("drift:tenure", {"features": []}).value is None
