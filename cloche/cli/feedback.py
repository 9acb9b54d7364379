"""``cloche feedback``: send ground-truth labels for requests an endpoint answered."""

from pathlib import Path
from typing import Annotated, Any

import typer

from cloche.cli._common import JsonOpt, get_client
from cloche.cli._output import out, print_json, success
from cloche.errors import InvalidInput
from cloche.monitoring.entities import FeedbackResult

BATCH = 10_000  # labels per call, the server's limit


def feedback(
    ctx: typer.Context,
    endpoint: Annotated[str, typer.Argument(metavar="ENDPOINT", help="The endpoint's name.")],
    file: Annotated[
        Path,
        typer.Argument(
            metavar="FILE", help="CSV, JSON lines or Parquet with request_id and label columns."
        ),
    ],
    json_: JsonOpt = False,
) -> None:
    """Send ground-truth labels by request id; monitors grade the model with them.

    Ids not in the endpoint's payload log of the last 30 days are reported and not stored;
    a second label for a request replaces the first.
    """
    from cloche.registry.datasets import read_table

    table = read_table(file)
    missing = [c for c in ("request_id", "label") if c not in table.column_names]
    if missing:
        raise InvalidInput(
            f"{file.name} has no {' or '.join(missing)} column",
            hint=f"its columns: {', '.join(table.column_names)}",
        )
    ids = table["request_id"].to_pylist()
    values = table["label"].to_pylist()
    labels: list[dict[str, Any]] = []
    for i, (rid, label) in enumerate(zip(ids, values, strict=True)):
        if rid is None or label is None:
            raise InvalidInput(f"{file.name} row {i + 1}: request_id and label must both be set")
        labels.append({"request_id": str(rid), "label": label})
    client = get_client(ctx)
    total = FeedbackResult(accepted=0, replaced=0, unknown_request_ids=[])
    for start in range(0, len(labels), BATCH):
        found = client.monitors.feedback(endpoint, labels[start : start + BATCH])
        total = FeedbackResult(
            accepted=total.accepted + found.accepted,
            replaced=total.replaced + found.replaced,
            unknown_request_ids=total.unknown_request_ids + found.unknown_request_ids,
        )
    if json_:
        print_json(total)
        return
    success(
        f"{total.accepted} labels stored for {endpoint} ({total.replaced} replaced earlier ones)"
    )
    unknown = total.unknown_request_ids
    if unknown:
        shown = ", ".join(unknown[:10]) + (", ..." if len(unknown) > 10 else "")
        out.print(f"{len(unknown)} unknown request ids, not stored: {shown}")
