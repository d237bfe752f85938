"""Metrics against scikit-learn, result objects, plots and the HTML report on real FSDD clips."""

from __future__ import annotations

import base64
import io
import json
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from matplotlib.figure import Figure
from sklearn import metrics as skm

from earmark.errors import EarmarkError, ParameterError
from earmark.evaluation import (
    CVResult,
    FoldResult,
    audio_to_data_uri,
    build_report,
    calibration_curve,
    compute_metrics,
    evaluate_predictions,
    expected_calibration_error,
    figure_to_data_uri,
    log_run,
    plots,
    render_report,
    summarize_folds,
    to_json,
    write_report,
)

SHARED = Path(os.environ.get("EARMARK_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))
DATA = SHARED / "data"
FSDD = DATA / "fsdd"

needs_fsdd = pytest.mark.skipif(not (FSDD / "manifest.csv").exists(), reason=f"no FSDD at {FSDD}")


def _random_case(seed: int, n: int = 200, k: int = 4):
    rng = np.random.default_rng(seed)
    classes = [f"c{i}" for i in range(k)]
    y_true = rng.integers(0, k, size=n)
    logits = rng.normal(size=(n, k)) + 2.0 * np.eye(k)[y_true]
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    y_pred = proba.argmax(axis=1)
    names = np.array(classes)
    return names[y_true], names[y_pred], proba, classes, y_true, y_pred


# ---------------------------------------------------------------- metrics vs scikit-learn


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_classification_metrics_match_sklearn(seed):
    t, p, proba, classes, ti, pi = _random_case(seed)
    m = compute_metrics(t, p, proba, classes=classes)
    assert m["n"] == len(t)
    assert m["classes"] == classes
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(t, p))
    assert m["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(t, p))
    assert m["macro_f1"] == pytest.approx(skm.f1_score(t, p, average="macro"))
    assert m["micro_f1"] == pytest.approx(skm.f1_score(t, p, average="micro"))
    assert m["weighted_f1"] == pytest.approx(skm.f1_score(t, p, average="weighted"))
    assert m["confusion"] == skm.confusion_matrix(t, p, labels=classes).tolist()
    prec, rec, f1, sup = skm.precision_recall_fscore_support(t, p, labels=classes, zero_division=0)
    for i, c in enumerate(classes):
        assert m["per_class"][c] == pytest.approx(
            {"precision": prec[i], "recall": rec[i], "f1": f1[i], "support": sup[i]}
        )
    assert m["log_loss"] == pytest.approx(skm.log_loss(ti, proba, labels=range(4)))
    for k in ("2", "3"):
        assert m["top_k_accuracy"][k] == pytest.approx(
            skm.top_k_accuracy_score(ti, proba, k=int(k), labels=range(4))
        )
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(ti, proba, multi_class="ovr"))
    assert 0.0 <= m["ece"] <= 1.0
    json.dumps(m, allow_nan=False)  # JSON-ready as it is


def test_binary_auc_matches_sklearn_with_positive_class_second():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, size=300)
    score = np.clip(0.3 * y + rng.uniform(size=300) * 0.7, 0, 1)
    proba = np.column_stack([1 - score, score])
    names = np.array(["no", "yes"])
    m = compute_metrics(names[y], names[(score > 0.5).astype(int)], proba, classes=["no", "yes"])
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(y, score))
    assert m["pr_auc"] == pytest.approx(skm.average_precision_score(y, score))
    assert "top_k_accuracy" in m and m["top_k_accuracy"] == {}
    assert m["positive_class"] == "yes"  # which class the AUCs call positive, for the tables that show them
    perfect = compute_metrics(["no", "yes"], ["no", "yes"], np.eye(2), classes=["no", "yes"])
    assert str(perfect["log_loss"]) == "0.0"  # not -0.0


def test_known_small_case_by_hand():
    m = compute_metrics(["a", "b", "b", "c"], ["a", "b", "a", "c"])
    assert m["accuracy"] == 0.75
    assert m["confusion"] == [[1, 0, 0], [1, 1, 0], [0, 0, 1]]
    assert m["per_class"]["a"] == {"precision": 0.5, "recall": 1.0, "f1": pytest.approx(2 / 3),
                                   "support": 1}
    assert m["balanced_accuracy"] == pytest.approx((1 + 0.5 + 1) / 3)
    assert "log_loss" not in m


