"""``cloche pipelines schedule NAME --cron ...`` and ``cloche pipelines schedules ...``: run a
registered pipeline on a cron schedule, with the scheduler of `cloche up` on this store."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Annotated

import typer

from cloche.auth.roles import local_actor
from cloche.cli._common import JsonOpt, parse_pairs
from cloche.cli._output import new_table, out, print_json, success, when
from cloche.errors import InvalidInput
from cloche.pipelines import loading, registered, schedules
from cloche.pipelines.schedule_plan import MAX_CATCH_UP
from cloche.pipelines.schedules import PipelineSchedule
from cloche.store.store import Store

StoreOpener = Callable[[typer.Context], AbstractContextManager[Store]]
ScheduleArg = Annotated[
    str, typer.Argument(metavar="ID", help="A schedule id or a unique prefix of it.")
]
schedules_app = typer.Typer(help="Pipeline schedules: list, show, pause, resume, delete.")
_open: list[StoreOpener] = []  # the store opener of `cloche pipelines`, set by mount()


def mount(app: typer.Typer, open_store: StoreOpener) -> None:
    """Add ``schedule`` and ``schedules`` to ``cloche pipelines``."""
    _open.append(open_store)
    app.command("schedule")(schedule)
    app.add_typer(schedules_app, name="schedules", no_args_is_help=True)


def _store(ctx: typer.Context) -> AbstractContextManager[Store]:
    return _open[0](ctx)


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
    with _store(ctx) as store:
        params = loading.parse_params(registered.newest_graph(store, name), raw)
        made = schedules.create_schedule(
            store,
            name,
            cron=cron,
            params=params,
            start=parse_time(start, "--start"),
            end=parse_time(end, "--end"),
            max_runs=max_runs,
            max_concurrent=max_concurrent,
            catch_up=catch_up,
            actor=local_actor(),
        )
    if json_:
        print_json(made)
        return
    success(f"scheduled {name} as {made.id}; first run {when(made.next_run_at)}")


@schedules_app.command("list")
def list_(ctx: typer.Context, json_: JsonOpt = False) -> None:
    """List pipeline schedules."""
    with _store(ctx) as store:
        found = schedules.list_schedules(store)
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
    with _store(ctx) as store:
        found = schedules.get_schedule(store, schedule_id)
        runs = schedules.recent_runs(store, found.id)
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
    with _store(ctx) as store:
        found = schedules.set_enabled(store, schedule_id, False, actor=local_actor())
    success(f"paused {found.id}")


@schedules_app.command("resume")
def resume(ctx: typer.Context, schedule_id: ScheduleArg) -> None:
    """Queue runs again from the next fire time; those missed while paused are skipped."""
    with _store(ctx) as store:
        found = schedules.set_enabled(store, schedule_id, True, actor=local_actor())
    success(f"resumed {found.id}; next run {when(found.next_run_at)}")


@schedules_app.command("delete")
def delete(ctx: typer.Context, schedule_id: ScheduleArg) -> None:
    """Delete a schedule; the runs it made stay."""
    with _store(ctx) as store:
        found = schedules.delete_schedule(store, schedule_id, actor=local_actor())
    success(f"deleted {found}")


def _runs(item: PipelineSchedule) -> str:
    return f"{item.runs_made}/{item.max_runs}" if item.max_runs else str(item.runs_made)
