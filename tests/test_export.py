"""ONNX export: onnxruntime equals PyTorch within 1e-4."""

from __future__ import annotations

import numpy as np
import pytest

from _serving_model import fsdd_mlp
from earmark.errors import ParameterError
from earmark.serving.export import export_onnx


@pytest.fixture(scope="module")
def mlp_model():
    return fsdd_mlp()


def test_onnx_matches_torch(mlp_model, tmp_path):
    import onnxruntime as ort

    model, X = mlp_model
    info = export_onnx(model, tmp_path / "m.onnx")
    assert info["max_abs_diff"] < 1e-4 and info["output_name"] == "probabilities"
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    got = sess.run(None, {info["input_name"]: np.asarray(X[:16], np.float32)})[0]
    expected = model.estimator.predict_proba(X[:16])
    assert got.shape == (16, 10)
    assert np.max(np.abs(got - expected)) < 1e-4


def test_classical_models_are_refused_with_a_reason(tmp_path):
    from _serving_model import fsdd_model

    with pytest.raises(ParameterError, match="not a neural network"):
        export_onnx(fsdd_model(), tmp_path / "x.onnx")
