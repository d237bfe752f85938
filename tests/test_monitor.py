"""Drift monitoring: statistics on arrays, and the FSDD / TTS / noise behaviour the issue asks for."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from _serving_model import FSDD, TTS, fsdd_model, require_training, split
from earmark.serving.drift import benjamini_hochberg, detect_drift, drift_summary, psi
from earmark.serving.monitor import build_reference, monitor, render_html

SHARED = FSDD.parent


def test_psi_zero_for_same_sample_and_large_for_shift():
    rng = np.random.default_rng(0)
    a = rng.normal(size=4000)
    assert psi(a, a) == pytest.approx(0.0, abs=1e-12)
    assert psi(a, rng.normal(size=4000)) < 0.02
    assert psi(a, a + 1.0) > 0.5


def test_benjamini_hochberg_matches_hand_computation():
    p = np.array([0.001, 0.008, 0.039, 0.041, 0.042, 0.06, 0.074, 0.205])
    # p_(i) * m / i, then running minimum from the top
    expected = np.minimum.accumulate((p * 8 / np.arange(1, 9))[::-1])[::-1]
    assert benjamini_hochberg(p) == pytest.approx(expected)
    assert benjamini_hochberg(p[::-1]) == pytest.approx(expected[::-1])


def test_detect_drift_on_synthetic_arrays():
    rng = np.random.default_rng(1)
    ref = {"features": rng.normal(size=(800, 5)), "proba": rng.dirichlet([30, 1, 1], size=800)}
    same = detect_drift(ref, rng.normal(size=(300, 5)), rng.dirichlet([30, 1, 1], size=300))
    assert not same.drift and same.n == 300 and same.n_reference == 800
    moved = detect_drift(ref, rng.normal(size=(300, 5)) + 3, rng.dirichlet([30, 1, 1], size=300))
    assert moved.drift and moved.feature_drift_share == 1.0
    unsure = detect_drift(ref, rng.normal(size=(300, 5)), rng.dirichlet([1, 1, 1], size=300))
    assert unsure.test("confidence").drift and unsure.drift
    d = moved.to_dict()
    assert {"drift", "n", "tests"} <= set(d) and len(d["tests"]) == 7
    json.dumps(d)


def test_detect_drift_refuses_too_few_or_mismatched():
    from earmark.errors import ParameterError

    ref = {"features": np.zeros((50, 3))}
    with pytest.raises(ParameterError, match="min_samples"):
        detect_drift(ref, np.zeros((5, 3)))
    with pytest.raises(ParameterError, match="columns"):
        detect_drift(ref, np.zeros((50, 4)))


# ----------------------------------------------------------------------------- real data


@pytest.fixture(scope="module")
def model():
    """The FSDD model with a drift reference of its training speakers' clips (every 2nd one)."""
    train_df, _ = split()
    m = fsdd_model()
    ref = build_reference(m, train_df.iloc[::2], workers=2)
    return dataclasses.replace(m, reference={**(m.reference or {}), **ref})


def test_held_out_speakers_clean_clips_are_not_drift(model):
    _, held = split()
    report = monitor(model, held, workers=2)
    assert report.n == len(held)
    assert not report.drift, report.reasons


def test_synthetic_voices_are_drift(model):
    report = monitor(model, sorted(str(p) for p in TTS.glob("*.wav")), workers=2)
    assert report.drift, [(t.name, round(t.effect, 2)) for t in report.tests]
    assert report.feature_drift_share >= 0.4


def test_fsdd_with_noise_is_drift(model, tmp_path):
    _, held = split()
    rng = np.random.default_rng(0)
    paths = []
    for path in list(held["path"])[::3]:
        y, sr = sf.read(path, dtype="float32")
        noise = rng.normal(size=y.shape).astype(np.float32) * np.sqrt(np.mean(y**2) / 10)  # 10 dB SNR
        out = tmp_path / ("noisy_" + path.rsplit("/", 1)[-1])
        sf.write(out, np.clip(y + noise, -1, 1), sr)
        paths.append(str(out))
    report = monitor(model, paths, workers=2)
    assert report.drift and report.feature_drift_share >= 0.5
    html = render_html(report)
    assert "DRIFT" in html and "spectral_flux" in html


def test_drift_summary_is_finite_for_short_and_silent_clips():
    for y in (np.zeros(10, np.float32), np.zeros(8000, np.float32), np.ones(300, np.float32)):
        assert np.isfinite(drift_summary(y, 8000)).all()
    y, sr = sf.read(FSDD / "recordings" / "3_theo_12.wav", dtype="float32")
    assert drift_summary(y, sr).shape == (7,)


