"""``cloche pipelines``: run a pipeline from a Python file and read the record of its runs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from rich.table import Table

from cloche.auth.roles import local_actor
from cloche.cli import pipeline_schedules
from cloche.cli._common import Globals, JsonOpt, get_client, load_settings, parse_pairs
from cloche.cli._output import new_table, out, print_json, success, when
from cloche.client.pipelines import PipelinesAPI
from cloche.errors import InvalidInput, PipelineNotFound
from cloche.pipelines import loading, runner
from cloche.pipelines.entities import PipelineRun
from cloche.pipelines.registered import RegisteredPipeline
from cloche.store.store import Store

app = typer.Typer(
    help="Pipelines: steps in plain Python, run and recorded with their outputs.",
    no_args_is_help=True,
)
runs_app = typer.Typer(help="Pipeline runs: list, show, logs, cancel, retry.")
app.add_typer(runs_app, name="runs")
RunArg = Annotated[str, typer.Argument(metavar="RUN", help="A run id or a unique prefix of it.")]


@contextmanager
def _local_store(ctx: typer.Context) -> Iterator[Store]:
    options = ctx.find_root().obj
    if isinstance(options, Globals) and options.url:
        raise InvalidInput(
            "a pipeline file runs on this machine's CLOCHE_HOME, not through --url/CLOCHE_URL",
            hint="register it (`cloche pipelines register FILE.py`) and run it by name, or "
            "run the file without --url (unset CLOCHE_URL)",
        )
    store = Store.open(load_settings())
    try:
        yield store
    finally:
        store.close()


@app.command()
def run(
    ctx: typer.Context,
    target: Annotated[
        str,
        typer.Argument(
            metavar="FILE.py[:NAME] | NAME",
            help="A file that defines the pipeline (run here), or a registered pipeline's name "
            "(queued for `cloche up` on this store, or the server of --url, to run).",
        ),
    ],
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", metavar="KEY=VALUE", help="A parameter (repeatable)."),
    ] = None,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Run every step, even one whose result is cached.")
    ] = False,
    executor: Annotated[
        str,
        typer.Option(
            metavar="inprocess|process|ray",
            help="inprocess: steps run in threads; process: each in a process of its own "
            "(a crash or a timeout stops only that step); ray: each a Ray task on the cluster "
            "of CLOCHE_BATCH__RAY_ADDRESS (else a local Ray).",
        ),
    ] = "inprocess",
    workers: Annotated[
        int, typer.Option(min=1, max=64, help="Independent steps that run at the same time.")
    ] = runner.DEFAULT_WORKERS,
    wait: Annotated[
        bool, typer.Option("--wait", help="For a registered pipeline: wait for its run to end.")
    ] = False,
    json_: JsonOpt = False,
) -> None:
    """Run a pipeline here, or queue a registered one for the server; exits 1 if it failed."""
    raw = parse_pairs(param, option="--param", example="threshold=0.8")
    if ".py" not in target:
        client = get_client(ctx).pipelines
        params = loading.parse_params(_registered(client, target).params, raw)
        found = client.run(target, params, executor=executor)
        if not wait:
            print_json(found) if json_ else success(f"queued {found.id} for the server to run")
            return
        found = client.wait(found.id)
    else:
        pipeline = loading.load_pipeline(target)
        params = loading.parse_params(pipeline.graph, raw)
        with _local_store(ctx) as store:
            found = runner.run_pipeline(
                store,
                pipeline,
                params,
                actor=local_actor(),
                use_cache=not no_cache,
                executor=executor,
                workers=workers,
                ray_address=load_settings().batch.ray_address,
            )
    _show(found, json_)
    if found.state != "succeeded":
        raise typer.Exit(1)


def _registered(client: PipelinesAPI, name: str) -> RegisteredPipeline:
    for found in client.list():
        if found.name == name:
            return found
    raise PipelineNotFound(
        f"no registered pipeline {name!r}",
        hint="register it with `cloche pipelines register FILE.py`",
    )


@app.command()
def register(
    ctx: typer.Context,
    target: Annotated[
        str, typer.Argument(metavar="FILE.py[:NAME]", help="The file that defines the pipeline.")
    ],
    json_: JsonOpt = False,
) -> None:
    """Register a pipeline file with the store so `cloche up` can run it (a new version only
    when its source changed)."""
    found = get_client(ctx).pipelines.register(target)
    if json_:
        print_json(found)
        return
    success(f"{found.name} version {found.version} ({found.steps} steps) is registered")


PipelineOpt = Annotated[
    str | None, typer.Option("--pipeline", metavar="NAME", help="Only this pipeline's runs.")
]
StateOpt = Annotated[
    str | None, typer.Option("--state", metavar="STATE", help="Only runs in this state.")
]
LimitOpt = Annotated[int, typer.Option(min=1, max=1000, help="At most this many, newest first.")]
StepArg = Annotated[str, typer.Argument(metavar="STEP", help="A step id, e.g. train or train[2].")]


@runs_app.callback(invoke_without_command=True)
def runs(
    ctx: typer.Context,
    pipeline: PipelineOpt = None,
    state: StateOpt = None,
    limit: LimitOpt = 50,
    json_: JsonOpt = False,
) -> None:
    """Pipeline runs: list (the default), show, logs, cancel, retry."""
    if ctx.invoked_subcommand is None:
        _list_runs(ctx, pipeline, state, limit, json_)


@runs_app.command("list")
def list_runs(
    ctx: typer.Context,
    pipeline: PipelineOpt = None,
    state: StateOpt = None,
    limit: LimitOpt = 50,
    json_: JsonOpt = False,
) -> None:
    """List pipeline runs, newest first."""
    _list_runs(ctx, pipeline, state, limit, json_)


def _list_runs(
    ctx: typer.Context, pipeline: str | None, state: str | None, limit: int, json_: bool
) -> None:
    found = get_client(ctx).pipelines.runs(pipeline=pipeline, state=state, limit=limit)
    if json_:
        print_json(found)
        return
    table = new_table(
        "Pipeline runs",
        ["id", "pipeline", "state", "started", "by"],
        whole={"id"},
        dates={"started"},
    )
    for item in found:
        table.add_row(item.id, item.pipeline, item.state, when(item.started_at), item.created_by)
    out.print(table)


@runs_app.command("show")
@app.command()
def show(ctx: typer.Context, run_id: RunArg, json_: JsonOpt = False) -> None:
    """A run's parameters and each step's state, attempts and outputs."""
    _show(get_client(ctx).pipelines.get(run_id), json_)


@runs_app.command("logs")
@app.command()
def logs(ctx: typer.Context, run_id: RunArg, step: StepArg) -> None:
    """What a step printed, and its error, attempt by attempt."""
    for record in get_client(ctx).pipelines.logs(run_id, step):
        out.print(f"[bold]attempt {record.attempt}[/bold] {record.state}", highlight=False)
        if record.log:
            out.print(record.log.rstrip(), markup=False, highlight=False)
        if record.error:
            out.print(record.error, markup=False, highlight=False, style="red")


@runs_app.command("cancel")
def cancel(ctx: typer.Context, run_id: RunArg, json_: JsonOpt = False) -> None:
    """Cancel a run that has not ended: its running step is stopped, the rest never start."""
    found = get_client(ctx).pipelines.cancel(run_id)
    print_json(found) if json_ else success(f"cancelled {found.id}")


@runs_app.command("retry")
def retry(
    ctx: typer.Context,
    run_id: RunArg,
    wait: Annotated[bool, typer.Option("--wait", help="Wait for the run to end.")] = False,
    json_: JsonOpt = False,
) -> None:
    """Run a failed or cancelled run again on the server; steps that succeeded are kept."""
    client = get_client(ctx).pipelines
    found = client.retry(run_id)
    if not wait:
        print_json(found) if json_ else success(f"queued {found.id} again for the server to run")
        return
    found = client.wait(found.id)
    _show(found, json_)
    if found.state != "succeeded":
        raise typer.Exit(1)


@app.command()
def approve(
    ctx: typer.Context,
    run_id: RunArg,
    step: Annotated[str, typer.Argument(metavar="STEP", help="The approval step, e.g. approval.")],
    reject: Annotated[bool, typer.Option("--reject", help="Reject instead of approving.")] = False,
    comment: Annotated[str, typer.Option(help="Why, for the run and the audit log.")] = "",
    json_: JsonOpt = False,
) -> None:
    """Approve (or --reject) a run's approval step that is waiting for a decision."""
    found = get_client(ctx).pipelines.approve(run_id, step, approved=not reject, comment=comment)
    if json_:
        print_json(found)
        return
    success(f"{'rejected' if reject else 'approved'} {step} of {found.id}")


