"""``cloche monitors`` and ``cloche alerts``: watch endpoints, see runs, acknowledge alerts."""

from typing import Annotated, Any

import typer
from pydantic import BaseModel, ValidationError
from rich.table import Table

from cloche.cli._common import JsonOpt, YesOpt, get_client, parse_pairs
from cloche.cli._output import new_table, out, print_json, success, when
from cloche.durations import parse_duration
from cloche.errors import InvalidInput
from cloche.monitoring.entities import (
    Alert,
    HealthThresholds,
    Monitor,
    MonitorRun,
    PerformanceThresholds,
    QualityThresholds,
)

app = typer.Typer(help="Monitors: skew, drift, data quality and health.", no_args_is_help=True)
alerts_app = typer.Typer(help="Alerts raised by monitors.", no_args_is_help=True)

NameArg = Annotated[str, typer.Argument(metavar="MONITOR", help="A monitor's name (or id).")]


def seconds(value: str, option: str) -> int:
    """``"1h"``, ``"30m"``, ``"6h"``, ``"1d"`` as seconds."""
    duration = parse_duration(value)
    if duration is None:
        raise InvalidInput(f"{option} {value!r} is not a duration", hint="e.g. 30m, 1h, 6h, 1d")
    return int(duration.total_seconds())


@app.command()
def create(
    ctx: typer.Context,
    endpoint: Annotated[str, typer.Argument(metavar="ENDPOINT", help="The endpoint to watch.")],
    name: Annotated[
        str | None, typer.Option(help="Monitor name (default: the endpoint's).")
    ] = None,
    every: Annotated[str, typer.Option(help="How often it runs, e.g. 1h.")] = "1h",
    window: Annotated[str, typer.Option(help="The traffic each run looks at, e.g. 1h.")] = "1h",
    skew_threshold: Annotated[float, typer.Option(min=0.0)] = 0.3,
    drift_threshold: Annotated[float, typer.Option(min=0.0)] = 0.3,
    feature: Annotated[
        list[str] | None, typer.Option(help="NAME=THRESHOLD for one feature (repeatable).")
    ] = None,
    metric: Annotated[
        str, typer.Option(help="Numeric features: js, psi, ks or wasserstein.")
    ] = "js",
    alert: Annotated[
        list[str] | None,
        typer.Option(
            help="webhook:URL, webhook:env:VAR (the URL read from $VAR when sent), email:ADDR, "
            "pipeline:NAME (queues a run of that registered pipeline) or log (repeatable)."
        ),
    ] = None,
    cooldown: Annotated[str, typer.Option(help="Re-notify an open alert after this.")] = "6h",
    min_breaches: Annotated[int, typer.Option(min=1, help="Breaches needed in --of-runs.")] = 1,
    of_runs: Annotated[int, typer.Option(min=1, help="The runs --min-breaches counts.")] = 1,
    min_rows: Annotated[int, typer.Option(min=1, help="Fewer rows: no verdict.")] = 50,
    threshold: Annotated[
        list[str] | None,
        typer.Option(
            help="SECTION.NAME=VALUE for a quality, health or performance rule (repeatable; "
            "VALUE off turns it off), e.g. performance.min_accuracy=0.9, health.p99_ms=50."
        ),
    ] = None,
    json_: JsonOpt = False,
) -> None:
    """Watch an endpoint's traffic against its model's baseline and its own past."""
    thresholds = parse_pairs(feature, option="--feature", example="tenure=0.2")
    try:
        per_feature = {k: float(v) for k, v in thresholds.items()}
    except ValueError:
        raise InvalidInput(
            "--feature needs NAME=NUMBER", hint="e.g. --feature tenure=0.2"
        ) from None
    made = get_client(ctx).monitors.create(
        endpoint,
        name=name,
        every_s=seconds(every, "--every"),
        window_s=seconds(window, "--window"),
        skew_threshold=skew_threshold,
        drift_threshold=drift_threshold,
        feature_thresholds=per_feature,
        metric=metric,
        alerts=alert or [],
        cooldown_s=seconds(cooldown, "--cooldown"),
        min_breaches=min_breaches,
        of_runs=of_runs,
        min_rows=min_rows,
        **rule_thresholds(threshold),
    )
    if json_:
        print_json(made)
    else:
        success(f"monitor {made.name} watches {made.endpoint}; first run {when(made.next_run_at)}")
        out.print(f"Run it now: cloche monitors run {made.name}")


RULES: dict[str, type[BaseModel]] = {
    "quality": QualityThresholds,
    "health": HealthThresholds,
    "performance": PerformanceThresholds,
}