def test_classes_order_the_confusion_and_absent_classes_get_zero_support():
    m = compute_metrics(["b", "a"], ["b", "b"], classes=["b", "a", "z"])
    assert m["confusion"] == [[1, 0, 0], [1, 0, 0], [0, 0, 0]]
    assert m["per_class"]["z"]["support"] == 0
    assert m["balanced_accuracy"] == pytest.approx(0.5)  # mean recall over classes present
    # macro means over the classes that occur, as scikit-learn's: 'z' (known, absent, never
    # predicted) does not pull them down; a one-class test set answered right scores 1
    assert m["macro_f1"] == pytest.approx(skm.f1_score(["b", "a"], ["b", "b"], average="macro", zero_division=0))
    assert m["macro_recall"] == pytest.approx(0.5) and m["macro_precision"] == pytest.approx(0.25)
    one = compute_metrics(["7"] * 4, ["7"] * 4, classes=[str(d) for d in range(10)])
    assert one["macro_f1"] == one["macro_recall"] == one["macro_precision"] == 1.0
    rng = np.random.default_rng(1)
    t, p = rng.choice(list("abc"), 50), rng.choice(list("abcd"), 50)
    m = compute_metrics(t, p, classes=list("abcde"))
    for avg in ("f1", "precision", "recall"):
        fn = {"f1": skm.f1_score, "precision": skm.precision_score, "recall": skm.recall_score}[avg]
        assert m[f"macro_{avg}"] == pytest.approx(fn(t, p, average="macro", zero_division=0))


def test_regression_metrics_match_sklearn():
    rng = np.random.default_rng(0)
    t = rng.uniform(30, 90, size=100)
    p = t + rng.normal(scale=3, size=100)
    m = compute_metrics(t, p, task="regression")
    assert m["n"] == 100
    assert m["mae"] == pytest.approx(skm.mean_absolute_error(t, p))
    assert m["rmse"] == pytest.approx(np.sqrt(skm.mean_squared_error(t, p)))
    assert m["r2"] == pytest.approx(skm.r2_score(t, p))
    assert compute_metrics([1.0], [2.0], task="regression")["r2"] is None


def test_ece_of_a_perfectly_calibrated_and_an_overconfident_model():
    correct = np.array([True] * 8 + [False] * 2)
    assert expected_calibration_error(correct, np.full(10, 0.8)) == pytest.approx(0.0)
    assert expected_calibration_error(correct, np.full(10, 1.0)) == pytest.approx(0.2)
    curve = calibration_curve(correct, np.full(10, 0.8), n_bins=5)
    assert sum(curve["count"]) == 10 and curve["count"][3] == 10  # 0.8 falls in (0.6, 0.8]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"y_true": ["a"], "y_pred": ["a", "b"]}, "same length"),
        ({"y_true": [], "y_pred": []}, "at least one"),
        ({"y_true": ["a"], "y_pred": ["q"], "classes": ["a", "b"]}, "not in the 'classes'"),
        ({"y_true": ["a"], "y_pred": ["a"], "proba": [[1.0]], "classes": ["a", "b"]}, "shape"),
        ({"y_true": ["a"], "y_pred": ["a"], "task": "ranking"}, "'task'"),
        ({"y_true": ["a"], "y_pred": ["b"], "task": "regression"}, "numeric"),
    ],
)
def test_bad_inputs_raise_parameter_errors_that_name_the_problem(kwargs, match):
    with pytest.raises(ParameterError, match=match):
        compute_metrics(**kwargs)


# ---------------------------------------------------------------- results


