"""The bundle's README and Dockerfile: how to install and serve it, on a machine or in an image."""

from __future__ import annotations

import json
from typing import Any

from cloche.export.manifest import REQUIREMENTS, WHEELS_DIR

PORT = 8080
VENV = ".venv"


def install_commands(*, with_wheels: bool) -> list[str]:
    """The two commands, run inside the bundle folder, that install and serve it."""
    # Without wheels the index gives the rest; cloche's own wheel is always in wheels/.
    source = (
        f"--no-index --find-links {WHEELS_DIR}" if with_wheels else f"--find-links {WHEELS_DIR}"
    )
    pip = f"{VENV}/bin/pip install {source} --no-deps -r {REQUIREMENTS}"
    return [f"python3 -m venv {VENV} && {pip}", f"{VENV}/bin/cloche serve ."]


def dockerfile(*, python_version: str, pip_wheel: str | None) -> str:
    """An image that serves the bundle; with wheels it installs offline, even without pip."""
    if pip_wheel is not None:
        # pip runs from its own wheel: a base image with python3 but no pip or venv will do.
        pip = f"python3 /bundle/{WHEELS_DIR}/{pip_wheel}/pip"
        source = f"--no-index --find-links /bundle/{WHEELS_DIR}"
    else:
        pip, source = "python3 -m pip", f"--find-links /bundle/{WHEELS_DIR}"
    install = " ".join(
        part
        for part in (
            pip,
            "install --no-deps --no-cache-dir --disable-pip-version-check",
            source,
            f"--target /opt/cloche -r /bundle/{REQUIREMENTS}",
        )
        if part
    )
    return f"""\
# A cloche edge bundle as an image. Build: docker build -t MODEL-edge .
# Run: docker run -p {PORT}:{PORT} -e CLOCHE_EDGE_TOKEN=... MODEL-edge
# (a server bound beyond loopback requires a token; requests send Authorization: Bearer ...)
ARG BASE=python:{python_version}-slim
FROM ${{BASE}}
COPY . /bundle
RUN {install}
ENV PYTHONPATH=/opt/cloche PYTHONDONTWRITEBYTECODE=1
EXPOSE {PORT}
CMD ["python3", "-m", "cloche", "serve", "/bundle", "--host", "0.0.0.0", "--port", "{PORT}"]
"""


def readme(manifest: dict[str, Any], commands: list[str], *, with_wheels: bool) -> str:
    """What the model is, its signature, the parity figures, and how to install and serve."""
    model = manifest["model"]
    name, ref = model["name"], f"{model['name']}:{model['version']}"
    signature = manifest["signature"]
    return "\n".join(
        [
            f"# {ref} — cloche edge bundle",
            "",
            f"Model `{ref}` ({model['framework']}, sha256 `{model['sha256'][:16]}…`), exported "
            f"by cloche {manifest['cloche_version']} at {manifest['created_at']}. It runs here "
            f"with the **{manifest['runtime']}** runtime on Python "
            f"{manifest['requirements']['python']}"
            + (f" ({manifest['requirements']['platform']})" if with_wheels else "")
            + ".",
            "",
            "## Install and serve",
            "",
            "In this folder:",
            "",
            "```bash",
            *commands,
            "```",
            "",
            _install_note(with_wheels),
            *_unpinned_lines(manifest["requirements"].get("unpinned_imports") or []),
            *_slimmed_lines(manifest.get("slimmed") or {}),
            "",
            f"The server listens on 127.0.0.1:{PORT}. To accept other machines, set a token and "
            "bind all addresses: `CLOCHE_EDGE_TOKEN=... .venv/bin/cloche serve . --host "
            "0.0.0.0`; every request then sends `Authorization: Bearer <token>`.",
            "",
            "```bash",
            f"curl -H 'Content-Type: application/json' -d '{_v1_body(signature)}' \\",
            f"     http://127.0.0.1:{PORT}/v1/models/{name}:predict",
            f"curl -H 'Content-Type: application/json' -d '{_v2_body(signature)}' \\",
            f"     http://127.0.0.1:{PORT}/v2/models/{name}/infer",
            "```",
            "",
            "Predictions are logged in this folder's spool. Send them to the central server, "
            "where monitors count them, when a link exists, with a token of the edge role "
            "(`cloche tokens create --role edge` on the central server):",
            "",
            "```bash",
            f"{VENV}/bin/cloche edge sync . --to https://CENTRAL:8080 --token TOKEN",
            "```",
            "",
            "A central server on a private or loopback address must be allowed first, e.g. "
            "`CLOCHE_EGRESS__ALLOW=10.0.0.0/8` in the environment of `cloche edge sync`.",
            "",
            "Or build an image with the `Dockerfile` here.",
            "",
            "## Signature",
            "",
            *_signature_lines(signature),
            "",
            "## Parity",
            "",
            *_parity_lines(manifest.get("parity")),
            "",
            "Every file is listed with its sha256 in `manifest.json`; `cloche serve` refuses a "
            "bundle whose files changed.",
            "",
        ]
    )