def rule_thresholds(values: list[str] | None) -> dict[str, dict[str, Any]]:
    """``--threshold SECTION.NAME=VALUE`` options as MonitorConfig sections, each checked."""
    example = "performance.min_accuracy=0.9"
    sections: dict[str, dict[str, Any]] = {}
    for key, raw in parse_pairs(values, option="--threshold", example=example).items():
        section, _, name = key.partition(".")
        model = RULES.get(section)
        if model is None or name not in model.model_fields:
            known = ", ".join(f"{s}.{n}" for s, m in RULES.items() for n in m.model_fields)
            raise InvalidInput(f"unknown --threshold {key!r}", hint=f"one of: {known}")
        sections.setdefault(section, {})[name] = None if raw.lower() == "off" else raw
    for section, given in sections.items():
        try:
            RULES[section].model_validate(given)
        except ValidationError as exc:
            problem = exc.errors()[0]
            where = f"{section}.{problem['loc'][0]}"
            raise InvalidInput(
                f"--threshold {where}: {problem['msg']}", hint=f"e.g. --threshold {example}"
            ) from None
    return sections


@app.command("list")
def list_(ctx: typer.Context, json_: JsonOpt = False) -> None:
    """List monitors."""
    found = get_client(ctx).monitors.list()
    if json_:
        print_json(found)
        return
    table = new_table(
        "Monitors",
        ("monitor", "endpoint", "every", "window", "alerts", "state", "next run"),
        whole=("monitor",),
        dates=("next run",),
    )
    for m in found:
        table.add_row(
            m.name,
            m.endpoint,
            f"{m.config.every_s}s",
            f"{m.config.window_s}s",
            ", ".join(m.config.alerts) or "-",
            "on" if m.enabled else "paused",
            when(m.next_run_at),
        )
    out.print(table if found else "No monitors. Create one: cloche monitors create ENDPOINT")


def features_table(run: MonitorRun) -> Table:
    table = Table(title=f"Run {run.id} of {run.monitor}: {run.status}", title_justify="left")
    for column in ("feature", "check", "value", "threshold", "verdict", "definition"):
        table.add_column(column)
    for name, entry in run.results.get("features", {}).items():
        for check in ("skew", "drift"):
            if check in entry:
                _distance_row(table, name, check, entry[check])
        for rule, v in entry.get("quality", {}).items():
            table.add_row(name, rule, _num(v["value"]), _num(v["threshold"]), _verdict(v), "")
    for metric, v in run.results.get("health", {}).items():
        table.add_row("(health)", metric, _num(v["value"]), _num(v["threshold"]), _verdict(v), "")
    predictions = run.results.get("predictions")
    if predictions:
        _predictions_row(table, predictions)
    performance = run.results.get("performance", {})
    for metric, v in performance.items():
        if isinstance(v, dict) and "value" in v:  # a metric, not the skipped mapping
            recorded = "" if v.get("recorded") is None else f"recorded {_num(v['recorded'])}"
            if metric in performance.get("skipped", {}):  # its reason is long: printed below
                v = {**v, "reason": "skipped: why below"}
            table.add_row(
                "(performance)",
                metric,
                _num(v["value"]),
                _num(v["threshold"]),
                _verdict(v),
                v.get("reason") or recorded,
            )
    return table


def _predictions_row(table: Table, entry: dict[str, Any]) -> None:
    """A batch job's predictions: skew from the baseline's, or the distribution alone."""
    if "skew" in entry:
        _distance_row(table, "(prediction)", "skew", entry["skew"])
        return
    if entry.get("kind") == "categorical":
        shape = ", ".join(f"{t['value']}: {t['share']:.1%}" for t in entry.get("top", [])[:5])
    else:
        q = entry.get("quantiles", {})
        shape = f"min {_num(entry.get('min'))}, median {_num(q.get('p50'))}, "
        shape += f"max {_num(entry.get('max'))}"
    table.add_row("(prediction)", "distribution", "-", "-", "no verdict", shape)


def _distance_row(table: Table, name: str, check: str, v: dict[str, Any]) -> None:
    table.add_row(name, check, _num(v["value"]), _num(v["threshold"]), _verdict(v), _definition(v))


def _definition(v: dict[str, Any]) -> str:
    text = str(v.get("metric", ""))
    if v.get("log_base"):
        text += f", log base {v['log_base']}"
    if v.get("source") == "sketch":
        text += f", from sketches (±{v.get('error_bound', 0):.3g})"
    return text


def _num(value: Any) -> str:
    return "-" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)


def _verdict(v: dict[str, Any]) -> str:
    if v.get("breached"):
        return "[red]BREACH[/]"
    # Runs stored before verdicts were recorded have none: "ok" is what they meant.
    verdict = v.get("verdict", "ok")
    return {"not evaluated": "[yellow]not evaluated[/]", "no threshold": "-"}.get(verdict, "ok")


def print_run(run: MonitorRun) -> None:
    out.print(features_table(run))
    if job := run.results.get("batch_job"):
        model = run.results.get("model", "")
        out.print(f"{run.rows} input rows of batch job {job} ({model}); {run.message}")
    else:
        window = f"{when(run.window_start)} - {when(run.window_end)}"
        out.print(f"{run.rows} rows in {window}; {run.message}")
    if note := run.results.get("note"):
        out.print(f"[yellow]{note}[/]")
    if note := run.results.get("predictions", {}).get("note"):
        out.print(f"[yellow]{note}[/]")
    _print_performance_notes(run.results.get("performance", {}))
    for check, why in run.results.get("not_applicable", {}).items():
        out.print(f"{check}: not applicable ({why})")
    for line in run.results.get("alerts", {}).get("summary", []):
        out.print(line)


