"""Shared fixtures of the serving tests: FSDD paths and a fast classifier (logreg on MFCC means).

The classifier is trained once per test session (:func:`fsdd_model` is memoised) from features
kept in an on-disk store (:func:`feature_store`) that outlives the session, beside pytest's own
temporary folders and keyed by the feature and decoding code: a second session reads the FSDD
features instead of recomputing them (~25 s), yet trains the model afresh. Set
``EARMARK_TEST_FEATURE_STORE=off`` to recompute them in a per-session folder.
"""

from __future__ import annotations

import getpass
import hashlib
import os
import tempfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("EARMARK_SHARED", REPO.parent / "shared")) / "data"
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


def _code_key() -> str:
    """Hash of the code that turns files into features (audio decoding and the feature functions)."""
    h = hashlib.blake2b(digest_size=8)
    src = REPO / "src" / "earmark"
    for path in sorted([*(src / "audio").rglob("*.py"), *(src / "features").rglob("*.py")]):
        h.update(str(path.relative_to(src)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


@lru_cache(maxsize=1)
def feature_store() -> Path:
    """Feature store folder shared by the serving tests, across sessions while the feature code is unchanged.

    ``<tmp>/pytest-of-<user>/earmark-features-<hash of src/earmark/{audio,features}>``: beside
    pytest's numbered session folders, which pytest prunes, while this one is kept.
    """
    if os.environ.get("EARMARK_TEST_FEATURE_STORE", "").lower() in ("0", "off", "no", "false"):
        return Path(tempfile.mkdtemp(prefix="earmark-features-"))
    try:
        user = getpass.getuser()
    except (ImportError, KeyError, OSError):
        user = "unknown"
    root = Path(os.environ.get("PYTEST_DEBUG_TEMPROOT") or tempfile.gettempdir()) / f"pytest-of-{user}"
    path = root / f"earmark-features-{_code_key()}"
    path.mkdir(parents=True, exist_ok=True)
    return path


@lru_cache(maxsize=1)
def split() -> tuple[Any, Any]:
    """FSDD split by speaker (group-aware): (train, held-out speakers)."""
    from earmark.sources import load_dataset, train_test_split

    df = load_dataset(FSDD / "manifest.csv")
    return train_test_split(df, test_size=0.2, seed=0)


@lru_cache(maxsize=1)
def fsdd_model() -> Any:
    """logreg on MFCC means, trained on the training speakers of :func:`split` (features from :func:`feature_store`)."""
    train_df, _ = split()
    preset = fast_preset()
    try:
        from earmark.training import train
    except ImportError:
        train = None
    if train is not None:
        return train(train_df, model="logreg", features=preset, seed=0, cache=feature_store())
    from earmark.features import extract
    from earmark.models import get_model

    fs = extract(train_df, preset, workers=2, cache=feature_store())
    y = train_df["label"].astype(str).to_numpy()[np.asarray(fs.rows)]
    est = get_model("logreg").fit(fs.X, y)
    return _StandIn(est, preset, [str(c) for c in est.classes_], metrics={"accuracy": 1.0})


@lru_cache(maxsize=1)
def fsdd_mlp() -> tuple[Any, np.ndarray]:
    """A small torch MLP on MFCC means (every 10th training clip, 3 epochs) and its training features."""
    from earmark.features import extract
    from earmark.models import get_model

    train_df, _ = split()
    sub = train_df.iloc[::10]
    fs = extract(sub, fast_preset(), workers=2, cache=feature_store())
    y = sub["label"].astype(str).to_numpy()[np.asarray(fs.rows)]
    est = get_model("mlp", epochs=3, random_state=0).fit(fs.X, y)
    return _StandIn(est, fast_preset(), [str(c) for c in est.classes_]), fs.X


def require_training() -> None:
    """Skip when earmark.training (TrainedModel, needed to load bundles) has not landed."""
    import pytest

    try:
        from earmark.training import TrainedModel  # noqa: F401
    except ImportError:
        pytest.skip("earmark.training.TrainedModel is not available yet")
