"""``cloche export``: a registered model as an edge bundle that serves with no store or network."""

from pathlib import Path
from typing import Annotated, Any

import typer

from cloche.cli._common import JsonOpt, get_client
from cloche.cli._output import out, print_json, size, success
from cloche.export.entities import ExportResult


def export(
    ctx: typer.Context,
    model_ref: Annotated[str, typer.Argument(metavar="MODEL_REF", help="churn:3 or churn@prod.")],
    out_dir: Annotated[
        Path, typer.Option("--out", "-o", metavar="DIR", help="The folder to write (new or empty).")
    ],
    format: Annotated[
        str,
        typer.Option(
            "--format", metavar="FORMAT", help="bundle (served by `cloche serve`) or onnx."
        ),
    ] = "bundle",
    native: Annotated[
        bool, typer.Option(help="Keep the model in its own framework; no ONNX conversion.")
    ] = False,
    with_wheels: Annotated[
        bool, typer.Option(help="Add wheels of every requirement, to install with no network.")
    ] = False,
    slim: Annotated[
        bool,
        typer.Option(
            help="With wheels, rewrite onnxruntime's without the C API library Python never "
            "loads (versioned +slim). --no-slim keeps every wheel as downloaded."
        ),
    ] = True,
    platform: Annotated[
        str | None,
        typer.Option(
            metavar="PLATFORM",
            help="Wheels for manylinux_x86_64 or manylinux_aarch64 (default: this machine).",
            show_default=False,
        ),
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an earlier export in DIR.")] = False,
    json_: JsonOpt = False,
) -> None:
    """Export a model version as an edge bundle: ONNX where it converts (parity checked),
    pinned requirements, a Dockerfile and a README with the commands to install and serve it."""
    result = get_client(ctx).models.export(
        model_ref,
        out_dir,
        format=format,
        native=native,
        with_wheels=with_wheels,
        slim=slim,
        platform=platform,
        overwrite=overwrite,
    )
    if json_:
        print_json(result)
        return
    _print_result(result)


def _print_result(result: ExportResult) -> None:
    kind = "one ONNX model" if result.format == "onnx" else f"a bundle, {result.runtime} runtime"
    success(f"exported {result.model} to {result.out}: {kind}")
    for rel, entry in result.files.items():
        out.print(f"  {rel}  ({size(int(entry['size']))})", soft_wrap=True)
    parity = result.parity
    if parity is None:
        out.print("parity: not checked (the model runs in its own framework)")
    else:
        out.print(f"parity on {parity['rows']} {parity['sample']} rows: passed")
        for name, figures in parity["outputs"].items():
            out.print(f"  {name}: {_figures(figures)}", soft_wrap=True)
    if result.commands:
        out.print(f"install and serve, in {result.out}:")
        for command in result.commands:
            out.print(f"  {command}", soft_wrap=True, markup=False)


def _figures(figures: dict[str, Any]) -> str:
    shown = {k: v for k, v in figures.items() if k != "passed"}
    return ", ".join(
        f"{k.replace('_', ' ')} {v:.3g}" if isinstance(v, float) else f"{k.replace('_', ' ')} {v}"
        for k, v in shown.items()
    )
