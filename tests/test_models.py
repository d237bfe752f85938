"""Models: registry, every model learning on small real subsets, sklearn contract, persistence,
determinism and resume-from-checkpoint."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, GroupKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.utils.estimator_checks import parametrize_with_checks

from earmark.errors import BundleError, ParameterError
from earmark.features import extract, get_preset
from earmark.models import (
    AugmentConfig,
    TorchClassifier,
    TorchRegressor,
    augment_batch,
    build_network,
    dump_estimator,
    fix_length,
    get_model,
    get_spec,
    list_models,
    load_estimator,
    mixup,
)

SHARED = Path(os.environ.get("EARMARK_SHARED", Path(__file__).resolve().parents[1].parent / "shared")) / "data"
FSDD = SHARED / "fsdd"

torch.set_num_threads(1)


def _fsdd_subset(digits: tuple[int, ...], per: int) -> pd.DataFrame:
    m = pd.read_csv(FSDD / "manifest.csv")
    m["index"] = m["path"].str.extract(r"_(\d+)\.wav$")[0].astype(int)
    m = m[m["label"].isin(digits) & (m["index"] < per)].copy()
    m["path"] = [str(FSDD / p) for p in m["path"]]
    return m.reset_index(drop=True)


@pytest.fixture(scope="module")
def fsdd_small() -> pd.DataFrame:
    """All 10 digits, 5 speakers, 6 takes each: 300 clips."""
    return _fsdd_subset(tuple(range(10)), 6)


@pytest.fixture(scope="module")
def mfcc_mean(fsdd_small):
    fs = extract(fsdd_small, get_preset("mfcc-mean"), workers=1)
    assert not fs.errors
    return fs.X, fsdd_small["label"].to_numpy(), fsdd_small["speaker"].to_numpy()


@pytest.fixture(scope="module")
def logmel_small():
    """3 digits, 5 speakers, 8 takes: 120 log-mel clips (64 x 101)."""
    df = _fsdd_subset((0, 1, 2), 8)
    fs = extract(df, get_preset("logmel"), workers=1)
    return fs.X, df["label"].to_numpy(), df["speaker"].to_numpy()


def _split_by_take(y: np.ndarray, groups: np.ndarray):
    """Train on speakers other than 'theo', test on theo (unseen speaker)."""
    te = groups == "theo"
    return ~te, te


# ---------------------------------------------------------------------------- registry


def test_registry_has_contract_names():
    names = {m.name for m in list_models()}
    assert {"logreg", "knn", "gnb", "svm", "rf", "gbdt", "mlp", "cnn", "lstm", "cnn1d"} <= names
    assert {"ridge", "svr", "rf-reg", "gbdt-reg"} <= {m.name for m in list_models("regression")}
    assert get_spec("cnn").preset == "logmel"
    assert get_spec("svm").to_dict()["task"] == "classification"


def test_unknown_model_names_the_fix():
    with pytest.raises(ParameterError, match="Did you mean 'cnn'"):
        get_model("cnnn")
    with pytest.raises(ParameterError, match="arch"):
        TorchClassifier("mlp", "reference-999").fit(np.zeros((4, 3)), [0, 1, 0, 1])


@pytest.mark.parametrize("name", ["logreg", "knn", "gnb", "svm", "rf", "gbdt"])
def test_classical_models_learn_unseen_speaker(name, mfcc_mean):
    X, y, g = mfcc_mean
    tr, te = _split_by_take(y, g)
    params = {"n_estimators": 60} if name == "rf" else {}
    est = get_model(name, **params).fit(X[tr], y[tr])
    acc = est.score(X[te], y[te])
    assert acc >= 0.3, f"{name}: {acc:.2f} on an unseen speaker (chance 0.10)"
    proba = est.predict_proba(X[te])
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-4)


@pytest.mark.parametrize("arch", ["default", "reference-40"])
def test_mlp_learns(arch, mfcc_mean):
    X, y, g = mfcc_mean
    tr, te = _split_by_take(y, g)
    est = get_model("mlp", arch=arch, epochs=40).fit(X[tr], y[tr], groups=g[tr])
    assert est.score(X[te], y[te]) >= 0.3
    assert list(est.classes_) == list(range(10))
    assert len(est.history_) >= 1 and {"loss", "lr", "val_accuracy"} <= set(est.history_[0])


def test_cnn_learns_unseen_speaker(logmel_small):
    X, y, g = logmel_small
    tr, te = _split_by_take(y, g)
    est = get_model("cnn", epochs=15, batch_size=16, validation_fraction=0).fit(X[tr], y[tr])
    acc = est.score(X[te], y[te])
    assert acc >= 0.6, f"cnn: {acc:.2f} on an unseen speaker (chance 0.33)"
    assert est.module_.training is False
    assert est.input_shape_ == (64, 101)


def _assert_onnx_matches(module: torch.nn.Module, example: np.ndarray, check: np.ndarray, path,
                         atol: float = 1e-4) -> None:
    """Export ``module`` to ONNX (dynamic batch) and check ONNX Runtime answers as torch on ``check``."""
    import onnxruntime as ort

    torch.onnx.export(module.eval(), torch.as_tensor(example), str(path), input_names=["x"],
                      dynamic_axes={"x": {0: "batch"}}, dynamo=False)
    got = ort.InferenceSession(str(path)).run(None, {"x": check})[0]
    with torch.no_grad():
        want = module(torch.as_tensor(check)).numpy()
    np.testing.assert_allclose(got, want, atol=atol)
    assert (got.argmax(axis=1) == want.argmax(axis=1)).all()


def test_cnn_resnorm_learns_and_exports(logmel_small, tmp_path):
    """net_options={"resnorm": 0.0}: frequency-wise instance normalisation after the stem and each block."""
    from earmark.models._nets import ResNorm

    X, y, g = logmel_small
    tr, te = _split_by_take(y, g)
    est = get_model("cnn", epochs=15, batch_size=16, validation_fraction=0, net_options={"resnorm": 0.0})
    est.fit(X[tr], y[tr])
    assert sum(isinstance(m, ResNorm) for m in est.module_.modules()) == 4  # stem + 3 blocks
    assert est.score(X[te], y[te]) >= 0.5  # an unseen speaker, 3 digits: chance is 1/3
    x = torch.randn(3, 5, 8, 7) * 4 + 2
    out = ResNorm(0.0)(x)  # each example's frequency rows: mean 0, variance 1 over channels and time
    assert torch.allclose(out.mean(dim=(1, 3)), torch.zeros(3, 8), atol=1e-5)
    assert torch.allclose(out.var(dim=(1, 3), unbiased=False), torch.ones(3, 8), atol=1e-3)
    with pytest.raises(ParameterError, match="resnorm"):
        get_model("cnn", net_options={"resnorm": -1}, epochs=1).fit(X[tr][::10], y[tr][::10])
    # a band of nearly constant level has a variance near eps: its normalisation magnifies the two
    # runtimes' float32 rounding (measured 2e-4 on logits of about 0.3)
    _assert_onnx_matches(est.module_, X[:2], X[te][:5], tmp_path / "resnorm.onnx", atol=1e-3)


def test_cnn_stats_branch_learns_and_exports(logmel_small, tmp_path):
    """net_options={"stats": True}: the head also reads each band's mean and spread over time."""
    from earmark.models._nets import _StatsCNN

    X, y, g = logmel_small
    tr, te = _split_by_take(y, g)
    est = get_model("cnn", epochs=15, batch_size=16, validation_fraction=0, net_options={"stats": True})
    est.fit(X[tr], y[tr])
    assert isinstance(est.module_, _StatsCNN)
    assert est.score(X[te], y[te]) >= 0.5  # an unseen speaker, 3 digits: chance is 1/3
    # the head reads [pooled conv features, projected band statistics]: 128 + 128 at width 16
    assert est.module_.head[-1].in_features == 256 and est.module_.stats[1].num_features == 2 * 64
    _assert_onnx_matches(est.module_, X[:2], X[te][:5], tmp_path / "stats.onnx")
    with pytest.raises(ParameterError, match="pool='global'"):
        build_network("cnn", "default", (64, 101), 3, {"stats": True, "pool": "time"})