def test_monitor_cli_writes_json_and_exits_4_on_drift(model, tmp_path):
    require_training()
    from typer.testing import CliRunner

    from earmark.bundle import save_model
    from earmark.cli.main import app

    bundle = save_model(model, tmp_path / "digits")
    out, html = tmp_path / "drift.json", tmp_path / "drift.html"
    tts = str(TTS)
    res = CliRunner().invoke(app, ["monitor", str(bundle), "--log", tts, "--json", str(out), "--report", str(html)])
    assert res.exit_code == 4, res.output
    result = json.loads(out.read_text())
    assert result["drift"] is True and result["n"] == len(list(TTS.glob("*.wav")))
    assert any(t["name"] == "spectral_flux" and t["drift"] for t in result["tests"])
    assert "DRIFT" in html.read_text()


def test_monitor_names_the_clips_it_could_not_compare(model, tmp_path):
    """Unreadable clips (text, NaN samples, a missing file) are listed with their reason, in the
    report and by the command (exit 1 when there is no drift), never silently dropped."""
    require_training()
    from typer.testing import CliRunner

    from earmark.bundle import save_model
    from earmark.cli.main import app

    _, held = split()
    bad = [str(SHARED / "bad-audio" / "text_as_wav.wav"), str(SHARED / "bad-audio" / "float32_nan_inf.wav")]
    report = monitor(model, [*held["path"], *bad], workers=2)
    assert report.n == len(held) and not report.drift
    assert [s["path"] for s in report.skipped] == bad and all(s["reason"] for s in report.skipped)
    manifest = tmp_path / "heard.csv"
    pd.DataFrame({"path": [*held["path"], *bad, str(tmp_path / "gone.wav")]}).to_csv(manifest, index=False)
    bundle = save_model(model, tmp_path / "digits")
    out = tmp_path / "new" / "drift.json"
    res = CliRunner().invoke(app, ["monitor", str(bundle), "--log", str(manifest), "--json", str(out)])
    assert res.exit_code == 1, res.output
    skipped = {Path(s["path"]).name for s in json.loads(out.read_text())["skipped"]}
    assert skipped == {"text_as_wav.wav", "float32_nan_inf.wav", "gone.wav"}
    assert "3 files left out of the comparison" in res.stderr


def test_confidence_is_compared_with_clips_the_model_did_not_train_on(model):
    """The confidence reference is the validation clips' (held out from training), not the
    training clips' own, which a model is surer of than of anything it will hear later."""
    _, held = split()
    conf = monitor(model, held, workers=2).test("confidence")
    held_out = np.asarray(model.reference["proba"]).max(axis=1).mean()
    in_sample = np.asarray(model.reference["drift_proba"]).max(axis=1).mean()
    assert conf.reference_mean == pytest.approx(held_out, rel=1e-5)
    assert held_out < in_sample


def test_monitor_help_states_the_default_thresholds():
    from typer.testing import CliRunner

    from earmark.cli.main import app
    from earmark.serving.drift import DEFAULT_ALPHA, DEFAULT_PSI

    text = " ".join(CliRunner().invoke(app, ["monitor", "--help"], env={"COLUMNS": "200"}).output.split())
    assert f"(default {DEFAULT_ALPHA})" in text and f"(default {DEFAULT_PSI})" in text


def test_monitor_refuses_an_sqlite_file_that_is_not_a_request_log_and_leaves_it_alone(model, tmp_path):
    import sqlite3

    other = tmp_path / "inventory.sqlite"
    db = sqlite3.connect(other)
    db.execute("CREATE TABLE items (name TEXT)")
    db.commit()
    db.close()
    before = other.read_bytes()
    with pytest.raises(Exception, match="not an earmark request log"):
        monitor(model, str(other))
    assert other.read_bytes() == before and not (tmp_path / "inventory.sqlite-wal").exists()
    from earmark.errors import ParameterError

    fake = tmp_path / "requests.sqlite"  # not SQLite at all: named as such, not as a bad dataset source
    fake.write_text("path,label\n")
    with pytest.raises(ParameterError, match="is not an SQLite file, so not a request log"):
        monitor(model, str(fake))


