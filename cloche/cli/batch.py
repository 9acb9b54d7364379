"""``cloche batch``: score datasets with a registered model, resume, cancel and schedule jobs."""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn
from rich.table import Table

from cloche.batch.entities import BatchJob, BatchSchedule
from cloche.batch.schedules import run_folders
from cloche.batch.spec import DEFAULT_CHUNK_ROWS, DEFAULT_MAX_ERROR_RATE
from cloche.cli._common import JsonOpt, get_client
from cloche.cli._output import err, new_table, out, print_json, success, when

app = typer.Typer(
    help="Batch prediction: score files with a registered model.", no_args_is_help=True
)
schedules_app = typer.Typer(help="Recurring batch jobs.", no_args_is_help=True)
app.add_typer(schedules_app, name="schedules")

JobArg = Annotated[str, typer.Argument(metavar="JOB", help="A job id (or a unique prefix).")]
ScheduleArg = Annotated[
    str, typer.Argument(metavar="SCHEDULE", help="A schedule id (or a unique prefix).")
]
EXIT_JOB_FAILED = 1


def _default_output(model_ref: str) -> str:
    name = model_ref.split("@")[0].split(":")[0]
    return f"predictions/{name}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}"


@app.command()
def run(
    ctx: typer.Context,
    model_ref: Annotated[str, typer.Argument(metavar="MODEL_REF", help="churn:3 or churn@prod.")],
    input: Annotated[
        str,
        typer.Option(
            "--input",
            "-i",
            help="A file, folder, glob (quote it) or fsspec URL; relative to this folder.",
        ),
    ],
    output: Annotated[
        str | None,
        typer.Option(
            "--output",
            "-o",
            help="Output folder (default: predictions/MODEL-TIME). Relative paths are taken "
            "from this folder and sent absolute.",
        ),
    ] = None,
    input_format: Annotated[
        str | None, typer.Option(help="csv, jsonl or parquet (default: from the file names).")
    ] = None,
    output_format: Annotated[str, typer.Option(help="parquet, jsonl or csv.")] = "parquet",
    id_column: Annotated[
        str | None, typer.Option(help="Column copied to the output to identify rows.")
    ] = None,
    passthrough: Annotated[
        str | None, typer.Option(help="Comma-separated columns copied to the output.")
    ] = None,
    workers: Annotated[int, typer.Option(min=0, help="Worker processes; 0: one per core.")] = 0,
    chunk_rows: Annotated[
        int, typer.Option(min=1, help="Rows per checkpointed chunk and output file.")
    ] = DEFAULT_CHUNK_ROWS,
    max_error_rate: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Stop as failed above this share of bad rows.")
    ] = DEFAULT_MAX_ERROR_RATE,
    engine: Annotated[
        str,
        typer.Option(
            help="local, or ray: on the cluster of CLOCHE_BATCH__RAY_ADDRESS (default: a "
            "local Ray)."
        ),
    ] = "local",
    overwrite: Annotated[bool, typer.Option(help="Replace an earlier job's output.")] = False,
    schedule: Annotated[
        str | None,
        typer.Option(metavar="CRON", help='Run on a cron schedule (UTC), e.g. "0 6 * * 1".'),
    ] = None,
    detach: Annotated[
        bool, typer.Option(help="Queue the job for `cloche up` and return at once.")
    ] = False,
    json_: JsonOpt = False,
) -> None:
    """Score a dataset with a model version: streaming, parallel, checkpointed."""
    client = get_client(ctx)
    spec = {
        "input_format": input_format,
        "output_format": output_format,
        "id_column": id_column,
        "passthrough": [c.strip() for c in (passthrough or "").split(",") if c.strip()],
        "workers": workers,
        "chunk_rows": chunk_rows,
        "max_error_rate": max_error_rate,
        "engine": engine,
        "overwrite": overwrite,
    }
    output = output or _default_output(model_ref)
    if schedule is not None:
        made = client.batch.schedule(model_ref, cron=schedule, input=input, output=output, **spec)
        _scheduled(made, json_)
        return
    if detach:
        job = client.batch.submit(model_ref, input=input, output=output, **spec)
        print_json(job) if json_ else success(
            f"queued {job.id}; follow: cloche batch show {job.id}"
        )
        return
    with _progress_bar(quiet=json_) as on_progress:
        job = client.batch.run(
            model_ref, input=input, output=output, on_progress=on_progress, **spec
        )
    _finished(job, json_)


