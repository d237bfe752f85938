"""Parity of earmark's feature functions with librosa 0.11 (and python_speech_features) on real clips.

Tolerances (relative to the largest magnitude of the reference array unless stated):
STFT, mel, chroma, contrast, HPSS, CQT, tonnetz, spectral shape: 1e-4; MFCC 1e-4 of its range;
``classic173``: every one of its 173 dimensions within 2 % of the reference per clip (measured: 3e-5);
``psf-mfcc``: 1e-4 of python_speech_features' range.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from earmark.features import _spectral as F
from earmark.features import extract, get_preset
from earmark.features._extract import resample_like_librosa

librosa = pytest.importorskip("librosa")
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:librosa")


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - b)) / (np.max(np.abs(b)) + 1e-12))


@pytest.fixture(scope="module")
def clips(shared):
    """Three speech clips (FSDD, TTS) and two instrument notes at 22,050 Hz, as librosa.load reads them."""
    paths = [
        shared / "fsdd/recordings/0_george_0.wav",
        shared / "fsdd/recordings/7_jackson_32.wav",
        sorted((shared / "tts-digits").rglob("*.wav"))[0],
        sorted((shared / "instruments/fluidr3/piano").glob("*.flac"))[0],
        sorted((shared / "instruments/fluidr3/brass").glob("*.flac"))[3],
    ]
    return [librosa.load(p, sr=22050)[0] for p in paths]


def test_stft_mel_mfcc_match_librosa(clips):
    for y in clips:
        S = librosa.stft(y, n_fft=2048, hop_length=512)
        assert _rel(np.abs(F.stft(y, n_fft=2048, hop_length=512)), np.abs(S)) < 1e-5
        M = librosa.feature.melspectrogram(y=y, sr=22050, n_fft=2048, hop_length=512, n_mels=128)
        assert _rel(F.mel_spectrogram(y, sr=22050, n_fft=2048, hop_length=512, n_mels=128), M) < 1e-4
        ref = librosa.feature.mfcc(y=y, sr=22050, n_mfcc=20)
        ours = F.mfcc(y, sr=22050, n_mfcc=20, n_fft=2048, hop_length=512, n_mels=128)
        assert _rel(ours, ref) < 1e-4
        # other settings, incl. HTK mel scale and a short window
        M2 = librosa.feature.melspectrogram(y=y, sr=22050, n_fft=512, win_length=400, hop_length=160,
                                            n_mels=40, fmin=20, fmax=8000, htk=True)
        ours2 = F.mel_spectrogram(y, sr=22050, n_fft=512, win_length=400, hop_length=160, n_mels=40,
                                  fmin=20, fmax=8000, htk=True)
        assert _rel(ours2, M2) < 1e-4
        ref_db = librosa.power_to_db(M2, top_db=80.0)
        assert np.max(np.abs(F.power_to_db(ours2, top_db=80.0) - ref_db)) < 1e-3


def test_deltas_match_librosa(clips):
    m = librosa.feature.mfcc(y=clips[0], sr=22050, n_mfcc=13)
    for order in (1, 2):
        np.testing.assert_allclose(F.delta(m, width=9, order=order),
                                   librosa.feature.delta(m, width=9, order=order), rtol=1e-4, atol=1e-3)


def test_chroma_contrast_and_shape_features_match_librosa(clips):
    for y in clips:
        S = np.abs(librosa.stft(y))
        assert _rel(F.chroma_stft(S=S, sr=22050, n_fft=2048, hop_length=512),
                    librosa.feature.chroma_stft(S=S, sr=22050)) < 1e-4
        assert _rel(F.chroma_stft(y, sr=22050, n_fft=2048, hop_length=512),
                    librosa.feature.chroma_stft(y=y, sr=22050)) < 1e-4
        assert _rel(F.spectral_contrast(y, sr=22050, n_fft=2048, hop_length=512),
                    librosa.feature.spectral_contrast(y=y, sr=22050)) < 1e-4
        kw = {"n_fft": 2048, "hop_length": 512}
        assert _rel(F.spectral_centroid(y, sr=22050, **kw), librosa.feature.spectral_centroid(y=y, sr=22050)) < 1e-4
        assert _rel(F.spectral_bandwidth(y, sr=22050, **kw), librosa.feature.spectral_bandwidth(y=y, sr=22050)) < 1e-4
        assert _rel(F.spectral_rolloff(y, sr=22050, **kw), librosa.feature.spectral_rolloff(y=y, sr=22050)) < 1e-4
        assert _rel(F.spectral_flatness(y, **kw), librosa.feature.spectral_flatness(y=y)) < 1e-4
        assert _rel(F.zero_crossing_rate(y, frame_length=2048, hop_length=512),
                    librosa.feature.zero_crossing_rate(y)) < 1e-6
        assert _rel(F.rms(y, frame_length=2048, hop_length=512), librosa.feature.rms(y=y)) < 1e-5


def test_hpss_tuning_cqt_tonnetz_match_librosa(clips):
    for y in clips[::2]:
        h = librosa.effects.harmonic(y)
        np.testing.assert_array_equal(F.harmonic(y), h)  # bit-exact: tuning estimation is discontinuous
        assert float(F.estimate_tuning(h, sr=22050, bins_per_octave=36)) == pytest.approx(
            librosa.estimate_tuning(y=h, sr=22050, bins_per_octave=36))
        C = np.abs(librosa.cqt(h, sr=22050, n_bins=252, bins_per_octave=36, tuning=None))
        assert _rel(np.abs(F.cqt(h, sr=22050, n_bins=252, bins_per_octave=36, tuning=None)), C) < 1e-4
        assert _rel(F.tonnetz(h, sr=22050), librosa.feature.tonnetz(y=h, sr=22050)) < 1e-4


def _reference_173(path) -> np.ndarray:
    """The spoken-digit reference's feature vector, as its notebook computes it."""
    X, sr = librosa.load(path, sr=22050)
    stft = np.abs(librosa.stft(X))
    mfccs = np.mean(librosa.feature.mfcc(y=X, sr=sr).T, axis=0)
    chroma = np.mean(librosa.feature.chroma_stft(S=stft, sr=sr).T, axis=0)
    mel = np.mean(librosa.feature.melspectrogram(y=X, sr=sr).T, axis=0)
    contrast = np.mean(librosa.feature.spectral_contrast(S=stft, sr=sr).T, axis=0)
    tonnetz = np.mean(librosa.feature.tonnetz(y=librosa.effects.harmonic(X), sr=sr).T, axis=0)
    return np.concatenate([mfccs, chroma, mel, contrast, tonnetz])