def test_a_models_own_training_clips_are_not_drift(model):
    """The predicted-class shares are compared with the data's (a sample of the training clips),
    as two samples, not with the validation clips of one held-out speaker taken as exact: that
    flagged the model's own training data (PSI 2.7, p 0)."""
    train_df, _ = split()
    report = monitor(model, train_df.iloc[1::2], workers=2)
    assert not report.drift, report.reasons
    shares = report.test("prediction")
    assert shares.p_value > 0.01
    # the confidence bar is still the held-out clips', and a given reference replaces the bundle's
    held_out = np.asarray(model.reference["proba"]).max(axis=1).mean()
    assert report.test("confidence").reference_mean == pytest.approx(held_out, rel=1e-5)
    given = monitor(model, train_df.iloc[1::2], reference_source=train_df.iloc[::4], workers=2)
    assert given.n_reference == len(train_df.iloc[::4])
    assert given.test("confidence").reference_mean == pytest.approx(held_out, rel=1e-5)  # the same bar
    assert not given.drift, given.reasons


def test_class_shares_that_moved_are_drift_and_unmoved_ones_are_not():
    rng = np.random.default_rng(0)
    ref = {"features": rng.normal(size=(300, 4)), "proba": np.eye(3)[rng.integers(0, 3, 300)]}
    same = detect_drift(ref, rng.normal(size=(200, 4)), np.eye(3)[rng.integers(0, 3, 200)])
    assert same.test("prediction").p_value > 0.01 and not same.drift
    skewed = detect_drift(ref, rng.normal(size=(200, 4)), np.eye(3)[np.r_[np.zeros(180, int), np.ones(20, int)]])
    assert skewed.test("prediction").p_value < 1e-6 and skewed.drift


def test_a_request_log_belongs_to_one_model(model, tmp_path):
    """A log written by one model is refused for another (by serve and monitor), rows of two
    sizes are a clear error, and the same model may reopen its log."""
    from earmark.bundle import save_model
    from earmark.errors import DatasetError, ParameterError
    from earmark.serving.predictor import Predictor
    from earmark.serving.requestlog import RequestLog

    bundle = save_model(model, tmp_path / "digits")
    me = Predictor.load(bundle).identity()
    assert me["bundle"] and me["classes"] == [str(c) for c in model.classes]
    other = {**me, "bundle": "f" * 64, "created": "2026-01-01T00:00:00+00:00"}
    path = tmp_path / "requests.sqlite"
    rng = np.random.default_rng(0)
    with RequestLog(path, model=other) as log:
        for _ in range(25):
            log.append(features=rng.normal(size=7), proba=np.full(10, 0.1), label="3")
    with pytest.raises(DatasetError, match=r"another model .*bundle ffffffffffff.*pass a new --log path"):
        RequestLog(path, model={**me, "bundle": "a" * 64})
    RequestLog(path, model=other).close()  # its own writer reopens it
    empty = tmp_path / "empty.sqlite"
    RequestLog(empty, model=other).close()
    with RequestLog(empty, model=me) as log:  # a log without rows is taken over by the next model
        assert log.read()["model"]["bundle"] == me["bundle"]
    with pytest.raises(ParameterError, match="another model"):
        monitor(bundle, str(path))
    # a log of the same classes from an in-process model (no bundle hash) is this model's
    mine = tmp_path / "mine.sqlite"
    with RequestLog(mine, model=Predictor.load(model).identity()) as log:
        for _ in range(25):
            log.append(features=rng.normal(size=7), proba=np.full(10, 0.1), label="3")
    assert monitor(bundle, str(mine)).n == 25
    # an older log that stored only its classes: another class list is another model
    old = tmp_path / "old.sqlite"
    with RequestLog(old, classes=["yes", "no"]) as log:
        log.append(features=rng.normal(size=7), proba=np.array([0.9, 0.1]), label="yes")
    with pytest.raises(DatasetError, match=r"another model \(a classification model of classes yes, no\)"):
        RequestLog(old, model={"task": "regression", "classes": []})
    # rows of two sizes (written by hand through two unchecked handles) are an error, not a traceback
    with RequestLog(old) as log:
        log.append(features=rng.normal(size=7), proba=np.full(10, 0.1), label="3")
        with pytest.raises(DatasetError, match="different sizes"):
            log.read()


def test_serve_refuses_another_models_log_before_starting(model, tmp_path):
    require_training()
    from typer.testing import CliRunner

    from earmark.bundle import save_model
    from earmark.cli.main import app
    from earmark.serving.requestlog import RequestLog

    bundle = save_model(model, tmp_path / "digits")
    log = tmp_path / "requests.sqlite"
    with RequestLog(log, model={"bundle": "e" * 64, "task": "regression", "classes": []}) as rl:
        rl.append(features=np.zeros(7), proba=np.array([60.0]), label="60.0")
    res = CliRunner().invoke(app, ["serve", str(bundle), "--port", "1", "--log", str(log)])
    assert res.exit_code != 0 and "another model" in res.output and "regression" in res.output
    # the log named by the environment is checked the same way (it was a traceback per worker)
    res = CliRunner().invoke(app, ["serve", str(bundle), "--port", "1"], env={"EARMARK_SERVE_LOG_PATH": str(log)})
    assert res.exit_code != 0 and "another model" in res.output and "Traceback" not in res.output


