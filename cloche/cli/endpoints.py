"""``cloche endpoints``: create endpoints, deploy model versions, split traffic."""

from typing import Annotated

import typer

from cloche.cli._common import JsonOpt, YesOpt, get_client
from cloche.cli._output import new_table, out, print_json, resident_table, success, when
from cloche.client.endpoints import DEFAULT_WAIT_S
from cloche.endpoints.entities import Endpoint
from cloche.endpoints.traffic import parse_split
from cloche.errors import InvalidInput

app = typer.Typer(help="Online endpoints: deploy models and split traffic.", no_args_is_help=True)

NameArg = Annotated[str, typer.Argument(metavar="ENDPOINT", help="The endpoint's name.")]
LogRateOpt = Annotated[
    float, typer.Option(min=0.0, max=1.0, help="Share of requests written to the payload log.")
]
RefArg = Annotated[str, typer.Argument(metavar="MODEL_REF", help="churn, churn:3 or churn@prod.")]


def print_endpoint(ep: Endpoint) -> None:
    table = new_table(
        f"Endpoint {ep.name}",
        ("deployment", "framework", "traffic", "shadow", "max batch", "timeout", "since"),
        whole=("deployment",),
        dates=("since",),
    )
    for d in ep.deployments:
        table.add_row(
            d.ref,
            d.framework,
            f"{d.traffic}%" if not d.shadow else "-",
            "yes" if d.shadow else "",
            str(d.max_batch_size),
            f"{d.timeout_ms} ms",
            when(d.created_at),
        )
    out.print(table)
    if not ep.deployments:
        out.print(
            f"No deployments. Deploy one with `cloche endpoints deploy {ep.name} MODEL:VERSION`."
        )
    else:
        out.print(f"Predict: POST /v1/models/{ep.name}:predict  or  /v2/models/{ep.name}/infer")


@app.command()
def create(
    ctx: typer.Context,
    name: NameArg,
    description: Annotated[str, typer.Option(help="What the endpoint is for.")] = "",
    log_sample_rate: LogRateOpt = 1.0,
    json_: JsonOpt = False,
) -> None:
    """Create an endpoint (no deployments yet)."""
    ep = get_client(ctx).endpoints.create(
        name, description=description, log_sample_rate=log_sample_rate
    )
    if json_:
        print_json(ep)
    else:
        success(
            f"created endpoint {ep.name}; next: cloche endpoints deploy {ep.name} MODEL:VERSION"
        )


@app.command()
def update(
    ctx: typer.Context,
    name: NameArg,
    description: Annotated[str | None, typer.Option(help="What the endpoint is for.")] = None,
    log_sample_rate: Annotated[
        float | None, typer.Option(min=0.0, max=1.0, help="Share of requests logged (0-1).")
    ] = None,
    json_: JsonOpt = False,
) -> None:
    """Change an endpoint's description or payload-log sampling rate."""
    ep = get_client(ctx).endpoints.update(
        name, description=description, log_sample_rate=log_sample_rate
    )
    print_json(ep) if json_ else print_endpoint(ep)


@app.command("list")
def list_(ctx: typer.Context, json_: JsonOpt = False) -> None:
    """List endpoints with their traffic split."""
    found = get_client(ctx).endpoints.list()
    if json_:
        print_json(found)
        return
    if not found:
        out.print("No endpoints. Create one with `cloche endpoints create NAME`.")
        return
    table = new_table(
        "Endpoints", ("name", "traffic", "shadow", "updated"), whole=("name",), dates=("updated",)
    )
    for ep in found:
        traffic = ", ".join(f"{ref}={pct}%" for ref, pct in ep.traffic().items())
        shadow = ", ".join(d.ref for d in ep.deployments if d.shadow)
        table.add_row(ep.name, traffic or "-", shadow, when(ep.updated_at))
    out.print(table)


