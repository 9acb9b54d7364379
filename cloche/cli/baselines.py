"""``cloche baselines``: the dataset a version's monitors compare its traffic with."""

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from cloche.cli._common import JsonOpt, get_client
from cloche.cli._output import out, print_json, success

app = typer.Typer(
    help="Baselines: the reference data of skew and data quality.", no_args_is_help=True
)


@app.command()
def create(
    ctx: typer.Context,
    ref: Annotated[
        str, typer.Argument(metavar="MODEL_REF", help="A version: churn:3, churn@prod.")
    ],
    data: Annotated[
        Path,
        typer.Argument(metavar="DATA", exists=True, dir_okay=False, help="Parquet, CSV or JSONL."),
    ],
    json_: JsonOpt = False,
) -> None:
    """Attach (or replace) the baseline dataset of a version, and profile it now."""
    found = get_client(ctx).monitors.create_baseline(ref, data)
    if json_:
        print_json(found.model_dump(mode="json"))
        return
    success(
        f"{found.file} ({found.rows} rows, {len(found.columns)} columns) is the baseline of "
        f"{found.model}"
    )
    features = (found.profile or {}).get("features", {})
    if not features:
        return
    table = Table("feature", "kind", "missing", "summary")
    for name, feature in features.items():
        missing = feature["nulls"] / feature["count"] if feature["count"] else 0.0
        table.add_row(name, feature["kind"], f"{missing:.1%}", _summary(feature))
    out.print(table)


def _summary(feature: dict[str, Any]) -> str:
    if feature["kind"] == "numeric":
        if feature["min"] is None:
            return "no values"
        p50 = feature["quantiles"]["p50"]
        return f"min {feature['min']:.4g}  p50 {p50:.4g}  max {feature['max']:.4g}"
    top = ", ".join(f"{t['value']} {t['share']:.0%}" for t in feature["top"][:3])
    return top or "no values"
