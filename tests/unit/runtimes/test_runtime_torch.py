from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from cloche.errors import CorruptArtifact
from cloche.runtimes import get_runtime, has_predict_proba
from cloche.signatures import Signature


class Classifier(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.linear(x), dim=-1)


class TwoHeads(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.linear(x)
        return out, out.sum(dim=1)


@pytest.fixture(autouse=True)
def _seeded() -> None:
    torch.manual_seed(0)


def _reference(module: nn.Module, X: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return module(torch.from_numpy(X.astype(np.float32))).numpy()


def test_scripted_module_matches_torch(tabular, artifact_dir):
    module = Classifier().eval()
    torch.jit.script(module).save(str(artifact_dir / "model.pt"))
    model = get_runtime("torch").load(artifact_dir)

    assert model.framework == "torch"
    expected = _reference(module, tabular.X)
    np.testing.assert_allclose(model.predict(tabular.X), expected, rtol=1e-6)
    np.testing.assert_allclose(model.predict(tabular.frame), expected, rtol=1e-6)
    assert not has_predict_proba(model)


def test_traced_regressor_output_is_squeezed_to_one_value_per_row(tabular, artifact_dir):
    module = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1)).eval()
    torch.jit.trace(module, torch.zeros(2, 4)).save(str(artifact_dir / "model.pth"))
    model = get_runtime("torch").load(artifact_dir)

    prediction = model.predict(tabular.X)
    assert prediction.shape == (200,)
    np.testing.assert_allclose(prediction, _reference(module, tabular.X)[:, 0], rtol=1e-6)


def test_tuple_output_predicts_with_its_first_element(tabular, artifact_dir):
    module = TwoHeads().eval()
    torch.jit.script(module).save(str(artifact_dir / "model.pt"))
    model = get_runtime("torch").load(artifact_dir)

    with torch.inference_mode():
        expected = module(torch.from_numpy(tabular.X.astype(np.float32)))[0].numpy()
    np.testing.assert_allclose(model.predict(tabular.X), expected, rtol=1e-6)


def test_signature_knows_only_that_it_takes_a_tensor(artifact_dir):
    torch.jit.script(Classifier()).save(str(artifact_dir / "model.pt"))
    sig = get_runtime("torch").load(artifact_dir).signature()

    assert sig == Signature(input_kind="tensor", source=("model",))
    assert sig.is_empty


def test_torch_save_checkpoint_is_refused_with_a_hint(artifact_dir):
    torch.save(Classifier().state_dict(), artifact_dir / "weights.pt")

    with pytest.raises(CorruptArtifact, match=r"weights\.pt is not a TorchScript model") as info:
        get_runtime("torch").load(artifact_dir)
    assert "torch.jit.script" in (info.value.hint or "")


def test_truncated_model_raises_corrupt_artifact_naming_it(artifact_dir, truncate):
    torch.jit.script(Classifier()).save(str(artifact_dir / "churn.pt"))
    truncate(artifact_dir / "churn.pt")

    with pytest.raises(CorruptArtifact, match=r"churn\.pt is not a TorchScript model"):
        get_runtime("torch").load(artifact_dir)


def test_file_that_is_not_a_zip_archive_is_refused(artifact_dir):
    (artifact_dir / "model.pt").write_bytes(b"\x80\x02}q\x00.")

    with pytest.raises(CorruptArtifact, match=r"model\.pt is not a TorchScript model"):
        get_runtime("torch").load(artifact_dir)