@app.command()
def show(ctx: typer.Context, name: NameArg, json_: JsonOpt = False) -> None:
    """Show an endpoint's deployments (and, for shadows, how often they agreed, last 24 h)."""
    client = get_client(ctx)
    ep = client.endpoints.get(name)
    agreement = client.logs.shadow_agreement(name) if any(d.shadow for d in ep.deployments) else []
    refs = {d.ref for d in ep.deployments}
    # The last load of each deployment's model on each worker (evicted ones too).
    known = [r for r in client.models.loaded(all=True) if r.ref in refs]
    loads = [r for r in known if r.load_seconds]
    # Deployments whose load or warm-up failed on a worker: they take no traffic there from a
    # warm deployment, and this is where a user learns why.
    failed = [r for r in known if r.last_error and not r.resident]
    if json_:
        print_json(
            {
                **ep.model_dump(mode="json"),
                "shadow_agreement": [a.model_dump() for a in agreement],
                "last_loads": [r.model_dump(mode="json") for r in loads],
                "not_warm": [
                    {"ref": r.ref, "server": r.server, "worker": r.worker, "reason": r.last_error}
                    for r in failed
                ],
            }
        )
        return
    print_endpoint(ep)
    if loads:
        out.print(resident_table(loads, title="Last load by stage (per worker)"))
    for r in failed:
        out.print(
            f"Not warm: {r.ref} on worker {r.worker} (its share goes to the warm deployments): "
            f"{r.last_error}"
        )
    for a in agreement:
        rate = f"{a.rate:.1%}" if a.rate is not None else "n/a"
        out.print(
            f"Shadow {a.shadow}: agreed with live on {a.agreed} of {a.compared} requests ({rate})"
        )


@app.command()
def deploy(
    ctx: typer.Context,
    name: NameArg,
    ref: RefArg,
    traffic: Annotated[
        int | None,
        typer.Option(min=0, max=100, help="Percent for this deployment; the others scale down."),
    ] = None,
    shadow: Annotated[
        bool, typer.Option(help="Mirror live requests; answers are not returned.")
    ] = False,
    max_batch_size: Annotated[int, typer.Option(min=1, help="Rows per model call at most.")] = 64,
    timeout_ms: Annotated[int, typer.Option(min=1, help="Answer 504 after this long.")] = 10_000,
    wait: Annotated[
        bool,
        typer.Option(
            "--wait", help="Return once every serving worker holds the model warm (or fail)."
        ),
    ] = False,
    wait_timeout: Annotated[
        float | None,
        typer.Option(
            min=0.1,
            max=3600,
            help=f"Seconds --wait waits before it fails [default: {DEFAULT_WAIT_S:g}].",
        ),
    ] = None,
    json_: JsonOpt = False,
) -> None:
    """Deploy a model version (the first deployment takes 100% of traffic)."""
    if wait_timeout is not None and not wait:
        raise InvalidInput(
            "--wait-timeout only applies to a deploy that waits",
            hint=f"add --wait: cloche endpoints deploy {name} {ref} --wait --wait-timeout "
            f"{wait_timeout:g}",
        )
    ep = get_client(ctx).endpoints.deploy(
        name,
        ref,
        traffic=traffic,
        shadow=shadow,
        max_batch_size=max_batch_size,
        timeout_ms=timeout_ms,
        wait=wait,
        wait_timeout_s=DEFAULT_WAIT_S if wait_timeout is None else wait_timeout,
    )
    print_json(ep) if json_ else print_endpoint(ep)


@app.command("traffic")
def traffic_(
    ctx: typer.Context,
    name: NameArg,
    split: Annotated[
        list[str], typer.Argument(metavar="REF=PERCENT...", help="e.g. churn:3=90 churn:4=10")
    ],
    json_: JsonOpt = False,
) -> None:
    """Set the traffic split; the percentages must sum to 100."""
    ep = get_client(ctx).endpoints.traffic(name, parse_split(split))
    print_json(ep) if json_ else print_endpoint(ep)


@app.command()
def undeploy(ctx: typer.Context, name: NameArg, ref: RefArg, json_: JsonOpt = False) -> None:
    """Remove a deployment; its share goes to the others in proportion."""
    ep = get_client(ctx).endpoints.undeploy(name, ref)
    print_json(ep) if json_ else print_endpoint(ep)


@app.command()
def delete(ctx: typer.Context, name: NameArg, yes: YesOpt = False, json_: JsonOpt = False) -> None:
    """Delete an endpoint and its deployments."""
    if not (yes or json_):
        typer.confirm(f"Delete endpoint {name} and stop serving it?", abort=True)
    get_client(ctx).endpoints.delete(name)
    if json_:
        print_json({"deleted": name})
    else:
        success(f"deleted endpoint {name}")
