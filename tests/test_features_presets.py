"""Presets registry, shapes, JSON round-trip, batch consistency, scikit-learn and torch wrappers."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from earmark.errors import ParameterError
from earmark.features import (
    FeatureTransformer,
    Preset,
    get_preset,
    list_presets,
    log_mel,
    register_preset,
)
from earmark.features._extract import resample_like_librosa

REQUIRED = {"logmel", "mfcc-seq", "psf-mfcc", "mfcc-mean", "classic173", "stats", "raw"}


@pytest.fixture(scope="module")
def speech(shared):
    from earmark.audio import load_audio

    out = []
    for name in ("1_george_3.wav", "8_yweweler_20.wav", "4_theo_41.wav"):
        y, sr = load_audio(shared / "fsdd/recordings" / name)
        out.append(y)
    return out, sr


def test_registry_has_required_presets_and_rejects_unknown():
    assert set(list_presets()) >= REQUIRED
    with pytest.raises(ParameterError, match="Did you mean 'logmel'"):
        get_preset("logmell")
    with pytest.raises(ParameterError, match="no parameter"):
        get_preset("logmel", n_melz=10)
    with pytest.raises(ParameterError, match="exists"):
        register_preset(Preset("logmel", "logmel", 16000, {"n_mels": 40}))


def test_preset_settings_after_a_colon_are_typed_and_checked():
    p = get_preset("logmel:n_mels=40, duration=0.5,align=center")
    assert p == get_preset("logmel", n_mels=40, duration=0.5, align="center")
    assert p.output_shape == (40, 51) and isinstance(p.params["duration"], float)
    assert get_preset("logmel:n_mels=40", n_mels=32).params["n_mels"] == 32  # keywords win
    assert get_preset("stats:skip_silence=false").params["skip_silence"] is False
    assert get_preset("logmel:norm=none,top_db=none").params["top_db"] is None  # librosa's "no floor"
    with pytest.raises(ParameterError, match="no setting 'n_mel'. Did you mean 'n_mels'"):
        get_preset("logmel:n_mel=40")
    with pytest.raises(ParameterError, match="n_mels='abc' of 'logmel' must be an integer"):
        get_preset("logmel:n_mels=abc")
    with pytest.raises(ParameterError, match="not KEY=VALUE"):
        get_preset("logmel:n_mels")
    with pytest.raises(ParameterError, match="Did you mean 'logmel'"):
        get_preset("logmell:n_mels=40")


def test_sample_rate_override_moves_a_whole_band_fmax_and_refuses_one_above_nyquist():
    p = get_preset("logmel:sample_rate=8000")
    assert p.sample_rate == 8000 and p.params["fmax"] == 4000.0
    assert get_preset("logmel:sample_rate=8000,fmax=3000").params["fmax"] == 3000.0
    with pytest.raises(ParameterError, match="must be between 0 and the Nyquist frequency"):
        get_preset("logmel:fmax=9000")
    with pytest.raises(ParameterError, match="'highfreq' of preset 'psf-mfcc'"):
        get_preset("psf-mfcc:highfreq=12000")


@pytest.mark.parametrize(("spec", "message"), [
    ("logmel:hop_length=0", "'hop_length' of preset 'logmel' must be an integer >= 1"),
    ("logmel:n_mels=-3", "must be an integer >= 1"),
    ("mfcc-seq:fmax=abc", "must be a number"),
    ("logmel:top_db=0", "must be > 0"),
    ("logmel:fmin=3000,fmax=2000", "lowest frequency"),
    ("logmel:sample_rate=8000.5", "must be an integer \\(default 16000\\)"),
    ("classic173:foo=1", "Settings: sample_rate\\.$"),
    # more coefficients than bands: librosa would silently return n_mels of them
    ("mfcc-mean:n_mfcc=200", "200 MFCCs from 128 mel bands.*lower n_mfcc to 128"),
    ("mfcc-seq:n_mfcc=41", "41 MFCCs from 40 mel bands"),
    ("psf-mfcc:numcep=30", "lower numcep to 26 or less, or raise nfilt"),
])
def test_settings_a_preset_cannot_use_are_refused_when_it_is_built(spec, message):
    with pytest.raises(ParameterError, match=message):
        get_preset(spec)
    assert get_preset("mfcc-seq:deltas=0").params["deltas"] == 0  # counts that may be zero stay allowed
    assert get_preset("mfcc-mean:n_mfcc=128").output_shape == (128,)  # as many as bands is fine


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_preset_shapes_and_round_trip(name, speech):
    ys, sr = speech
    p = get_preset(name)
    q = Preset.from_dict(json.loads(json.dumps(p.to_dict())))
    assert q == p and q.cache_key() == p.cache_key() and hash(q) == hash(p)
    clips = [resample_like_librosa(y, orig_sr=sr, target_sr=p.sample_rate) for y in ys]
    X = p.transform_batch(clips)
    assert X.shape == (len(clips), *p.output_shape) and X.dtype == np.float32
    assert np.isfinite(X).all()
    # batch consistency: one by one equals the batch
    for c, row in zip(clips, X):
        np.testing.assert_allclose(p.transform(c), row, rtol=1e-5, atol=1e-4)
    if p.pooled:
        assert len(p.feature_names) == p.output_shape[0] == len(set(p.feature_names))
    else:
        assert p.feature_names is None


def test_changed_setting_changes_cache_key_and_output():
    a, b = get_preset("mfcc-mean"), get_preset("mfcc-mean", n_mfcc=20)
    assert a.cache_key() != b.cache_key() and b.output_shape == (20,)
    assert get_preset("logmel", sample_rate=8000, fmax=4000.0).sample_rate == 8000


def test_logmel_preset_is_log_mel_of_padded_clip(speech):
    ys, sr = speech
    p = get_preset("logmel")
    y = resample_like_librosa(ys[0], orig_sr=sr, target_sr=16000)
    padded = np.zeros(16000, np.float32)
    padded[: min(16000, len(y))] = y[:16000]
    ref = log_mel(padded, sr=16000, n_fft=512, win_length=400, hop_length=160, n_mels=64, fmin=20.0,
                  fmax=8000.0)
    np.testing.assert_allclose(p.transform(y), ref, atol=1e-3)
    # a long clip is cropped, a short one padded: same shape
    assert p.transform(np.tile(y, 5)).shape == p.transform(y[:100]).shape == (64, 101)


def test_mfcc_seq_normalisation_and_variable_length(speech):
    ys, sr = speech
    y = resample_like_librosa(ys[1], orig_sr=sr, target_sr=16000)
    mm = get_preset("mfcc-seq", normalize="minmax", deltas=2).transform(y)
    assert mm.shape == (39, 101) and mm.min() == pytest.approx(0) and mm.max() == pytest.approx(1)
    mv = get_preset("mfcc-seq").transform(y)
    np.testing.assert_allclose(mv.mean(axis=1), 0, atol=1e-4)
    var = get_preset("mfcc-seq", duration=None)
    assert var.output_shape is None
    out = var.transform_batch([y, y[: len(y) // 2]])
    assert isinstance(out, list) and out[0].shape[1] != out[1].shape[1]


def test_bad_clips_are_refused_with_clear_errors():
    with pytest.raises(ParameterError, match="non-empty mono"):
        get_preset("logmel").transform(np.zeros(0, np.float32))
    with pytest.raises(ParameterError, match="duration"):
        get_preset("raw", duration=-1.0)


def test_feature_transformer_is_a_clonable_sklearn_transformer(shared, speech):
    from sklearn.base import clone
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    paths = sorted((shared / "fsdd/recordings").glob("*.wav"))[::125]
    labels = [p.name.split("_")[0] for p in paths]
    ft = FeatureTransformer(preset="mfcc-mean", workers=1)
    assert clone(ft).get_params() == ft.get_params()
    pipe = make_pipeline(ft, LogisticRegression(max_iter=500)).fit([str(p) for p in paths], labels)
    assert pipe.score([str(p) for p in paths], labels) > 0.5
    X = FeatureTransformer(preset="mfcc-mean").fit_transform([str(p) for p in paths[:2]])
    assert X.shape == (2, 40)
    assert list(ft.get_feature_names_out()[:2]) == ["mfcc_0_mean", "mfcc_1_mean"]
    flat = FeatureTransformer(preset="logmel", flatten=True).fit_transform([np.zeros(4000, np.float32)])
    assert flat.shape == (1, 64 * 101)


def test_torch_logmel_equals_numpy_and_exports_to_onnx(tmp_path, speech):
    torch = pytest.importorskip("torch")
    from earmark.features import LogMel

    ys, sr = speech
    clips = [resample_like_librosa(y, orig_sr=sr, target_sr=16000) for y in ys]
    raw = get_preset("raw").transform_batch(clips)
    ref = get_preset("logmel").transform_batch(clips)
    m = LogMel.from_preset("logmel").eval()
    with torch.no_grad():
        out = m(torch.from_numpy(raw)).numpy()
    assert out.shape == ref.shape
    assert np.abs(out - ref).max() < 0.01  # dB; float32 DFT by convolution vs float64 FFT
    onnx = pytest.importorskip("onnxruntime")
    path = tmp_path / "logmel.onnx"
    torch.onnx.export(m, (torch.from_numpy(raw[:1]),), str(path), input_names=["y"], output_names=["db"],
                      dynamic_axes={"y": {0: "batch"}, "db": {0: "batch"}}, dynamo=False)
    sess = onnx.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"y": raw})[0]
    assert np.abs(got - ref).max() < 0.01


def test_median_kernels_equal_scipy():
    """The compiled running medians of HPSS equal scipy.ndimage.median_filter (reflect mode).

    scipy reads outside its buffer for lines shorter than 4 with a 31-wide window (clips under
    ~70 ms at hop 512); earmark uses the periodic reflection there, so only lines >= 4 are compared.
    """
    import scipy.ndimage as nd

    from earmark.features._kernels import median_rows, median_segments

    rng = np.random.default_rng(0)
    for n in (4, 10, 18, 40, 124, 125, 300):  # short segments by rank counts, long ones by a sorted window
        x = rng.random((n * 3, 257)).astype(np.float32)
        x[x < 0.2] = 0  # ties
        bounds = np.arange(0, n * 3 + 1, n).astype(np.int64)
        np.testing.assert_array_equal(median_rows(x, 31), nd.median_filter(x, size=(1, 31), mode="reflect"))
        ref = np.concatenate([nd.median_filter(x[a:b], size=(31, 1), mode="reflect")
                              for a, b in itertools.pairwise(bounds)])
        np.testing.assert_array_equal(median_segments(x, bounds, 31), ref)


def test_stats_leave_out_frames_of_digital_silence(shared):
    """Frames of exact zeros (spectral flatness 1.0 by definition, the log-mel floor) are left out
    of the statistics, so zeros before and after a clip hardly move them; an all-zero clip still
    gives finite numbers. Records saved before the setting existed keep computing what they did."""
    from earmark.audio import load_audio

    new = get_preset("stats")
    record = new.to_dict()
    record["params"] = {k: v for k, v in record["params"].items() if k != "skip_silence"}
    old = Preset.from_dict(record)
    assert new.params["skip_silence"] is True and old.params["skip_silence"] is False
    names = new.feature_names
    flat = [i for i, n in enumerate(names) if n.startswith("flatness_")]
    for name in ("1_george_3.wav", "8_yweweler_20.wav", "4_theo_41.wav"):
        y, _ = load_audio(shared / "fsdd/recordings" / name, sr=new.sample_rate)
        padded = np.concatenate([np.zeros(800, np.float32), y, np.zeros(1600, np.float32)])
        assert new.transform(padded)[flat].max() < 0.5
        assert old.transform(padded)[flat].max() == 1.0
        np.testing.assert_array_equal(new.transform(y), old.transform(y))  # no silence: same numbers
    for p in (new, old):
        assert np.isfinite(p.transform(np.zeros(p.sample_rate, np.float32))).all()


@pytest.mark.parametrize("spec", ["mfcc-seq", "mfcc-seq:normalize=minmax", "psf-mfcc:normalize=meanvar",
                                  "psf-mfcc:normalize=minmax", "mfcc-seq:duration=none"])
def test_normalised_sequences_of_digital_silence_are_zero_whatever_the_batch(spec, speech):
    clips, _ = speech
    preset = get_preset(spec)
    silence = np.zeros(3 * 16000, np.float32)
    alone = preset.transform(silence)
    assert np.all(np.isfinite(alone)) and np.abs(alone).max() == 0  # not rounding noise scaled up
    batch = preset.transform_batch([clips[0], silence, clips[1]])
    np.testing.assert_array_equal(batch[1], alone)
    assert np.abs(batch[0]).max() > 0.5  # real speech is still normalised


def test_delta_width_is_checked_against_the_clip_length():
    with pytest.raises(ParameterError, match="longer than its clips"):
        get_preset("mfcc-seq:deltas=1,delta_width=201")
    with pytest.raises(ParameterError, match="odd integer >= 3"):
        get_preset("psf-mfcc:deltas=1,delta_width=4")
    # variable length: a clip shorter than the window gets the widest window that fits, not zeros
    from earmark.features import _spectral as sp
    from earmark.features._presets import _delta_any_length

    ramp = np.tile(np.arange(7.0, dtype=np.float32) ** 2, (2, 1))
    np.testing.assert_allclose(_delta_any_length(ramp, 9, 1), sp.delta(ramp, width=7, order=1))
    np.testing.assert_allclose(_delta_any_length(ramp[:, :6], 9, 1), sp.delta(ramp[:, :6], width=5, order=1))
    assert np.all(_delta_any_length(ramp[:, :2], 9, 1) == 0)
    short = get_preset("mfcc-seq:duration=none,deltas=1").transform(
        np.random.default_rng(0).normal(size=800).astype(np.float32) * 0.1)  # 6 frames < width 9
    assert short.shape == (26, 6) and np.abs(short[13:]).max() > 0


def test_setting_strings_keep_text_and_allow_variable_length():
    assert get_preset("mfcc-seq:normalize=none").params["normalize"] == "none"
    assert get_preset("psf-mfcc:normalize=none").params["normalize"] == "none"
    assert get_preset("mfcc-seq:duration=none").output_shape is None
    assert get_preset("logmel:norm=none").params["norm"] is None
    with pytest.raises(ParameterError, match="needs a fixed 'duration'"):
        get_preset("logmel:duration=none")
    with pytest.raises(ParameterError, match="'minmax', 'meanvar'"):
        get_preset("mfcc-seq:normalize=zscore")


def test_settings_are_typed_like_their_defaults():
    a, b = get_preset("logmel", duration=2), get_preset("logmel:duration=2")
    assert a == b and a.cache_key() == b.cache_key() and hash(a) == hash(b)
    c = get_preset("logmel", n_mels=np.int64(32), fmax=np.float32(4000))
    assert c == get_preset("logmel", n_mels=32, fmax=4000.0)
    json.dumps(c.to_dict())  # plain Python values: the store and bundles can record it
    with pytest.raises(ParameterError, match="True or False"):
        get_preset("raw", peak_normalize="false")
    with pytest.raises(ParameterError, match="'slaney', None"):
        get_preset("logmel", norm="foo")
    with pytest.raises(ParameterError, match="scipy window"):
        get_preset("logmel", window="foo")


@pytest.mark.parametrize(("spec", "message"), [
    ("logmel:amin=inf", "finite"), ("logmel:power=inf", "finite"), ("psf-mfcc:preemph=nan", "finite"),
    ("logmel:duration=inf", "finite"), ("logmel:ref=0", "'ref'.*> 0"), ("logmel:ref=-1", "'ref'.*> 0"),
    ("psf-mfcc:preemph=1.5", r"\[0, 1\)"), ("raw:duration=1e-9", "shorter than one sample"),
    ("classic173:sample_rate=8000", "above 12800 Hz"), ("stats:sample_rate=8000", "lower n_bands to 5"),
])
def test_settings_that_cannot_give_numbers_are_refused(spec, message):
    with pytest.raises(ParameterError, match=message):
        get_preset(spec)


def test_stats_at_8khz_with_fewer_contrast_bands_computes():
    p = get_preset("stats:sample_rate=8000,n_bands=4")
    out = p.transform(np.random.default_rng(0).normal(size=8000).astype(np.float32) * 0.1)
    assert out.shape == p.output_shape and np.all(np.isfinite(out))