def test_evaluate_predictions_keeps_rows_groups_and_confidence():
    t, p, proba, classes, _, _ = _random_case(0, n=40)
    table = pd.DataFrame({"path": [f"/x/{i}.wav" for i in range(40)], "label": t,
                          "group": ["g1", "g2"] * 20})
    res = evaluate_predictions(table, p, proba=proba, classes=classes,
                               skipped=[{"path": "/x/bad.wav", "reason": "empty"}])
    assert list(res.predictions.columns[:3]) == ["path", "group", "true"]
    assert res.proba.shape == (40, 4)
    assert np.allclose(res.predictions["confidence"], proba.max(axis=1))
    wrong = res.misclassified
    assert (~wrong["correct"]).all() and wrong["confidence"].is_monotonic_decreasing
    d = json.loads(to_json(res.to_dict()))
    assert d["n_skipped"] == 1 and d["accuracy"] == res.metrics["accuracy"]
    for key in ("accuracy", "balanced_accuracy", "macro_f1", "n", "per_class", "confusion"):
        assert key in d


def _fold(name, acc_true, acc_pred, groups):
    table = pd.DataFrame({"path": [f"/{name}/{i}" for i in range(len(acc_true))],
                          "label": acc_true, "group": groups})
    res = evaluate_predictions(table, acc_pred, classes=["a", "b"])
    return FoldResult(name, 10, len(acc_true), sorted(set(groups)), res, 1.0, 0.1)


def test_cv_result_summary_worst_fold_and_pooled_scores():
    f1 = _fold("s1", ["a", "b", "a", "b"], ["a", "b", "a", "b"], ["s1"] * 4)
    f2 = _fold("s2", ["a", "b", "a", "b"], ["a", "a", "a", "a"], ["s2"] * 4)
    from earmark.evaluation._run import _pool

    cv = CVResult([f1, f2], "logreg", "group", _pool([f1, f2]))
    assert cv.summary["accuracy"] == {"mean": 0.75, "std": 0.25, "min": 0.5, "max": 1.0,
                                      "n_folds": 2}
    assert cv.worst_fold["fold"] == "s2" and cv.worst_fold["test_groups"] == ["s2"]
    assert cv.pooled.metrics["n"] == 8 and cv.pooled.metrics["accuracy"] == 0.75
    d = json.loads(to_json(cv.to_dict()))
    assert [f["fold"] for f in d["folds"]] == ["s1", "s2"]
    assert d["folds"][1]["accuracy"] == 0.5 and "confusion" in d["folds"][0]
    assert summarize_folds([{"rmse": 1.0}, {"rmse": None}])["rmse"]["n_folds"] == 1


# ---------------------------------------------------------------- real features for plots


def _mfcc_stats(y: np.ndarray, sr: int) -> np.ndarray:
    import librosa

    m = librosa.feature.mfcc(y=y, sr=sr, n_mfcc=13, n_fft=256, hop_length=80, n_mels=40,
                             center=True)
    return np.concatenate([m.mean(axis=1), m.std(axis=1)])


