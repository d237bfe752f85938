"""The command line end to end across parts: train with fine-tuning and synthetic voices,
drift reference in the bundle, and the demo."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from earmark.bundle import load_model, read_manifest
from earmark.cli.main import app

runner = CliRunner()


@pytest.fixture(scope="module")
def small_fsdd(tmp_path_factory: pytest.TempPathFactory, shared: Path) -> Path:
    """Three digits × three speakers × 8 takes of FSDD, as a manifest of absolute paths."""
    df = pd.read_csv(shared / "fsdd" / "manifest.csv")
    df = df[df["label"].isin([1, 5, 8]) & df["speaker"].isin(["george", "jackson", "theo"])]
    df = df[df["path"].str.extract(r"_(\d+)\.wav$")[0].astype(int) < 8].copy()
    df["path"] = [str(shared / "fsdd" / p) for p in df["path"]]
    out = tmp_path_factory.mktemp("small") / "manifest.csv"
    df.to_csv(out, index=False)
    return out


def _train(*args: str) -> dict:
    result = runner.invoke(app, ["train", *args, "--workers", "1", "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_train_writes_a_drift_reference_and_fine_tunes_from_it(tmp_path: Path, small_fsdd: Path) -> None:
    first = _train(str(small_fsdd), "--model", "cnn", "--epochs", "2", "--out", str(tmp_path / "base"))
    base = load_model(first["bundle"])
    assert "drift_features" in base.reference and len(base.reference["drift_features"]) == 72

    second = _train(
        str(small_fsdd), "--init-from", f"bundle:{tmp_path / 'base'}", "--freeze-epochs", "1",
        "--body-lr-scale", "0.1", "--epochs", "2", "--out", str(tmp_path / "tuned"),
    )
    manifest = read_manifest(second["bundle"])
    params = json.dumps(manifest["model"])
    assert f"bundle:{tmp_path / 'base'}" in params and "freeze_epochs" in params
    tuned = load_model(second["bundle"])
    assert type(tuned.estimator).__name__ == "TransferClassifier" and tuned.classes == ["1", "5", "8"]
    assert tuned.preset.to_dict() == base.preset.to_dict()


def test_fine_tuning_options_need_init_from(tmp_path: Path, small_fsdd: Path) -> None:
    result = runner.invoke(app, ["train", str(small_fsdd), "--out", str(tmp_path / "x"), "--head-only"])
    assert result.exit_code == 2 and "--init-from" in result.output


def test_synthetic_voices_join_training_only(tmp_path: Path, small_fsdd: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("espeakng_loader")
    monkeypatch.setenv("EARMARK_CACHE", str(tmp_path / "cache"))
    info = _train(str(small_fsdd), "--model", "logreg", "--features", "mfcc-mean",
                  "--synthetic-voices", "3", "--out", str(tmp_path / "m"))
    trained = load_model(info["bundle"])
    # 3 words × 3 voices went into training, never into validation (72 real clips split in two)
    assert trained.data["extra_train"]["n"] == 9
    assert trained.data["n_train"] + trained.data["n_val"] == 72 and trained.data["n_val"] > 0
    synth = list((tmp_path / "cache" / "synth").glob("*/manifest.csv"))
    assert len(synth) == 1 and len(pd.read_csv(synth[0])) == 9


def test_demo_runs_end_to_end_on_the_stand_in_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EARMARK_FSDD", raising=False)
    monkeypatch.setenv("EARMARK_CACHE", str(tmp_path / "cache"))
    result = runner.invoke(app, ["demo", "--no-download", "--out", str(tmp_path / "demo"),
                                 "--model", "logreg", "--features", "mfcc-mean", "--workers", "1"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())  # rich wraps lines at the terminal width
    assert "SYNTHESIZED STAND-IN" in text and "no leakage" in text and "unseen speaker [SYNTHETIC" in text
    assert (tmp_path / "demo" / "report.html").stat().st_size > 10_000
    model = load_model(tmp_path / "demo" / "model")
    assert model.classes == [str(c) for c in range(10)]
    # the bundle itself says it learnt from stand-in data, and predict says so
    assert model.data["stand_in"] is True and model.data["origin"].startswith("SYNTHETIC")
    clip = next((tmp_path / "demo" / "synthetic-data").rglob("*.wav"))
    pred = runner.invoke(app, ["predict", str(tmp_path / "demo" / "model"), str(clip)])
    assert pred.exit_code == 0 and "synthesized stand-in dataset" in " ".join(pred.stderr.split())


def test_feature_settings_on_the_command_line_reach_the_bundle_and_predict(tmp_path: Path, small_fsdd: Path) -> None:
    info = _train(str(small_fsdd), "--model", "logreg", "--features", "mfcc-mean:n_mfcc=13,n_mels=40",
                  "--out", str(tmp_path / "m"))
    trained = load_model(info["bundle"])
    assert trained.preset.name == "mfcc-mean" and trained.preset.output_shape == (13,)
    assert trained.preset.params["n_mels"] == 40
    clip = pd.read_csv(small_fsdd)["path"].iloc[0]
    result = runner.invoke(app, ["predict", info["bundle"], clip, "--format", "csv"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[1].split(",")[1] in trained.classes
    bad = runner.invoke(app, ["train", str(small_fsdd), "--model", "logreg", "--features", "mfcc-mean:n_mfc=13",
                              "--out", str(tmp_path / "bad")])
    assert bad.exit_code == 2 and "Did you mean 'n_mfcc'" in " ".join(bad.output.split())
    assert not (tmp_path / "bad").exists()


def test_warnings_of_other_libraries_are_shown_and_the_command_goes_on():
    """A warning from scikit-learn or torch inside a command is shown once, as Python shows it,
    and the command ends (showing it while still recording used to record it again, forever)."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent("""
        import resource, warnings
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
        from earmark.cli._common import earmark_warnings
        from earmark.errors import EarmarkWarning as ChanceLevelWarning
        with earmark_warnings():
            warnings.warn("y_pred contains classes not in y_true", UserWarning)
            warnings.warn("may not have learned", ChanceLevelWarning)
        print("done")
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "done"
    assert proc.stderr.count("y_pred contains classes not in y_true") == 1
    assert "warning: may not have learned" in proc.stderr