def _print_performance_notes(performance: dict[str, Any]) -> None:
    if note := performance.get("note"):
        out.print(f"[yellow]performance: {note}[/]")
    for metric, why in performance.get("skipped", {}).items():
        out.print(f"performance: {metric} skipped ({why})", markup=False)


@app.command()
def show(ctx: typer.Context, name: NameArg, json_: JsonOpt = False) -> None:
    """A monitor's configuration and its latest run."""
    client = get_client(ctx)
    monitor, runs = client.monitors.get(name), client.monitors.runs(name, limit=10)
    if json_:
        print_json(
            {
                "monitor": monitor.model_dump(mode="json"),
                "runs": [r.model_dump(mode="json") for r in runs],
            }
        )
        return
    _print_monitor(monitor)
    if runs:
        print_run(runs[0])
        out.print("Earlier: " + ", ".join(f"{when(r.started_at)} {r.status}" for r in runs[1:]))
    else:
        out.print(f"No runs yet. Run it now: cloche monitors run {monitor.name}")


def _print_monitor(m: Monitor) -> None:
    c = m.config
    out.print(
        f"[bold]{m.name}[/] watches {m.endpoint} every {c.every_s}s over {c.window_s}s windows; "
        f"skew > {c.skew_threshold}, drift > {c.drift_threshold} ({c.metric} for numbers, "
        f"{c.categorical_metric} for categories); alerts: {', '.join(c.alerts) or 'none'}"
    )


@app.command()
def run(
    ctx: typer.Context,
    name: NameArg,
    batch_job: Annotated[
        str | None,
        typer.Option(
            "--batch-job",
            metavar="JOB",
            help="Compare this finished batch job (id or unique prefix) with its model "
            "version's baseline instead of the endpoint's traffic, under MONITOR's thresholds, "
            "metric and alerts (MONITOR is required: it holds them).",
        ),
    ] = None,
    json_: JsonOpt = False,
) -> None:
    """Run a monitor now over the window that ends now, or over a batch job's data."""
    found = get_client(ctx).monitors.run(name, batch_job=batch_job)
    print_json(found) if json_ else print_run(found)
    if found.status == "failed":
        raise typer.Exit(1)


@app.command()
def pause(ctx: typer.Context, name: NameArg) -> None:
    """Stop running on schedule."""
    get_client(ctx).monitors.pause(name)
    success(f"paused {name}")


@app.command()
def resume(ctx: typer.Context, name: NameArg) -> None:
    """Run on schedule again."""
    found = get_client(ctx).monitors.resume(name)
    success(f"resumed {name}; next run {when(found.next_run_at)}")


@app.command()
def delete(ctx: typer.Context, name: NameArg, yes: YesOpt = False) -> None:
    """Delete a monitor with its runs and alerts."""
    if not yes:
        typer.confirm(f"Delete monitor {name} with its runs and alerts?", abort=True)
    get_client(ctx).monitors.delete(name)
    success(f"deleted {name}")


def alerts_table(found: list[Alert]) -> Table:
    table = new_table(
        "Alerts",
        ("id", "monitor", "key", "state", "value", "threshold", "opened", "acked"),
        whole=("id",),
        dates=("opened",),
    )
    for a in found:
        table.add_row(
            str(a.id),
            a.monitor,
            a.key,
            a.state,
            _num(a.value),
            _num(a.threshold),
            when(a.opened_at),
            a.acked_by or "",
        )
    return table


@alerts_app.command("list")
def alerts_list(
    ctx: typer.Context,
    state: Annotated[str | None, typer.Option(help="open or resolved.")] = None,
    monitor: Annotated[str | None, typer.Option(help="Only this monitor's.")] = None,
    json_: JsonOpt = False,
) -> None:
    """Alerts, newest first."""
    found = get_client(ctx).alerts.list(state=state, monitor=monitor)
    if json_:
        print_json(found)
    else:
        out.print(alerts_table(found) if found else "No alerts.")


@alerts_app.command("show")
def alerts_show(ctx: typer.Context, alert_id: int, json_: JsonOpt = False) -> None:
    """One alert with its deliveries."""
    found = get_client(ctx).alerts.get(alert_id)
    if json_:
        print_json(found)
        return
    out.print(alerts_table([found]))
    for d in found.deliveries:
        state = "delivered" if d.get("ok") else f"FAILED: {d.get('last_error')}"
        out.print(f"  {d.get('channel')}: {state} after {d.get('attempts')} attempt(s)")


@alerts_app.command("ack")
def alerts_ack(ctx: typer.Context, alert_id: int) -> None:
    """Acknowledge an alert: not notified again while it stays open."""
    found = get_client(ctx).alerts.ack(alert_id)
    success(f"acknowledged alert {found.id} ({found.key})")
