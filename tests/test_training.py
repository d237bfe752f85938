"""train(), TrainedModel, tune() and the CLI commands (models list / train / tune) on real data."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from earmark.errors import (
    AudioDecodeError,
    DatasetError,
    EarmarkWarning,
    ParameterError,
    SampleRateWarning,
)
from earmark.sources import load_dataset
from earmark.training import DEFAULT_REGRESSOR, TrainedModel, summary_vectors, train, tune

SHARED = Path(os.environ.get("EARMARK_SHARED", Path(__file__).resolve().parents[1].parent / "shared")) / "data"

torch.set_num_threads(1)


def _take(df: pd.DataFrame, per_group_label: int) -> pd.DataFrame:
    return df.groupby(["group", "label"], sort=False).head(per_group_label).reset_index(drop=True)


@pytest.fixture(scope="module")
def fsdd() -> pd.DataFrame:
    return load_dataset(SHARED / "fsdd" / "manifest.csv")


@pytest.fixture(scope="module")
def fsdd_small(fsdd) -> pd.DataFrame:
    """4 speakers (theo held out), 10 digits, 8 takes: 320 clips."""
    return _take(fsdd[fsdd["group"] != "theo"], 8)


@pytest.fixture(scope="module")
def theo(fsdd) -> pd.DataFrame:
    return _take(fsdd[fsdd["group"] == "theo"], 5)


@pytest.fixture(scope="module")
def logreg_model(fsdd_small) -> TrainedModel:
    return train(fsdd_small, model="logreg", features="mfcc-mean", seed=0)


def test_train_validates_on_held_out_groups(logreg_model, fsdd_small):
    m = logreg_model
    assert m.task == "classification" and m.classes == [str(d) for d in range(10)]
    assert m.data["split"].startswith("group")
    assert m.data["n_train"] + m.data["n_val"] == len(fsdd_small)
    assert m.data["class_counts"] == {str(d): 32 for d in range(10)}
    assert len(m.data["sha256"]) == 64
    assert {"accuracy", "balanced_accuracy", "macro_f1", "log_loss"} <= set(m.metrics)
    assert m.reference["features"].shape == (m.data["n_train"], 40)
    assert m.reference["proba"].shape == (m.data["n_val"], 10)
    assert m.config["model"] == "logreg" and m.config["preset"]["name"] == "mfcc-mean"
    assert m.config["refit_on_all"] is True
    json.dumps(m.config)  # JSON-able


def test_validation_groups_are_disjoint_from_training(fsdd_small):
    from earmark.training._train import _split

    tr, va, how = _split(fsdd_small, "group", 0.25, seed=0)
    assert how == "group:group" and len(va) > 0
    assert not set(fsdd_small["group"].iloc[tr]) & set(fsdd_small["group"].iloc[va])


def test_trained_model_predicts_unseen_speaker(logreg_model, theo):
    pred = logreg_model.predict(theo)
    assert list(pred.columns[:3]) == ["path", "label", "confidence"]
    acc = float((pred["label"] == theo["label"].astype(str).to_numpy()).mean())
    assert acc >= 0.3, f"{acc:.2f} on an unseen speaker (chance 0.10)"
    proba = logreg_model.predict_proba(list(theo["path"][:4]))
    assert proba.shape == (4, 10)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)


def test_predict_reports_bad_files_per_row(logreg_model, theo):
    bad = SHARED / "bad-audio" / "empty.wav"
    pred = logreg_model.predict([theo["path"].iloc[0], str(bad)])
    assert len(pred) == 2
    assert pred["error"].isna().sum() == 1
    assert pred.loc[pred["path"] == str(bad), "label"].isna().all()
    # one row per input, in input order: a failed file stays where it was given
    good = [str(p) for p in theo["path"].iloc[:2]]
    inputs = [str(bad), good[0], "no-such-file.wav", good[1], good[0]]
    rows = logreg_model.predict(inputs)
    assert rows["path"].tolist() == inputs
    assert [e is None for e in rows["error"]] == [False, True, False, True, True]
    assert rows["label"].iloc[1] == rows["label"].iloc[4] == logreg_model.predict(good[:1])["label"].iloc[0]
    assert rows["path"].tolist() == logreg_model.predict(pd.DataFrame({"path": inputs}))["path"].tolist()


def test_windows_longer_than_the_clip_are_refused_and_long_files_are_flagged(tmp_path, fsdd_small):
    """A 0.5 s model asked for 1 s windows would hear half of each; a 2 s file without windows is
    heard for its first 0.5 s only: the first is refused, the second said."""
    import soundfile as sf

    from earmark.bundle import save_model
    from earmark.cli.main import app
    from earmark.serving.batch import predict_paths

    model = train(fsdd_small.groupby(["group", "label"]).head(1), epochs=1, duration=0.5, val_fraction=0,
                  seed=0, workers=1)
    clips = [sf.read(p, dtype="float32")[0] for p in fsdd_small["path"][:6]]
    long = tmp_path / "long.wav"
    sf.write(long, np.concatenate(clips), 8000)
    with pytest.raises(ParameterError, match=r"window \(1 s\) is longer than the clips the model hears \(0.5 s\)"):
        model.predict_windows(str(long), window=1.0, hop=0.5)
    with pytest.raises(ParameterError, match="longer than the clips"):
        predict_paths(model, [long, tmp_path / "missing.wav"], window=1.0)  # once, not an error per file
    windows, _ = model.predict_windows(str(long), window=0.5, hop=0.25)
    assert len(windows) >= 6
    bundle = save_model(model, tmp_path / "m.earmark")
    runner = CliRunner()
    res = runner.invoke(app, ["predict", str(bundle), str(long)])
    assert res.exit_code == 0, res.output
    said = " ".join(res.stderr.split())
    assert "longer than the model's 0.5 s clips" in said and "--window 0.5 --hop 0.25" in said
    short = runner.invoke(app, ["predict", str(bundle), fsdd_small["path"].iloc[0]])
    assert short.exit_code == 0 and "longer than" not in short.stderr
    refused = runner.invoke(app, ["predict", str(bundle), str(long), "--window", "1"])
    assert refused.exit_code == 2 and "longer than the clips" in " ".join(refused.stderr.split())


def test_predict_windows_on_a_long_recording(logreg_model, theo):
    from earmark.audio import load_audio

    sr = logreg_model.preset.sample_rate
    clips = [load_audio(p, sr=sr)[0] for p in theo["path"][:3]]
    y = np.concatenate([np.concatenate([c, np.zeros(sr // 4, np.float32)]) for c in clips])
    windows, clip = logreg_model.predict_windows(y, window=0.5, hop=0.25, sr=sr)
    with pytest.warns(SampleRateWarning, match=f"model's own rate, {sr} Hz"):  # never a silent guess
        assumed, _ = logreg_model.predict_windows(y, window=0.5, hop=0.25)
    pd.testing.assert_frame_equal(assumed, windows)
    stereo, _ = logreg_model.predict_windows(np.stack([y, y], axis=1), window=0.5, hop=0.25, sr=sr)  # soundfile's layout
    np.testing.assert_allclose(stereo["confidence"], windows["confidence"], rtol=1e-5)
    assert clip["n_windows"] == len(windows) >= 3
    assert windows["start"].is_monotonic_increasing
    assert windows["end"].max() == pytest.approx(len(y) / sr)
    assert clip["label"] in logreg_model.classes
    assert sum(clip["probabilities"].values()) == pytest.approx(1.0)
    # windows of digital silence are flagged and left out of the summary
    gappy = np.concatenate([np.zeros(2 * sr, np.float32), clips[0], np.zeros(2 * sr, np.float32)])
    wins, summary = logreg_model.predict_windows(gappy, window=0.5, hop=0.5, sr=sr)
    assert summary["n_silent_windows"] == int(wins["silent"].sum()) >= 6
    proba = wins.loc[~wins["silent"], [f"proba_{c}" for c in logreg_model.classes]].to_numpy().mean(axis=0)
    assert list(summary["probabilities"].values()) == pytest.approx(list(proba))
    # hours of audio are featurized a block of windows at a time: blocks of 2 give the same answer
    import earmark.features._extract as extract_module
    from earmark.serving import Predictor

    whole, whole_clip = Predictor(logreg_model).predict_windows(y, window=0.5, hop=0.25)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(extract_module, "WINDOW_BLOCK", 2)
        blocked, _ = logreg_model.predict_windows(y, window=0.5, hop=0.25, sr=sr)
        parts, parts_clip = Predictor(logreg_model).predict_windows(y, window=0.5, hop=0.25)
    pd.testing.assert_frame_equal(blocked, windows, rtol=1e-4, atol=1e-6)  # float32 rounding of another batch size
    assert [(a, b) for a, b, _ in parts] == [(a, b) for a, b, _ in whole] == list(zip(windows["start"], windows["end"]))
    np.testing.assert_allclose([p.confidence for *_, p in parts], windows["confidence"], rtol=1e-4)
    assert parts_clip.label == whole_clip.label == clip["label"]


def test_predict_takes_arrays_as_decoders_and_soundfile_give_them(logreg_model, theo):
    import soundfile as sf

    y, sr = sf.read(theo["path"].iloc[0], dtype="float32")
    want = logreg_model.predict_proba([y], sr=sr)
    pcm, _ = sf.read(theo["path"].iloc[0], dtype="int16")  # integer PCM: scaled by its full range
    np.testing.assert_allclose(logreg_model.predict_proba([pcm], sr=sr), want, atol=1e-4)
    stereo = np.stack([y, y], axis=1)  # (samples, channels): one clip, not thousands of 2-sample ones
    assert len(logreg_model.predict(stereo, sr=sr)) == 1
    np.testing.assert_allclose(logreg_model.predict_proba(stereo, sr=sr), want, atol=1e-5)
    batch = np.stack([y, y])  # rows longer than a channel count: a batch of two clips
    np.testing.assert_allclose(logreg_model.predict_proba(batch, sr=sr), np.vstack([want, want]), atol=1e-5)


def test_bad_arrays_are_error_rows_in_place_and_a_bad_rate_is_refused(logreg_model, theo):
    import soundfile as sf

    y, sr = sf.read(theo["path"].iloc[0], dtype="float32")
    nan = y.copy()
    nan[100:112] = np.nan
    out = logreg_model.predict([y, nan, np.zeros(0, np.float32), y], sr=sr)
    assert list(out["path"]) == ["array[0]", "array[1]", "array[2]", "array[3]"]  # input order kept
    assert out["error"][0] is None and out["error"][3] is None and out["label"][0] == out["label"][3]
    assert "12 non-finite samples" in out["error"][1] and "no samples" in out["error"][2]
    assert pd.isna(out["label"][1])
    named = ["array[1].wav", "array[0].wav", str(theo["path"].iloc[0])]  # files named like arrays are files
    assert list(logreg_model.predict(named)["path"]) == named  # in the order given
    assert list(logreg_model.predict(named[:2])["path"]) == named[:2]
    with pytest.raises(AudioDecodeError, match=r"array\[1\].*non-finite"):
        logreg_model.predict_proba([y, nan], sr=sr)
    for bad in (0, -8000, 8000.5, True):
        with pytest.raises(ParameterError, match="positive integer"):
            logreg_model.predict([y], sr=bad)
        with pytest.raises(ParameterError, match="positive integer"):
            logreg_model.predict_windows(y, sr=bad)
    with pytest.raises(ParameterError, match="non-finite"):
        logreg_model.predict_windows(nan, sr=sr)


def test_extra_train_goes_to_training_only(fsdd_small):
    tts = load_dataset(SHARED / "tts-digits" / "espeak" / "manifest.csv")
    tts = tts.groupby("label").head(3).reset_index(drop=True)
    base = train(fsdd_small, model="logreg", features="mfcc-mean", seed=0)
    m = train(fsdd_small, model="logreg", features="mfcc-mean", seed=0, extra_train=tts, extra_weight=0.5)
    assert m.data["n_val"] == base.data["n_val"]  # same validation rows: none of the extra ones
    assert m.data["n"] == base.data["n"] == len(fsdd_small)
    assert m.data["extra_train"]["n"] == 30 and m.data["extra_train"]["weight"] == 0.5
    assert m.data["sha256"] == base.data["sha256"]
    assert m.reference["features"].shape[0] == base.reference["features"].shape[0]
    # the extra clips were learnt from: scoring the model on them is said, as on the dataset's own
    from earmark.errors import TrainingDataWarning
    from earmark.evaluation import evaluate

    with pytest.warns(TrainingDataWarning, match="30 of the 30 clips"):
        evaluate(m, tts)
    # the dataset's own files as extra rows would be validated on (or weigh twice): refused
    with pytest.raises(DatasetError, match=r"extra_train lists 5 file\(s\) of the dataset itself"):
        train(fsdd_small, model="logreg", features="mfcc-mean", seed=0, extra_train=fsdd_small.head(5))


def test_default_cnn_trains_and_history_is_recorded(fsdd, theo):
    df = _take(fsdd[fsdd["label"].isin(["0", "1", "2"]) & (fsdd["group"] != "theo")], 20)
    m = train(df, epochs=8, seed=0, batch_size=16)
    assert m.config["model"] == "cnn" and m.config["kind"] == "torch"
    assert 1 <= len(m.history) <= 8
    assert {"epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr"} <= set(m.history[0])
    assert m.config["best_epoch"] >= 1
    assert m.reference["features"].shape[1] == 64  # per-mel time means of log-mel
    # 4 speakers: validated on one held out, then refitted on all 4 for the whole epoch budget
    assert m.config["refit_on_all"] and m.config["refit_epochs"] == 8 and m.config["epochs"] == 8  # exactly as asked
    assert m.estimator.n_epochs_ == 8 and "val_accuracy" in m.history[-1] and "accuracy" in m.metrics
    t = theo[theo["label"].isin(["0", "1", "2"])]
    pred = m.predict(t)
    assert float((pred["label"] == t["label"].astype(str).to_numpy()).mean()) >= 0.5


def test_pitch_regression_on_instruments():
    df = load_dataset(SHARED / "instruments" / "manifest.csv")
    df = df[df["kind"] == "note"].groupby("label").head(16).reset_index(drop=True)
    m = train(df, model="svr", target="pitch", features="mfcc-mean", seed=0)
    assert m.task == "regression" and m.classes == [] and m.target == "pitch"
    assert m.data["group"] == "fold" and m.data["split"].startswith("group")
    assert {"mae", "rmse", "r2"} <= set(m.metrics)
    baseline = float(np.mean(np.abs(df["pitch"] - df["pitch"].mean())))
    assert m.metrics["mae"] < 0.8 * baseline
    pred = m.predict(df["path"][:3].tolist())
    assert "prediction" in pred.columns and pred["prediction"].between(10, 120).all()


def test_a_split_that_cannot_use_the_groups_says_so_and_bad_targets_are_found_first(fsdd):
    from earmark.errors import EarmarkWarning

    one = _take(fsdd[(fsdd["group"] == "theo") & fsdd["label"].isin(["0", "1"])], 10)
    with pytest.warns(EarmarkWarning, match="drawn at random, not by 'group'.*overstates"):
        m = train(one, model="logreg", features="mfcc-mean", seed=0)
    assert m.data["split"] == "random"
    with pytest.raises(ParameterError, match="group column is the column being learnt"):
        train(one, model="logreg", features="mfcc-mean", group="label")
    from earmark.cli.main import app

    refused = CliRunner().invoke(app, ["train", str(SHARED / "fsdd" / "manifest.csv"), "--model", "logreg",
                                       "--group", "label", "--out", "/nonexistent/m"])
    assert refused.exit_code == 2 and "column being learnt" in " ".join(refused.output.split())
    every = load_dataset(SHARED / "instruments" / "manifest.csv")
    notes = every.head(12).reset_index(drop=True)
    notes.loc[[3, 7], "pitch"] = np.nan
    with pytest.raises(DatasetError, match=r"'pitch' of the dataset table has 2 missing.*rows \[3, 7\]"):
        train(notes, model="ridge", target="pitch", features="mfcc-mean", cache="/nonexistent/never-used")
    extra = every.iloc[12:16].reset_index(drop=True)  # other files than the dataset's
    extra.loc[[3], "pitch"] = np.nan
    notes = notes.dropna(subset=["pitch"])
    with pytest.raises(DatasetError, match="of the extra_train table has 1 missing"):
        train(notes, model="ridge", target="pitch", features="mfcc-mean", extra_train=extra)
    # a blank label is refused by row too (train crashed comparing str with float; tune learnt a
    # class 'nan'), and so is a missing regression target in tune (scikit-learn's 'y contains NaN')
    blank = notes.reset_index(drop=True).astype({"label": object})
    blank.loc[[2], "label"] = None
    blank.loc[[5], "label"] = "  "
    with pytest.raises(DatasetError, match=r"'label' of the dataset table has 2 missing \(empty\) label.*rows \[2, 5\]"):
        train(blank, model="logreg", features="mfcc-mean", cache="/nonexistent/never-used")
    with pytest.raises(DatasetError, match=r"2 missing \(empty\) label"):
        tune(blank, model="knn", trials=1, features="mfcc-mean", folds=2, cache="/nonexistent/never-used")
    gap = notes.reset_index(drop=True)
    gap.loc[[1], "pitch"] = np.nan
    with pytest.raises(DatasetError, match=r"'pitch' of the dataset table has 1 missing.*rows \[1\]"):
        tune(gap, model="ridge", target="pitch", trials=1, features="mfcc-mean", folds=2)


def test_refit_can_be_switched_off(fsdd):
    df = _take(fsdd[fsdd["label"].isin(["0", "1"]) & (fsdd["group"] != "theo")], 6)
    m = train(df, epochs=2, seed=0, batch_size=16, refit=False)
    assert not m.config["refit_on_all"] and m.config["refit_epochs"] is None
    # a classical model honours it too (it was refitted anyway), and refuses a parallel refit by name
    kept = train(df, model="logreg", features="mfcc-mean", seed=0, refit=False)
    again = train(df, model="logreg", features="mfcc-mean", seed=0)
    assert not kept.config["refit_on_all"] and again.config["refit_on_all"]
    assert kept.data["n_train"] == again.data["n_train"] and kept.metrics == again.metrics  # same validated run
    with pytest.raises(ParameterError, match="'logreg' is not a neural model"):
        train(df, model="logreg", features="mfcc-mean", parallel=True)


@pytest.mark.filterwarnings("ignore::earmark.training.ChanceLevelWarning")  # 2 epochs: equality, not learning
def test_parallel_refit_is_the_one_process_refit(fsdd, tmp_path):
    """parallel=True trains the refit in a second process beside the validated run; with the same
    thread count (1 each here) it is bit for bit the network a one-process run trains."""
    df = _take(fsdd[fsdd["label"].isin(["0", "1", "2"]) & (fsdd["group"] != "theo")], 10)
    torch.set_num_threads(2)  # the parent keeps one thread, the refit process gets the other
    try:
        par = train(df, epochs=2, seed=0, batch_size=16, parallel=True, workers=1, checkpoint_dir=str(tmp_path))
    finally:
        torch.set_num_threads(1)
    assert torch.get_num_threads() == 1
    seq = train(df, epochs=2, seed=0, batch_size=16, parallel=False, workers=1)
    assert par.config["parallel_refit"] and not seq.config["parallel_refit"]
    assert par.config["refit_on_all"] and par.config["refit_epochs"] == seq.config["refit_epochs"] == 2
    assert par.estimator.n_epochs_ == 2 and len(par.estimator.history_) == 2
    got, want = par.estimator.module_.state_dict(), seq.estimator.module_.state_dict()
    assert got.keys() == want.keys()
    for k in want:
        assert torch.equal(got[k], want[k]), k
    assert par.metrics == seq.metrics and par.history == seq.history
    assert any((tmp_path / "refit").iterdir()) and any((tmp_path / "validation").iterdir())
    assert par.estimator.checkpoint_dir == str(tmp_path)
    proba = par.predict(df.head(6))
    assert proba["label"].isin(["0", "1", "2"]).all()


def test_parallel_refit_rules_and_errors(fsdd, tmp_path):
    from earmark.models import get_model
    from earmark.training import PARALLEL_MIN_STEPS, PARALLEL_MIN_WORK
    from earmark.training._train import _parallel_threads, _RefitProcess

    est = get_model("cnn", epochs=20)  # 32 clips a step
    logmel = 64 * 101
    torch.set_num_threads(2)
    try:
        assert PARALLEL_MIN_STEPS <= 20 * 79 and 20 * 79 * 32 * logmel >= PARALLEL_MIN_WORK
        assert _parallel_threads(None, est, 2500, [], False, logmel) == 1  # all of FSDD
        assert _parallel_threads(None, est, 100, [], False, logmel) == 0  # 80 steps: not worth a process
        assert _parallel_threads(None, est, 2500, [], False, 40) == 0  # many steps, little work each
        assert _parallel_threads(None, est, 2500, [], lambda e, r: None, logmel) == 0  # cannot call it
        assert _parallel_threads(False, est, 2500, [], False, logmel) == 0
        assert _parallel_threads(True, est, 100, [], False, logmel) == 1
    finally:
        torch.set_num_threads(1)
    assert _parallel_threads(None, est, 2500, [], False, logmel) == 0  # one thread: nothing to share
    df = _take(fsdd[fsdd["label"].isin(["0", "1"]) & (fsdd["group"] != "theo")], 4)
    with pytest.raises(ParameterError, match="callbacks or a progress function"):
        train(df, epochs=1, parallel=True, progress=lambda e, r: None, workers=1)
    with pytest.raises(ParameterError, match="has no refit"):
        train(df, epochs=1, parallel=True, refit=False, workers=1)
    # what fails in the other process is raised here as itself: its class and message
    bad = _RefitProcess(get_model("cnn", epochs=1), np.zeros((4, 3), np.float32),
                        np.array(["a", "b", "a", "b"], object), np.ones(4), 1, None)
    with pytest.raises(ParameterError, match="spectrogram preset"):
        bad.wait()
    assert not bad.job.exists()  # its temporary folder is removed


def test_a_refit_process_never_outlives_its_parent(tmp_path):
    """However the parent ends (here SIGKILL), the refit process stops and removes its job folder."""
    import signal
    import subprocess
    import sys
    import textwrap
    import time

    script = tmp_path / "parent.py"
    script.write_text(textwrap.dedent("""
        import sys, time
        import numpy as np
        from earmark.models import get_model
        from earmark.training._train import _RefitProcess
        X = np.random.default_rng(0).standard_normal((64, 16, 20)).astype(np.float32)
        y = np.array(["a", "b"] * 32, object)
        proc = _RefitProcess(get_model("cnn", epochs=500), X, y, np.ones(64), 1, None)
        print(proc.job, proc._proc.pid, flush=True)
        time.sleep(600)
    """))
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    job, pid = parent.stdout.readline().split()
    assert Path(job).is_dir()
    parent.send_signal(signal.SIGKILL)  # no finally, no handler: only the closed pipe tells the child
    parent.wait()
    deadline = time.time() + 60
    while time.time() < deadline and (Path(job).exists() or Path(f"/proc/{pid}").exists()):
        time.sleep(0.2)
    alive = Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()
    assert not alive and not Path(job).exists()


def test_hcnn_reg_reads_pitch_off_the_frequency_axis():
    df = load_dataset(SHARED / "instruments" / "manifest.csv")
    notes = df[df["kind"] == "note"]
    tr = notes[notes["fold"] != 5].groupby("label").head(24).reset_index(drop=True)
    te = notes[notes["fold"] == 5].groupby("label").head(4).reset_index(drop=True)
    m = train(tr, model="hcnn-reg", target="pitch", seed=0, workers=1)
    assert m.preset.name == "cqt" and m.config["refit_on_all"]  # 4 folds as groups
    err = np.abs(m.predict(te)["prediction"].to_numpy(float) - te["pitch"].to_numpy(float))
    baseline = float(np.mean(np.abs(te["pitch"] - tr["pitch"].mean())))
    # programs never heard in training; the frequency axis makes pitch transfer across them
    assert np.median(err) < 1.0 and err.mean() < 0.25 * baseline, (err.mean(), baseline)


def test_numeric_target_defaults_to_a_regressor():
    df = load_dataset(SHARED / "instruments" / "manifest.csv").groupby("label").head(3).reset_index(drop=True)
    m = train(df, target="pitch", epochs=1, val_fraction=0.0)
    assert m.config["model"] == DEFAULT_REGRESSOR and m.task == "regression"


def test_train_errors_name_the_fix(fsdd_small):
    with pytest.raises(ParameterError, match="target="):
        train(fsdd_small, model="logreg", target="nope")
    with pytest.raises(ParameterError, match="pooled preset"):
        train(fsdd_small.head(40), model="logreg", features="logmel")
    with pytest.raises(ParameterError, match="not numeric"):
        train(fsdd_small, model="ridge", target="speaker")
    with pytest.raises(ParameterError, match="Unknown model"):
        train(fsdd_small, model="resnet9000")
    one = fsdd_small[fsdd_small["label"] == "3"]
    with pytest.raises(DatasetError, match="2 classes"):
        train(one, model="logreg", features="mfcc-mean", val_fraction=0)


def test_summary_vectors_shapes():
    assert summary_vectors(np.ones((4, 7))).shape == (4, 7)
    assert summary_vectors(np.ones((4, 3, 10))).shape == (4, 3)
    assert summary_vectors([np.ones((3, 5)), np.ones((3, 9))]).shape == (2, 3)


def test_tune_classical_with_group_cv(fsdd_small):
    res = tune(fsdd_small, model="knn", trials=4, features="mfcc-mean", folds=2,
               search_space={"kneighborsclassifier__n_neighbors": [1, 5],
                             "kneighborsclassifier__weights": ["uniform", "distance"]})
    assert res.method == "grid" and len(res.trials) == 4 and "group" in res.cv
    assert res.best_score == max(t["score"] for t in res.trials)
    assert 0.1 < res.best_score <= 1.0


def test_tune_warns_when_there_are_fewer_groups_than_folds(fsdd_small):
    with pytest.warns(EarmarkWarning, match=r"6 folds asked for but the data has only 4 groups"):
        res = tune(fsdd_small, model="gnb", trials=1, features="mfcc-mean", folds=6)
    assert res.cv == "4 group folds"


def test_tune_checks_every_value_and_names_trials_that_fail(fsdd_small):
    with pytest.raises(ParameterError, match="n_neighbors"):  # a later value, not only the first
        tune(fsdd_small, model="knn", trials=2, features="mfcc-mean", folds=2, search_space={"n_neighbors": [1, 0]})
    with pytest.raises(ParameterError, match="'search_space' parameter is empty"):
        tune(fsdd_small, model="knn", trials=2, features="mfcc-mean", folds=2, search_space={})
    # more neighbours than training clips: only fitting finds out; the trial is named, not a silent nan
    with pytest.warns(EarmarkWarning, match=r"1 of 2 trials failed.*'n_neighbors': 5000.*ValueError"):
        res = tune(fsdd_small, model="knn", trials=2, features="mfcc-mean", folds=2,
                   search_space={"n_neighbors": [1, 5000]})
    assert [t["score"] is None for t in res.trials] == [False, True] and res.best_params == {"n_neighbors": 1}
    json.dumps(res.to_dict(), allow_nan=False)  # valid JSON
    with pytest.raises(ParameterError, match="every trial of 'knn' failed: ValueError"):
        tune(fsdd_small, model="knn", trials=1, features="mfcc-mean", folds=2, search_space={"n_neighbors": [5000]})
    # every fit failing (not only scoring) is the same usage error, not scikit-learn's traceback
    with pytest.raises(ParameterError, match="every trial of 'logreg' failed: ValueError.*dual"):
        tune(fsdd_small, model="logreg", trials=1, features="mfcc-mean", folds=2, search_space={"dual": [True]})


def test_tune_neural_with_optuna(fsdd_small):
    df = fsdd_small[fsdd_small["label"].isin(["0", "1"])]
    res = tune(df, model="mlp", trials=2, features="mfcc-mean", folds=2, epochs=3,
               search_space={"lr": ("log", 1e-3, 1e-2)})
    assert res.method == "optuna" and len(res.trials) == 2
    assert res.best_params["epochs"] == 3 and 1e-3 <= res.best_params["lr"] <= 1e-2
    # a value the network only refuses when built or run fails its trial, not the search; pruned
    # trials (partial folds) are listed apart and never outrank the best
    with pytest.warns(EarmarkWarning, match=r"\d of 6 trials failed.*dropout.*ValueError"):
        res = tune(df, model="mlp", trials=6, features="mfcc-mean", folds=2, epochs=1,
                   search_space={"net_options": [{"dropout": 0.3}, {"dropout": 1.5}]}, seed=1)
    states = {t["state"] for t in res.trials}
    assert "failed" in states and all((t["score"] is None) == (t["state"] != "complete") for t in res.trials)
    assert max(t["score"] for t in res.trials if t["score"] is not None) == res.best_score
    with pytest.raises(ParameterError, match="no trial of 'mlp' finished: ValueError"):
        tune(df, model="mlp", trials=1, features="mfcc-mean", folds=2, epochs=1,
             search_space={"net_options": [{"dropout": 1.5}]})
    # search-space entries are checked, and a tuple of values is the values (it was an int range: lr=0)
    for bad, said in ((1.0, "not a search-space entry"), ([], "empty list"), (("log", 0, 1), "low > 0"),
                      (("int", 1, 1), "low < high")):
        with pytest.raises(ParameterError, match=said):
            tune(df, model="svm", trials=2, features="mfcc-mean", folds=2, search_space={"C": bad})
    res = tune(df, model="svm", trials=3, features="mfcc-mean", folds=2, search_space={"C": (0.1, 1.0, 10.0)})
    assert sorted(t["params"]["C"] for t in res.trials) == [0.1, 1.0, 10.0]
    with pytest.raises(ParameterError, match=r"2\*\*32"):
        tune(df, model="knn", trials=1, features="mfcc-mean", folds=2, seed=2**32)


# ------------------------------------------------------------------------------------------ CLI


def _manifest(tmp_path: Path, df: pd.DataFrame) -> Path:
    path = tmp_path / "manifest.csv"
    df[["path", "label", "speaker"]].to_csv(path, index=False)
    return path


def test_cli_models_list_json():
    from earmark.cli.main import app

    res = CliRunner().invoke(app, ["models", "list", "--json"])
    assert res.exit_code == 0, res.output
    names = {m["name"] for m in json.loads(res.stdout)}
    assert {"cnn", "logreg", "ridge"} <= names


def test_cli_train_writes_a_loadable_bundle(tmp_path, fsdd_small, theo):
    from earmark.cli.main import app

    manifest = _manifest(tmp_path, fsdd_small)
    out = tmp_path / "model"
    res = CliRunner().invoke(app, ["train", str(manifest), "--model", "logreg", "--features", "mfcc-mean",
                                   "--group", "speaker", "--out", str(out), "--json", "-p", "C=0.5"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout)
    assert info["config"]["params"] == {"C": 0.5} and info["config"]["group"] == "group"
    from earmark.bundle import load_model

    model = load_model(out)
    pred = model.predict(theo["path"][:5].tolist())
    assert len(pred) == 5 and set(pred["label"]) <= set(model.classes)
    again = CliRunner().invoke(app, ["train", str(manifest), "--model", "logreg", "--out", str(out)])
    assert again.exit_code != 0 and "overwrite" in again.output


def test_cli_reads_labels_from_file_names_with_pattern(tmp_path, fsdd_small):
    from earmark.cli.main import app

    flat = tmp_path / "flat"
    flat.mkdir()
    for p in fsdd_small.groupby(["group", "label"]).head(2)["path"]:
        (flat / Path(p).name).symlink_to(p)
    (flat / "notes.wav").write_text("not audio")  # matches no pattern: listed, never silently dropped
    out = tmp_path / "m"
    res = CliRunner().invoke(app, ["train", str(flat), "--pattern", "{digit}_{speaker}_{_}", "--label", "digit",
                                   "--group-column", "speaker", "--model", "gnb", "--features", "mfcc-mean",
                                   "--out", str(out), "--json"])
    assert res.exit_code == 1, res.output  # partial: the model is written; notes.wav was left out, and said
    info = json.loads(res.stdout)
    assert info["config"]["group"] == "group"
    from earmark.bundle import load_model

    assert len(load_model(out).classes) == 10
    assert "warning: 1 files in" in " ".join(res.stderr.split())  # earmark's own line, not Python's format
    assert "SkippedFileWarning" not in res.stderr
    cv = CliRunner().invoke(app, ["cv", str(flat), "--pattern", "{label}_{group}_{_}", "--model", "gnb",
                                  "--features", "mfcc-mean", "--json", "-"])
    assert cv.exit_code in (0, 1), cv.output
    assert json.loads(cv.stdout)["n_folds"] == 4  # leave one speaker out, speakers from the names
    refused = CliRunner().invoke(app, ["train", str(flat), "--model", "gnb", "--out", str(tmp_path / "x")])
    assert refused.exit_code != 0 and "--pattern" in " ".join(refused.output.split())


def test_cli_train_duration_is_kept_in_the_bundle(tmp_path, fsdd_small):
    from earmark.bundle import load_model
    from earmark.cli.main import app

    manifest = _manifest(tmp_path, fsdd_small.groupby(["group", "label"]).head(1))
    out = tmp_path / "cnn"
    res = CliRunner().invoke(app, ["train", str(manifest), "--out", str(out), "--epochs", "1", "--duration", "1.5",
                                   "--val-fraction", "0", "--workers", "1", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["config"]["padding"]["duration_from"] == "user"
    assert load_model(out).preset.params["duration"] == 1.5
    bad = CliRunner().invoke(app, ["train", str(manifest), "--out", str(tmp_path / "x"), "--model", "logreg",
                                   "--features", "mfcc-mean", "--duration", "2"])
    assert bad.exit_code != 0 and "fixed-length" in bad.output


def test_cli_train_takes_p_epochs_and_python_booleans(tmp_path, fsdd_small):
    """`-p epochs=N` (as `models show` and `tune` print it) trains N epochs; `-p augment=False`
    is false (it was the truthy string 'False'); a value that is no boolean is refused."""
    from earmark.bundle import load_model
    from earmark.cli.main import app

    manifest = _manifest(tmp_path, fsdd_small.groupby(["group", "label"]).head(1))
    base = ["train", str(manifest), "--model", "mlp", "--features", "mfcc-mean", "--workers", "1",
            "--val-fraction", "0"]
    res = CliRunner().invoke(app, [*base, "-p", "epochs=2", "-p", "augment=False", "-p", "tta=false",
                                   "--out", str(tmp_path / "a")])
    assert res.exit_code == 0, res.output
    est = load_model(tmp_path / "a").estimator
    assert est.epochs == 2 and est.augment is False and est.tta is False and est.n_epochs_ == 2
    clash = CliRunner().invoke(app, [*base, "--epochs", "3", "-p", "epochs=2", "--out", str(tmp_path / "b")])
    assert clash.exit_code == 2 and "disagree" in clash.output
    for value in ("abc", "2.5", "true", "0"):
        odd = CliRunner().invoke(app, [*base, "-p", f"epochs={value}", "--out", str(tmp_path / "d")])
        assert odd.exit_code == 2 and "-p epochs takes a whole number" in odd.output, value
    bad = CliRunner().invoke(app, [*base, "-p", "augment=nope", "--out", str(tmp_path / "c")])
    assert bad.exit_code == 2 and "'augment' parameter" in bad.output and "true or false" in " ".join(bad.output.split())


def test_cli_tune_prints_best(tmp_path, fsdd_small):
    from earmark.cli.main import app

    manifest = _manifest(tmp_path, fsdd_small)
    res = CliRunner().invoke(app, ["tune", str(manifest), "--model", "gnb", "--trials", "4", "--features",
                                   "mfcc-mean", "--group", "speaker", "--folds", "2", "--json", "-"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["method"] == "grid" and len(out["trials"]) == 4
    # the line that trains the best settings carries the seed they were searched with
    res = CliRunner().invoke(app, ["tune", str(manifest), "--model", "gnb", "--trials", "2", "--features",
                                   "mfcc-mean", "--group", "speaker", "--folds", "2", "--seed", "3"])
    assert res.exit_code == 0 and "--seed 3" in res.stdout
    # without groups the folds are random, and it says so; one group is refused, as cv does
    plain = tmp_path / "plain.csv"
    fsdd_small[["path", "label"]].to_csv(plain, index=False)
    res = CliRunner().invoke(app, ["tune", str(plain), "--model", "gnb", "--trials", "2", "--features", "mfcc-mean"])
    assert res.exit_code == 0 and "folds are drawn at random" in " ".join(res.output.split())
    one = tmp_path / "one.csv"
    fsdd_small[fsdd_small["speaker"] == "george"][["path", "label", "speaker"]].to_csv(one, index=False)
    res = CliRunner().invoke(app, ["tune", str(one), "--model", "gnb", "--trials", "2", "--features", "mfcc-mean",
                                   "--cache", str(tmp_path / "store")])
    assert res.exit_code != 0 and "belongs to one group ('george')" in " ".join(res.output.split())
    assert not (tmp_path / "store").exists()  # refused before any feature was computed
    # blank group cells: none named is random folds (said), one named group and blanks is refused
    blanks = fsdd_small[["path", "label"]].assign(speaker="")
    blanks.to_csv(plain, index=False)
    res = CliRunner().invoke(app, ["tune", str(plain), "--model", "gnb", "--trials", "2", "--features", "mfcc-mean"])
    assert res.exit_code == 0 and "folds are drawn at random" in " ".join(res.output.split())
    blanks.assign(speaker=["george"] + [""] * (len(blanks) - 1)).to_csv(plain, index=False)
    res = CliRunner().invoke(app, ["tune", str(plain), "--model", "gnb", "--trials", "2", "--features", "mfcc-mean"])
    assert res.exit_code != 0 and "with a group belongs to one group ('george')" in " ".join(res.output.split())


def test_auto_duration_follows_the_clips():
    from earmark.training import auto_duration

    inst = load_dataset(SHARED / "instruments" / "manifest.csv").head(40)
    assert auto_duration(inst) == 1.5  # 1.5 s notes: from the table's duration column
    assert auto_duration(inst.drop(columns=["duration"])) == 1.5  # from the files' headers
    fsdd = load_dataset(SHARED / "fsdd" / "manifest.csv")
    assert auto_duration(fsdd) == 1.0  # spoken digits (95 % under 0.65 s) keep the preset's 1 s
    table = pd.DataFrame({"path": ["x.wav"] * 4, "duration": [2.1, 2.2, 2.4, 30.0]})
    assert auto_duration(table, quantile=0.5) == 2.5 and auto_duration(table) == 10.0


def test_default_cnn_hears_whole_clips_longer_than_a_second(tmp_path, fsdd):
    """Digits spoken 1.1 s into 2 s files: the default preset's first second is silence, so the
    clip length must come from the data (and travel with the model to prediction)."""
    import soundfile as sf

    rows = []
    pick = fsdd[fsdd["label"].isin(["0", "1"])].groupby(["group", "label"]).head(20)
    for path, label, group in pick[["path", "label", "group"]].itertuples(index=False):
        y, sr = sf.read(path, dtype="float32")
        out = np.zeros(int(2.0 * sr), dtype=np.float32)
        start = int(1.1 * sr)
        out[start : start + min(len(y), len(out) - start)] = y[: len(out) - start]
        dest = tmp_path / f"{group}_{label}_{len(rows)}.wav"
        sf.write(dest, out, sr)
        rows.append({"path": str(dest), "label": label, "group": group})
    df = load_dataset(pd.DataFrame(rows))
    tr, te = df[df["group"] != "theo"], df[df["group"] == "theo"]
    from earmark.features import extract, get_preset

    silent = np.asarray(extract(tr.head(8), get_preset("logmel"), workers=1).X)
    assert np.ptp(silent, axis=0).max() < 1e-3  # what a 1 s crop would hear: nothing

    m = train(tr, epochs=10, seed=0, batch_size=16, workers=1)
    assert m.preset.params["duration"] == 2.0 and m.config["padding"]["duration_from"] == "data"
    acc = float((m.predict(te)["label"] == te["label"].astype(str).to_numpy()).mean())
    assert acc >= 0.8, acc

    few = tr.groupby("label").head(10)
    kept = train(few, model="logreg", features="mfcc-mean", workers=1)  # pooled: no length
    assert kept.config["padding"]["duration_from"] == "preset"
    user = train(few, model="cnn", epochs=1, duration=1.2, workers=1, val_fraction=0.0)
    assert user.preset.params["duration"] == 1.2 and user.config["padding"]["duration_from"] == "user"
    # a preset named without a duration still takes the data's; one whose settings name it keeps it
    named = train(few, model="cnn", features="logmel:n_mels=32", epochs=1, workers=1, val_fraction=0.0)
    assert named.preset.params["duration"] == 2.0 and named.preset.params["n_mels"] == 32
    fixed = train(few, model="cnn", features="logmel:duration=1.5", epochs=1, workers=1, val_fraction=0.0)
    assert fixed.preset.params["duration"] == 1.5 and fixed.config["padding"]["duration_from"] == "preset"
    from earmark.features import Preset, register_preset
    from earmark.training._train import names_duration

    register_preset(Preset("logmel-1.2s", "logmel", 16000, {"duration": 1.2}))  # a user's preset keeps its length
    assert names_duration("logmel-1.2s") and not names_duration("logmel") and not names_duration("embed:birdnet")
    with pytest.raises(ParameterError, match="fixed-length presets"):
        train(few, model="logreg", features="mfcc-mean", duration=2.0, workers=1)


# ------------------------------------------------------------------ model parameters (--param)


def test_train_refuses_unknown_or_bad_model_parameters_before_extracting(fsdd_small):
    with pytest.raises(ParameterError, match=r"no parameter 'bogus'.* C, "):
        train(fsdd_small, model="svm", features="stats", bogus=1)
    with pytest.raises(ParameterError, match=r"no parameter 'bogus'.* epochs, "):
        train(fsdd_small, model="cnn", bogus=1)
    with pytest.raises(ParameterError, match=r"'C' parameter of LogisticRegression .*'abc'"):
        train(fsdd_small, model="logreg", features="mfcc-mean", C="abc")
    # what train() sets itself is not silently overwritten: it says which option to use
    with pytest.raises(ParameterError, match=r"give seed=3 \(--seed 3\) instead of random_state"):
        train(fsdd_small, model="svm", features="stats", random_state=3)
    with pytest.raises(ParameterError, match=r"val_fraction=0.3 \(--val-fraction\)"):
        train(fsdd_small, model="cnn", validation_fraction=0.3)


@pytest.mark.parametrize("args, named", [
    (["--model", "svm", "-f", "stats", "-p", "bogus=1"], "bogus"),
    (["--model", "cnn", "-p", "bogus=1"], "bogus"),
    (["--model", "logreg", "-f", "mfcc-mean", "-p", "C=abc"], "abc"),
])
def test_cli_train_bad_param_is_a_usage_error(tmp_path, fsdd_small, args, named):
    from earmark.cli.main import app

    res = CliRunner().invoke(app, ["train", str(_manifest(tmp_path, fsdd_small)), *args, "--out", str(tmp_path / "m")])
    assert res.exit_code == 2, res.output
    assert isinstance(res.exception, SystemExit)  # no traceback
    assert "error:" in res.output and named in res.output and not (tmp_path / "m").exists()


# ------------------------------------------------------------------ tune -> train


def test_tune_reports_names_train_takes(fsdd_small):
    space = {"calibratedclassifiercv__estimator__C": [1.0, 10.0], "calibratedclassifiercv__estimator__gamma": ["scale"]}
    res = tune(fsdd_small, model="svm", trials=2, features="mfcc-mean", folds=2, search_space=space)
    assert set(res.best_params) == {"C", "gamma"} and all(set(t["params"]) == {"C", "gamma"} for t in res.trials)
    assert res.metric == "accuracy" and res.to_dict()["metric"] == "accuracy"
    m = train(fsdd_small, model="svm", features="mfcc-mean", workers=1, **res.best_params)
    assert m.config["params"] == res.best_params
    # the pipeline spelling (what tune printed before) is taken too, and recorded as train's names
    nested = train(fsdd_small, model="svm", features="mfcc-mean", workers=1,
                   calibratedclassifiercv__estimator__C=res.best_params["C"])
    assert nested.config["params"] == {"C": res.best_params["C"]}
    short = tune(fsdd_small, model="knn", trials=2, features="mfcc-mean", folds=2, search_space={"n_neighbors": [1, 5]})
    assert set(short.best_params) == {"n_neighbors"}
    reg = tune(fsdd_small.assign(n=fsdd_small.index % 7), model="ridge", target="n", trials=2, features="mfcc-mean",
               folds=2, search_space={"alpha": [1.0, 10.0]})
    assert reg.metric == "neg_mean_absolute_error" and reg.best_score <= 0


def test_cli_tune_prints_the_metric_and_a_train_command_that_runs(tmp_path, fsdd_small):
    import shlex

    from earmark.cli.main import app

    manifest = _manifest(tmp_path, fsdd_small)
    res = CliRunner().invoke(app, ["tune", str(manifest), "--model", "svm", "--trials", "2", "-f", "mfcc-mean",
                                   "--group", "speaker", "--folds", "2"], terminal_width=400)
    assert res.exit_code == 0, res.output
    best = next(line for line in res.output.splitlines() if line.startswith("best:"))
    assert "mean cv accuracy" in best and "calibratedclassifiercv" not in res.output
    command = shlex.split(next(line for line in res.output.splitlines() if line.startswith("train it:"))[9:])
    assert command[:2] == ["earmark", "train"] and "-p" in command
    out = tmp_path / "model"
    again = CliRunner().invoke(app, [*command[1:-1], str(out), "--json"])
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["config"]["group"] == "group" and out.exists()


# ------------------------------------------------------------------ a model that did not learn


def test_chance_level_validation_warns_that_the_model_did_not_learn(fsdd_small):
    from earmark.training._train import ChanceLevelWarning

    rng = np.random.default_rng(0)
    noise = fsdd_small.assign(label=rng.permutation(fsdd_small["label"].to_numpy()))  # nothing to learn
    with pytest.warns(ChanceLevelWarning, match=r"may not have learned.*chance level, 0\.1\d* \((1/10 for 10 classes|"
                                                r"always answering the validation part's most common class).*another model"):
        m = train(noise, model="logreg", features="mfcc-mean", workers=1)
    from earmark.training._train import _warn_if_chance

    # the bar says what it is: the majority share here, not 1/3
    with pytest.warns(ChanceLevelWarning, match=r"chance level, 0\.400 \(always answering .* most common class \('b'\)\)"):
        _warn_if_chance("cnn", np.array(list("abbccbbbbacacac")), 0.4, 3, 1)
    with pytest.warns(ChanceLevelWarning, match=r"chance level, 0\.333 \(1/3 for 3 classes\)"):
        _warn_if_chance("cnn", np.array(list("abc") * 5), 0.3, 3, 1)
    assert m.metrics["accuracy"] < 0.2  # and the model is still returned
    with warnings.catch_warnings():
        warnings.simplefilter("error", ChanceLevelWarning)
        train(fsdd_small, model="logreg", features="mfcc-mean", workers=1)


def test_cli_train_shows_the_chance_level_warning_and_writes_the_bundle(tmp_path, fsdd_small):
    from earmark.cli.main import app

    rng = np.random.default_rng(0)
    noise = fsdd_small.assign(label=rng.permutation(fsdd_small["label"].to_numpy()))
    out = tmp_path / "m"
    res = CliRunner().invoke(app, ["train", str(_manifest(tmp_path, noise)), "--model", "logreg", "-f", "mfcc-mean",
                                   "--group", "speaker", "--out", str(out), "--workers", "1"], terminal_width=400)
    assert res.exit_code == 0, res.output
    assert "warning: Model 'logreg' may not have learned" in res.output and out.exists()


def test_extra_train_labels_must_be_the_datasets(fsdd_small):
    digits = fsdd_small[fsdd_small["label"].isin(["0", "1"])]
    other = fsdd_small[fsdd_small["label"] == "2"].assign(label="yes")
    with pytest.raises(DatasetError, match=r"does not: \['yes'\]"):
        train(digits, model="logreg", features="mfcc-mean", extra_train=other, workers=1)


def test_cli_train_reports_extra_clips_and_refuses_bad_synthetic_options(tmp_path, fsdd_small):
    from earmark.bundle import load_model
    from earmark.cli.main import app

    main = fsdd_small[fsdd_small["label"].isin(["0", "1"]) & (fsdd_small["group"] != "theo")]
    extra = fsdd_small[fsdd_small["label"].isin(["0", "1"]) & (fsdd_small["group"] == "theo")]
    m, e = _manifest(tmp_path, main), tmp_path / "extra.csv"
    extra[["path", "label", "group"]].to_csv(e, index=False)
    res = CliRunner().invoke(app, ["train", str(m), "--out", str(tmp_path / "lr"), "--model", "logreg",
                                   "--features", "mfcc-mean", "--extra-train", str(e), "--workers", "1"])
    assert res.exit_code == 0, res.output
    assert "+ extra training clips" in res.output
    sources = load_model(tmp_path / "lr").data["extra_train"]["sources"]
    assert sources == [f"--extra-train {e}: {len(extra)} clips"]
    # refused before any audio is rendered, as usage errors naming the option
    bad = CliRunner().invoke(app, ["train", str(m), "--out", str(tmp_path / "x"), "--synthetic-voices", "2",
                                   "--text-map", "seven"])
    assert bad.exit_code == 2 and "LABEL=TEXT" in bad.output
    bad = CliRunner().invoke(app, ["train", str(m), "--out", str(tmp_path / "x"), "--synthetic-voices", "2",
                                   "--target", "group"])
    assert bad.exit_code == 2 and "--target group" in bad.output


def test_epochs_for_a_classical_model_is_refused_before_any_audio_is_read(tmp_path):
    # the paths do not exist: the refusal must come before decoding or feature extraction
    table = pd.DataFrame({"path": [str(tmp_path / f"{i}.wav") for i in range(6)], "label": list("ababab")})
    with pytest.raises(ParameterError, match="not trained in epochs"):
        train(table, model="logreg", features="mfcc-mean", epochs=3, workers=1)


def test_cli_train_refuses_a_dataset_folder_as_out_before_training(tmp_path, fsdd_small):
    from earmark.cli.main import app

    manifest = _manifest(tmp_path, fsdd_small.head(4))  # tmp_path now holds a dataset file
    res = CliRunner().invoke(app, ["train", str(manifest), "--out", str(tmp_path), "--overwrite",
                                   "--model", "logreg", "--features", "mfcc-mean"])
    assert res.exit_code == 2 and "not a model bundle" in res.output and "train clips" not in res.output


@pytest.mark.parametrize("model", ["logreg", "cnn"])
def test_a_class_only_in_the_validation_part_is_learnt_not_dropped(fsdd, model):
    """Only nicolas says "9": when his clips are the validation part, the "9"s are not scored
    (a warning says so) but the refit on all the data learns them; no clip is lost."""
    from earmark.training import ValidationCoverageWarning

    two = fsdd[fsdd["group"].isin(["jackson", "nicolas"])]
    df = _take(two[(two["label"] != "9") | (two["group"] == "nicolas")], 3)
    kw = {"features": "mfcc-mean"} if model == "logreg" else {"epochs": 1, "batch_size": 8}
    for seed in range(6):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            m = train(df, model=model, seed=seed, workers=1, **kw)
        coverage = [w for w in caught if issubclass(w.category, ValidationCoverageWarning)]
        if coverage:
            break
    else:
        pytest.fail("no seed held out nicolas for validation")
    assert "['9']" in str(coverage[0].message) and "refitted on all the data" in str(coverage[0].message)
    assert m.data["val_only_classes"] == ["9"]
    assert m.data["n_train"] + m.data["n_val"] == len(df) == 57
    assert "9" in m.classes and m.config["refit_on_all"]


def test_cli_tune_lists_the_files_it_left_out(tmp_path, fsdd_small):
    """Unreadable files (here: text, NaN samples, a missing file) are named, in the JSON too, and
    the exit code is 1 (partial), as for cv and train."""
    from earmark.cli.main import app

    bad = [SHARED / "bad-audio" / "text_as_wav.wav", SHARED / "bad-audio" / "float32_nan_inf.wav",
           tmp_path / "gone.wav"]
    rows = fsdd_small[["path", "label", "speaker"]]
    extra = pd.DataFrame({"path": [str(p) for p in bad], "label": "1", "speaker": "jackson"})
    manifest = tmp_path / "with_bad.csv"
    pd.concat([rows, extra]).to_csv(manifest, index=False)
    out = tmp_path / "nested" / "tune.json"  # its folder is created
    res = CliRunner().invoke(app, ["tune", str(manifest), "--model", "gnb", "--trials", "2", "--features",
                                   "mfcc-mean", "--group", "speaker", "--folds", "2", "--json", str(out)])
    assert res.exit_code == 1, res.output
    skipped = {Path(s["path"]).name for s in json.loads(out.read_text())["skipped"]}
    assert skipped == {"text_as_wav.wav", "float32_nan_inf.wav", "gone.wav"}
    for name in skipped:
        assert name in res.stderr
    assert "3 files left out of the search" in res.stderr


def test_cli_train_records_every_file_left_out_and_checks_out_before_training(tmp_path, fsdd_small):
    """Files the source could not even list as audio are in the bundle's record and the exit code,
    as files that failed to decode are; an --out that cannot be written is refused before training."""
    from earmark.bundle import load_model
    from earmark.cli.main import app

    small = fsdd_small.groupby(["speaker", "label"]).head(2)
    bad = pd.DataFrame({"path": [str(SHARED / "bad-audio" / "empty.wav"), str(SHARED / "bad-audio" / "text_as_wav.wav")],
                        "label": "0", "speaker": "george"})
    manifest = _manifest(tmp_path, pd.concat([small, bad]))
    out = tmp_path / "m"
    res = CliRunner().invoke(app, ["train", str(manifest), "--model", "logreg", "-f", "mfcc-mean", "--group", "speaker",
                                   "--out", str(out), "--workers", "1"], terminal_width=400)
    assert res.exit_code == 1, res.output  # partial: the model is written, the left-out files said
    skipped = load_model(out).data["skipped"]
    assert {Path(s["path"]).name for s in skipped} == {"empty.wav", "text_as_wav.wav"}
    assert "empty.wav" in res.output and "text_as_wav.wav" in res.output
    odd = tmp_path / "note[bold red]x.wav"  # a name that is Rich markup is printed as it is
    odd.write_text("not audio")
    bracketed = _manifest(tmp_path, pd.concat([small, bad.head(1).assign(path=str(odd))]))
    res = CliRunner().invoke(app, ["train", str(bracketed), "--model", "logreg", "-f", "mfcc-mean", "--group",
                                   "speaker", "--out", str(tmp_path / "m2"), "--workers", "1"], terminal_width=400)
    assert res.exit_code == 1 and "note[boldred]x.wav" in "".join(res.output.split())  # (wrapped at any space)
    for target in (manifest / "model", manifest):  # below a file; a file that is not a bundle
        res = CliRunner().invoke(app, ["train", str(manifest), "--model", "logreg", "-f", "mfcc-mean",
                                       "--out", str(target), "--overwrite"], terminal_width=400)
        said = " ".join(res.output.split())
        assert res.exit_code == 2 and said.startswith("error:"), said  # at once: no training output
        assert ("is a file, not a folder" if target != manifest else "not a model bundle") in said
        assert manifest.read_text().startswith("path,label,speaker")
    res = CliRunner().invoke(app, ["export", str(out), "--onnx", str(tmp_path)], terminal_width=400)
    assert res.exit_code == 2 and "is a folder" in " ".join(res.output.split())


def test_a_numeric_target_with_a_stray_word_is_refused_and_tune_epochs_need_a_network(tmp_path, shared):
    """One 'n/a' in a pitch column made the column text, and train() silently built a classifier
    with a class per pitch; it is refused naming the cell. tune --epochs on a classical model too."""
    from earmark.sources import load_dataset
    from earmark.training import tune

    df = load_dataset(shared / "instruments" / "manifest.csv").head(40).copy()
    df["pitch"] = df["pitch"].astype(object)
    df.loc[df.index[3], "pitch"] = "n/a"
    with pytest.raises(DatasetError, match=r"holds numbers except in 1 of 40 rows .*'n/a'.*--label pitch"):
        train(df, target="pitch", epochs=1)
    with pytest.raises(DatasetError, match="holds numbers except"):  # a regressor named: the same
        train(df, target="pitch", model="ridge", features="mfcc-mean")
    named = train(df, target="pitch", model="logreg", features="mfcc-mean")  # a classifier named: its values are classes
    assert "n/a" in [str(c) for c in named.classes]
    with pytest.raises(ParameterError, match="not trained in epochs"):
        tune(df.assign(pitch=1.0), model="knn", trials=1, epochs=3)


def test_the_chance_warning_says_when_early_stopping_ended_training():
    from earmark.training._train import ChanceLevelWarning, _warn_if_chance

    y = np.array(["a", "b"] * 20)
    with pytest.warns(ChanceLevelWarning, match=r"early stopping ended it at epoch 11 of 60"):
        _warn_if_chance("mlp", y, 0.5, 2, 11, 60)
    with pytest.warns(ChanceLevelWarning, match=r"more epochs \(--epochs; it trained 60\)"):
        _warn_if_chance("mlp", y, 0.5, 2, 60, 60)


def test_orphaned_refit_jobs_are_swept_and_live_ones_kept(tmp_path):
    from earmark.training._train import STALE_REFIT_S, _sweep_stale_refit_jobs

    old, live = tmp_path / "earmark-refit-old", tmp_path / "earmark-refit-live"
    for job in (old, live):
        job.mkdir()
        (job / "job.pkl").write_bytes(b"features")
    past = os.stat(old / "job.pkl").st_mtime - STALE_REFIT_S - 60
    os.utime(old / "job.pkl", (past, past))
    (tmp_path / "other").mkdir()
    _sweep_stale_refit_jobs(tmp_path)
    assert not old.exists() and (live / "job.pkl").exists() and (tmp_path / "other").exists()


def test_a_classifier_on_a_numeric_target_is_said_once_with_the_fix():
    inst = load_dataset(SHARED / "instruments" / "manifest.csv")
    inst = inst[inst["fold"].isin([1, 2])].head(60)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train(inst, target="pitch", model="logreg", features="stats", workers=1)
    ours = [w for w in caught if issubclass(w.category, EarmarkWarning) and "is a classifier" in str(w.message)]
    assert len(ours) == 1 and "use a regressor (ridge" in str(ours[0].message)
    assert not [w for w in caught if "unique classes is greater than 50%" in str(w.message)]


def test_fingerprints_cover_only_what_was_fitted(fsdd):
    """Without a refit the validation speaker was never fitted: it is not among the groups (or
    files) the model says it trained on; with the refit it is."""
    five = _take(fsdd, 3)
    alone = train(five, model="gnb", features="mfcc-mean", refit=False, workers=1)
    assert alone.data["n_val"] > 0
    assert len(alone.reference["train_groups"]) == 4 and len(alone.reference["train_files"]) == alone.data["n_train"]
    refitted = train(five, model="gnb", features="mfcc-mean", refit=True, workers=1)
    assert len(refitted.reference["train_groups"]) == 5 and len(refitted.reference["train_files"]) == len(five)


def test_cli_tune_shows_a_regressors_error_as_the_error(tmp_path, shared):
    """tune searches on negated MAE (scikit-learn's 'higher is better'); the table shows the MAE."""
    from earmark.cli.main import app

    rows = pd.read_csv(shared / "instruments" / "manifest.csv").groupby("fold").head(12)
    rows["path"] = [str(shared / "instruments" / p) for p in rows["path"]]
    manifest = tmp_path / "m.csv"
    rows.to_csv(manifest, index=False)
    res = CliRunner().invoke(app, ["tune", str(manifest), "--model", "ridge", "--target", "pitch",
                                   "--features", "mfcc-mean", "--trials", "2", "--folds", "2"], terminal_width=200)
    assert res.exit_code == 0, res.output
    best = next(line for line in res.stdout.splitlines() if line.startswith("best:"))
    assert "mean absolute error (lower is better)" in best and "neg" not in best
    assert float(best.split("better) ")[1].split()[0]) > 0
