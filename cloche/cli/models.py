"""``cloche models``: upload, list, show, alias, baseline and delete registered models."""

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, SpinnerColumn, TextColumn
from rich.text import Text

from cloche.cli._common import JsonOpt, LabelsOpt, YesOpt, get_client, parse_pairs
from cloche.cli._output import (
    err,
    models_table,
    out,
    print_json,
    print_model,
    print_version,
    resident_table,
    success,
)
from cloche.errors import InvalidInput
from cloche.registry.refs import parse_ref

app = typer.Typer(help="Register and inspect models.", no_args_is_help=True)

RefArg = Annotated[
    str, typer.Argument(metavar="REF", help="A model reference: name, name:3 or name@prod.")
]
NameArg = Annotated[str, typer.Argument(metavar="NAME", help="A model name.")]
AliasArg = Annotated[str, typer.Argument(metavar="ALIAS", help="An alias, e.g. prod.")]
ExistingFile = Annotated[
    Path,
    typer.Argument(
        exists=True, dir_okay=False, metavar="FILE", help="A dataset file (Parquet or CSV)."
    ),
]


ModelPathArg = Annotated[
    Path,
    typer.Argument(exists=True, metavar="PATH", help="The model file, or a folder holding it."),
]
NameOpt = Annotated[
    str, typer.Option("--name", "-n", metavar="NAME", help="Model name, e.g. churn.")
]
FrameworkOpt = Annotated[
    str | None,
    typer.Option(
        "--framework",
        "-f",
        metavar="NAME",
        help="sklearn, xgboost, lightgbm, onnx, torch or custom; detected when omitted.",
        show_default=False,
    ),
]
SampleOpt = Annotated[
    Path | None,
    typer.Option(
        exists=True,
        dir_okay=False,
        metavar="FILE",
        show_default=False,
        help="A few input rows (Parquet/CSV) to infer the signature from.",
    ),
]
BaselineOpt = Annotated[
    Path | None,
    typer.Option(
        exists=True,
        dir_okay=False,
        metavar="FILE",
        show_default=False,
        help="The training data (Parquet/CSV), kept as the drift baseline.",
    ),
]
AliasesOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--alias",
        "-a",
        metavar="ALIAS",
        help="Point this alias at the new version (repeatable).",
        show_default=False,
    ),
]
MetricsOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--metric", "-m", metavar="KEY=NUMBER", help="A metric (repeatable).", show_default=False
    ),
]
DescriptionOpt = Annotated[str, typer.Option(metavar="TEXT", help="What this version is.")]


@app.command()
def upload(
    ctx: typer.Context,
    path: ModelPathArg,
    name: NameOpt,
    framework: FrameworkOpt = None,
    sample: SampleOpt = None,
    baseline: BaselineOpt = None,
    alias: AliasesOpt = None,
    label: LabelsOpt = None,
    metric: MetricsOpt = None,
    description: DescriptionOpt = "",
    json_: JsonOpt = False,
) -> None:
    """Register a model file or folder as the next version of NAME."""
    labels = parse_pairs(label, option="--label", example="team=growth")
    metrics = {
        k: _number(k, v)
        for k, v in parse_pairs(metric, option="--metric", example="auc=0.91").items()
    }
    client = get_client(ctx)
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    ) as bar:
        task = bar.add_task(f"uploading {path.name}", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)
            if done >= total:
                bar.update(task, description="checking the model")

        version = client.models.upload(
            path,
            name=name,
            framework=framework,
            sample=sample,
            baseline=baseline,
            aliases=alias or [],
            labels=labels,
            metrics=metrics,
            description=description,
            progress=progress,
        )
    if json_:
        print_json(version)
        return
    success(f"registered {version.ref} ({version.framework})")
    out.print()
    print_version(version)


