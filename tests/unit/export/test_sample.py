"""Rows generated from a signature for the parity check when a version has no baseline."""

from __future__ import annotations

import pytest

from cloche.errors import ParityFailed
from cloche.export.sample import generated_rows
from cloche.signatures import FieldSpec, Signature

TABULAR = Signature(
    inputs=(
        FieldSpec("plan", "string", categories=("basic", "pro")),
        FieldSpec("tenure", "int64"),
        FieldSpec("spend", "float64"),
        FieldSpec("active", "bool"),
    )
)


def test_rows_are_seeded_and_typed_after_the_signature() -> None:
    rows = generated_rows(TABULAR, 500)
    assert rows == generated_rows(TABULAR, 500)  # the same rows at every export
    plans, tenures, spends, actives = zip(*rows, strict=True)
    assert set(plans) == {"basic", "pro"}
    assert all(isinstance(t, int) for t in tenures)
    assert all(isinstance(a, bool) for a in actives)
    # Numbers spread over orders of magnitude and both signs, to reach many tree splits.
    magnitudes = [abs(s) for s in spends]
    assert min(magnitudes) < 1 < 100 < max(magnitudes)
    assert any(s < 0 for s in spends) and any(s > 0 for s in spends)


def test_a_tensor_signature_takes_its_width_from_the_shape_or_the_model() -> None:
    stated = Signature(inputs=(FieldSpec("input", "float32", (-1, 3)),), input_kind="tensor")
    assert {len(r) for r in generated_rows(stated, 10)} == {3}
    unknown = Signature(inputs=(FieldSpec("input", "float32", (-1, -1)),), input_kind="tensor")
    assert {len(r) for r in generated_rows(unknown, 10, width=6)} == {6}
    with pytest.raises(ParityFailed, match="how many features"):
        generated_rows(unknown, 10)