def _scheduled(made: BatchSchedule, json_: bool) -> None:
    if json_:
        print_json(made)
        return
    success(f"scheduled {made.id} ({made.cron}, UTC); first run {when(made.next_run_at)}")
    out.print(f"`cloche up` runs it; each run writes to {run_folders(made.spec['output'])}")


@contextmanager
def _progress_bar(*, quiet: bool) -> Iterator[Callable[[BatchJob], None] | None]:
    if quiet:
        yield None
        return
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[rows]}"),
        TextColumn("{task.fields[rate]}  ETA {task.fields[eta]}  {task.fields[errors]}"),
    )
    with Progress(*columns, console=err, transient=False) as bar:
        task = bar.add_task("scoring", total=None, rows="", rate="", eta="-", errors="")

        def update(job: BatchJob) -> None:
            p = job.progress
            eta = p.get("eta_s")
            bar.update(
                task,
                description=f"{job.id} {job.model_version}",
                total=p.get("rows_total") or None,
                completed=p.get("rows_done", 0),
                rows=f"{_rate(job)} rows",
                rate=f"{p.get('rows_per_s', 0):,.0f} rows/s",
                eta="-" if eta is None else f"{eta:,.0f} s",
                errors=f"{p['error_rows']:,} bad rows" if p.get("error_rows") else "",
            )

        yield update


def _finished(job: BatchJob, json_: bool) -> None:
    if json_:
        print_json(job)
    elif job.state == "succeeded":
        success(f"{job.id} succeeded: {job.message}")
        out.print(f"Output: {job.output}  (manifest.json lists the files)")
    else:
        style = "yellow" if job.state == "partially_succeeded" else "red"
        err.print(f"[{style}]{job.id} {job.state.replace('_', ' ')}[/]: {job.message}")
        if job.state in ("failed", "cancelled") and job.progress.get("chunks_done"):
            err.print(f"Resume from the last finished chunk: cloche batch resume {job.id}")
    if job.state in ("failed", "cancelled"):
        raise typer.Exit(EXIT_JOB_FAILED)


def _rate(job: BatchJob) -> str:
    p = job.progress
    total, done = p.get("rows_total"), p.get("rows_done", 0)
    return f"{done:,}/{total:,}" if total else f"{done:,}"


def jobs_table(jobs: list[BatchJob], title: str = "Batch jobs") -> Table:
    table = new_table(
        title,
        ("job", "model", "state", "rows", "bad rows", "output", "created"),
        whole=("job", "model"),
        dates=("created",),
        right=("rows", "bad rows"),
    )
    for job in jobs:
        table.add_row(
            job.id,
            job.model_version,
            job.state,
            _rate(job),
            f"{job.progress.get('error_rows', 0):,}",
            job.output,
            when(job.created_at),
        )
    return table


