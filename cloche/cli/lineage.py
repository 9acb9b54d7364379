"""``cloche lineage REF``: what made a model version, endpoint, batch job or run artifact (the
run, the step, its inputs and their makers), and what it went on to make."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.tree import Tree

from cloche.cli._common import JsonOpt, get_client
from cloche.cli._output import out, print_json
from cloche.lineage.entities import Lineage, Product, StepOrigin

MAX_VALUE_CHARS = 60
REPEATED = " [dim](shown above)[/]"


def lineage(
    ctx: typer.Context,
    ref: Annotated[
        str,
        typer.Argument(
            metavar="REF",
            help="A model version (churn:3, churn@prod), an endpoint name, a batch job id "
            "(bj_…) or a run's artifact (RUN/STEP/OUTPUT).",
        ),
    ],
    json_: JsonOpt = False,
) -> None:
    """Show which pipeline run and step made REF, from what, and what REF went on to make."""
    found = get_client(ctx).lineage.get(ref)
    if json_:
        print_json(found)
        return
    out.print(render(found))


def render(found: Lineage) -> Tree:
    kind = found.kind.replace("_", " ")
    same = found.id == found.ref
    tree = Tree(f"[bold]{escape(found.id)}[/] ({kind}{'' if same else ', ' + escape(found.ref)})")
    made_by = tree.add("[bold]made by[/]")
    if found.note:
        made_by.add(escape(found.note))
    for origin in found.made_by:
        _add_origin(made_by, origin)
    made = tree.add("[bold]made[/]")
    if not found.made:
        made.add("nothing yet")
    for product in found.made:
        _add_product(made, product)
    return tree


def _add_origin(parent: Tree, origin: StepOrigin) -> None:
    what = f"{origin.relation} {origin.target}".strip()
    cached = f", cached from run {origin.cached_from}" if origin.cached_from else ""
    node = parent.add(
        f"{escape(what)}: run {origin.run_id} ({escape(origin.pipeline)}), "
        f"step {escape(origin.step)}{cached}{REPEATED if origin.repeated else ''}"
    )
    for item in origin.inputs:
        child = node.add(f"input {escape(item.name)} = {escape(_short(item.value))}")
        if item.made_by is not None:
            _add_origin(child, item.made_by)
        else:
            child.label = f"{child.label} ({escape(item.source)})"


def _add_product(parent: Tree, product: Product) -> None:
    kind = product.kind.replace("_", " ")
    repeated = REPEATED if product.repeated else ""
    node = parent.add(f"{kind} {escape(product.id)}: {escape(product.relation)}{repeated}")
    for child in product.made:
        _add_product(node, child)


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 1] + "…"
