import pyarrow as pa

from cloche.signatures import FieldSpec, Signature, from_table


def test_from_table_reads_names_dtypes_and_categories() -> None:
    table = pa.table({"age": [1, 2, 3], "spend": [1.5, 2.5, None], "plan": ["a", "b", "a"]})
    sig = from_table(table)
    assert sig.feature_names == ["age", "spend", "plan"]
    assert [f.dtype for f in sig.inputs] == ["int64", "float64", "string"]
    assert sig.inputs[2].categories == ("a", "b")
    assert sig.source == ("sample",)


def test_signature_round_trips_through_dict() -> None:
    sig = Signature(
        inputs=(FieldSpec("x", "float32", (-1, 4)),),
        outputs=(FieldSpec("probabilities", "float64", (-1, 2)),),
        input_kind="tensor",
        task="classification",
        classes=(0, 1),
        source=("model",),
    )
    assert Signature.from_dict(sig.to_dict()) == sig


def test_model_knowledge_wins_and_sample_fills_dtypes() -> None:
    from_model = Signature(
        inputs=(FieldSpec("plan", "float64"), FieldSpec("age", "float64")),
        task="classification",
        classes=("no", "yes"),
        source=("model",),
    )
    sample = from_table(pa.table({"age": [1, 2], "plan": ["a", "b"], "extra": [0, 0]}))
    merged = from_model.merged_with(sample)
    assert merged.feature_names == ["plan", "age"]
    assert [f.dtype for f in merged.inputs] == ["string", "int64"]
    assert merged.classes == ("no", "yes")
    assert merged.source == ("model", "sample")


def test_empty_signature_takes_the_sample() -> None:
    merged = Signature().merged_with(from_table(pa.table({"a": [1.0]})))
    assert merged.feature_names == ["a"]


def test_a_sample_names_the_columns_of_a_model_fitted_on_an_array() -> None:
    from_model = Signature(
        inputs=(FieldSpec("input", "float64", (-1, 2)),), input_kind="tensor", source=("model",)
    )
    named = from_model.merged_with(from_table(pa.table({"age": [1.0], "spend": [2.0]})))
    assert named.feature_names == ["age", "spend"] and named.input_kind == "tabular"
    wrong_width = from_model.merged_with(from_table(pa.table({"age": [1.0]})))
    assert wrong_width.input_kind == "tensor"
