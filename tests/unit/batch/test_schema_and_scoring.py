"""Column checks, value conversion and the Scorer on its own (as the Ray engine uses it)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from cloche.batch.schema import ColumnPlan, check_input, coerce
from cloche.batch.scoring import Scorer
from cloche.batch.spec import JobSpec
from cloche.errors import BatchSchemaMismatch
from cloche.signatures import Signature
from tests.unit.batch.conftest import FEATURES, Models, numeric_table

SPEC = JobSpec(input="in", output="out")


def test_text_converts_to_numbers_with_blanks_as_missing_and_bad_values_reported() -> None:
    text = pa.array(["1", " 2.5 ", "", "NA", "abc", "1e3", None, "-inf"])
    values, bad = coerce(text, pa.float64())
    assert values.to_pylist() == [1.0, 2.5, None, None, None, 1000.0, None, float("-inf")]
    assert bad == [4]


def test_conversion_to_a_passthrough_type_reports_each_value_that_does_not_fit() -> None:
    values, bad = coerce(pa.array(["1", "x", "3", "4.5"]), pa.int64())
    assert values.to_pylist() == [1, None, 3, None] and bad == [1, 3]
    big, bad = coerce(pa.array([2**60]), pa.float64())  # precision, not an error
    assert big.to_pylist() == [float(2**60)] and bad == []


def test_tensor_model_width_must_match_the_numeric_columns() -> None:
    signature = Signature.from_dict(
        {
            "inputs": [{"name": "input", "dtype": "float32", "shape": [-1, 3]}],
            "input_kind": "tensor",
        }
    )
    table = pa.table({"id": [1], "a": [1.0], "b": [2.0], "note": ["x"]})
    with pytest.raises(BatchSchemaMismatch, match="takes 3 numeric columns; the input has 2"):
        check_input(
            [("f", table.schema, table)], "parquet", signature, JobSpec("i", "o", id_column="id")
        )
    wide = table.append_column("c", pa.array([3], pa.int32()))
    plan = check_input(
        [("f", wide.schema, wide)], "parquet", signature, JobSpec("i", "o", id_column="id")
    )
    assert (plan.features, plan.tensor, plan.tensor_dtype) == (("a", "b", "c"), True, "float32")


def test_column_plan_survives_its_json_form() -> None:
    schema = pa.schema([("t", pa.timestamp("us", tz="UTC")), ("f", pa.float64())])
    plan = ColumnPlan(("f",), ("float64",), False, id_column="t", read_schema=schema)
    assert ColumnPlan.from_dict(plan.to_dict()) == plan


def test_scorer_isolates_the_rows_the_model_fails_on(models: Models) -> None:
    table = numeric_table(40, seed=30)
    f3 = table["f3"].to_numpy().copy()
    f3[[3, 17]] = np.nan  # LogisticRegression refuses NaN: only these rows may fail
    table = table.set_column(table.schema.get_field_index("f3"), "f3", pa.array(f3))

    scored = Scorer(models.numeric, SPEC).score(table.to_batches()[0], first_row=1000)

    assert [e["row"] for e in scored.errors] == [1003, 1017]
    assert "NaN" in scored.errors[0]["message"] and np.isnan(scored.errors[0]["input"]["f3"])
    rows = scored.table.column("row").to_pylist()
    assert rows == [1000 + i for i in range(40) if i not in (3, 17)]
    kept = table.take([i for i in range(40) if i not in (3, 17)]).select(FEATURES).to_pandas()
    assert scored.table.column("prediction").to_pylist() == (
        models.estimators["numeric"].predict(kept).tolist()
    )


def test_scorer_gives_the_same_schema_when_no_row_of_a_batch_is_good(models: Models) -> None:
    scorer = Scorer(models.mixed, JobSpec("i", "o", id_column="id"))
    good = pa.table({"id": [1], "tenure": ["3"], "spend": ["1.5"], "city": ["nice"]})
    bad = pa.table({"id": [2], "tenure": ["x"], "spend": ["1.5"], "city": ["nice"]})
    first, second = scorer.score(good, 0), scorer.score(bad, 1)
    assert second.table.num_rows == 0 and second.table.schema == first.table.schema
    assert first.table.column_names == ["id", "prediction", "probability_no", "probability_yes"]
    assert second.errors == [
        {
            "row": 1,
            "input": {"tenure": "x", "spend": "1.5", "city": "nice", "id": 2},
            "message": "column 'tenure': 'x' is not a valid double",
        }
    ]
