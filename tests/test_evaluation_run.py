"""evaluate / cross_validate / compare and the CLI on real data (FSDD, bad-audio, instruments)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from earmark.errors import DatasetError

SHARED = Path(os.environ.get("EARMARK_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))
DATA = SHARED / "data"
FSDD = DATA / "fsdd"
BAD = DATA / "bad-audio"

pytestmark = pytest.mark.skipif(not (FSDD / "manifest.csv").exists(), reason=f"no FSDD at {FSDD}")

try:
    from earmark.training import train as _train
except ImportError:  # earmark.training not in the tree yet
    _train = None

needs_training = pytest.mark.skipif(_train is None, reason="earmark.training is not importable yet")


def _preset():
    from earmark.features import get_preset

    return get_preset("mfcc-mean", sample_rate=8000, n_fft=256, hop_length=80, n_mels=40,
                      n_mfcc=20)


@pytest.fixture(scope="module")
def fsdd_small():
    """300 FSDD clips (6 repetitions × 10 digits × 5 speakers) through load_dataset."""
    from earmark.sources import load_dataset

    df = load_dataset(FSDD / "manifest.csv")
    keep = df["path"].str.extract(r"_(\d+)\.wav$")[0].astype(int) < 6
    return df[keep.to_numpy()].reset_index(drop=True)


@pytest.fixture(scope="module")
def model(fsdd_small):
    """logreg on MFCC means, trained without speaker 'theo'."""
    train_df = fsdd_small[fsdd_small["group"] != "theo"]
    if _train is not None:
        return _train(train_df, model="logreg", features=_preset(), seed=0)
    from earmark.features import extract
    from earmark.models import get_model

    fs = extract(train_df, _preset(), workers=1)
    y = train_df["label"].astype(str).to_numpy()[np.asarray(fs.rows)]
    est = get_model("logreg").fit(fs.X, y)
    return SimpleNamespace(estimator=est, preset=_preset(), task="classification",
                           classes=[str(c) for c in est.classes_], target="label", config=None,
                           history=None, metrics={}, data=None, reference={})


def test_evaluate_scores_a_held_out_speaker(model, fsdd_small):
    from earmark.evaluation import evaluate

    test = fsdd_small[fsdd_small["group"] == "theo"]
    res = evaluate(model, test, workers=1)
    m = res.metrics
    assert m["n"] == len(test) == 60 and res.skipped == []
    assert m["classes"] == [str(d) for d in range(10)]
    assert 0.4 < m["accuracy"] <= 1.0  # chance is 0.1
    assert set(res.predictions["path"]) == set(test["path"])
    assert (res.predictions["group"] == "theo").all()
    assert np.allclose(res.proba.sum(axis=1), 1.0)
    # the predictions agree with the estimator called directly on the features
    from earmark.features import extract

    fs = extract(test, model.preset, workers=1)
    direct = model.estimator.predict(fs.X)
    assert (res.predictions["predicted"].to_numpy() == np.asarray(direct, dtype=str)).all()
    assert res.features.shape == (60, np.asarray(fs.X).shape[1])


def test_undecodable_files_are_listed_and_excluded_not_fatal(model, fsdd_small):
    from earmark.evaluation import evaluate

    bad = pd.read_csv(BAD / "manifest.csv")
    good = fsdd_small[fsdd_small["group"] == "theo"].head(20)
    mixed = pd.concat([
        good[["path", "label"]],
        pd.DataFrame({"path": [str(BAD / f) for f in bad["file"]], "label": "0"}),
    ], ignore_index=True)
    res = evaluate(model, mixed, workers=1)
    errors = {str(BAD / f) for f in bad.loc[bad["expected"] == "error", "file"]}
    skipped = {s["path"] for s in res.skipped}
    assert errors <= skipped  # every broken file is listed with a reason …
    assert all(s["reason"] for s in res.skipped)
    assert not (set(res.predictions["path"]) & skipped)  # … and left out of the scores
    assert res.metrics["n"] == len(mixed) - len(skipped)
    assert res.to_dict()["n_skipped"] == len(skipped)


def test_evaluate_refuses_labels_the_model_never_learnt(model, fsdd_small):
    from earmark.evaluation import evaluate

    odd = fsdd_small.head(5).assign(label="eleven")
    with pytest.raises(DatasetError, match="never learnt"):
        evaluate(model, odd)


def test_a_leaky_split_is_refused():
    from earmark.evaluation._run import _check_no_straddle

    table = pd.DataFrame({"path": list("abcd"), "group": ["s1", "s1", "s2", "s2"]})
    assert _check_no_straddle(table, np.array([0, 1]), np.array([2, 3]), "ok") == ["s2"]
    with pytest.raises(DatasetError, match="both sides"):
        _check_no_straddle(table, np.array([0, 2]), np.array([1, 3]), "leaky")
    one = pd.DataFrame({"path": list("abcd"), "group": ["s1"] * 4})
    with pytest.raises(DatasetError, match="Every clip belongs to one group \\('s1'\\)"):
        _check_no_straddle(one, np.array([0, 1]), np.array([2, 3]), "fold 1")


@needs_training  # load_model builds an earmark.training.TrainedModel
def test_cli_evaluate_writes_json_and_report(model, fsdd_small, tmp_path):
    from earmark.bundle import save_model
    from earmark.cli.main import app

    bundle = save_model(model, tmp_path / "digits")
    test = fsdd_small[fsdd_small["group"] == "theo"]
    manifest = tmp_path / "theo.csv"
    test[["path", "label", "group"]].rename(columns={"group": "speaker"}).to_csv(manifest,
                                                                                index=False)
    out, report = tmp_path / "scores.json", tmp_path / "report.html"
    r = CliRunner().invoke(app, ["evaluate", str(bundle), str(manifest), "--json", str(out),
                                 "--report", str(report), "--max-clips", "3"])
    assert r.exit_code == 0, r.output
    scores = json.loads(out.read_text())
    for key in ("accuracy", "balanced_accuracy", "macro_f1", "n", "per_class", "confusion"):
        assert key in scores
    assert scores["n"] == 60 and len(scores["confusion"]) == 10
    html = report.read_text()
    mistakes = round(60 * (1 - scores["accuracy"]))
    assert html.count("<audio") == min(3, mistakes)
    assert "accuracy" in r.output  # the table on stdout
    # occlusion maps of the most confident mistakes (4 by default), each naming the wrong answer
    assert mistakes >= 1 and html.count("<figcaption>Why ") == min(4, mistakes)
    quiet = tmp_path / "quiet.html"
    r = CliRunner().invoke(app, ["evaluate", str(bundle), str(manifest), "--report", str(quiet), "--explain", "0"])
    assert r.exit_code == 0 and "silencing" not in quiet.read_text()


def test_report_counts_clips_without_truth_apart_from_unreadable_files(model, fsdd_small, tmp_path):
    from earmark.bundle import save_model
    from earmark.cli.main import app

    bundle = save_model(model, tmp_path / "digits")
    test = fsdd_small[fsdd_small["group"] == "theo"][["path", "label"]].copy()
    test.iloc[:2, 1] = None  # two readable clips without a label
    manifest = tmp_path / "theo.csv"
    test.to_csv(manifest, index=False)
    report, out = tmp_path / "r.html", tmp_path / "s.json"
    r = CliRunner().invoke(app, ["evaluate", str(bundle), str(manifest), "--report", str(report),
                                 "--json", str(out), "--explain", "0"])
    assert r.exit_code == 1 and "no 'label' value" in r.output  # listed as left out
    assert json.loads(out.read_text())["n"] == 58
    page = re.sub(r"<[^>]+>", " ", report.read_text())
    assert re.search(r"\b60\s+files readable", page) and re.search(r"\b0\s+unreadable", page), page[:3000]


def test_scoring_a_model_on_its_own_training_files_is_said(model, fsdd_small, tmp_path):
    """The bundle keeps fingerprints of the files it learnt from; evaluate warns (and the report
    says) when they are among the scored clips: the tour's old `evaluate digits` on training data."""
    import warnings

    from earmark.bundle import load_model, save_model
    from earmark.cli.main import app
    from earmark.errors import TrainingDataWarning
    from earmark.evaluation import evaluate

    bundle = save_model(model, tmp_path / "digits")
    loaded = load_model(bundle)
    assert loaded.reference["train_files"].dtype == np.uint64 and len(loaded.reference["train_files"]) == 240
    theo = fsdd_small[fsdd_small["group"] == "theo"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", TrainingDataWarning)
        assert evaluate(loaded, theo, workers=1).info["training_files"] == 0  # a speaker it never heard
    mixed = pd.concat([theo.head(10), fsdd_small[fsdd_small["group"] == "jackson"].head(30)])
    with pytest.warns(TrainingDataWarning, match=r"30 of the 40 clips scored are files the model was trained on"):
        assert evaluate(loaded, mixed, workers=1).info["training_files"] == 30
    manifest, report = tmp_path / "mixed.csv", tmp_path / "r.html"
    mixed[["path", "label"]].to_csv(manifest, index=False)
    r = CliRunner().invoke(app, ["evaluate", str(bundle), str(manifest), "--report", str(report), "--explain", "0"])
    assert r.exit_code == 0, r.output
    assert "warning:" in r.stderr and "30 of the 40 clips" in " ".join(r.stderr.split())
    assert "30 of the 40 clips scored are files the model was trained on" in report.read_text()


def test_scoring_a_model_on_speakers_it_heard_is_said(model, fsdd_small, tmp_path):
    """Other recordings of the training speakers: not the same files, but the same voices."""
    from earmark.bundle import load_model, save_model
    from earmark.errors import TrainingDataWarning
    from earmark.evaluation import build_report, evaluate
    from earmark.sources import load_dataset

    loaded = load_model(save_model(model, tmp_path / "digits"))
    assert len(loaded.reference["train_groups"]) == 4  # the four speakers other than theo, as digests
    assert b"jackson" not in (tmp_path / "digits" / "reference.safetensors").read_bytes()
    df = load_dataset(FSDD / "manifest.csv")
    take = df["path"].str.extract(r"_(\d+)\.wav$")[0].astype(int)
    later = df[(take.to_numpy() >= 40) & df["group"].isin(["jackson", "theo"]).to_numpy()]
    with pytest.warns(TrainingDataWarning, match=r"100 of the 200 clips scored are of groups \(speakers…\) named as groups the model was trained on \(jackson\)"):
        res = evaluate(loaded, later, workers=1)
    assert res.info["training_groups"] == 100 and res.info["training_files"] == 0
    assert "of groups (speakers, recordings…) the model was trained on" in build_report(res, explain=0)


def test_cli_rejects_bad_options(tmp_path):
    from earmark.cli.main import app

    runner = CliRunner()
    r = runner.invoke(app, ["cv", str(FSDD / "manifest.csv"), "--folds", "one"])
    assert r.exit_code == 2 and "--folds" in r.output
    r = runner.invoke(app, ["cv", str(FSDD / "manifest.csv"), "--folds", "1"])
    assert r.exit_code == 2
    r = runner.invoke(app, ["compare", str(FSDD / "manifest.csv"), "--models", " , "])
    assert r.exit_code == 2 and "--models" in r.output
    r = runner.invoke(app, ["cv", str(FSDD / "manifest.csv"), "--features", "mfcc-mean:n_mfc=3"])
    assert r.exit_code == 2 and "Did you mean 'n_mfcc'" in " ".join(r.output.split())
    r = runner.invoke(app, ["cv", str(FSDD / "manifest.csv"), "--log", "wandb"])
    assert r.exit_code == 2 and "--log" in r.output
    r = runner.invoke(app, ["cv", str(FSDD / "manifest.csv"), "--model", "resnet9000"])
    assert r.exit_code == 2 and "Unknown model 'resnet9000'" in r.output
    r = runner.invoke(app, ["compare", str(FSDD / "manifest.csv"), "--models", "logreg,random-forest"])
    assert r.exit_code == 2 and "Unknown model 'random-forest'" in r.output
    r = runner.invoke(app, ["cv", str(FSDD / "manifest.csv"), "--model", "svm", "--epochs", "3"])
    assert r.exit_code == 2 and "--epochs applies to neural models" in " ".join(r.output.split())
    r = runner.invoke(app, ["cv", str(FSDD / "manifest.csv"), "--embedding", "umap"])
    assert r.exit_code == 2 and "--embedding" in r.output
    import importlib.util

    if importlib.util.find_spec("mlflow") is None:  # a clear message, before any training
        r = runner.invoke(app, ["cv", str(FSDD / "manifest.csv"), "--log", "mlflow"])
        assert r.exit_code == 2 and "pip install mlflow" in r.output


@needs_training
def test_cross_validation_never_lets_a_speaker_straddle_folds(fsdd_small):
    from earmark.evaluation import cross_validate

    cv = cross_validate(fsdd_small, model="logreg", features=_preset(), folds=3, seed=0,
                        workers=1)
    groups = fsdd_small.set_index("path")["group"]
    assert len(cv.folds) == 3
    seen: list[str] = []
    for fold in cv.folds:
        test_paths = fold.result.predictions["path"]
        fold_groups = set(groups[test_paths])
        assert fold_groups == set(fold.test_groups)
        # a speaker in this test fold was not in its training set: train = the other folds
        assert fold.n_train == len(fsdd_small) - fold.n_test
        assert fold.n_train == int((~groups.isin(fold_groups)).sum())
        seen += fold.test_groups
    assert sorted(seen) == sorted(fsdd_small["group"].unique())  # each speaker tested once
    pooled = cv.pooled.predictions
    assert sorted(pooled["path"]) == sorted(fsdd_small["path"])  # every clip predicted once
    d = cv.to_dict()
    assert d["summary"]["accuracy"]["n_folds"] == 3
    assert d["worst_fold"]["value"] == min(f["accuracy"] for f in d["folds"])
    # feature extraction (one store for the folds' training) is timed apart from training
    assert sum(f.feature_seconds for f in cv.folds) > 0
    assert all(f.train_seconds >= 0 and "feature_seconds" in f.to_dict() for f in cv.folds)


@needs_training
def test_cv_on_predefined_folds_and_a_regressor():
    from earmark.evaluation import cross_validate
    from earmark.sources import load_dataset

    inst = load_dataset(DATA / "instruments" / "manifest.csv")
    inst = inst.groupby(["fold", "label"], group_keys=False).head(3)  # 150 clips
    from earmark.features import get_preset

    preset = get_preset("mfcc-mean", sample_rate=16000, n_fft=512, hop_length=256, n_mels=40,
                        n_mfcc=20)
    cv = cross_validate(inst, model="ridge", features=preset, target="pitch", folds="fold",
                        seed=0, workers=1)
    assert [f.name for f in cv.folds] == [f"fold {k}" for k in range(1, 6)]
    assert cv.task == "regression" and cv.main_metric == "rmse"
    for key in ("mae", "rmse", "r2"):
        assert key in cv.summary
    assert cv.worst_fold["value"] == max(f.result.metrics["rmse"] for f in cv.folds)


@needs_training
def test_compare_ranks_models_on_the_same_folds(fsdd_small):
    from earmark.evaluation import compare

    board = compare(fsdd_small, models=["logreg", "knn"], features=_preset(), folds=3,
                    workers=1)
    t = board.table
    assert sorted(t["model"]) == ["knn", "logreg"]
    assert t["accuracy_mean"].is_monotonic_decreasing
    for col in ("train_seconds", "ms_per_clip", "model_bytes"):
        assert (t[col] > 0).all()
    folds = [[f.test_groups for f in cv.folds] for cv in board.results.values()]
    assert folds[0] == folds[1]  # same folds for every model


@needs_training
def test_cli_cv_prints_json_with_folds_and_summary(fsdd_small, tmp_path):
    from earmark.cli.main import app

    manifest = tmp_path / "small.csv"
    fsdd_small[["path", "label", "group"]].rename(columns={"group": "speaker"}).to_csv(
        manifest, index=False)
    r = CliRunner().invoke(app, ["cv", str(manifest), "--model", "logreg", "--features",
                                 "mfcc-mean", "--folds", "group", "--json", "-"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert [f["fold"] for f in d["folds"]] == sorted(fsdd_small["group"].unique())
    assert all(f["test_groups"] == [f["fold"]] for f in d["folds"])
    for key in ("accuracy", "macro_f1", "per_class", "confusion", "n"):
        assert key in d["folds"][0]
    assert set(d["summary"]["accuracy"]) == {"mean", "std", "min", "max", "n_folds"}
    worst = min(d["folds"], key=lambda f: f["accuracy"])
    assert d["worst_fold"]["fold"] == worst["fold"]


@needs_training
def test_cli_compare_prints_a_leaderboard_and_writes_a_report(fsdd_small, tmp_path):
    from earmark.cli.main import app

    manifest = tmp_path / "small.csv"
    fsdd_small[["path", "label", "group"]].rename(columns={"group": "speaker"}).to_csv(
        manifest, index=False)
    out, report = tmp_path / "board.json", tmp_path / "board.html"
    r = CliRunner().invoke(app, ["compare", str(manifest), "--models", "logreg,gnb",
                                 "--features", "mfcc-mean", "--folds", "2", "--json", str(out),
                                 "--report", str(report)])
    assert r.exit_code == 0, r.output
    assert "Leaderboard" in r.stdout and "logreg" in r.stdout and "gnb" in r.stdout
    d = json.loads(out.read_text())
    assert [row["model"] for row in d["leaderboard"]] == sorted(
        d["models"], key=lambda m: -d["models"][m]["summary"]["accuracy"]["mean"])
    assert all(row["model_bytes"] > 0 and row["ms_per_clip"] > 0 for row in d["leaderboard"])
    for row in d["leaderboard"]:  # the worst fold: its name, and its score as a number
        folds = d["models"][row["model"]]["folds"]
        assert row["worst_fold"] in {f["fold"] for f in folds}
        assert row["worst_fold_value"] == min(f["accuracy"] for f in folds)
    assert all(m["features"] == "mfcc-mean" and m["feature_settings"]["name"] == "mfcc-mean"
               for m in d["models"].values())  # what the folds' models heard, recorded
    page = report.read_text()
    assert page.count("<img") == 2  # accuracy per fold, one per model
    # the leaderboard as the terminal shows it (not every raw column), in a box that scrolls, and
    # what kept the folds apart
    assert "<th>worst fold</th>" in page and "<th>balanced_accuracy_std</th>" not in page
    assert '<div class="scroll"><table>' in page and "no group is on both sides of any split" in page


@needs_training
def test_cv_duration_reaches_every_fold(fsdd_small, tmp_path):
    from earmark.cli.main import app
    from earmark.evaluation import cross_validate

    tiny = fsdd_small.groupby(["group", "label"]).head(1).reset_index(drop=True)
    cv = cross_validate(tiny, model="cnn", epochs=1, duration=1.5, folds=2, workers=1)
    assert cv.last_model.preset.params["duration"] == 1.5
    assert cv.last_model.config["padding"]["duration_from"] == "user"
    manifest = tmp_path / "tiny.csv"
    tiny[["path", "label", "group"]].to_csv(manifest, index=False)
    r = CliRunner().invoke(app, ["cv", str(manifest), "--model", "logreg", "--features", "mfcc-mean",
                                 "--duration", "2", "--folds", "2"])
    assert r.exit_code != 0 and "fixed-length" in r.output


@needs_training
def test_compare_epochs_and_duration_apply_where_they_mean_something(fsdd_small, tmp_path):
    from earmark.cli.main import app
    from earmark.evaluation import compare

    tiny = fsdd_small.groupby(["group", "label"]).head(1).reset_index(drop=True)
    board = compare(tiny, models=["gnb", "cnn"], epochs=1, duration=1.5, folds=2, workers=1)
    assert board.results["cnn"].last_model.preset.params["duration"] == 1.5
    assert "duration" not in board.results["gnb"].last_model.preset.params  # pooled: trained without it
    manifest, out = tmp_path / "tiny.csv", tmp_path / "board.json"
    tiny[["path", "label", "group"]].to_csv(manifest, index=False)
    r = CliRunner().invoke(app, ["compare", str(manifest), "--models", "gnb,cnn", "--epochs", "1",
                                 "--duration", "2", "--folds", "2", "--json", str(out)])
    assert r.exit_code == 0, r.output  # --epochs and --duration were refused by gnb before
    assert {row["model"] for row in json.loads(out.read_text())["leaderboard"]} == {"gnb", "cnn"}


@needs_training
def test_cv_scores_a_class_its_training_folds_lack_as_errors(fsdd_small):
    """Only jackson says "9": leave-one-speaker-out cannot learn "9" when jackson is tested.
    That fold counts his "9"s as errors (with a warning naming the fold); the rest goes on."""
    from earmark.evaluation import UnlearntClassWarning, cross_validate

    df = fsdd_small[(fsdd_small["label"].astype(str) != "9") | (fsdd_small["group"] == "jackson")]
    with pytest.warns(UnlearntClassWarning, match=r"Fold jackson .*\['9'\] \(6 clips\)"):
        cv = cross_validate(df.reset_index(drop=True), model="logreg", features=_preset(), folds="group",
                            seed=0, workers=1)
    assert len(cv.folds) == 5
    jackson = next(f for f in cv.folds if f.name == "jackson")
    nines = jackson.result.predictions[jackson.result.predictions["true"].astype(str) == "9"]
    assert len(nines) == 6 and (nines["predicted"].astype(str) != "9").all()
    assert "9" in jackson.result.classes
    assert "9" in cv.pooled.classes and len(cv.pooled.predictions) == len(df)


@needs_training
def test_cv_without_groups_says_its_folds_are_random_and_folds_list_only_their_own_files(fsdd_small, tmp_path):
    from earmark.errors import EarmarkWarning
    from earmark.evaluation import build_report, cross_validate
    from earmark.sources import load_dataset

    table = fsdd_small[fsdd_small["label"].isin(["0", "1"])].drop(columns=["group", "speaker"])
    with pytest.warns(EarmarkWarning, match=r"no group column \(or one with a single value\), so the folds are drawn at random"):
        cv = cross_validate(table, model="logreg", features=_preset(), folds=3, seed=0, workers=1)
    assert cv.info["grouping"] == "none"
    assert "folds are random" in build_report(cv, max_clips=0)
    # files the source left out are the run's, listed once, not again under every fold
    rows = fsdd_small[fsdd_small["label"].isin(["0", "1"])][["path", "label", "group"]]
    bad = pd.DataFrame({"path": [str(BAD / "empty.wav"), str(BAD / "text_as_wav.wav")], "label": "0",
                        "group": ["george", "theo"]})
    (tmp_path / "m.csv").write_text(pd.concat([rows, bad]).to_csv(index=False))
    with pytest.warns(Warning):
        loaded = load_dataset(tmp_path / "m.csv")
    grouped = cross_validate(loaded, model="logreg", features=_preset(), folds="group", seed=0, workers=1)
    assert grouped.info["grouping"] == "group" and len(grouped.skipped) == 2
    assert all(len(f.result.skipped) == 0 for f in grouped.folds)


@needs_training
def test_compare_and_evaluate_refuse_a_task_the_model_cannot_do(model, fsdd_small, tmp_path):
    from earmark.bundle import save_model
    from earmark.cli.main import app
    from earmark.errors import ParameterError
    from earmark.evaluation import compare, evaluate
    from earmark.training import train

    with pytest.raises(ParameterError, match="logreg is a classifier, ridge is a regressor"):
        compare(fsdd_small, models=["logreg", "ridge"], features=_preset(), folds=2)
    with pytest.raises(ParameterError, match="regressors but column 'label' is not numeric"):
        compare(fsdd_small, models=["ridge"], features=_preset(), folds=2)
    numbered = fsdd_small.assign(n=fsdd_small.index % 5)
    reg = train(numbered[numbered["group"] != "theo"], model="ridge", target="n", features=_preset(), seed=0)
    words = fsdd_small[fsdd_small["group"] == "theo"].assign(label=lambda d: "digit " + d["label"].astype(str))
    with pytest.raises(ParameterError, match="regressor; column 'label' holds no numbers"):
        evaluate(reg, words, target="label")
    with pytest.raises(DatasetError, match="1 value\\(s\\) that are not numbers"):
        evaluate(reg, fsdd_small[fsdd_small["group"] == "theo"].assign(n=["x"] + [1] * 59), target="n")
    bundle = save_model(reg, tmp_path / "reg.earmark")
    (tmp_path / "t.csv").write_text(words[["path", "label"]].to_csv(index=False))
    res = CliRunner().invoke(app, ["evaluate", str(bundle), str(tmp_path / "t.csv"), "--target", "label"])
    assert res.exit_code == 2 and "holds no numbers" in " ".join(res.output.split())  # not a traceback
    # labels the model never learnt: refused by default, scored as mistakes when asked
    clf = save_model(model, tmp_path / "clf.earmark")
    odd = fsdd_small[fsdd_small["group"] == "theo"].head(6)[["path", "label"]].assign(label=["0", "1", "x", "x", "2", "3"])
    (tmp_path / "odd.csv").write_text(odd.to_csv(index=False))
    refused = CliRunner().invoke(app, ["evaluate", str(clf), str(tmp_path / "odd.csv")])
    assert refused.exit_code != 0 and "--unknown-labels wrong" in " ".join(refused.output.split())
    scored = CliRunner().invoke(app, ["evaluate", str(clf), str(tmp_path / "odd.csv"), "--unknown-labels", "wrong",
                                      "--json", "-"])
    assert scored.exit_code == 0, scored.output
    metrics = json.loads(scored.stdout)
    assert metrics["n"] == 6 and metrics["per_class"]["x"]["recall"] == 0.0


@needs_training
def test_cli_cv_marks_the_metrics_that_are_not_means_of_every_fold(fsdd_small, tmp_path):
    from earmark.cli.main import app

    (tmp_path / "m.csv").write_text(fsdd_small[["path", "label", "group"]].to_csv(index=False))
    res = CliRunner().invoke(app, ["cv", str(tmp_path / "m.csv"), "--model", "logreg", "--folds", "group",
                                   "--features", "mfcc-mean"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    text = " ".join(res.stdout.split())
    assert "top-3 accuracy (pooled)" in text and "accuracy" in text


def test_evaluate_outputs_and_warnings_reach_the_user(tmp_path):
    """An unwritable --report / --json is refused before any work; warnings of the data source (a
    repeated row is scored twice) are shown; finetune and mobilenet_v2 are known by every command."""
    from earmark.cli.main import app

    fsdd = Path(os.environ.get("EARMARK_SHARED", Path(__file__).resolve().parents[1].parent / "shared")) / "data" / "fsdd"
    rows = pd.read_csv(fsdd / "manifest.csv").head(6)
    rows["path"] = [str(fsdd / p) for p in rows["path"]]
    manifest = tmp_path / "m.csv"
    pd.concat([rows, rows.head(2)]).to_csv(manifest, index=False)
    res = CliRunner().invoke(app, ["evaluate", str(tmp_path), str(manifest), "--report",
                                   str(manifest / "r.html")])
    assert res.exit_code == 2 and "is a file, not a folder" in " ".join(res.output.split())
    res = CliRunner().invoke(app, ["cv", str(manifest), "--json", str(tmp_path)])
    assert res.exit_code == 2 and "is a folder" in " ".join(res.output.split())
    res = CliRunner().invoke(app, ["embed", "x", str(manifest), "--out", str(manifest / "e.npy")])
    assert res.exit_code == 2
    from earmark.cli.evaluate import _load

    with pytest.warns(Warning, match="listed more than once"):
        _load(manifest, None, None)
    listing = CliRunner().invoke(app, ["models", "list", "--json"])
    assert {"finetune", "mobilenet_v2"} <= {m["name"] for m in json.loads(listing.stdout)}


@needs_training
def test_python_api_misuse_is_named_before_any_work_and_results_print_short(model, fsdd_small, tmp_path):
    import numpy as np

    from earmark.bundle import save_model
    from earmark.errors import ParameterError
    from earmark.evaluation import build_report, compare, cross_validate, evaluate
    from earmark.features import extract, featurize
    from earmark.training import train

    tiny = fsdd_small.groupby(["group", "label"]).head(1).reset_index(drop=True)
    for kwargs, what in (({"seed": None}, "'seed'"), ({"seed": 1.5}, "'seed'"), ({"refit": "no"}, "'refit'"),
                         ({"progress": "yes"}, "'progress'"), ({"extra_train": ["a.wav"]}, "'extra_train'"),
                         ({"cache": 5}, "'cache'")):
        with pytest.raises(ParameterError, match=what):
            train(tiny, model="logreg", features=_preset(), **kwargs)
    with pytest.raises(ParameterError, match="'seed'"):
        cross_validate(tiny, model="logreg", seed=None)
    with pytest.raises(ParameterError, match="save_model takes a trained model"):
        save_model(model.estimator, tmp_path / "x")
    theo = fsdd_small[fsdd_small["group"] == "theo"]
    bundle = save_model(model, tmp_path / "digits")
    res = evaluate(str(bundle), theo, workers=1)  # a bundle's path, as explain and embed take it
    assert res.metrics["n"] == len(theo)
    with pytest.raises(ParameterError, match="'embedding'"):
        build_report(res, embedding="umap")
    board = compare(tiny, models="logreg,gnb", features=_preset(), folds=2, workers=1)  # the CLI's spelling
    assert list(board.table["model"]) and set(board.table["model"]) == {"logreg", "gnb"}
    for shown in (repr(model), repr(res), repr(board), repr(board.results["gnb"]),
                  repr(extract(list(theo["path"][:3]), _preset(), workers=1))):
        assert len(shown) < 200 and "array(" not in shown, shown
    with pytest.raises(ParameterError, match="non-finite"):
        featurize(np.full(8000, np.nan, np.float32), "mfcc-mean", sr=8000)
    with pytest.raises(ParameterError, match="positive integer"):
        featurize(np.zeros(8000, np.float32), "mfcc-mean", sr=0)
    with pytest.raises(ParameterError, match="'batch_size'"):
        extract(list(theo["path"][:2]), _preset(), batch_size=0, workers=1)
    assert model.predict_proba([]).shape == (0, len(model.classes))


def test_cv_extra_rows_never_share_a_test_group_and_follow_the_training_classes(fsdd_small, tmp_path):
    """cv with extra training rows: those of a fold's test speaker are left out of that fold (they
    scored 1.0), classes its training folds lack are left out (they aborted the run), and the
    table's own files are refused before any fold trains."""
    import warnings

    from earmark.errors import EarmarkWarning
    from earmark.evaluation import cross_validate

    table = fsdd_small[fsdd_small["group"].isin(["george", "jackson", "theo"])
                       & fsdd_small["label"].isin(["0", "1", "2"])].reset_index(drop=True)
    table = table[~((table["label"] == "2") & (table["group"] != "theo"))].reset_index(drop=True)  # '2': theo only
    from earmark.sources import load_dataset

    every = load_dataset(FSDD / "manifest.csv")
    extra = every[every["group"].isin(["theo", "nicolas"]) & every["label"].isin(["0", "1", "2"])
                  & ~every["path"].isin(table["path"])].groupby(["group", "label"]).head(2).reset_index(drop=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cv = cross_validate(table, model="logreg", features=_preset(), workers=1, extra_train=extra)
    said = [str(w.message) for w in caught if issubclass(w.category, EarmarkWarning)]
    theo = next(f for f in cv.folds if f.name == "theo")
    assert theo.n_extra_train == 4  # nicolas's 0 and 1 only: theo's own clips and the class '2' are left out
    assert any("Fold theo: extra training rows left out" in m and "of its test group" in m
               and "of classes its training folds lack" in m for m in said), said
    assert {f.name: f.n_extra_train for f in cv.folds}["george"] == 12  # all: no george, every class learnt
    with pytest.raises(DatasetError, match="extra_train lists 2 file"):
        cross_validate(table, model="logreg", features=_preset(), workers=1, extra_train=table.head(2))
    # labels held as numbers (pd.read_csv of a digit column) are classes too: filtered, not an abort
    as_int = table.assign(label=table["label"].astype(int))
    cv = cross_validate(as_int, model="logreg", features=_preset(), workers=1,
                        extra_train=extra.assign(label=extra["label"].astype(int)))
    assert next(f for f in cv.folds if f.name == "theo").n_extra_train == 4
    # extra rows without the column the folds keep apart: said, since cv cannot keep a test speaker out
    with pytest.warns(EarmarkWarning, match="extra training rows have no 'group' column"):
        cross_validate(table, model="logreg", features=_preset(), workers=1, extra_train=extra.drop(columns="group"))
    # the command line refuses cv's own settings given as -p, and the JSON records how the run was made
    from earmark.cli.main import app

    manifest = tmp_path / "t.csv"
    table.to_csv(manifest, index=False)
    r = CliRunner().invoke(app, ["cv", str(manifest), "--model", "logreg", "-p", "folds=3"])
    assert r.exit_code == 2 and "use its own option (--folds" in " ".join(r.output.split())
    r = CliRunner().invoke(app, ["cv", str(manifest), "--model", "logreg", "-p", "cache=x"])
    assert r.exit_code == 2 and "this command does not set it" in " ".join(r.output.split())
    r = CliRunner().invoke(app, ["cv", str(manifest), "--model", "mlp", "--features", "mfcc-mean", "--epochs", "1",
                                 "-p", f"checkpoint_dir={tmp_path / 'ck'}", "-j", "1"])
    assert r.exit_code == 0 and sorted(p.name for p in (tmp_path / "ck").iterdir()) == ["fold-george", "fold-jackson", "fold-theo"], \
        r.output  # a model parameter: one checkpoint folder per fold
    out = tmp_path / "cv.json"
    r = CliRunner().invoke(app, ["cv", str(manifest), "--model", "logreg", "--features", "mfcc-mean", "-p", "C=0.5",
                                 "--json", str(out), "-j", "1"])
    assert r.exit_code == 0, r.output
    assert json.loads(out.read_text())["config"]["params"] == {"C": 0.5}
