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


def test_a_model_with_test_time_augmentation_is_not_exported_and_serves_in_pytorch(tmp_path, shared):
    from earmark.bundle import load_model, save_model
    from earmark.serving import Predictor
    from earmark.sources import load_dataset
    from earmark.training import train

    df = load_dataset(shared / "fsdd" / "manifest.csv")
    df = df[df["group"].isin(["george", "jackson", "theo"])].groupby(["group", "label"]).head(3)
    model = train(df, model="cnn", epochs=2, seed=0, val_fraction=0, tta=True)
    assert model.estimator.tta is True
    with pytest.raises(ParameterError, match="tta"):
        export_onnx(model, tmp_path / "x.onnx")
    assert Predictor(model, runtime="auto").runtime == "estimator"  # the service keeps the averaging
    path = save_model(model, tmp_path / "m.earmark")
    again = load_model(path)
    assert again.estimator.tta is True
    clips = list(df["path"][:6])
    np.testing.assert_allclose(again.predict_proba(clips), model.predict_proba(clips), atol=1e-6)


def test_a_seed_ensemble_exports_to_onnx_and_round_trips_as_a_bundle(tmp_path, shared):
    from earmark.bundle import load_model, save_model
    from earmark.models._nets import SeedEnsemble
    from earmark.serving import Predictor
    from earmark.sources import load_dataset
    from earmark.training import train

    df = load_dataset(shared / "fsdd" / "manifest.csv")
    df = df[df["group"].isin(["george", "jackson", "theo"])].groupby(["group", "label"]).head(3)
    model = train(df, model="cnn", epochs=2, seed=0, val_fraction=0, ensemble=2)
    assert isinstance(model.estimator.module_, SeedEnsemble)
    info = export_onnx(model, tmp_path / "e.onnx", frontend=False)
    assert info["max_abs_diff"] < 1e-4
    clips = list(df["path"][:6])
    from earmark.audio import load_audio

    arrays = [load_audio(p, sr=model.preset.sample_rate)[0] for p in clips]
    on_onnx, in_torch = Predictor(model, runtime="onnx"), Predictor(model)
    feats = [in_torch.features(a) for a in arrays]
    np.testing.assert_allclose(on_onnx.proba(feats), in_torch.proba(feats), atol=1e-4)
    assert Predictor(model, runtime="auto").runtime == "onnx"
    again = load_model(save_model(model, tmp_path / "m.earmark"))
    assert again.estimator.ensemble == 2 and len(again.estimator.module_.members) == 2
    assert again.estimator.histories_ == model.estimator.histories_ and len(again.estimator.histories_) == 2
    from earmark.models._nets import first_member
    from earmark.transfer import ModuleBackbone

    # embeddings come from the first member: the same vectors as that network alone gives
    emb = ModuleBackbone(again.estimator, again.preset).embed_clips(arrays)
    assert emb.shape[0] == len(arrays) and np.isfinite(emb).all()
    import copy

    solo = copy.deepcopy(again.estimator)
    solo.module_ = first_member(solo.module_)
    np.testing.assert_allclose(ModuleBackbone(solo, again.preset).embed_clips(arrays), emb, atol=1e-6)
    np.testing.assert_allclose(again.predict_proba(clips), model.predict_proba(clips), atol=1e-6)