@app.command("list")
def list_(
    ctx: typer.Context,
    state: Annotated[str | None, typer.Option(help="Only jobs in this state.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    json_: JsonOpt = False,
) -> None:
    """List batch jobs, newest first."""
    jobs = get_client(ctx).batch.list(state=state, limit=limit)
    if json_:
        print_json(jobs)
    elif jobs:
        out.print(jobs_table(jobs))
    else:
        out.print("No batch jobs yet. Start one with `cloche batch run MODEL_REF --input DATA`.")


@app.command()
def show(ctx: typer.Context, job: JobArg, json_: JsonOpt = False) -> None:
    """Show a job: state, progress, output and message."""
    found = get_client(ctx).batch.get(job)
    if json_:
        print_json(found)
        return
    p = found.progress
    rows = [
        ("job", found.id),
        ("model", f"{found.model_version} (asked for {found.model_ref})"),
        ("state", found.state + (" (cancel requested)" if found.cancel_requested else "")),
        ("rows", _rate(found)),
        ("bad rows", f"{p.get('error_rows', 0):,}"),
        ("speed", f"{p.get('rows_per_s', 0):,.0f} rows/s"),
        ("input", str(found.spec.get("input"))),
        ("output", found.output),
        ("started", when(found.started_at)),
        ("finished", when(found.finished_at)),
        ("message", found.message),
    ]
    for label, value in rows:
        out.print(f"[bold]{label:>9}[/]  {value}")


@app.command()
def cancel(ctx: typer.Context, job: JobArg, json_: JsonOpt = False) -> None:
    """Cancel a job; a running one stops after its current chunk."""
    found = get_client(ctx).batch.cancel(job)
    if json_:
        print_json(found)
    elif found.state == "cancelled":
        success(f"cancelled {found.id}; `cloche batch resume {found.id}` continues it")
    else:
        success(f"{found.id} stops after its current chunk")


@app.command()
def resume(
    ctx: typer.Context,
    job: JobArg,
    detach: Annotated[bool, typer.Option(help="Queue it for `cloche up`.")] = False,
    json_: JsonOpt = False,
) -> None:
    """Continue a stopped or killed job from its last finished chunk."""
    client = get_client(ctx)
    if detach:
        found = client.batch.resume(job, wait=False)
        print_json(found) if json_ else success(f"queued {found.id} to resume")
        return
    with _progress_bar(quiet=json_) as on_progress:
        found = client.batch.resume(job, on_progress=on_progress)
    _finished(found, json_)


@schedules_app.command("list")
def schedules_list(ctx: typer.Context, json_: JsonOpt = False) -> None:
    """List recurring batch jobs."""
    found = get_client(ctx).batch.schedules()
    if json_:
        print_json(found)
        return
    table = new_table(
        "Batch schedules",
        ("schedule", "model", "cron (UTC)", "enabled", "next run", "last run", "output"),
        whole=("schedule",),
        dates=("next run", "last run"),
    )
    for s in found:
        table.add_row(
            s.id,
            s.model_ref,
            s.cron,
            "yes" if s.enabled else "paused",
            when(s.next_run_at),
            when(s.last_run_at),
            str(s.spec.get("output")),
        )
    out.print(table)


@schedules_app.command("show")
def schedules_show(ctx: typer.Context, schedule: ScheduleArg, json_: JsonOpt = False) -> None:
    """Show a schedule and its recent runs."""
    found = get_client(ctx).batch.get_schedule(schedule)
    if json_:
        print_json(found)
        return
    state = "enabled" if found.enabled else "paused"
    out.print(f"[bold]{found.id}[/] {found.model_ref} cron {found.cron!r} (UTC), {state}")
    out.print(f"next run {when(found.next_run_at)}; output {run_folders(found.spec['output'])}")
    out.print(jobs_table(found.history, title="Runs") if found.history else "No runs yet.")


@schedules_app.command("pause")
def schedules_pause(ctx: typer.Context, schedule: ScheduleArg) -> None:
    """Stop queueing runs."""
    found = get_client(ctx).batch.pause_schedule(schedule)
    success(f"paused {found.id}")


@schedules_app.command("resume")
def schedules_resume(ctx: typer.Context, schedule: ScheduleArg) -> None:
    """Queue runs again from the next scheduled time."""
    found = get_client(ctx).batch.resume_schedule(schedule)
    success(f"resumed {found.id}; next run {when(found.next_run_at)}")


@schedules_app.command("delete")
def schedules_delete(ctx: typer.Context, schedule: ScheduleArg) -> None:
    """Delete a schedule; its past runs stay listed."""
    get_client(ctx).batch.delete_schedule(schedule)
    success(f"deleted {schedule}")