def test_lstm_learns(logmel_small):
    X, y, g = logmel_small
    tr, te = _split_by_take(y, g)
    est = get_model("lstm", epochs=15, lr=1e-2, batch_size=16, validation_fraction=0,
                    net_options={"hidden": 32, "layers": 1}).fit(X[tr], y[tr])
    assert est.score(X[te], y[te]) >= 0.5


def test_cnn1d_learns():
    df = _fsdd_subset((0, 1, 2), 8)
    fs = extract(df, get_preset("raw", sample_rate=8000), workers=1)
    y, g = df["label"].to_numpy(), df["speaker"].to_numpy()
    tr, te = _split_by_take(y, g)
    est = get_model("cnn1d", epochs=10).fit(fs.X[tr], y[tr])
    assert est.score(fs.X[te], y[te]) >= 0.5


@pytest.mark.parametrize(
    ("network", "arch", "shape"),
    [("cnn", "reference", (40, 32)), ("lstm", "reference", (13, 20)), ("cnn1d", "reference", (4000,)),
     ("mlp", "reference-173", (173,)), ("cnn", "default", (3, 40, 32))],
)
def test_reference_networks_shapes(network, arch, shape):
    net = build_network(network, arch, shape, 7).eval()
    assert tuple(net(torch.zeros(2, *shape)).shape) == (2, 7)


def test_wrong_input_rank_names_the_preset():
    with pytest.raises(ParameterError, match="logmel"):
        TorchClassifier("cnn", epochs=1).fit(np.zeros((6, 10)), [0, 1] * 3)


# ---------------------------------------------------------------------------- sklearn contract


