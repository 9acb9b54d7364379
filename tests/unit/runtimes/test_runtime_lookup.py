from __future__ import annotations

import subprocess
import sys

import pytest

from cloche.errors import UnknownFramework
from cloche.runtimes import RUNTIMES, get_runtime, runtime_names

FRAMEWORK_MODULES = ("sklearn", "xgboost", "lightgbm", "onnx", "onnxruntime", "torch", "joblib")


def test_every_runtime_is_listed_with_its_extra():
    assert runtime_names() == ["sklearn", "xgboost", "lightgbm", "onnx", "torch", "custom"]
    for name in runtime_names():
        runtime = get_runtime(name)
        assert runtime.name == name
        assert runtime.extra == ("" if name == "custom" else name)


def test_common_spellings_reach_the_same_runtime():
    assert get_runtime("PyTorch") is get_runtime("torch")
    assert get_runtime("scikit-learn") is get_runtime("sklearn")


def test_unknown_framework_lists_the_known_ones():
    with pytest.raises(UnknownFramework, match="unknown framework 'tensorflow'") as info:
        get_runtime("tensorflow")
    assert info.value.hint == f"pass --framework with one of: {', '.join(RUNTIMES)}"


def test_looking_up_runtimes_imports_no_framework():
    code = (
        "import sys\n"
        "from cloche.runtimes import get_runtime, runtime_names\n"
        "import cloche.registry.detect\n"
        "[get_runtime(n) for n in runtime_names()]\n"
        f"print(sorted(m for m in {FRAMEWORK_MODULES!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
