"""``cloche pipelines``: run a pipeline from a Python file and read the record of its runs."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cloche.auth.roles import local_actor
from cloche.cli._common import Globals, JsonOpt, load_settings, parse_pairs
from cloche.cli._output import new_table, out, print_json, success, when
from cloche.errors import InvalidInput, NotFound
from cloche.pipelines import loading, records, registered, runner
from cloche.pipelines.entities import PipelineRun, step_key
from cloche.store.store import Store

app = typer.Typer(
    help="Pipelines: steps in plain Python, run and recorded with their outputs.",
    no_args_is_help=True,
)
RunArg = Annotated[str, typer.Argument(metavar="RUN", help="A run id or a unique prefix of it.")]


@contextmanager
def _local_store(ctx: typer.Context) -> Iterator[Store]:
    options = ctx.find_root().obj
    if isinstance(options, Globals) and options.url:
        raise InvalidInput(
            "pipelines run on this machine's CLOCHE_HOME for now, not through --url/CLOCHE_URL",
            hint="run the command on the server's machine without --url (unset CLOCHE_URL)",
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
            "(queued for `cloche up` on this store to run).",
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
        with _local_store(ctx) as store:
            params = loading.parse_params(registered.newest_graph(store, target), raw)
            found = registered.queue_run(
                store, target, params, actor=local_actor(), executor=executor
            )
            if wait:
                found = _wait(store, found.id)
        if not wait:
            print_json(found) if json_ else success(f"queued {found.id} for the server to run")
            return
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
    pipeline = loading.load_pipeline(target)
    path = Path(target.partition(":")[0] if not Path(target).exists() else target)
    with _local_store(ctx) as store:
        found = registered.register(
            store, pipeline, source=path.read_text(), file_name=path.name, actor=local_actor()
        )
    if json_:
        print_json(found)
        return
    success(f"{found.name} version {found.version} ({found.steps} steps) is registered")


def _wait(store: Store, run_id: str) -> PipelineRun:
    while True:
        found = records.get_run(store, run_id)
        if found.done:
            return found
        time.sleep(0.5)


@app.command("runs")
def runs(
    ctx: typer.Context,
    pipeline: Annotated[
        str | None, typer.Option("--pipeline", metavar="NAME", help="Only this pipeline's runs.")
    ] = None,
    limit: Annotated[
        int, typer.Option(min=1, max=1000, help="At most this many, newest first.")
    ] = 50,
    json_: JsonOpt = False,
) -> None:
    """List pipeline runs, newest first."""
    with _local_store(ctx) as store:
        found = records.list_runs(store, pipeline=pipeline, limit=limit)
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


@app.command()
def show(ctx: typer.Context, run_id: RunArg, json_: JsonOpt = False) -> None:
    """A run's parameters and each step's state, attempts and outputs."""
    with _local_store(ctx) as store:
        found = records.get_run(store, run_id)
    _show(found, json_)


@app.command()
def logs(
    ctx: typer.Context,
    run_id: RunArg,
    step: Annotated[str, typer.Argument(metavar="STEP", help="A step id, e.g. train or train[2].")],
) -> None:
    """What a step printed, and its error, attempt by attempt."""
    with _local_store(ctx) as store:
        found = records.get_run(store, run_id)
    name, iteration = step_key(step)
    attempts = [r for r in found.steps if r.step == name and r.iteration == iteration]
    if not attempts:
        raise NotFound(
            f"run {found.id} has no step {step!r}",
            hint=f"its steps: {', '.join(found.step_states()) or '(none)'}",
        )
    for record in attempts:
        out.print(f"[bold]attempt {record.attempt}[/bold] {record.state}", highlight=False)
        if record.log:
            out.print(record.log.rstrip(), markup=False, highlight=False)
        if record.error:
            out.print(record.error, markup=False, highlight=False, style="red")


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
    from cloche.pipelines.approvals import decide

    with _local_store(ctx) as store:
        found = decide(
            store, run_id, step, approved=not reject, actor=local_actor(), comment=comment
        )
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