@parametrize_with_checks(
    [TorchClassifier("mlp", epochs=30, random_state=0), TorchRegressor("mlp", epochs=25, random_state=0)],
    expected_failed_checks=lambda est: {
        "check_sample_weight_equivalence_on_dense_data": "stochastic mini-batch training",
        "check_sample_weight_equivalence_on_sparse_data": "stochastic mini-batch training",
        # float32 matrix products differ in the last bits between batch sizes (~1e-7 relative);
        # which estimator's check meets such a difference depends on the CPU's kernels
        "check_methods_subset_invariance": "float32 batch-size rounding",
    },
)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def test_torch_estimator_in_pipeline_cv_and_grid_search(mfcc_mean):
    X, y, g = mfcc_mean
    base = TorchClassifier("mlp", epochs=8)
    assert clone(base).get_params() == base.get_params()
    pipe = make_pipeline(FunctionTransformer(np.float32), base)
    scores = cross_val_score(pipe, X, y, groups=g, cv=GroupKFold(n_splits=2))
    assert scores.mean() > 0.2
    search = GridSearchCV(base, {"lr": [1e-3, 3e-3]}, cv=GroupKFold(n_splits=2)).fit(X, y, groups=g)
    assert search.best_params_["lr"] in (1e-3, 3e-3)


# ---------------------------------------------------------------------------- training behaviour


def test_determinism_with_fixed_seed(mfcc_mean):
    X, y, _ = mfcc_mean
    a = TorchClassifier("mlp", epochs=5, random_state=3).fit(X, y).predict_proba(X)
    b = TorchClassifier("mlp", epochs=5, random_state=3).fit(X, y).predict_proba(X)
    c = TorchClassifier("mlp", epochs=5, random_state=4).fit(X, y).predict_proba(X)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_resume_from_checkpoint_equals_uninterrupted(tmp_path, logmel_small):
    X, y, _ = logmel_small
    X, y = X[:48], y[:48]
    kw = {"epochs": 4, "batch_size": 16, "net_options": {"width": 8}, "random_state": 1}
    full = TorchClassifier("cnn", **kw).fit(X, y)

    class Interrupt(Exception):
        pass

    def stop_after_two(est, record):
        if record["epoch"] == 2:
            raise Interrupt

    ckpt = tmp_path / "ckpt"
    with pytest.raises(Interrupt):
        TorchClassifier("cnn", checkpoint_dir=str(ckpt), callbacks=[stop_after_two], **kw).fit(X, y)
    assert (ckpt / "checkpoint.pt").is_file()
    resumed = TorchClassifier("cnn", checkpoint_dir=str(ckpt), resume=True, **kw).fit(X, y)
    assert [h["epoch"] for h in resumed.history_] == [1, 2, 3, 4]
    np.testing.assert_allclose(resumed.predict_proba(X), full.predict_proba(X), atol=1e-5)


def test_explicit_validation_and_early_stopping(mfcc_mean):
    X, y, g = mfcc_mean
    va = g == "george"
    est = TorchClassifier("mlp", epochs=60, patience=3, lr=0.05).fit(X[~va], y[~va], X_val=X[va], y_val=y[va])
    best = max(h["val_accuracy"] for h in est.history_)
    assert est.history_[est.best_epoch_ - 1]["val_accuracy"] == best
    assert len(est.history_) <= 60


def test_ragged_clips_are_padded_with_saved_policy():
    rng = np.random.default_rng(0)
    clips = [rng.normal(size=(8, int(n))).astype(np.float32) + (i % 2) * 3 for i, n in enumerate(rng.integers(5, 30, 40))]
    y = np.arange(40) % 2
    est = TorchClassifier("lstm", epochs=3, max_frames=16, net_options={"hidden": 8, "layers": 1}).fit(clips, y)
    assert est.n_frames_ == 16 and est.input_shape_ == (8, 16)
    assert est.predict([np.zeros((8, 50), np.float32)]).shape == (1,)
    out = fix_length([np.arange(3.0)[None], np.arange(9.0)[None]], 5, pad="min", crop="center")
    np.testing.assert_array_equal(out[0, 0], [0, 1, 2, 0, 0])
    np.testing.assert_array_equal(out[1, 0], [2, 3, 4, 5, 6])


def test_augmentations_are_seeded_and_keep_shape():
    x = torch.randn(6, 16, 20)
    cfg = AugmentConfig(noise=0.1)
    a = augment_batch(x, cfg, torch.Generator().manual_seed(0), kind="spectrogram")
    b = augment_batch(x, cfg, torch.Generator().manual_seed(0), kind="spectrogram")
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, x)
    w = augment_batch(torch.randn(3, 800), cfg, torch.Generator().manual_seed(0), kind="waveform")
    assert w.shape == (3, 800)
    xm, partner, lam = mixup(x, 0.4, torch.Generator().manual_seed(1))
    assert 0.5 <= lam <= 1.0
    torch.testing.assert_close(xm, lam * x + (1 - lam) * x[partner])


