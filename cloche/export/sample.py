"""The rows a parity check runs on: the version's baseline, or rows generated from its signature.

Rows become model input exactly as the server decodes a request's ``instances``
(``serving.inputs.rows_to_input``), so both models see what they will see when serving.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from cloche.errors import ParityFailed
from cloche.registry.datasets import read_table
from cloche.registry.entities import ModelVersion
from cloche.registry.refs import parse_ref
from cloche.registry.service import resolve_version_row
from cloche.serving.inputs import NUMERIC, InputSpec, rows_to_input
from cloche.signatures import Signature
from cloche.store.store import Store

SAMPLE_ROWS = 1000
SEED = 0  # one sample per version: a re-export checks the same rows


@dataclass(frozen=True)
class Sample:
    X: np.ndarray
    source: Literal["baseline", "generated"]

    @property
    def rows(self) -> int:
        return int(self.X.shape[0])


def parity_sample(
    store: Store, version: ModelVersion, signature: Signature, width: int | None
) -> Sample:
    """Up to SAMPLE_ROWS rows of the baseline, else as many generated from the signature.

    ``width`` is the feature count of a tensor model whose signature does not state it.
    """
    spec = InputSpec.from_signature(signature)
    rows = _baseline_rows(store, version, spec)
    if rows is not None:
        return Sample(rows_to_input(rows, spec), "baseline")
    generated = generated_rows(signature, SAMPLE_ROWS, width=width)
    return Sample(rows_to_input(generated, spec), "generated")


def _baseline_rows(store: Store, version: ModelVersion, spec: InputSpec) -> list[Any] | None:
    """The baseline's feature columns as rows, or None without a baseline that has them."""
    with store.transaction() as session:  # the entity hides the baseline's artifact key
        meta = resolve_version_row(session, parse_ref(version.ref)).baseline
    if not meta or "key" not in meta:
        return None
    files = {meta["file"]: {"sha256": meta["sha256"], "size": meta["size"]}}
    table = read_table(store.artifacts.local_dir(meta["key"], files) / meta["file"])
    if spec.names:
        if any(name not in table.column_names for name in spec.names):
            return None
        table = table.select(list(spec.names))
    elif spec.width is None or table.num_columns != spec.width:
        return None  # a tensor model: the baseline's columns must be its features, in order
    if table.num_rows > SAMPLE_ROWS:
        # Spread over the whole baseline, not its head: files are often sorted by time or label.
        rng = np.random.default_rng(SEED)
        table = table.take(np.sort(rng.choice(table.num_rows, SAMPLE_ROWS, replace=False)))
    columns = [column.to_pylist() for column in table.columns]
    return [list(row) for row in zip(*columns, strict=True)]


def generated_rows(signature: Signature, n: int, *, width: int | None = None) -> list[list[Any]]:
    """``n`` seeded rows of values of each feature's type.

    Numbers span several orders of magnitude, both signs (|x| from 0.1 to 1000), so that tree
    models meet many of their split thresholds; text features take the signature's categories.
    A model whose features live on a narrow scale is checked on fewer of its branches than a
    baseline would check: attach a baseline for a closer check.
    """
    rng = np.random.default_rng(SEED)
    spec = InputSpec.from_signature(signature)
    dtypes = list(spec.dtypes) or [spec.tensor_dtype] * (spec.width or width or 0)
    if not dtypes:
        raise ParityFailed(
            "cannot check parity: the signature does not say how many features the model "
            "takes, and the version has no baseline",
            hint="attach a baseline with `cloche models baseline REF FILE`, or pass --native",
        )
    categories = [f.categories for f in signature.inputs] if spec.names else []
    columns = [
        _column(rng, dtype, n, categories[j] if j < len(categories) else None)
        for j, dtype in enumerate(dtypes)
    ]
    return [list(row) for row in zip(*columns, strict=True)]


def _column(
    rng: np.random.Generator, dtype: str, n: int, cats: tuple[Any, ...] | None
) -> list[Any]:
    if dtype not in NUMERIC:
        choices = list(cats) if cats else ["a", "b", "c"]
        return [choices[i] for i in rng.integers(0, len(choices), n)]
    if dtype == "bool":
        return [bool(v) for v in rng.integers(0, 2, n)]
    if dtype.startswith("uint"):
        return [int(v) for v in rng.integers(0, 100, n)]
    if dtype.startswith("int"):
        return [int(v) for v in rng.integers(-10, 100, n)]
    return [float(v) for v in rng.standard_normal(n) * 10 ** rng.uniform(-1, 3, n)]
