"""``cloche pipelines schedule NAME --cron ...`` and ``cloche pipelines schedules ...``: run a
registered pipeline on a cron schedule, with the scheduler of `cloche up`; through the SDK, so
on this machine's store or, with --url, a server's."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from cloche.cli._common import JsonOpt, get_client, parse_pairs
from cloche.cli._output import new_table, out, print_json, success, when
from cloche.client.pipelines import PipelinesAPI
from cloche.errors import InvalidInput, PipelineNotFound
from cloche.pipelines import loading
from cloche.pipelines.entities import PipelineRun
from cloche.pipelines.graph import ParamSpec
from cloche.pipelines.schedule_plan import MAX_CATCH_UP
from cloche.pipelines.schedules import PipelineSchedule, trigger_of

ScheduleArg = Annotated[
    str, typer.Argument(metavar="ID", help="A schedule id or a unique prefix of it.")
]
schedules_app = typer.Typer(help="Pipeline schedules: list, show, pause, resume, delete.")


def mount(app: typer.Typer) -> None:
    """Add ``schedule`` and ``schedules`` to ``cloche pipelines``."""
    app.command("schedule")(schedule)
    app.add_typer(schedules_app, name="schedules", no_args_is_help=True)


def _pipelines(ctx: typer.Context) -> PipelinesAPI:
    return get_client(ctx).pipelines


def _declared(client: PipelinesAPI, name: str) -> dict[str, ParamSpec]:
    """The parameters of registered ``name``, to read ``--param`` values by their types."""
    for found in client.list():
        if found.name == name:
            return found.params
    raise PipelineNotFound(
        f"no registered pipeline {name!r}",
        hint="register it with `cloche pipelines register FILE.py`",
    )


def _runs_of(client: PipelinesAPI, found: PipelineSchedule) -> list[PipelineRun]:
    runs = client.runs(pipeline=found.pipeline, limit=200)
    return [run for run in runs if run.trigger == trigger_of(found.id)][:20]


def parse_time(text: str | None, flag: str) -> datetime | None:
    """An ISO 8601 time; without a zone it is UTC."""
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(
            f"{flag} {text!r} is not a time", hint=f"write it as {flag} 2030-01-31T06:00 (UTC)"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def schedule(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", help="A registered pipeline.")],
    cron: Annotated[
        str, typer.Option(help='Five cron fields in UTC, e.g. "0 6 * * 1" (Mondays 06:00).')
    ],
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", metavar="KEY=VALUE", help="A parameter (repeatable)."),
    ] = None,
    start: Annotated[
        str | None, typer.Option(metavar="TIME", help="No run before this (ISO 8601, UTC).")
    ] = None,
    end: Annotated[
        str | None, typer.Option(metavar="TIME", help="No run after this (ISO 8601, UTC).")
    ] = None,
    max_runs: Annotated[int | None, typer.Option(min=1, help="Stop after this many runs.")] = None,
    max_concurrent: Annotated[
        int | None,
        typer.Option(min=1, help="Skip a fire time while this many runs are unfinished."),
    ] = None,
    catch_up: Annotated[
        bool,
        typer.Option(
            "--catch-up",
            help=f"Run each missed fire time once (at most {MAX_CATCH_UP}); "
            "by default only the latest runs.",
        ),
    ] = False,
    json_: JsonOpt = False,
) -> None:
    """Run a registered pipeline on a cron schedule (the scheduler of `cloche up` runs it)."""
    raw = parse_pairs(param, option="--param", example="threshold=0.8")
    client = _pipelines(ctx)
    made = client.schedule(
        name,
        cron,
        loading.parse_params(_declared(client, name), raw),
        start=parse_time(start, "--start"),
        end=parse_time(end, "--end"),
        max_runs=max_runs,
        max_concurrent=max_concurrent,
        catch_up=catch_up,
    )
    if json_:
        print_json(made)
        return
    success(f"scheduled {name} as {made.id}; first run {when(made.next_run_at)}")


@schedules_app.command("list")
def list_(ctx: typer.Context, json_: JsonOpt = False) -> None:
    """List pipeline schedules."""
    found = _pipelines(ctx).schedules()
    if json_:
        print_json(found)
        return
    table = new_table(
        "Pipeline schedules",
        ("schedule", "pipeline", "cron (UTC)", "state", "runs", "next run", "note"),
        whole=("schedule",),
        dates=("next run",),
    )
    for item in found:
        table.add_row(
            item.id,
            item.pipeline,
            item.cron,
            item.state,
            _runs(item),
            when(item.next_run_at),
            item.note,
        )
    out.print(table)


@schedules_app.command("show")
def show(ctx: typer.Context, schedule_id: ScheduleArg, json_: JsonOpt = False) -> None:
    """A schedule, and the runs it made."""
    client = _pipelines(ctx)
    found = client.get_schedule(schedule_id)
    runs = _runs_of(client, found)
    if json_:
        print_json(found.model_dump(mode="json") | {"runs": [r.id for r in runs]})
        return
    out.print(
        f"[bold]{found.id}[/] {found.pipeline} cron {found.cron!r} (UTC), {found.state}; "
        f"runs {_runs(found)}; next run {when(found.next_run_at)}",
        highlight=False,
    )
    if found.note:
        out.print(f"note: {found.note}", markup=False, highlight=False)
    for run in runs:
        out.print(f"  {run.id} {run.state} {when(run.created_at)}", highlight=False)


@schedules_app.command("pause")
def pause(ctx: typer.Context, schedule_id: ScheduleArg) -> None:
    """Stop queueing runs."""
    found = _pipelines(ctx).pause_schedule(schedule_id)
    success(f"paused {found.id}")


@schedules_app.command("resume")
def resume(ctx: typer.Context, schedule_id: ScheduleArg) -> None:
    """Queue runs again from the next fire time; those missed while paused are skipped."""
    found = _pipelines(ctx).resume_schedule(schedule_id)
    success(f"resumed {found.id}; next run {when(found.next_run_at)}")


@schedules_app.command("delete")
def delete(ctx: typer.Context, schedule_id: ScheduleArg) -> None:
    """Delete a schedule; the runs it made stay."""
    client = _pipelines(ctx)
    found = client.get_schedule(schedule_id)  # a prefix is named by its whole id
    client.delete_schedule(found.id)
    success(f"deleted {found.id}")


def _runs(item: PipelineSchedule) -> str:
    return f"{item.runs_made}/{item.max_runs}" if item.max_runs else str(item.runs_made)
