"""What neural models record per epoch: comparable losses, no internal fields."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from earmark.sources import load_dataset
from earmark.training import train

SHARED = Path(os.environ.get("EARMARK_SHARED", Path(__file__).resolve().parents[2] / "shared")) / "data"


def test_history_keeps_an_auxiliary_loss_apart_and_no_internal_keys():
    notes = load_dataset(SHARED / "instruments" / "manifest.csv").query("kind == 'note'")
    tr = notes.groupby(["fold", "label"]).head(2).reset_index(drop=True)  # 5 folds as groups
    m = train(tr, model="hcnn-reg", target="pitch", epochs=3, seed=0, workers=1, refit=False)
    hist = m.estimator.history_
    assert len(hist) == 3 and all({"loss", "aux_loss", "val_loss"} <= set(h) for h in hist)
    # `loss` is the regression loss alone, as `val_loss` is; the pitch-class term is `aux_loss`
    assert all(h["aux_loss"] > 0 and np.isfinite(h["loss"]) for h in hist)
    fsdd = load_dataset(SHARED / "fsdd" / "manifest.csv")
    digits = fsdd[fsdd["label"].isin(["0", "1"])].groupby(["group", "label"]).head(4).reset_index(drop=True)
    c = train(digits, model="cnn", epochs=2, seed=0, workers=1, refit=False)
    assert c.estimator.history_ and all(not k.startswith("_") for h in c.estimator.history_ for k in h)
    assert "val_accuracy" in c.estimator.history_[-1]
