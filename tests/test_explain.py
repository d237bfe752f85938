"""Explanations by occlusion: on real FSDD clips, the regions they name are the ones the model
needs (silencing them in order of importance destroys the answer faster than in random order),
they sit where the word is, and the command line writes figures and lists bad files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from _serving_model import FSDD, fsdd_model, split
from earmark.audio import load_audio
from earmark.errors import ParameterError
from earmark.evaluation import deletion_curve, explain, plot_explanation


@pytest.fixture(scope="module")
def held_out_clips() -> list[tuple[str, str]]:
    """Held-out speakers' clips the model gets right (the explanations explain right answers)."""
    model = fsdd_model()
    _, test = split()
    rows = test.sample(40, random_state=1)
    pred = model.predict(rows)["label"].astype(str).to_numpy()
    ok = pred == rows["label"].astype(str).to_numpy()
    return list(zip(rows["path"][ok], rows["label"][ok]))[:8]


def test_regions_named_most_important_are_the_ones_the_answer_needs(held_out_clips) -> None:
    model = fsdd_model()
    by_importance, at_random = [], []
    for path, label in held_out_clips:
        exp = explain(model, path)
        assert exp.explained == exp.predicted == str(label)
        assert exp.importance.shape == (8, len(exp.times) - 1)
        curve = deletion_curve(model, exp, steps=2)
        assert curve[0] == pytest.approx(exp.score, abs=1e-6)
        by_importance.append(curve[-1])
        at_random.append(np.mean([deletion_curve(model, exp, steps=2, order="random", seed=s)[-1] for s in range(3)]))
    assert len(held_out_clips) >= 5
    # measured: 0.72 intact, 0.00 after the two most important regions, 0.55 after two random ones
    assert np.mean(by_importance) < np.mean(at_random) - 0.2


def test_importance_sits_where_the_word_is(held_out_clips) -> None:
    model = fsdd_model()
    path, label = held_out_clips[0]
    y, sr = load_audio(path)
    pad = np.zeros(int(0.5 * sr), np.float32)
    exp = explain(model, np.concatenate([pad, y, pad]), sr=sr)  # 0.5 s of silence on each side
    assert exp.predicted == str(label) and exp.source == "array"
    # (samples, channels), as soundfile.read gives it, is the same clip
    both = np.concatenate([pad, y, pad])
    stereo = explain(model, np.stack([both, both], axis=1), sr=sr)
    np.testing.assert_allclose(stereo.importance, exp.importance, atol=1e-5)
    with pytest.raises(ParameterError, match="load the bundle first"):
        explain("models/digits", both, sr=sr)
    word = (exp.times[:-1] >= 0.5 - 0.1) & (exp.times[1:] <= 0.5 + len(y) / sr + 0.1)
    silent = (exp.times[1:] <= 0.45) | (exp.times[:-1] >= 0.55 + len(y) / sr)
    assert silent.sum() >= 6 and np.abs(exp.importance[:, silent]).max() < 1e-3
    assert exp.importance[:, word].max() > 0.05
    top = exp.top_regions(1)[0]
    assert top["start_s"] >= 0.4 and top["end_s"] <= 0.6 + len(y) / sr
    # a class that is not the answer can be explained too, and the figure draws
    other = next(c for c in model.classes if c != str(label))
    assert explain(model, path, target=other).explained == other
    assert len(plot_explanation(exp).axes) == 2


def test_clips_shorter_than_a_window_or_a_frame_are_explained_as_predict_hears_them(held_out_clips) -> None:
    model = fsdd_model()
    path, _ = held_out_clips[2]
    y, sr = load_audio(path)
    wide = explain(model, path, window=2.0)  # one window longer than the clip: scored unpadded
    assert wide.importance.shape == (8, 1) and wide.times[-1] == pytest.approx(len(y) / sr)
    assert wide.predicted == model.predict([path])["label"][0]
    assert wide.score == pytest.approx(float(model.predict([path])["confidence"][0]), abs=1e-6)
    tiny = explain(model, y[: int(0.01 * sr)], sr=sr, window=0.02)  # 10 ms: shorter than one STFT frame
    assert tiny.importance.shape == (8, 1) and len(tiny.samples) == int(0.01 * sr)
    assert len(plot_explanation(tiny).axes) == 2


