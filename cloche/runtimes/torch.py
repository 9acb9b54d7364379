"""PyTorch runtime: a TorchScript module (.pt, .pth) saved with ``torch.jit.save``."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from cloche.errors import CorruptArtifact
from cloche.runtimes import _common
from cloche.runtimes.base import require
from cloche.signatures import Signature

SUFFIXES = (".pt", ".pth", ".zip", ".torchscript")
EXPECTED = "a TorchScript model"
HINT = "export the model with torch.jit.script(model).save(path) (or torch.jit.trace)"


class TorchModel:
    """A TorchScript module on CPU: float32 in, the raw output as numpy out."""

    framework = "torch"

    def __init__(self, module: Any, torch: Any) -> None:
        self.module = module
        self._torch = torch

    def predict(self, X: Any) -> np.ndarray:
        torch = self._torch
        tensor = torch.from_numpy(np.ascontiguousarray(_common.to_numpy(X, np.float32)))
        with torch.inference_mode():
            out = self.module(tensor)
        if isinstance(out, tuple | list):
            out = out[0]
        arr = np.asarray(out.detach().cpu().numpy())
        return arr[:, 0] if arr.ndim == 2 and arr.shape[1] == 1 else arr

    def signature(self) -> Signature:
        # TorchScript keeps no reliable record of input names or shapes; a sample fills them in.
        return Signature(input_kind="tensor", source=("model",))


def _check_archive(path: Path) -> None:
    """Tell a TorchScript archive from a plain torch.save checkpoint before torch does."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise _common.corrupt(path, f"{EXPECTED} (a zip archive)", exc) from exc
    if not any(n.endswith("/constants.pkl") or "/code/" in n for n in names):
        raise CorruptArtifact(
            f"{path.name} is not {EXPECTED}: it holds no TorchScript code "
            "(a torch.save checkpoint or state_dict?)",
            hint=HINT,
        )


class TorchRuntime:
    name = "torch"
    extra = "torch"

    def load(self, artifact_dir: Path) -> TorchModel:
        torch = require("torch", extra=self.extra, framework="PyTorch")
        path = _common.model_file(artifact_dir, SUFFIXES)
        _check_archive(path)
        try:
            module = torch.jit.load(str(path), map_location="cpu")
        except Exception as exc:
            raise _common.corrupt(path, EXPECTED, exc) from exc
        module.eval()
        return TorchModel(module, torch)