def test_time_masks_do_not_grow_with_the_clip():
    """SpecAugment time masks stay within ``time_mask`` frames however long the clip (a 2.5 s
    clip's 1/8 would be 31 frames, enough to erase a short word); 1 s clips are unchanged."""
    cfg = AugmentConfig(time_shift=0, time_stretch=0, freq_warp=0, spec_masks=1, gain_db=0, mixup=0)

    def widest(frames: int, c: AugmentConfig) -> int:
        x = torch.ones(400, 4, frames)  # constant but for the mask: masked frames take the mean
        x[:, 0, :] = 2.0
        out = augment_batch(x, c, torch.Generator().manual_seed(0), kind="spectrogram")
        masked_in_time = (out != x).all(dim=1)  # every band changed: a time mask, not a frequency one
        return int(masked_in_time.sum(dim=1).max())

    assert widest(251, cfg) == 12 and widest(101, cfg) == 12
    assert widest(251, AugmentConfig(**{**cfg.to_dict(), "time_mask": 40})) == 31  # 1/8 of the clip
    assert widest(251, AugmentConfig(**{**cfg.to_dict(), "time_mask": 0})) == 0


@pytest.mark.parametrize("options, named", [
    ({"band_limt": 0.5}, "band_limt"), ({"band_limit": 1.5}, "band_limit"), ({"mixup": -0.2}, "mixup"),
    ({"time_stretch": 1.2}, "time_stretch"), ({"spec_masks": "2"}, "spec_masks"),
    ({"time_mask": 2.5}, "time_mask"),
])
def test_invalid_augment_options_are_refused_by_name(options, named):
    with pytest.raises(ParameterError, match=named):
        AugmentConfig.from_options(options)
    X = np.zeros((8, 4, 6), np.float32)
    with pytest.raises(ParameterError, match=named):
        TorchClassifier("cnn", epochs=1, augment_options=options).fit(X, np.arange(8) % 2)


def test_band_limit_dulls_the_upper_bands_of_real_log_mels(logmel_small):
    """The channel augmentation: off by default, seeded, leaves the low bands as they were and
    buries the upper bands' detail (their variation over time) under a noise floor."""
    x = torch.as_tensor(logmel_small[0][:16])
    off = augment_batch(x, AugmentConfig(time_shift=0, time_stretch=0, freq_warp=0, spec_masks=0),
                        torch.Generator().manual_seed(0), kind="spectrogram")
    assert torch.equal(off, x)  # band_limit defaults to 0
    cfg = AugmentConfig(time_shift=0, time_stretch=0, freq_warp=0, spec_masks=0, band_limit=1.0)
    a = augment_batch(x, cfg, torch.Generator().manual_seed(0), kind="spectrogram")
    assert torch.equal(a, augment_batch(x, cfg, torch.Generator().manual_seed(0), kind="spectrogram"))
    peak = x.flatten(1).amax(dim=1).reshape(-1, *([1] * (x.dim() - 1)))
    assert bool((a >= peak - 80 - 1e-4).all()) and bool((a <= peak + 1.0).all())
    low, high = slice(0, 12), slice(36, 48)  # below a quarter of the axis; 0.56-0.75 (2-4 kHz here)
    loud = x[..., low, :] > peak - 25  # the speech in the low bands, above the noise floor
    assert float((a[..., low, :] - x[..., low, :])[loud].abs().median()) < 0.3
    detail = lambda v: v[..., high, :].std(dim=-1).mean()  # noqa: E731
    assert float(detail(a)) < 0.8 * float(detail(x))
    half = augment_batch(x, cfg.__class__(**{**cfg.to_dict(), "band_limit": 0.5}),
                         torch.Generator().manual_seed(0), kind="spectrogram")
    changed = (half != x).flatten(1).any(dim=1)
    assert 0 < int(changed.sum()) < len(x)


# ---------------------------------------------------------------------------- persistence


@pytest.mark.parametrize("name", ["logreg", "svm", "rf", "gbdt", "mlp", "ridge", "mlp-reg"])
def test_dump_load_roundtrip(name, tmp_path, mfcc_mean):
    X, y, _ = mfcc_mean
    target = X[:, 0] if get_spec(name).task == "regression" else y
    params = {"epochs": 3} if get_spec(name).kind == "torch" else {}
    if name == "rf":
        params = {"n_estimators": 20}
    est = get_model(name, **params).fit(X, target)
    desc = dump_estimator(est, tmp_path)
    import json

    desc = json.loads(json.dumps(desc))  # must survive JSON
    back = load_estimator(tmp_path, desc)
    if get_spec(name).task == "classification":
        np.testing.assert_allclose(back.predict_proba(X), est.predict_proba(X), atol=1e-6)
        assert list(back.classes_) == list(est.classes_)
    else:
        np.testing.assert_allclose(back.predict(X), est.predict(X), atol=1e-5)