def test_classic173_equals_reference_within_2_percent(shared):
    paths = (sorted((shared / "fsdd/recordings").glob("*.wav"))[::500]
             + sorted((shared / "instruments/fluidr3").rglob("*.flac"))[::500]
             + sorted((shared / "tts-digits").rglob("*.wav"))[::800])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = np.stack([_reference_173(p) for p in paths])
    fs = extract(paths, "classic173", workers=1)
    assert fs.errors == [] and fs.X.shape == (len(paths), 173)
    rel = np.abs(fs.X - ref) / np.maximum(np.abs(ref), 1e-6)
    assert rel.max() < 0.02, f"worst dimension {np.unravel_index(rel.argmax(), rel.shape)}: {rel.max():.3%}"


def test_mfcc_mean_preset_matches_reference(shared):
    path = shared / "fsdd/recordings/3_theo_10.wav"
    X, sr = librosa.load(path, sr=22050)
    ref = np.mean(librosa.feature.mfcc(y=X, sr=sr, n_mfcc=40).T, axis=0)
    fs = extract([path], "mfcc-mean", workers=1)
    np.testing.assert_allclose(fs.X[0], ref, rtol=1e-4, atol=1e-3)


def test_psf_mfcc_matches_python_speech_features(shared):
    psf = pytest.importorskip("python_speech_features")
    from earmark.audio import load_audio

    y8, sr = load_audio(shared / "fsdd/recordings/5_nicolas_7.wav")
    y = resample_like_librosa(y8, orig_sr=sr, target_sr=16000)[:16000]
    ref = psf.mfcc(y.astype(np.float64), samplerate=16000)  # (frames, 13)
    ours = get_preset("psf-mfcc", duration=None).transform(y)  # (13, frames)
    assert ours.shape == ref.T.shape
    assert _rel(ours, ref.T) < 1e-4