@pytest.fixture(scope="module")
def fsdd_run():
    """A real model on real clips: logistic regression on MFCC statistics, speakers held out."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from earmark.audio import load_audio

    if not (FSDD / "manifest.csv").exists():
        pytest.skip(f"no FSDD at {FSDD}")
    man = pd.read_csv(FSDD / "manifest.csv")
    man = man[man["path"].str.extract(r"_(\d+)\.wav$")[0].astype(int) < 8]  # 400 clips
    man = man.assign(path=[str(FSDD / p) for p in man["path"]], label=man["label"].astype(str),
                     group=man["speaker"])
    X = np.stack([_mfcc_stats(*load_audio(p)) for p in man["path"]])
    test = (man["group"] == "theo").to_numpy()
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500, C=0.5))
    clf.fit(X[~test], man["label"][~test])
    proba = clf.predict_proba(X[test])
    classes = [str(c) for c in clf.classes_]
    pred = np.asarray(classes)[proba.argmax(axis=1)]
    res = evaluate_predictions(man[test], pred, proba=proba, classes=classes,
                               info={"model": "logreg-mfcc"})
    res.features = X[test]
    return res


@needs_fsdd
def test_real_model_scores_are_sane(fsdd_run):
    m = fsdd_run.metrics
    assert m["n"] == 80 and m["classes"] == [str(d) for d in range(10)]
    assert 0.3 < m["accuracy"] <= 1.0  # an unseen speaker: far above chance (0.1)
    assert sum(map(sum, m["confusion"])) == 80


def _png_size(fig: Figure) -> tuple[int, int]:
    uri = figure_to_data_uri(fig)
    raw = base64.b64decode(uri.split(",", 1)[1])
    assert raw[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(raw[16:20], "big"), int.from_bytes(raw[20:24], "big")


@needs_fsdd
def test_every_plot_renders_from_a_real_run(fsdd_run):
    from earmark.audio import load_audio

    res = fsdd_run
    y = res.predictions["true"].to_numpy()
    history = [{"epoch": e, "loss": 1 / e, "val_loss": 1.2 / e, "accuracy": 1 - 0.5 / e,
                "val_accuracy": 1 - 0.6 / e, "lr": 0.01 * 0.9**e} for e in range(1, 11)]
    examples = {c: load_audio(res.predictions.loc[res.predictions["true"] == c, "path"].iloc[0])
                for c in res.classes[:3]}
    figs = {
        "curves": plots.plot_training_curves(history),
        "confusion": plots.plot_confusion_matrix(res.metrics["confusion"], res.classes),
        "per_class": plots.plot_per_class_scores(res.metrics["per_class"]),
        "examples": plots.plot_class_examples(examples),
        "features": plots.plot_feature_distributions(res.features, y, max_features=4),
        "pca": plots.plot_embedding(res.features, y, method="pca"),
        "tsne": plots.plot_embedding(res.features, y, method="tsne", tsne_iterations=250),
        "reliability": plots.plot_reliability(res.calibration(), ece=res.metrics["ece"]),
        "regression": plots.plot_predicted_vs_true([60.0, 62, 70], [61.0, 60, 71], target="pitch"),
        "folds": plots.plot_cv_folds({"george": 0.9, "theo": 0.7}),
    }
    for name, fig in figs.items():
        assert isinstance(fig, Figure), name
        w, h = _png_size(fig)
        assert w > 100 and h > 100, name
    assert [ax.get_title() for ax in figs["curves"].axes] == ["Loss", "Accuracy", "Learning rate"]
    assert len(figs["examples"].axes) == 6  # waveform + log-mel for 3 classes
    from sklearn.feature_selection import f_classif

    best = np.argsort(-f_classif(res.features, y)[0])[:4]
    assert [ax.get_title() for ax in figs["features"].axes] == [f"f{i}" for i in best]


def test_plots_refuse_unusable_data_with_named_parameters():
    with pytest.raises(ParameterError, match="history"):
        plots.plot_training_curves([])
    with pytest.raises(ParameterError, match="square"):
        plots.plot_confusion_matrix([[1, 2]], ["a", "b"])
    with pytest.raises(ParameterError, match="method"):
        plots.plot_embedding(np.zeros((5, 2)), list("abcde"), method="umap")
    with pytest.raises(ParameterError, match="n_mels"):
        plots.plot_class_examples({"a": (np.zeros(100), 8000)}, n_mels=0)


# ---------------------------------------------------------------- HTML report


def test_audio_data_uri_round_trips_as_16_bit_wav():
    y = (0.5 * np.sin(np.linspace(0, 100, 8000))).astype(np.float32)
    uri = audio_to_data_uri(y, 8000)
    data, sr = sf.read(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
    assert sr == 8000 and data.shape == (8000,)
    assert np.max(np.abs(data - y)) < 1e-3
    assert len(audio_to_data_uri(np.zeros(80000), 8000, max_seconds=1.0)) < 30000


def test_render_report_escapes_text_and_makes_no_external_reference():
    page = render_report(title="<script>alert(1)</script>", metrics={"accuracy": 0.5, "n": 2},
                         clips=[{"path": "a&b.wav", "true": "x", "predicted": "y",
                                 "confidence": 0.9, "audio": None}])
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "a&amp;b.wav" in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)


@needs_fsdd
def test_report_of_a_real_run_is_self_contained(fsdd_run, tmp_path):
    history = [{"epoch": e, "loss": 1 / e, "accuracy": 1 - 0.5 / e, "lr": 1e-3} for e in (1, 2, 3)]

    class _Model:  # what build_report reads from a TrainedModel
        pass

    model = _Model()
    model.history = history
    page = build_report(fsdd_run, model=model, summary={"n_files": 80, "n_ok": 80,
                                                        "classes": {"0": 8}}, max_clips=5)
    path = write_report(page, tmp_path / "r" / "report.html")
    text = path.read_text(encoding="utf-8")
    n_wrong = int((~fsdd_run.predictions["correct"]).sum())
    assert text.count("<audio") == min(5, n_wrong)
    assert text.count("data:audio/wav;base64,") == min(5, n_wrong)
    imgs = re.findall(r'<img src="([^"]+)"', text)
    assert len(imgs) >= 7 and all(u.startswith("data:image/png;base64,") for u in imgs)
    assert "Training curves" in text and "Reliability" in text and "PCA" in text
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", text)


def test_log_run_names_the_missing_package(tmp_path):
    import importlib.util

    for backend, package in (("tensorboard", "tensorboard"), ("mlflow", "mlflow")):
        if importlib.util.find_spec(package) is None:
            with pytest.raises(EarmarkError, match=f"pip install {package}"):
                log_run(backend=backend, metrics={"accuracy": 1.0}, logdir=tmp_path)
    with pytest.raises(ParameterError, match="--log"):
        log_run(backend="wandb", metrics={}, logdir=tmp_path)


def test_report_without_probabilities_or_audio_still_builds():
    table = pd.DataFrame({"path": ["/nowhere/a.wav", "/nowhere/b.wav", "/nowhere/c.wav"],
                          "label": ["x", "y", "y"]})
    res = evaluate_predictions(table, ["x", "x", "y"])  # a model without predict_proba
    assert list(res.misclassified["path"]) == ["/nowhere/b.wav"]
    assert res.calibration() is None
    page = build_report(res)
    assert "Confusion matrix" in page and "Reliability" not in page
    assert "audio unavailable" in page  # the file cannot be read; the page says so


def test_confusion_figure_scales_rates_to_one_and_counts_in_whole_ticks():
    fig = plots.plot_confusion_matrix([[3, 1], [0, 4]], ["a", "b"])
    counts, rates = (ax for ax in fig.axes if ax.get_title())
    assert counts.images[0].get_clim() == (0.0, 4.0)
    assert rates.images[0].get_clim() == (0.0, 1.0)  # a 0.56 diagonal must not look perfect
    count_bar = next(ax for ax in fig.axes if not ax.get_title() and ax.get_position().x0 < rates.get_position().x0)
    fig.canvas.draw()
    ticks = [t for t in count_bar.get_yticks() if 0 <= t <= 4]
    assert ticks and all(float(t).is_integer() for t in ticks)
    # inlined as the report does: nothing is cut at the image's edges (the colour bar's labels
    # were clipped at the right), so its outermost pixel columns and rows are background
    from matplotlib.image import imread

    uri = figure_to_data_uri(plots.plot_confusion_matrix([[3, 1], [0, 4]], ["a", "b"]))
    img = imread(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])), format="png")[..., :3]
    for edge in (img[:, :2], img[:, -2:], img[:2], img[-2:]):
        assert edge.min() > 0.95


def test_top_k_counts_ties_against_the_true_class():
    """A one-hot answer for another class (a 1-NN, a kNN's zeros) ties the true class with every other
    class at 0: it was counted as top-2 (rank = classes strictly above = 1)."""
    classes = [str(c) for c in range(10)]
    one_hot = np.zeros((4, 10))
    one_hot[:, 9] = 1.0
    m = compute_metrics(["0", "1", "2", "3"], ["9"] * 4, one_hot, classes=classes)
    assert m["accuracy"] == 0.0 and m["top_k_accuracy"] == {"2": 0.0, "3": 0.0, "5": 0.0}
    right = np.zeros((2, 10))
    right[0, 0] = right[1, 1] = 1.0  # no tie for a class that holds all the probability
    assert compute_metrics(["0", "1"], ["0", "1"], right, classes=classes)["top_k_accuracy"]["2"] == 1.0
    half = np.zeros((1, 10))
    half[0, [0, 9]] = 0.5  # a tie for first place: top-2 holds it, top-1 (accuracy by argmax) may not
    assert compute_metrics(["0"], ["9"], half, classes=classes)["top_k_accuracy"]["2"] == 1.0