def _install_note(with_wheels: bool) -> str:
    if with_wheels:
        return (
            f"Everything installs from `{WHEELS_DIR}/`, with no network; pip checks each wheel "
            f"against its hash in `{REQUIREMENTS}`."
        )
    return (
        f"This installs cloche from its wheel in `{WHEELS_DIR}/` and the rest of "
        f"`{REQUIREMENTS}` from your package index. Export with `--with-wheels` for a bundle "
        "that installs with no network."
    )


def _unpinned_lines(modules: list[str]) -> list[str]:
    if not modules:
        return []
    names = ", ".join(f"`{name}`" for name in modules)
    return [
        "",
        f"The model's code also imports {names}, which was not installed where it was "
        f"exported, so `{REQUIREMENTS}` does not pin it: if the model needs it, install it "
        "into `.venv` as well.",
    ]


def _slimmed_lines(slimmed: dict[str, Any]) -> list[str]:
    """A line per wheel the export rewrote: what was left out, and why."""
    lines = []
    for project, entry in slimmed.items():
        removed = ", ".join(f"`{path.rsplit('/', 1)[-1]}`" for path in entry["removed"])
        size = sum(entry["removed"].values()) / 2**20
        lines += [
            "",
            f"`{project}=={entry['version']}` is `{entry['from']}` (sha256 "
            f"`{entry['from_sha256'][:16]}…`) without {removed} ({size:.0f} MB): {entry['why']}. "
            "Every other file is the original's. Export with `--no-slim` to keep it whole.",
        ]
    return lines


def _signature_lines(signature: dict[str, Any]) -> list[str]:
    lines = [f"Task: {signature.get('task', 'unknown')}; input: {signature.get('input_kind')}."]
    if signature.get("classes") is not None:
        lines.append(f"Classes: {', '.join(str(c) for c in signature['classes'])}.")
    lines += ["", "| input | dtype | shape |", "| --- | --- | --- |"]
    lines += [f"| {f['name']} | {f['dtype']} | {f['shape']} |" for f in signature.get("inputs", [])]
    outputs = ", ".join(f"`{f['name']}` ({f['dtype']})" for f in signature.get("outputs", []))
    return [*lines, "", f"Outputs: {outputs or 'as the model gives them'}."]


def _parity_lines(parity: dict[str, Any] | None) -> list[str]:
    if parity is None:
        return ["The model runs in its own framework (not converted), so there is no parity check."]
    lines = [
        f"The ONNX model was checked against the original on {parity['rows']} "
        f"{parity['sample']} rows: {'passed' if parity['passed'] else 'FAILED'}.",
        "",
    ]
    for name, figures in parity["outputs"].items():
        tolerance = parity["tolerance"].get(name, {})
        shown = {k: v for k, v in figures.items() if k != "passed"}
        lines.append(f"- `{name}`: {_pairs(shown)} (tolerance: {_pairs(tolerance) or 'none'})")
    return lines


def _pairs(values: dict[str, Any]) -> str:
    return ", ".join(
        f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in values.items()
    )


def _example_row(signature: dict[str, Any]) -> list[Any]:
    inputs = signature.get("inputs", [])
    if signature.get("input_kind") == "tensor" and inputs:
        shape = inputs[0].get("shape", [])
        width = shape[1] if len(shape) == 2 and shape[1] > 0 else 1
        return [0.0] * width
    row: list[Any] = []
    for field in inputs:
        categories = field.get("categories")
        if categories:
            row.append(categories[0])
        elif field["dtype"] in ("string", "category"):
            row.append("a")
        else:
            row.append(0)
    return row


def _v1_body(signature: dict[str, Any]) -> str:
    return json.dumps({"instances": [_example_row(signature)]})


def _v2_body(signature: dict[str, Any]) -> str:
    """One [1, features] tensor for numeric rows, else one tensor per feature."""
    row = _example_row(signature)
    if all(isinstance(v, int | float) for v in row):
        tensors = [{"name": "input", "shape": [1, len(row)], "datatype": "FP64", "data": row}]
    else:
        tensors = [
            {
                "name": field["name"],
                "shape": [1],
                "datatype": "FP64" if isinstance(value, int | float) else "BYTES",
                "data": [value],
            }
            for field, value in zip(signature["inputs"], row, strict=True)
        ]
    return json.dumps({"inputs": tensors})
