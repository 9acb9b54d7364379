import cloche


def test_public_names_are_pinned() -> None:
    assert sorted(cloche.__all__) == ["Client", "ClocheError", "__version__"]
    for name in cloche.__all__:
        assert hasattr(cloche, name)


def test_importing_cloche_does_not_import_frameworks() -> None:
    import subprocess
    import sys

    code = (
        "import sys, cloche; cloche.Client();"
        "heavy = {'sklearn', 'xgboost', 'lightgbm', 'onnxruntime', 'torch', 'fastapi'};"
        "print(sorted(heavy & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