def test_explain_refuses_what_it_cannot_do() -> None:
    model = fsdd_model()
    with pytest.raises(ParameterError, match="Unknown class 'eleven'"):
        explain(model, FSDD / "recordings" / "3_theo_5.wav", target="eleven")
    with pytest.raises(ParameterError, match="longer than 30 s"):
        explain(model, np.zeros(31 * 8000, np.float32), sr=8000)
    with pytest.raises(ParameterError, match="'bands'"):
        explain(model, FSDD / "recordings" / "3_theo_5.wav", bands=0)
    with pytest.raises(ParameterError, match="must be at least 0.008 s at 8000 Hz"):  # below one STFT hop
        explain(model, FSDD / "recordings" / "3_theo_5.wav", window=0.005)
    with pytest.raises(ParameterError, match="more than the 100 allowed"):
        explain(model, FSDD / "recordings" / "3_theo_5.wav", window=0.01, bands=16, max_regions=100)


def test_explain_a_regressor_on_instrument_pitch(shared: Path) -> None:
    from earmark.features import get_preset
    from earmark.sources import load_dataset
    from earmark.training import train

    df = load_dataset(shared / "instruments" / "manifest.csv")
    df = df[df["kind"] == "note"].iloc[::6]
    model = train(df, model="ridge", target="pitch", features=get_preset("mfcc-mean", n_mels=64), seed=0)
    exp = explain(model, df["path"].iloc[0], bands=6)
    assert exp.explained == "value" and isinstance(exp.predicted, float)
    assert exp.importance.shape == (6, 15) and (exp.importance >= 0).all() and exp.importance.max() > 0
    record = json.loads(json.dumps(exp.to_dict()))
    assert record["predicted"] == pytest.approx(float(model.predict([df["path"].iloc[0]])["prediction"][0]), rel=1e-5)


def test_explain_command_writes_figures_and_lists_bad_files(tmp_path: Path, shared: Path, held_out_clips) -> None:
    from earmark.bundle import save_model
    from earmark.cli.main import app

    bundle = save_model(fsdd_model(), tmp_path / "model")
    path, label = held_out_clips[1]
    bad = shared / "bad-audio" / "empty.wav"
    runner = CliRunner()
    result = runner.invoke(app, ["explain", str(bundle), path, str(bad), "--out", str(tmp_path / "why"),
                                 "--json", "--top", "2", "--window", "0.05"])
    assert result.exit_code == 1, result.output  # one file could not be decoded
    data = json.loads(result.stdout)
    (exp,) = data["explanations"]
    assert exp["predicted"] == str(label) and len(exp["top_regions"]) == 2
    assert exp["top_regions"][0]["end_s"] - exp["top_regions"][0]["start_s"] <= 0.05 + 1e-9
    assert Path(exp["figure"]).read_bytes()[:4] == b"\x89PNG"
    assert [Path(f["path"]).name for f in data["failed"]] == ["empty.wav"]
    table = runner.invoke(app, ["explain", str(bundle), path, "--target", str(label)], env={"COLUMNS": "72"})
    assert table.exit_code == 0 and "score" in table.output
    first_cells = [line.split("│")[1].strip() for line in table.output.splitlines() if line.startswith("│")]
    assert Path(path).name in "".join(first_cells)  # a long name is folded over lines, never cut short
    wrong = runner.invoke(app, ["explain", str(bundle), path, "--target", "eleven"])
    assert wrong.exit_code == 2 and "not a class" in wrong.output
    narrow = runner.invoke(app, ["explain", str(bundle), path, "--window", "0.005"])
    assert narrow.exit_code == 2 and "at least 0.008 s" in narrow.output
    # digital silence: the map is all zeros, and the command says its regions mean nothing
    zeros = shared / "bad-audio" / "all_zeros.wav"
    quiet = runner.invoke(app, ["explain", str(bundle), str(zeros), path])
    said = " ".join(quiet.stderr.split())
    assert quiet.exit_code == 0 and "silencing no region changes the answer for 1 file" in said and "all_zeros.wav" in said