def _number(key: str, value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise InvalidInput(f"metric {key!r} must be a number, got {value!r}") from None


@app.command("list")
def list_(
    ctx: typer.Context,
    label: LabelsOpt = None,
    search: Annotated[
        str | None,
        typer.Option(
            metavar="TEXT",
            help="Keep models whose name or description has this text.",
            show_default=False,
        ),
    ] = None,
    json_: JsonOpt = False,
) -> None:
    """List registered models."""
    labels = parse_pairs(label, option="--label", example="team=growth")
    found = get_client(ctx).models.list(labels=labels or None, search=search)
    if json_:
        print_json(found)
    elif not found:
        out.print("No models found. Register one with `cloche models upload PATH --name NAME`.")
    else:
        out.print(models_table(found))


@app.command()
def show(ctx: typer.Context, ref: RefArg, json_: JsonOpt = False) -> None:
    """Show a model (NAME: its versions) or one version (name:3, name@prod) with its signature."""
    parsed = parse_ref(ref)
    client = get_client(ctx)
    if parsed.version is None and parsed.alias is None:
        model = client.models.get(parsed.name)
        if json_:
            print_json(model)
        else:
            print_model(model)
        return
    version = client.models.show(ref)
    if json_:
        print_json(version)
    else:
        print_version(version)


@app.command()
def loaded(
    ctx: typer.Context,
    all_: Annotated[
        bool, typer.Option("--all", help="Also models loaded before and evicted since.")
    ] = False,
    json_: JsonOpt = False,
) -> None:
    """Models the serving workers hold in memory: size, worker, last use, loads, evictions and
    the last load's time by stage (fetch, hash check, deserialise, warm-up)."""
    rows = get_client(ctx).models.loaded(all=all_)
    if json_:
        print_json(rows)
        return
    if not rows:
        out.print("No model is loaded: no server is running on this home, or nothing is deployed.")
        return
    out.print(resident_table(rows))


@app.command("alias")
def alias_(ctx: typer.Context, ref: RefArg, alias: AliasArg, json_: JsonOpt = False) -> None:
    """Point ALIAS at the version REF names, e.g. `cloche models alias churn:2 prod`."""
    version = get_client(ctx).models.alias(ref, alias)
    if json_:
        print_json(version)
    else:
        success(f"{version.name}@{alias} → {version.ref}")


@app.command()
def unalias(ctx: typer.Context, name: NameArg, alias: AliasArg, json_: JsonOpt = False) -> None:
    """Remove ALIAS from model NAME; the version it pointed at stays."""
    get_client(ctx).models.remove_alias(name, alias)
    if json_:
        print_json({"name": name, "alias": alias, "removed": True})
    else:
        success(f"removed alias {name}@{alias}")


@app.command()
def baseline(ctx: typer.Context, ref: RefArg, file: ExistingFile, json_: JsonOpt = False) -> None:
    """Attach (or replace) the baseline dataset of the version REF names."""
    meta = get_client(ctx).models.attach_baseline(ref, file)
    if json_:
        print_json(meta)
    else:
        success(
            f"attached {meta.get('file')} ({meta.get('rows')} rows, "
            f"{len(meta.get('columns') or [])} columns) as the baseline of {ref}"
        )


@app.command()
def delete(ctx: typer.Context, ref: RefArg, yes: YesOpt = False, json_: JsonOpt = False) -> None:
    """Delete a whole model (NAME) or one version (name:3, name@alias). Files are removed too."""
    parsed = parse_ref(ref)
    client = get_client(ctx)
    if not (yes or json_):
        if parsed.version is None and parsed.alias is None:
            model = client.models.get(parsed.name)
            question = f"Delete model {model.name!r} and all {model.version_count} of its versions?"
        else:
            version = client.models.show(ref)
            tags = f" (aliases: {', '.join(version.aliases)})" if version.aliases else ""
            question = f"Delete version {version.ref}{tags}? Other versions stay."
        if not typer.confirm(question, default=False, err=True):
            err.print(Text("Nothing deleted.", style="yellow"))
            raise typer.Exit(1)
    result = client.models.delete(ref)
    if json_:
        print_json(result)
    elif result.model_deleted:
        success(f"deleted model {result.name} (versions {_numbers(result.deleted_versions)})")
    else:
        success(f"deleted {result.name}:{_numbers(result.deleted_versions)}")


def _numbers(values: list[int]) -> str:
    return ", ".join(str(v) for v in values)
