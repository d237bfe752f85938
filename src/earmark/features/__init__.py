"""Feature engine: pure feature functions, presets, extraction (parallel, Ray, cached), wrappers.

Example
-------
>>> import numpy as np
>>> from earmark.features import get_preset, log_mel
>>> log_mel(np.zeros(16000, np.float32), sr=16000, n_fft=512, hop_length=160, n_mels=64).shape
(64, 101)
>>> get_preset("classic173").output_shape
(173,)
"""

from earmark.features import _logcqt  # noqa: F401  (registers the 'cqt' preset)
from earmark.features._extract import FeatureSet, extract, featurize
from earmark.features._presets import Preset, get_preset, list_presets, register_preset
from earmark.features._spectral import (
    chroma_cqt,
    chroma_stft,
    cqt,
    delta,
    estimate_tuning,
    harmonic,
    log_mel,
    mel_filterbank,
    mel_spectrogram,
    mfcc,
    power_spectrogram,
    power_to_db,
    rms,
    spectral_bandwidth,
    spectral_centroid,
    spectral_contrast,
    spectral_flatness,
    spectral_rolloff,
    stft,
    tonnetz,
    zero_crossing_rate,
)
from earmark.features._store import FeatureStore, file_hash


def __getattr__(name: str):
    # torch and scikit-learn wrappers load on first use (torch is slow to import)
    if name in ("LogMel", "MelSpectrogram", "STFT", "logmel_module"):
        from earmark.features import _torch

        return getattr(_torch, name)
    if name == "FeatureTransformer":
        from earmark.features._sklearn import FeatureTransformer

        return FeatureTransformer
    raise AttributeError(f"module 'earmark.features' has no attribute {name!r}")


__all__ = [
    "STFT",
    "FeatureSet",
    "FeatureStore",
    "FeatureTransformer",
    "LogMel",
    "MelSpectrogram",
    "Preset",
    "chroma_cqt",
    "chroma_stft",
    "cqt",
    "delta",
    "estimate_tuning",
    "extract",
    "featurize",
    "file_hash",
    "get_preset",
    "harmonic",
    "list_presets",
    "log_mel",
    "logmel_module",
    "mel_filterbank",
    "mel_spectrogram",
    "mfcc",
    "power_spectrogram",
    "power_to_db",
    "register_preset",
    "rms",
    "spectral_bandwidth",
    "spectral_centroid",
    "spectral_contrast",
    "spectral_flatness",
    "spectral_rolloff",
    "stft",
    "tonnetz",
    "zero_crossing_rate",
]
