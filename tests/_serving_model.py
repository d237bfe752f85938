"""Shared fixtures of the serving tests: FSDD paths and a fast classifier (logreg on MFCC means)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

DATA = Path(os.environ.get("EARMARK_SHARED", Path(__file__).resolve().parents[1].parent / "shared")) / "data"
FSDD = DATA / "fsdd"
TTS = DATA / "tts-digits" / "espeak"
BAD = DATA / "bad-audio"


def fast_preset() -> Any:
    from earmark.features import get_preset

    return get_preset("mfcc-mean", sample_rate=8000, n_fft=256, hop_length=80, n_mels=40, n_mfcc=20)


@dataclass
class _StandIn:
    """Duck-typed TrainedModel, used only while earmark.training is not importable."""

    estimator: Any
    preset: Any
    classes: list
    task: str = "classification"
    target: str = "label"
    config: Any = None
    history: Any = None
    metrics: dict = field(default_factory=dict)
    data: Any = None
    reference: dict = field(default_factory=dict)


@lru_cache(maxsize=1)
def split() -> tuple[Any, Any]:
    """FSDD split by speaker (group-aware): (train, held-out speakers)."""
    from earmark.sources import load_dataset, train_test_split

    df = load_dataset(FSDD / "manifest.csv")
    return train_test_split(df, test_size=0.2, seed=0)


@lru_cache(maxsize=1)
def fsdd_model() -> Any:
    """logreg on MFCC means, trained on the training speakers of :func:`split`."""
    train_df, _ = split()
    preset = fast_preset()
    try:
        from earmark.training import train
    except ImportError:
        train = None
    if train is not None:
        return train(train_df, model="logreg", features=preset, seed=0)
    from earmark.features import extract
    from earmark.models import get_model

    fs = extract(train_df, preset, workers=2)
    y = train_df["label"].astype(str).to_numpy()[np.asarray(fs.rows)]
    est = get_model("logreg").fit(fs.X, y)
    return _StandIn(est, preset, [str(c) for c in est.classes_], metrics={"accuracy": 1.0})


def require_training() -> None:
    """Skip when earmark.training (TrainedModel, needed to load bundles) has not landed."""
    import pytest

    try:
        from earmark.training import TrainedModel  # noqa: F401
    except ImportError:
        pytest.skip("earmark.training.TrainedModel is not available yet")