def test_torch_roundtrip_string_classes_and_tamper(tmp_path, logmel_small):
    X, y, _ = logmel_small
    labels = np.array(["zero", "one", "two"])[y]
    est = TorchClassifier("cnn", epochs=1, net_options={"width": 8}).fit(X[:30], labels[:30])
    desc = dump_estimator(est, tmp_path)
    assert desc["format"] == "torch-safetensors"
    back = load_estimator(tmp_path, desc)
    assert list(back.classes_) == sorted(["zero", "one", "two"])
    np.testing.assert_allclose(back.predict_proba(X[:5]), est.predict_proba(X[:5]), atol=1e-6)
    weights = tmp_path / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(BundleError, match="SHA-256"):
        load_estimator(tmp_path, desc)


def test_skops_refuses_untrusted_types(tmp_path, mfcc_mean):
    X, y, _ = mfcc_mean
    desc = dump_estimator(get_model("logreg").fit(X, y), tmp_path)
    desc["trusted_types"] = [*desc["trusted_types"], "os.system"]
    with pytest.raises(BundleError, match="unsafe"):
        load_estimator(tmp_path, desc)


def test_channels_last_layout_gives_the_same_outputs_and_fitted_modules_are_contiguous():
    import torch

    from earmark.models._nets import build_network, use_channels_last

    torch.manual_seed(0)
    net = build_network("cnn", "default", (64, 101), 10).eval()
    x = torch.randn(8, 64, 101)
    with torch.inference_mode():
        before = net(x)
        assert use_channels_last(net)
        assert net[2].weight.is_contiguous(memory_format=torch.channels_last)
        after = net(x)
    torch.testing.assert_close(after, before, atol=1e-5, rtol=1e-5)
    assert not use_channels_last(build_network("mlp", "default", (20,), 3))  # no 2-D convolutions

    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 16, 20)).astype(np.float32)
    y = np.repeat([0, 1], 20)
    X[y == 1, :4] += 2.0
    clf = TorchClassifier("cnn", epochs=2, batch_size=8, validation_fraction=0.0).fit(X, y)
    assert all(t.is_contiguous() for t in clf.module_.state_dict().values())  # safetensors can store it


def test_test_time_augmentation_averages_the_warped_views():
    import torch

    from earmark.models._augment import TTA_VIEWS, tta_views

    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 16, 24)).astype(np.float32)
    y = np.repeat([0, 1, 2], 20)
    for c in range(3):
        X[y == c, 4 * c : 4 * c + 4] += 2.0
    clf = TorchClassifier("cnn", epochs=3, batch_size=16, validation_fraction=0.0).fit(X, y)
    plain = clf.predict_proba(X)
    clf.set_params(tta=True)
    assert clone(clf).get_params()["tta"] is True
    avg = clf.predict_proba(X)
    np.testing.assert_allclose(avg.sum(axis=1), 1.0, atol=1e-6)
    views = tta_views(torch.as_tensor(X), "spectrogram")
    assert len(views) == len(TTA_VIEWS) and torch.equal(views[0], torch.as_tensor(X))
    assert not torch.allclose(views[1], views[0])  # a frequency-warped copy
    with torch.inference_mode():
        manual = torch.stack([torch.softmax(clf.module_(v), 1) for v in views]).mean(0).numpy()
    np.testing.assert_allclose(avg, manual, atol=1e-5)
    assert np.abs(avg - plain).max() > 1e-4
    assert (clf.predict(X) == clf.classes_[avg.argmax(1)]).all()
    reg = TorchRegressor("cnn", epochs=2, batch_size=16, validation_fraction=0.0, tta=True).fit(X, y.astype(float))
    assert reg.predict(X).shape == (60,)


