import numpy as np
import pytest

from cloche.errors import InvalidInput
from cloche.serving.inputs import InputSpec, rows_to_input
from cloche.signatures import FieldSpec, Signature

NUMERIC = InputSpec.from_signature(
    Signature(inputs=(FieldSpec("age", "int64"), FieldSpec("spend", "float64")))
)
MIXED = InputSpec.from_signature(
    Signature(inputs=(FieldSpec("plan", "string"), FieldSpec("spend", "float64")))
)
TENSOR = InputSpec.from_signature(
    Signature(inputs=(FieldSpec("input", "float32", (-1, 3)),), input_kind="tensor")
)


def test_numeric_rows_become_a_float_matrix() -> None:
    X = rows_to_input([[1, 2.5], [3, None]], NUMERIC)
    assert X.dtype == np.float64 and X.shape == (2, 2) and np.isnan(X[1, 1])


def test_rows_by_name_follow_the_signature_order() -> None:
    X = rows_to_input([{"spend": 2.5, "age": 1, "extra": "ignored"}], NUMERIC)
    assert X.tolist() == [[1.0, 2.5]]


def test_mixed_rows_keep_their_strings() -> None:
    X = rows_to_input([{"plan": "gold", "spend": 1}], MIXED)
    assert X.dtype == object and X.tolist() == [["gold", 1]]


def test_tensor_models_take_their_dtype() -> None:
    assert rows_to_input([[1, 2, 3]], TENSOR).dtype == np.float32


@pytest.mark.parametrize(
    ("rows", "spec", "message"),
    [
        ([], NUMERIC, "is empty"),
        ({"a": 1}, NUMERIC, "must be a list of rows"),
        ([[1]], NUMERIC, "each row must have 2 values, got 1"),
        ([[1, "x"]], NUMERIC, "feature 'spend' must be a number"),
        ([{"age": 1}], NUMERIC, "missing feature 'spend'"),
        ([{"age": 1, "spend": 2}, [1, 2]], NUMERIC, r"instances\[1\] must be an object"),
        ([[1, 2], 3], NUMERIC, r"instances\[1\] must be a list"),
        ([[3, 1.0]], MIXED, "feature 'plan' must be a string"),
        ([[1, 2]], TENSOR, "each row must have 3 values, got 2"),
        ([[1, 2, 3], [1, 2]], TENSOR, r"instances\[1\] has 2 values; the model takes 3"),
        ([{"a": 1}], TENSOR, "no feature names"),
        ([[[1, 2, 3]]], TENSOR, "must form a 2-D table"),
    ],
)
def test_bad_rows_name_the_field_and_the_expectation(rows, spec, message) -> None:
    with pytest.raises(InvalidInput, match=message):
        rows_to_input(rows, spec)


def test_ragged_rows_with_no_single_bad_row_are_invalid_input_not_numpys_error() -> None:
    unsized = InputSpec((), (), None, True, "float64")  # a tensor signature with no width
    with pytest.raises(InvalidInput, match="differ in length or nesting"):
        rows_to_input([[1.0, 2.0], [1.0, 2.0, 3.0]], unsized)


def test_a_large_table_converts_in_pieces_to_the_same_array() -> None:
    from cloche.serving.inputs import CHUNK_ROWS

    n = 2 * CHUNK_ROWS + 3  # three pieces, the last a short one
    rows = [[float(i), i * 2.0] for i in range(n)]
    spec = InputSpec((), (), 2, True, "float64")
    assert np.array_equal(rows_to_input(rows, spec), np.asarray(rows))
    with pytest.raises(InvalidInput, match=rf"instances\[{n - 1}\]"):
        rows_to_input([*rows[:-1], ["x", 1.0]], spec)