def test_monitor_cli_names_a_missing_log_takes_min_samples_and_checks_outputs_first(model, tmp_path):
    require_training()
    from typer.testing import CliRunner

    from earmark.bundle import save_model
    from earmark.cli.main import app
    from earmark.serving.predictor import Predictor
    from earmark.serving.requestlog import RequestLog

    bundle = save_model(model, tmp_path / "digits")
    run = CliRunner()
    res = run.invoke(app, ["monitor", str(bundle), "--log", str(tmp_path / "missing.sqlite")])
    assert res.exit_code == 3 and "no such request log" in res.stderr
    log = tmp_path / "requests.sqlite"
    _, held = split()
    with RequestLog(log, model=Predictor.load(bundle).identity()) as rl:
        p = Predictor.load(bundle)
        for path in held["path"][:5]:
            y, sr = sf.read(path, dtype="float32")
            assert sr == p.sample_rate
            pred = p.predict_arrays([y], summaries=True)[0]
            rl.append(features=pred.features, proba=np.array(list(pred.probabilities.values())), label=pred.label)
    res = run.invoke(app, ["monitor", str(bundle), "--log", str(log)])
    assert res.exit_code == 3 and "--min-samples" in " ".join(res.stderr.split())
    res = run.invoke(app, ["monitor", str(bundle), "--log", str(log), "--min-samples", "5",
                           "--json", str(tmp_path / "d.json")])
    assert res.exit_code in (0, 4), res.output
    assert json.loads((tmp_path / "d.json").read_text())["n"] == 5
    folder = tmp_path / "out"
    folder.mkdir()
    res = run.invoke(app, ["monitor", str(bundle), "--log", str(log), "--report", str(folder)])
    assert res.exit_code == 2 and "is a folder" in res.stderr


def test_monitor_judges_recent_traffic_only_when_asked(model, tmp_path):
    """--last N / --since: yesterday's drift-free traffic must not dilute today's shift."""
    import time

    from typer.testing import CliRunner

    from earmark.bundle import save_model
    from earmark.cli.main import app
    from earmark.errors import ParameterError
    from earmark.serving.predictor import Predictor
    from earmark.serving.requestlog import RequestLog

    bundle = save_model(model, tmp_path / "digits")
    path = tmp_path / "requests.sqlite"
    with RequestLog(path, model=Predictor.load(bundle).identity()) as log:
        for _ in range(30):
            log.append(features=np.zeros(7), proba=np.full(10, 0.1), label="3")
        cut = time.time()
        time.sleep(0.01)
        for _ in range(25):
            log.append(features=np.ones(7), proba=np.full(10, 0.1), label="3")
    assert monitor(bundle, str(path)).n == 55
    assert monitor(bundle, str(path), last=25).n == 25
    assert monitor(bundle, str(path), since=cut).n == 25
    with pytest.raises(ParameterError, match="holds no request after the time given"):
        monitor(bundle, str(path), since=time.time() + 60)
    from datetime import datetime, timezone

    assert monitor(bundle, str(path), since=datetime.fromtimestamp(cut, timezone.utc)).n == 25
    assert monitor(bundle, str(path), since="1h").n == 55
    with pytest.raises(ParameterError, match="a time is an ISO date/time"):
        monitor(bundle, str(path), since="yesterday")
    with pytest.raises(ParameterError, match="kept 10 request.*widen them"):
        monitor(bundle, str(path), last=10)
    with pytest.raises(ParameterError, match="last"):
        monitor(bundle, str(path), last=0)
    with pytest.raises(ParameterError, match="is a dataset"):
        monitor(bundle, str(FSDD / "manifest.csv"), last=10)
    out = tmp_path / "d.json"
    res = CliRunner().invoke(app, ["monitor", str(bundle), "--log", str(path), "--last", "25", "--json", str(out)])
    assert res.exit_code in (0, 4) and json.loads(out.read_text())["n"] == 25, res.output
    res = CliRunner().invoke(app, ["monitor", str(bundle), "--log", str(path), "--since", "1h", "--json", str(out)])
    assert json.loads(out.read_text())["n"] == 55, res.output
    res = CliRunner().invoke(app, ["monitor", str(bundle), "--log", str(path), "--since", "yesterday"])
    assert res.exit_code == 2 and "--since: a time is an ISO date/time" in " ".join(res.output.split())
