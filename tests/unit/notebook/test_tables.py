"""SDK results render as HTML tables in a notebook: a row per item, every value escaped, lists
of one known type included, anything else left to its plain form."""

from __future__ import annotations

from datetime import UTC, datetime

from cloche.endpoints.entities import Deployment, Endpoint
from cloche.monitoring.entities import Alert, MonitorRun
from cloche.notebook.display import enable, html_for
from cloche.registry.entities import ModelDetail, ModelVersion

WHEN = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)


def version(n: int, **extra: object) -> ModelVersion:
    return ModelVersion(
        name="churn",
        version=n,
        framework="sklearn",
        sha256="0" * 64,
        size_bytes=1000 + n,
        files={},
        signature={},
        created_at=WHEN,
        **extra,  # type: ignore[arg-type]
    )


def alert(n: int, key: str) -> Alert:
    return Alert(id=n, monitor="churn", key=key, state="open", opened_at=WHEN, value=0.5,
                 threshold=0.3)  # fmt: skip


def test_a_list_of_alerts_is_a_table_with_a_row_each() -> None:
    html = html_for([alert(1, "skew:spend"), alert(2, "drift:age")])
    assert html is not None and html.startswith('<table class="cloche-table">')
    assert html.count("<tr>") == 3  # the header and two rows
    assert "<caption" in html and "Alerts (2)" in html
    assert "<td>skew:spend</td>" in html and "<td>2026-03-01 12:30:00</td>" in html


def test_values_are_escaped_and_nothing_runs_or_loads() -> None:
    html = html_for(version(1, metrics={"note": "<script>alert(1)</script>"}, created_by="<b>"))
    assert html is not None
    assert "<script" not in html and "&lt;script&gt;" in html and "&lt;b&gt;" in html
    assert "http" not in html  # no style sheet, font or image fetched


def test_a_model_shows_its_summary_then_its_versions() -> None:
    detail = ModelDetail(
        name="churn",
        latest_version=2,
        version_count=2,
        framework="sklearn",
        aliases={"prod": 1},
        created_at=WHEN,
        updated_at=WHEN,
        versions=[version(1, aliases=["prod"]), version(2)],
    )
    html = html_for(detail)
    assert html is not None
    assert "Model churn" in html and "prod=1" in html
    assert "<td>churn:1</td>" in html and "<td>churn:2</td>" in html


def test_an_endpoint_shows_its_traffic_split() -> None:
    deployment = Deployment(
        id=1,
        model="churn",
        version=3,
        framework="sklearn",
        traffic=100,
        shadow=False,
        max_batch_size=32,
        timeout_ms=1000,
        created_at=WHEN,
    )
    endpoint = Endpoint(name="churn", deployments=[deployment], created_at=WHEN, updated_at=WHEN)
    html = html_for(endpoint)
    assert html is not None and "<td>churn:3 100%</td>" in html


def test_long_values_are_cut_and_breaches_listed() -> None:
    run = MonitorRun(id=7, monitor="churn", started_at=WHEN, window_start=WHEN, window_end=WHEN,
                     status="breached", rows=400, breaches=["skew:spend", "drift:spend"],
                     message="x" * 500)  # fmt: skip
    html = html_for([run])
    assert html is not None
    assert "<td>skew:spend, drift:spend</td>" in html and "x" * 119 + "…" in html
    assert "x" * 121 not in html


def test_other_values_and_mixed_or_empty_lists_keep_their_plain_form() -> None:
    assert html_for([1, 2]) is None
    assert html_for([]) is None
    assert html_for([alert(1, "a"), version(1)]) is None
    assert html_for("text") is None


def test_in_ipython_the_formatters_render_lists_and_single_results() -> None:
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    try:
        assert enable(shell)
        data, _ = shell.display_formatter.format([alert(1, "skew:spend")])
        assert "<td>skew:spend</td>" in data["text/html"]
        plain, _ = shell.display_formatter.format([1, 2])
        assert "text/html" not in plain and plain["text/plain"] == "[1, 2]"
    finally:
        InteractiveShell.clear_instance()


def test_outside_ipython_enable_does_nothing() -> None:
    assert enable() is False
