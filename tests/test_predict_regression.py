"""Regressors through `earmark predict`, the service and drift monitoring; rejected answers keep their top class."""

from __future__ import annotations

import csv
import io
import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from _serving_model import DATA, FSDD, fsdd_model, require_training

INSTRUMENTS = DATA / "instruments"


@lru_cache(maxsize=1)
def _split() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Single notes of folds 1-2 for training, of fold 3 (other programs) for testing."""
    df = pd.read_csv(INSTRUMENTS / "manifest.csv")
    df = df[df["kind"] == "note"].assign(path=lambda d: [str(INSTRUMENTS / p) for p in d["path"]])
    return df[df["fold"].isin([1, 2])].head(160), df[df["fold"] == 3].head(24)


@lru_cache(maxsize=1)
def pitch_model():
    """ridge on pooled spectral statistics: MIDI pitch from audio (trained once per session)."""
    require_training()
    from earmark.training import train

    train_df, _ = _split()
    return train(train_df, target="pitch", model="ridge", features="stats", workers=1)


def test_predict_paths_answers_a_regressors_numbers():
    from earmark.serving.batch import predict_paths

    model = pitch_model()
    _, test = _split()
    rows = predict_paths(model, [*test["path"], str(INSTRUMENTS / "missing.flac")], workers=2)
    assert [set(r) for r in rows[:1]] == [{"path", "prediction", "duration", "error"}]
    assert rows[-1]["error"] and rows[-1]["prediction"] is None
    got = np.array([r["prediction"] for r in rows[:-1]])
    want = model.predict(list(test["path"]))["prediction"].to_numpy()
    # the same numbers as TrainedModel.predict, to float32 rounding (features are computed in batches
    # of other sizes there, and BLAS sums a batch in an order that depends on its size)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    truth = test["pitch"].to_numpy()
    baseline = np.abs(truth - _split()[0]["pitch"].mean()).mean()
    assert np.abs(got - truth).mean() < 0.7 * baseline  # it learned pitch, on programs it never heard


def test_cli_predict_regressor_csv_and_windows(tmp_path):
    from typer.testing import CliRunner

    from earmark.bundle import save_model
    from earmark.cli.main import app

    _, test = _split()
    bundle = save_model(pitch_model(), tmp_path / "pitch.earmark")
    runner = CliRunner()
    res = runner.invoke(app, ["predict", str(bundle), *test["path"][:3]])
    assert res.exit_code == 0, res.output
    table = list(csv.DictReader(io.StringIO(res.stdout)))
    assert list(table[0]) == ["path", "prediction", "error"] and len(table) == 3
    want = pitch_model().predict(list(test["path"][:3]))["prediction"].to_numpy()
    np.testing.assert_allclose([float(r["prediction"]) for r in table], want, rtol=1e-5)
    res = runner.invoke(app, ["predict", str(bundle), test["path"].iloc[0], "--reject-below", "0.5"])
    assert res.exit_code == 2 and "regressor" in res.stderr  # not silently ignored
    res = runner.invoke(app, ["serve", str(bundle), "--reject-below", "0.5", "--port", "1"])
    assert res.exit_code == 2 and "regressor" in res.stderr  # refused before any port is bound
    # two notes one after the other: one window each, and their mean for the file
    a, sr = sf.read(test["path"].iloc[0], dtype="float32")
    b, _ = sf.read(test["path"].iloc[1], dtype="float32")
    long = tmp_path / "two.wav"
    sf.write(long, np.concatenate([a, b]), sr)
    res = runner.invoke(app, ["predict", str(bundle), str(long), "--window", str(len(a) / sr), "--format", "json"])
    assert res.exit_code == 0, res.output
    row = json.loads(res.stdout)[0]
    values = [w["prediction"] for w in row["windows"]]
    assert len(values) == 2 and row["prediction"] == pytest.approx(np.mean(values))
    single = pitch_model().predict([test["path"].iloc[0]])["prediction"][0]
    assert values[0] == pytest.approx(single, abs=1e-6)


def test_service_answers_a_regressors_number_and_monitors_its_features(tmp_path):
    from fastapi.testclient import TestClient

    from earmark.serving import ServeSettings, create_app
    from earmark.serving.monitor import monitor

    model = pitch_model()
    train_df, test = _split()
    log = tmp_path / "requests.sqlite"
    with TestClient(create_app(model, ServeSettings(log_path=str(log)))) as c:
        one = c.post("/predict", content=Path(test["path"].iloc[0]).read_bytes())
        assert one.status_code == 200, one.text
        want = model.predict([test["path"].iloc[0]])["prediction"][0]
        assert one.json() == {"prediction": pytest.approx(want), "duration": pytest.approx(1.5, abs=0.01)}
        files = [("files", (f"{i}.flac", Path(p).read_bytes())) for i, p in enumerate(test["path"][:3])]
        batch = c.post("/predict/batch", files=files).json()
        assert batch["failed"] == 0 and all(isinstance(r["prediction"], float) for r in batch["results"])
        info = c.get("/model").json()
        assert info["task"] == "regression" and info["target"] == "pitch"
        assert 'earmark_predictions_total{label="pitch"} 4' in c.get("/metrics").text
    report = monitor(model, str(log), reference_source=train_df, min_samples=4)
    assert {t["kind"] for t in report.to_dict()["tests"]} == {"feature"}  # a regressor has no class shares


def test_rejected_rows_keep_their_top_class(tmp_path):
    require_training()
    from typer.testing import CliRunner

    from earmark.bundle import save_model
    from earmark.cli.main import app
    from earmark.serving.batch import predict_paths

    clip = FSDD / "recordings" / "7_jackson_40.wav"
    row = predict_paths(fsdd_model(), [clip], k=2, reject_below=0.999999)[0]
    assert row["label"] == "unknown" and row["rejected"] and row["top"][0]["label"] == "7"
    assert predict_paths(fsdd_model(), [clip])[0]["rejected"] is False
    bundle = save_model(fsdd_model(), tmp_path / "m.earmark")
    res = CliRunner().invoke(app, ["predict", str(bundle), str(clip), "--reject-below", "0.999999", "-k", "2"])
    assert res.exit_code == 0, res.output
    line = next(csv.DictReader(io.StringIO(res.stdout)))
    assert line["label"] == "unknown" and line["top_label"] == "7" and line["label_2"] not in ("", "7")


def test_web_page_shows_a_regressors_number(tmp_path):
    """The service's page over a real uvicorn server on loopback, in headless Chromium."""
    import socket
    import threading
    import time

    import uvicorn

    from _chromium import chromium_path, open_page
    from earmark.serving import ServeSettings, create_app

    if chromium_path() is None:
        pytest.skip("chromium is not installed")
    model = pitch_model()
    _, test = _split()
    note = test["path"].iloc[0]
    want = float(model.predict([note])["prediction"][0])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(model, ServeSettings()), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        with open_page(f"http://127.0.0.1:{port}/") as page:
            deadline = time.monotonic() + 10
            title = ""
            while time.monotonic() < deadline and "pitch" not in title:
                title = page.evaluate("document.getElementById('model').textContent")
                time.sleep(0.1)
            assert title.startswith("Predicts pitch")
            doc = page.send("DOM.getDocument")["root"]["nodeId"]
            node = page.send("DOM.querySelector", nodeId=doc, selector="#file")["nodeId"]
            page.send("DOM.setFileInputFiles", nodeId=node, files=[note])
            deadline = time.monotonic() + 20
            shown = ""
            while time.monotonic() < deadline and not shown:
                shown = page.evaluate("document.getElementById('label').textContent")
                time.sleep(0.1)
            assert shown.startswith("pitch ") and float(shown.split()[1]) == pytest.approx(want, rel=1e-3)
            assert page.evaluate("document.querySelectorAll('#bars .bar').length") == 0
            assert f"pitch {shown.split()[1]}" in page.evaluate("document.getElementById('status').textContent")
            page.evaluate("document.getElementById('why').click()")  # a regressor's map: how far its value moves
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not page.evaluate("document.querySelectorAll('#why-top li').length"):
                time.sleep(0.1)
            how = page.evaluate("document.getElementById('why-how').textContent")
            assert "the further the predicted pitch moves" in how and "falls" not in how
            assert "value moves by" in page.evaluate("document.getElementById('why-top').textContent")
            assert page.console_errors() == []
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_a_regressor_trained_by_the_cli_can_be_monitored(tmp_path):
    """`earmark train --target pitch` keeps a drift reference, as for classifiers: `earmark monitor`
    works on its log without --reference, on the features only."""
    require_training()
    from typer.testing import CliRunner

    from earmark.cli.main import app
    from earmark.serving.monitor import monitor

    train_df, test = _split()
    manifest = tmp_path / "train.csv"
    train_df.head(60).to_csv(manifest, index=False)
    res = CliRunner().invoke(app, ["train", str(manifest), "--target", "pitch", "--model", "ridge",
                                   "--features", "stats", "--out", str(tmp_path / "pitch"), "--workers", "1"])
    assert res.exit_code == 0, res.output
    report = monitor(str(tmp_path / "pitch"), list(test["path"]), min_samples=4)
    assert report.n == len(test) and report.n_reference == 60
    assert {t.kind for t in report.tests} == {"feature"}