def test_seed_ensemble_averages_its_members_and_member_zero_is_the_single_model(tmp_path):
    import torch

    from earmark.models._nets import SeedEnsemble

    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 16, 24)).astype(np.float32)
    y = np.repeat([0, 1, 2], 20)
    for c in range(3):
        X[y == c, 4 * c : 4 * c + 4] += 2.0
    kw = dict(epochs=3, batch_size=16, validation_fraction=0.0, random_state=3)
    single = TorchClassifier("cnn", **kw).fit(X, y)
    ens = TorchClassifier("cnn", ensemble=3, checkpoint_dir=str(tmp_path / "ck"), **kw).fit(X, y)
    assert isinstance(ens.module_, SeedEnsemble) and len(ens.module_.members) == 3
    assert clone(ens).get_params()["ensemble"] == 3
    assert len(ens.histories_) == 3 and all(len(h) == 3 for h in ens.histories_)
    assert [r["member"] for r in ens.histories_[2]] == [3, 3, 3]
    s0, s1 = ens.module_.members[0].state_dict(), ens.module_.members[1].state_dict()
    for k, v in single.module_.state_dict().items():  # member 0 = the ensemble=1 model of that seed
        torch.testing.assert_close(s0[k], v)
    assert any(not torch.equal(s0[k], s1[k]) for k in s0 if s0[k].is_floating_point())
    with torch.inference_mode():
        manual = torch.stack([torch.softmax(m(torch.as_tensor(X)), 1) for m in ens.module_.members]).mean(0)
    proba = ens.predict_proba(X)
    np.testing.assert_allclose(proba, manual.numpy(), atol=1e-5)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == ["member-0", "member-1", "member-2"]
    resumed = TorchClassifier("cnn", ensemble=3, checkpoint_dir=str(tmp_path / "ck"), resume=True, **kw).fit(X, y)
    np.testing.assert_allclose(resumed.predict_proba(X), proba, atol=1e-6)  # all members were complete
    with pytest.raises(ParameterError, match="ensemble"):
        TorchClassifier("cnn", ensemble=0).fit(X, y)

    reg = TorchRegressor("mlp", epochs=3, validation_fraction=0.0, ensemble=2).fit(X.reshape(60, -1), y.astype(float))
    with torch.inference_mode():
        raw = torch.stack([m(torch.as_tensor(X.reshape(60, -1))) for m in reg.module_.members]).mean(0)
    np.testing.assert_allclose(reg.predict(X.reshape(60, -1)), raw.numpy().ravel() * reg.y_scale_ + reg.y_mean_,
                               rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------- parameters by name


def test_unknown_parameter_names_the_valid_ones():
    with pytest.raises(ParameterError, match=r"'svm' has no parameter 'bogus'.* C, .*gamma"):
        get_model("svm", bogus=1)
    with pytest.raises(ParameterError, match=r"'cnn' has no parameter 'bogus'.* epochs, .*lr"):
        get_model("cnn", bogus=1)
    with pytest.raises(ParameterError, match="Did you mean 'n_neighbors'"):
        get_model("knn", n_neighbor=3)
    with pytest.raises(ParameterError, match="Did you mean 'C'"):
        get_model("logreg", c=1.0)


def test_bad_parameter_values_are_refused_when_the_model_is_built():
    with pytest.raises(ParameterError, match=r"'C' parameter of LogisticRegression .*Got 'abc'"):
        get_model("logreg", C="abc")
    with pytest.raises(ParameterError, match=r"'C' parameter of SVC .*Got -1"):
        get_model("svm", C=-1)
    with pytest.raises(ParameterError, match="'lr' parameter of TorchClassifier"):
        get_model("cnn", lr="fast")


def test_short_and_nested_parameter_names_build_the_same_model():
    spec = get_spec("svm")
    short = get_model("svm", C=3.0, gamma=0.01).get_params()
    nested = get_model("svm", calibratedclassifiercv__estimator__C=3.0,
                       calibratedclassifiercv__estimator__gamma=0.01).get_params()
    key = "calibratedclassifiercv__estimator__C"
    assert short[key] == nested[key] == 3.0
    assert spec.short_names({key: 3.0, "standardscaler__with_mean": False}) == {"C": 3.0, "standardscaler__with_mean": False}
    assert spec.nested_names({"C": 3.0}) == {key: 3.0}
    assert get_spec("cnn").short_names({"lr": 0.1}) == {"lr": 0.1}
    for s in list_models():  # every registered search space names parameters the model takes
        get_model(s.name, **{k: v[0] if isinstance(v, list) else v[1] for k, v in s.search_space.items()})


# ---------------------------------------------------------------------------- out-of-range features


@pytest.mark.parametrize("name", ["svm", "logreg", "knn"])
def test_one_wild_feature_does_not_decide_every_answer(name, mfcc_mean):
    """A feature thousands of standard deviations from anything trained on (a dimension that
    hardly varied in training) must not take over the distances: unclipped, the RBF kernel goes to
    zero and the svm answers its intercept, the same class for every clip."""
    X, y, g = mfcc_mean
    tr, te = _split_by_take(y, g)
    est = get_model(name).fit(X[tr], y[tr])
    clean = est.predict(X[te])
    wild = X[te].copy()
    j = int(np.argmin(X[tr].std(axis=0)))
    wild[:, j] = X[tr, j].mean() + 1e4 * X[tr, j].std()
    pred = est.predict(wild)
    assert len(set(pred)) >= 5, f"{name}: {sorted(set(pred))}"
    assert np.mean(pred == clean) >= 0.5


def test_svm_on_stats_hears_clips_that_end_in_digital_silence(fsdd_small):
    """The user's report: with 0.1 s of exact zeros appended, every clip got one and the same answer."""
    from earmark.audio import load_audio

    preset = get_preset("stats")
    tr, te = fsdd_small[fsdd_small["speaker"] != "theo"], fsdd_small[fsdd_small["speaker"] == "theo"]
    est = get_model("svm").fit(extract(tr, preset, workers=1).X, tr["label"])
    clips = [load_audio(p, sr=preset.sample_rate)[0] for p in te["path"]]
    padded = [np.concatenate([c, np.zeros(preset.sample_rate // 10, np.float32)]) for c in clips]
    clean = est.predict(preset.transform_batch(clips))
    pred = est.predict(preset.transform_batch(padded))
    assert len(set(pred)) >= 8, sorted(set(pred))
    assert np.mean(pred == te["label"]) >= np.mean(clean == te["label"]) - 0.15
    silent = est.predict_proba(preset.transform_batch([np.zeros(preset.sample_rate, np.float32)]))
    assert not np.allclose(est.predict_proba(preset.transform_batch(padded[:5])), silent, atol=1e-3)


def test_svm_on_stats_hears_clips_reencoded_at_44k(tmp_path, fsdd_small):
    """8 kHz recordings re-encoded as dithered 16-bit 44.1 kHz files (as `sox in.wav -r 44100
    out.wav` writes them) put quantisation noise in the band above 4 kHz that training never had."""
    import soundfile as sf
    import soxr

    rng = np.random.default_rng(0)
    preset = get_preset("stats")
    tr, te = fsdd_small[fsdd_small["speaker"] != "theo"], fsdd_small[fsdd_small["speaker"] == "theo"]
    est = get_model("svm").fit(extract(tr, preset, workers=1).X, tr["label"])
    paths = []
    for p in te["path"]:
        y, sr = sf.read(p, dtype="float64")
        up = soxr.resample(y, sr, 44100, quality="VHQ") * 32767
        dither = rng.uniform(-0.5, 0.5, up.shape) + rng.uniform(-0.5, 0.5, up.shape)
        paths.append(tmp_path / Path(p).name)
        sf.write(paths[-1], np.clip(np.round(up + dither), -32768, 32767).astype(np.int16), 44100)
    pred = est.predict(extract(pd.DataFrame({"path": [str(p) for p in paths]}), preset, workers=1).X)
    assert len(set(pred)) >= 6, sorted(set(pred))
    assert np.mean(pred == te["label"]) >= 0.3


@pytest.mark.parametrize("name", [s.name for s in list_models()])
def test_models_show_lists_parameters_train_accepts_with_their_defaults(name):
    import json

    from typer.testing import CliRunner

    from earmark.cli.main import app

    result = CliRunner().invoke(app, ["models", "show", name, "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    params = {k: v for k, v in info["parameters"].items() if k != "callbacks" and v != "deprecated"}
    assert params and info["preset"] == get_spec(name).preset
    est = get_model(name, **params)  # every name shown is one -p takes, and its shown default is valid
    assert repr(clone(est)) == repr(get_model(name))  # the defaults shown are the defaults used
    # what tune searches is spelt as -p spells it
    assert set(info["tune_space"]) <= set(info["parameters"])
    if get_spec(name).kind == "torch":
        own = get_model(name).get_params().get("arch", "default")  # mobilenet_v2's is 'imagenet'
        assert own in info["architectures"] and "mixup" in info["augment_options"]
        assert "validation_fraction" not in params  # train() sets it (--val-fraction)
        # the options -p net_options takes, per architecture, each of which builds the network
        assert set(info["net_options"]) == set(info["architectures"])
        for arch, options in info["net_options"].items():
            if arch == get_model(name).get_params().get("arch", "default") and options:
                get_model(name, arch=arch, net_options=options)  # accepted as shown
    if name == "cnn":
        assert info["net_options"]["default"]["stats"] is False and info["net_options"]["default"]["width"] == 16
    assert "random_state" not in params  # train() sets it (--seed)


def test_min_steps_raises_the_epoch_budget_of_small_training_sets(mfcc_mean):
    """min_steps gives a small training set more epochs (the one-cycle schedule and patience span
    them); an epoch count a user gives through get_model / train is trained exactly."""
    X, y, _ = mfcc_mean
    X, y = X[:64], y[:64]
    kw = {"epochs": 2, "batch_size": 16, "patience": 0, "validation_fraction": 0.0, "augment": False}
    plain = TorchClassifier("mlp", **kw).fit(X, y)
    assert len(plain.history_) == plain.epoch_budget_ == 2
    raised = TorchClassifier("mlp", min_steps=12, **kw).fit(X, y)  # 4 steps an epoch
    assert len(raised.history_) == raised.epoch_budget_ == 3
    assert raised.epoch_budget(640) == 2  # 40 steps an epoch: epochs already suffice
    # the schedule spans the raised budget: warm-up peak at 25 % of it, annealed to ~0 at the end
    lrs = [h["lr"] for h in raised.history_]
    assert lrs[-1] < 0.05 * max(lrs)
    with pytest.raises(ParameterError, match="min_steps"):
        TorchClassifier("mlp", min_steps=-1, **kw).fit(X, y)
    assert get_model("cnn").min_steps == 1000
    assert get_model("cnn", epochs=5).min_steps == 0
    assert get_model("cnn", epochs=5, min_steps=10).min_steps == 10
    assert clone(raised).min_steps == 12


def test_option_dicts_merge_into_the_models_own_and_bad_settings_are_refused_at_build():
    """-p augment_options / net_options add to a model's own options (hcnn-reg keeps freq_warp 0;
    cnn-reg keeps pool='time'); another architecture does not get the default one's options; an
    architecture, device or option the model cannot use is refused before any feature is made."""
    assert get_model("hcnn-reg", augment_options={"noise": 0.0}).augment_options == {
        "freq_warp": 0.0, "mixup": 0.0, "noise": 0.0}
    assert get_model("cnn-reg", net_options={"width": 8}).net_options == {"pool": "time", "width": 8}
    assert clone(get_model("cnn-reg", net_options={"width": 8})).net_options == {"pool": "time", "width": 8}
    assert get_model("cnn-reg", arch="reference").net_options is None
    X = np.random.default_rng(0).normal(size=(12, 64, 20)).astype(np.float32)
    get_model("cnn-reg", arch="reference", epochs=1, validation_fraction=0.0).fit(X, np.arange(12.0))
    with pytest.raises(ParameterError, match=r"'arch' parameter of the mlp network must be one of"):
        get_model("mlp", arch="resnet")
    with pytest.raises(ParameterError, match="Unknown augment_options"):
        get_model("cnn", augment_options={"nosie": 0.1})
    if not torch.cuda.is_available():
        with pytest.raises(ParameterError, match="no such CUDA device"):
            get_model("mlp", device="cuda")
    with pytest.raises(ParameterError, match="'device' parameter must be"):
        get_model("mlp", device="toaster")


def test_class_weight_keys_are_the_labels_as_text(mfcc_mean):
    """{'7': 5} on digit labels: scikit-learn 1.9's LogisticRegression looked classes up by index
    (a traceback); a key that is no class is refused, by the torch models too."""
    from earmark.training._train import _fit_sklearn

    X, y, _ = mfcc_mean
    y = y.astype(str)
    weighted = get_model("logreg", class_weight={"7": 50.0})
    _fit_sklearn(weighted, X, y, np.ones(len(y)))
    assert weighted.get_params()["logisticregression__class_weight"] == {"7": 50.0}  # kept as given
    plain = get_model("logreg")
    _fit_sklearn(plain, X, y, np.ones(len(y)))
    seven = list(plain.classes_).index("7")
    assert weighted.predict_proba(X)[:, seven].mean() > plain.predict_proba(X)[:, seven].mean() + 0.01
    with pytest.raises(ParameterError, match=r"class_weight names \['seven'\]"):
        _fit_sklearn(get_model("logreg", class_weight={"seven": 2.0}), X, y, np.ones(len(y)))
    with pytest.raises(ParameterError, match=r"n_neighbors=5000 is more than the 300 training clips"):
        _fit_sklearn(get_model("knn", n_neighbors=5000), X, y, np.ones(len(y)))
    with pytest.raises(ParameterError, match=r"could not train this model.*newton-cholesky"):
        _fit_sklearn(get_model("logreg", solver="newton-cholesky", l1_ratio=1.0), X, y, np.ones(len(y)))
    with pytest.raises(ParameterError, match=r"class_weight names \['seven'\]"):
        TorchClassifier("mlp", epochs=1, class_weight={"seven": 2.0}, validation_fraction=0.0).fit(X, y)


def test_pooled_features_get_noise_and_regressors_average_only_the_warps_they_learnt(mfcc_mean):
    import torch

    from earmark.models._augment import tta_views

    X, y, _ = mfcc_mean
    quiet = get_model("mlp-reg", epochs=2).fit(X, y.astype(float)).predict(X)
    noisy = get_model("mlp-reg", epochs=2, augment_options={"noise": 0.5}).fit(X, y.astype(float)).predict(X)
    assert np.abs(quiet - noisy).max() > 1e-4  # noise was ignored for vectors
    spec = torch.randn(2, 16, 20)
    assert len(tta_views(spec, "spectrogram", frequency=False)) == 3  # the clip, slower, faster
    reg = get_model("hcnn-reg", tta=True)
    assert AugmentConfig.from_options(reg.augment_options).freq_warp == 0  # so no frequency views
    # a model trained without augmentation learnt no warp: test-time augmentation changes nothing
    spec_X = np.random.default_rng(0).normal(size=(20, 16, 24)).astype(np.float32)
    plain = TorchClassifier("cnn", epochs=1, augment=False, validation_fraction=0.0).fit(spec_X, np.arange(20) % 2)
    before = plain.predict_proba(spec_X)
    plain.set_params(tta=True)
    np.testing.assert_allclose(plain.predict_proba(spec_X), before, atol=1e-6)


def test_n_jobs_is_checked_when_the_model_is_built():
    import os

    from earmark.models import get_model

    cores = os.cpu_count() or 1
    assert get_model("rf", n_jobs=-1).get_params()["randomforestclassifier__n_jobs"] == -1
    for bad in (0, 100_000, -(cores + 1), 1.5, True):
        with pytest.raises(ParameterError, match=r"n_jobs must be a whole number"):
            get_model("rf", n_jobs=bad)
