"""Checkpoints of the neural estimators are tied to the run that wrote them: a fingerprint refuses
a checkpoint of other parameters or data, and train() / cross-validation keep each phase and fold
in its own sub-folder of ``checkpoint_dir`` (real FSDD clips, tiny networks)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from earmark.errors import ParameterError
from earmark.evaluation import cross_validate
from earmark.features import extract, get_preset
from earmark.models import TorchClassifier
from earmark.sources import load_dataset
from earmark.training import train

SHARED = Path(os.environ.get("EARMARK_SHARED", Path(__file__).resolve().parents[1].parent / "shared")) / "data"

torch.set_num_threads(1)
# 2-3 epochs of a tiny network need not learn; these tests compare runs, not accuracy
pytestmark = pytest.mark.filterwarnings("ignore::earmark.training.ChanceLevelWarning")

#: a cnn small enough for seconds of training on 2 cores
NET = {"batch_size": 16, "net_options": {"width": 8}}


class Interrupt(Exception):
    """Stands for a crash or Ctrl-C in the middle of training."""


@pytest.fixture(scope="module")
def clips() -> pd.DataFrame:
    """Digits 0-2 of the 4 FSDD speakers other than theo, 3 takes each: 36 clips (a class has 4
    groups, so train() validates on one speaker and then refits on all)."""
    df = load_dataset(SHARED / "fsdd" / "manifest.csv")
    df = df[df["label"].isin(["0", "1", "2"]) & (df["group"] != "theo")]
    return df.groupby(["group", "label"], sort=False).head(3).reset_index(drop=True)


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("features"))


@pytest.fixture(scope="module")
def reference(clips, cache):
    """train() without checkpoints: what every checkpointed run must reproduce."""
    return train(clips, epochs=3, seed=0, workers=1, cache=cache, **NET)


@pytest.fixture(scope="module")
def mfcc(clips, cache):
    fs = extract(clips, get_preset("mfcc-mean"), workers=1, cache=cache)
    assert not fs.errors
    return np.asarray(fs.X), clips["label"].to_numpy()


def _assert_same_weights(a, b) -> None:
    sa, sb = a.estimator.module_.state_dict(), b.estimator.module_.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        torch.testing.assert_close(sa[k], sb[k], msg=lambda m, k=k: f"{k}: {m}")


# ---------------------------------------------------------------------------- the estimator


def test_resume_with_other_epochs_is_refused_naming_the_field_and_the_fix(clips, cache, tmp_path):
    ck = tmp_path / "ck"
    train(clips, epochs=2, seed=0, refit=False, workers=1, cache=cache, checkpoint_dir=str(ck), **NET)
    with pytest.raises(ParameterError) as err:
        train(clips, epochs=3, seed=0, refit=False, workers=1, cache=cache, checkpoint_dir=str(ck),
              resume=True, **NET)
    msg = str(err.value)
    assert "epochs: checkpoint 2, now 3" in msg
    assert str(ck / "validation" / "checkpoint.pt") in msg
    assert "fresh checkpoint_dir" in msg and "resume=False" in msg
    assert "Tried to step" not in msg
    # starting over is allowed, and then resuming the finished run is
    again = train(clips, epochs=3, seed=0, refit=False, workers=1, cache=cache, checkpoint_dir=str(ck), **NET)
    same = train(clips, epochs=3, seed=0, refit=False, workers=1, cache=cache, checkpoint_dir=str(ck),
                 resume=True, **NET)
    assert same.metrics == again.metrics
    _assert_same_weights(same, again)


def test_resume_on_other_data_or_parameters_is_refused(mfcc, tmp_path):
    X, y = mfcc
    kw = {"epochs": 2, "batch_size": 16, "validation_fraction": 0.0, "checkpoint_dir": str(tmp_path)}
    TorchClassifier("mlp", **kw).fit(X, y)
    with pytest.raises(ParameterError, match=r"training data: checkpoint X \(36, 40\), y \(36,\), sample_weight \(36,\), digest \w+, now X \(30, 40\)"):
        TorchClassifier("mlp", resume=True, **kw).fit(X[:30], y[:30])
    with pytest.raises(ParameterError, match="training data"):  # same shape, other values
        TorchClassifier("mlp", resume=True, **kw).fit(X + 1.0, y)
    with pytest.raises(ParameterError, match="training data"):
        TorchClassifier("mlp", resume=True, **kw).fit(X, y, sample_weight=np.linspace(1, 2, len(y)))
    with pytest.raises(ParameterError, match="lr: checkpoint 0.003, now 0.001"):
        TorchClassifier("mlp", resume=True, lr=1e-3, **kw).fit(X, y)
    with pytest.raises(ParameterError, match="validation data: checkpoint none"):
        TorchClassifier("mlp", resume=True, **kw).fit(X, y, X_val=X[:6], y_val=y[:6])
    # what does not shape training (device, callbacks, tta) does not stand in the way
    TorchClassifier("mlp", resume=True, device="cpu", tta=True, callbacks=[lambda e, r: None], **kw).fit(X, y)


def test_checkpoint_without_fingerprint_is_refused(mfcc, tmp_path):
    X, y = mfcc
    kw = {"epochs": 2, "batch_size": 16, "validation_fraction": 0.0, "checkpoint_dir": str(tmp_path)}
    TorchClassifier("mlp", **kw).fit(X, y)
    path = tmp_path / "checkpoint.pt"
    state = torch.load(path, weights_only=True)
    del state["fingerprint"]  # as earlier earmark versions wrote it
    torch.save(state, path)
    with pytest.raises(ParameterError, match="no fingerprint"):
        TorchClassifier("mlp", resume=True, **kw).fit(X, y)


def test_a_damaged_checkpoint_is_named_and_a_save_never_leaves_half_a_file(mfcc, tmp_path):
    X, y = mfcc
    kw = {"epochs": 2, "batch_size": 16, "validation_fraction": 0.0, "checkpoint_dir": str(tmp_path)}
    TorchClassifier("mlp", **kw).fit(X, y)
    path = tmp_path / "checkpoint.pt"
    assert path.is_file() and [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]  # no .partial left
    whole = path.read_bytes()
    for damaged in (whole[: len(whole) // 2], b""):  # killed mid-write by an older version; an empty file
        path.write_bytes(damaged)
        with pytest.raises(ParameterError, match=r"checkpoint\.pt cannot be read .*Delete it .*-p resume=false"):
            TorchClassifier("mlp", resume=True, **kw).fit(X, y)


# ---------------------------------------------------------------------------- train()


def test_refit_with_resume_on_an_empty_folder_really_trains(clips, cache, reference, tmp_path):
    ck = tmp_path / "ck"
    m = train(clips, epochs=3, seed=0, workers=1, cache=cache, checkpoint_dir=str(ck), resume=True, **NET)
    assert m.config["refit_on_all"]
    assert (ck / "validation" / "checkpoint.pt").is_file() and (ck / "refit" / "checkpoint.pt").is_file()
    assert not (ck / "checkpoint.pt").exists()
    assert m.metrics == reference.metrics
    _assert_same_weights(m, reference)
    assert m.config["params"]["checkpoint_dir"] == str(ck)  # the bundle records what the user gave


def test_second_run_with_resume_reports_the_first_runs_validation(clips, cache, reference, tmp_path):
    ck = str(tmp_path / "ck")
    first = train(clips, epochs=3, seed=0, workers=1, cache=cache, checkpoint_dir=ck, **NET)
    second = train(clips, epochs=3, seed=0, workers=1, cache=cache, checkpoint_dir=ck, resume=True, **NET)
    # not the scores of the refit network, which was trained on the validation clips
    assert second.metrics == first.metrics == reference.metrics
    assert second.history == first.history
    _assert_same_weights(second, first)


def test_train_interrupted_in_the_refit_and_resumed_equals_uninterrupted(clips, cache, reference, tmp_path):
    ck = str(tmp_path / "ck")
    seen: list[str] = []

    def crash_in_refit(est, record):
        seen.append(Path(est.checkpoint_dir).name)
        if seen[-1] == "refit" and record["epoch"] == 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        train(clips, epochs=3, seed=0, workers=1, cache=cache, checkpoint_dir=ck, callbacks=[crash_in_refit], **NET)
    assert seen == ["validation"] * 3 + ["refit"] * 2
    resumed = train(clips, epochs=3, seed=0, workers=1, cache=cache, checkpoint_dir=ck, resume=True, **NET)
    assert resumed.metrics == reference.metrics
    _assert_same_weights(resumed, reference)


# ---------------------------------------------------------------------------- cross-validation


def test_cross_validation_folds_keep_their_own_checkpoints(clips, cache, tmp_path):
    ck = tmp_path / "ck"
    kw = {"model": "cnn", "folds": 2, "epochs": 2, "workers": 1, "cache": cache, "checkpoint_dir": str(ck), **NET}
    first = cross_validate(clips, **kw)
    folds = sorted(p.name for p in ck.iterdir())
    assert len(folds) == 2 and all(f.startswith("fold-") for f in folds)
    for f in folds:
        assert {p.name for p in (ck / f).iterdir()} == {"validation", "refit"}
    again = cross_validate(clips, resume=True, **kw)
    assert [f.result.metrics for f in again.folds] == [f.result.metrics for f in first.folds]


def test_resume_without_a_checkpoint_dir_is_refused():
    from earmark.models import get_model

    with pytest.raises(ParameterError, match=r"resume=True .*pass checkpoint_dir too"):
        get_model("cnn", resume=True)
    assert get_model("cnn", resume=True, checkpoint_dir="ckpt").resume is True
