"""ONNX export: onnxruntime equals PyTorch within 1e-4; a waveform graph pads and crops clips of
any length as ``earmark predict`` does, and the file says how to feed it (metadata_props)."""

from __future__ import annotations

import dataclasses
import io
import json

import numpy as np
import pytest

from _serving_model import fsdd_mlp
from earmark.errors import ParameterError
from earmark.serving.export import export_onnx


@pytest.fixture(scope="module")
def mlp_model():
    return fsdd_mlp()


def test_onnx_matches_torch(mlp_model, tmp_path):
    import onnx
    import onnxruntime as ort

    model, X = mlp_model
    info = export_onnx(model, tmp_path / "m.onnx")
    assert info["max_abs_diff"] < 1e-4 and info["output_name"] == "probabilities"
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    got = sess.run(None, {info["input_name"]: np.asarray(X[:16], np.float32)})[0]
    expected = model.estimator.predict_proba(X[:16])
    assert got.shape == (16, 10)
    assert np.max(np.abs(got - expected)) < 1e-4
    # a features graph (MFCC means have no torch twin) still says what it was computed from
    meta = {p.key: p.value for p in onnx.load(str(tmp_path / "m.onnx")).metadata_props}
    assert info["frontend"] is False and meta["earmark.input"] == "features"
    assert meta["earmark.sample_rate"] == "8000" and json.loads(meta["earmark.classes"]) == info["classes"]
    assert json.loads(meta["earmark.input_shape"]) == ["batch", X.shape[1]]


def test_classical_models_are_refused_with_a_reason(tmp_path):
    from _serving_model import fsdd_model

    with pytest.raises(ParameterError, match="Model 'logreg' is not a neural network"):
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


# -- a waveform graph: the bundle's own padding / cropping, in the graph --------------------------

DIGITS = ["0", "1", "7"]


@pytest.fixture(scope="module")
def cnn_export(tmp_path_factory, shared):
    """A small log-mel CNN bundle (digits 0, 1, 7 of three speakers; 6 epochs), its ONNX export
    (from the bundle path, as ``earmark export`` does) and FSDD files of a speaker it never heard."""
    from earmark.bundle import save_model
    from earmark.sources import load_dataset
    from earmark.training import train

    df = load_dataset(shared / "fsdd" / "manifest.csv")
    df = df[df["label"].astype(str).isin(DIGITS)]
    heard = df[df["group"].isin(["george", "jackson", "theo"])].groupby(["group", "label"]).head(10)
    model = train(heard, model="cnn", epochs=6, batch_size=8, seed=0, val_fraction=0, workers=1)
    folder = tmp_path_factory.mktemp("cnn")
    bundle = save_model(model, folder / "cnn.earmark")
    info = export_onnx(bundle, folder / "cnn.onnx")
    unheard = list(df[df["group"] == "nicolas"].groupby("label").head(3)["path"])
    return model, bundle, info, unheard


def _session(model):
    """An ONNX Runtime session on the CPU for a file path or the bytes of a model."""
    import onnxruntime as ort

    return ort.InferenceSession(model if isinstance(model, bytes) else str(model), providers=["CPUExecutionProvider"])


def test_the_waveform_graph_answers_like_earmark_predict_for_short_and_long_clips(cnn_export):
    from earmark.serving import Predictor

    model, bundle, info, unheard = cnn_export
    assert info["frontend"] and info["input_name"] == "waveform" and info["input_shape"] == ["batch", "samples"]
    n = int(round(model.preset.params["duration"] * model.preset.sample_rate))
    # the self-check ran clips shorter and longer than the clip length, against PyTorch and
    # against earmark's own feature code
    assert min(info["checked_samples"]) < n < max(info["checked_samples"])
    assert info["max_abs_diff"] < 1e-4 and info["pipeline_max_abs_diff"] < 1e-4

    sess, predictor = _session(info["path"]), Predictor.load(bundle)
    clips = [predictor.decode(p) for p in unheard]  # what `earmark predict` decodes: mono float32 at 16 kHz
    short = [c for c in clips if len(c) < n]
    longer = [np.concatenate(clips[:4]), np.concatenate(clips[4:])[:-1]]  # a speaker's clips one after another
    assert len(short) >= 3 and all(len(c) > n for c in longer)
    classes = info["classes"]
    assert classes == model.classes == DIGITS
    for clip in short + longer:
        got = sess.run(None, {"waveform": clip[None]})[0][0]  # as it is: no padding, no cropping
        answer = predictor.predict_arrays([clip])[0]
        np.testing.assert_allclose(got, [answer.probabilities[c] for c in classes], atol=1e-4)
        np.testing.assert_allclose(got, model.predict_proba([clip], sr=16000)[0], atol=1e-4)
        assert classes[int(np.argmax(got))] == answer.label
    # with the start-aligned preset, zeros after a clip change nothing: short clips batch together
    width = max(len(c) for c in short)
    batch = np.stack([np.pad(c, (0, width - len(c))) for c in short])
    np.testing.assert_allclose(sess.run(None, {"waveform": batch})[0], model.predict_proba(short, sr=16000), atol=1e-4)
    # the service's own ONNX runtime (features in) still agrees
    on_onnx = Predictor.load(bundle, runtime="onnx")
    assert on_onnx.runtime == "onnx"
    np.testing.assert_allclose(
        [[p.probabilities[c] for c in classes] for p in on_onnx.predict_arrays(short + longer)],
        model.predict_proba(short + longer, sr=16000), atol=1e-4,
    )