def _show(found: PipelineRun, json_: bool) -> None:
    if json_:
        print_json(found)
        return
    table = Table(
        "step", "state", "attempts", "outputs / error", title=f"{found.pipeline} {found.id}"
    )
    tries: dict[tuple[str, int], int] = {}
    for record in found.steps:
        tries[record.key] = max(tries.get(record.key, 0), record.attempt)
    for (step, iteration), record in found.latest().items():
        name = step if iteration < 0 else f"{step}[{iteration}]"
        detail = record.error if record.error else _outputs(record.outputs)
        if record.cached_from:
            detail = f"(from {record.cached_from}) {detail}"
        table.add_row(name, record.state, str(tries[(step, iteration)]), detail)
    out.print(table)
    if found.state == "succeeded":
        success(f"{found.id} succeeded")
    else:
        out.print(f"[red]✗[/red] {found.id} {found.state}: {found.error}", highlight=False)


def _outputs(outputs: dict[str, object]) -> str:
    shown = []
    for name, value in outputs.items():
        if isinstance(value, dict) and "uri" in value:
            shown.append(f"{name}={value['uri']}")
        else:
            shown.append(f"{name}={json.dumps(value)}")
    return ", ".join(shown)


pipeline_schedules.mount(app)  # `schedule NAME` and `schedules ...`