def test_the_onnx_file_says_its_sample_rate_clip_length_and_classes(cnn_export):
    import onnx

    import earmark
    from earmark.features import Preset

    model, _, info, _ = cnn_export
    proto = onnx.load(info["path"])
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta == info["metadata"]
    assert int(meta["earmark.sample_rate"]) == model.preset.sample_rate == 16000
    assert float(meta["earmark.duration"]) == model.preset.params["duration"] == info["duration"]
    assert int(meta["earmark.samples"]) == round(model.preset.params["duration"] * 16000)
    assert meta["earmark.align"] == "start"
    assert json.loads(meta["earmark.classes"]) == model.classes
    assert Preset.from_dict(json.loads(meta["earmark.preset"])) == model.preset
    assert meta["earmark.version"] == earmark.__version__
    assert (meta["earmark.input"], meta["earmark.output"], meta["earmark.task"]) == (
        "waveform", "probabilities", "classification")
    assert "16000 Hz" in proto.doc_string and "any length" in proto.doc_string


def test_a_centre_aligned_preset_is_cropped_around_the_centre_in_the_graph(cnn_export, tmp_path):
    from earmark.audio import load_audio
    from earmark.features import get_preset

    model, _, _, unheard = cnn_export
    centred = dataclasses.replace(model, preset=get_preset(model.preset, align="center"))
    info = export_onnx(centred, tmp_path / "c.onnx")
    assert info["metadata"]["earmark.align"] == "center" and info["pipeline_max_abs_diff"] < 1e-4
    sess, start = _session(info["path"]), _session(cnn_export[2]["path"])
    clips = [load_audio(p, sr=16000)[0] for p in unheard[:4]]
    n = int(round(16000 * model.preset.params["duration"]))
    odd = np.concatenate(clips)
    odd = odd[: len(odd) - 1 + (len(odd) - n) % 2]  # (len - n) is odd: the centre crop rounds down
    assert len(odd) > n and (len(odd) - n) % 2 == 1
    for clip in [clips[0], odd, np.concatenate(clips[:2])]:
        got = sess.run(None, {"waveform": clip[None]})[0][0]
        np.testing.assert_allclose(got, centred.predict_proba([clip], sr=16000)[0], atol=1e-4)
    # the crop position matters: the start-aligned graph answers differently for the long clip
    assert np.max(np.abs(start.run(None, {"waveform": odd[None]})[0] - sess.run(None, {"waveform": odd[None]})[0])) > 1e-4


@pytest.mark.parametrize("align", ["start", "center"])
def test_the_raw_waveform_frontend_equals_the_raw_preset_for_any_length(align):
    import torch

    from earmark.features import get_preset
    from earmark.serving.export import _frontend_for

    preset = get_preset("raw", duration=0.01, align=align, peak_normalize=True)  # 160 samples
    front = _frontend_for(preset)
    buf = io.BytesIO()
    torch.onnx.export(front, (torch.zeros(2, 300),), buf, input_names=["waveform"],
                      dynamic_axes={"waveform": {0: "batch", 1: "samples"}}, opset_version=17, dynamo=False)
    sess = _session(buf.getvalue())
    rng = np.random.default_rng(0)
    for length in (1, 37, 159, 160, 161, 480, 1001):
        y = rng.uniform(-0.3, 0.3, size=(2, length)).astype(np.float32)
        np.testing.assert_allclose(sess.run(None, {"waveform": y})[0], preset.transform_batch(list(y)), atol=1e-7)


def test_presets_without_a_torch_twin_or_a_fixed_length_keep_the_features_graph():
    from earmark.features import get_preset
    from earmark.serving.export import _frontend_for

    assert _frontend_for(get_preset("mfcc-seq", duration=None)) is None
    assert _frontend_for(get_preset("mfcc-mean")) is None
    assert _frontend_for(get_preset("logmel")) is not None


def test_cli_export_says_what_the_graph_takes(cnn_export, tmp_path):
    from typer.testing import CliRunner

    from earmark.cli.main import app

    _, bundle, _, _ = cnn_export
    res = CliRunner().invoke(app, ["export", str(bundle), "--onnx", str(tmp_path / "m.onnx")])
    assert res.exit_code == 0, res.output
    assert "waveform (mono float32 at 16000 Hz, any length; padded/cropped to 1 s" in res.output
    assert (tmp_path / "m.onnx").stat().st_size > 10_000


@pytest.mark.parametrize(("target", "params"), [("pitch", {}), ("label", {"arch": "reference"})])
def test_networks_with_sized_pooling_export_with_the_waveform_frontend(tmp_path, shared, target, params):
    """The pitch regressor pools time only and the reference CNN pools to 2x2: both export as one
    waveform graph (the exporter cannot lower those pools on a symbolic size) and answer the same."""
    from earmark.sources import load_dataset
    from earmark.training import train

    df = load_dataset(shared / "instruments" / "manifest.csv")
    df = df.groupby("label").head(4)
    model = train(df, model="cnn" if target == "label" else "cnn-reg", target=None if target == "label" else target, epochs=1, seed=0,
                  val_fraction=0, workers=1, **params)
    info = export_onnx(model, tmp_path / "m.onnx")
    assert info["frontend"] and info["input_name"] == "waveform"
    assert info["max_abs_diff"] < 1e-3
    assert info["pipeline_max_abs_diff"] < 1e-3 if target == "label" else info["pipeline_max_abs_diff"] is None
    from earmark.audio import load_audio

    clip = load_audio(df["path"].iloc[0], sr=model.preset.sample_rate)[0]
    got = _session(info["path"]).run(None, {"waveform": clip[None]})[0][0]
    want = (model.predict_proba([clip], sr=model.preset.sample_rate)[0] if target == "label"
            else model.predict([clip], sr=model.preset.sample_rate)["prediction"].to_numpy(float))
    np.testing.assert_allclose(np.ravel(got), np.ravel(want), rtol=1e-3, atol=1e-3)
