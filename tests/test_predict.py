"""Batch prediction (`earmark predict` and predict_paths): folders, bad files, formats, windows."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import soundfile as sf

from _serving_model import BAD, FSDD, fsdd_model, require_training
from earmark.errors import ParameterError
from earmark.serving.batch import expand_paths, predict_paths

GOOD = ["7_jackson_40.wav", "7_jackson_41.wav", "3_theo_12.wav", "3_theo_13.wav", "7_george_40.wav"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Good FSDD clips in nested folders, plus every file of the bad-audio corpus."""
    root = tmp_path_factory.mktemp("clips")
    (root / "a" / "b").mkdir(parents=True)
    for i, name in enumerate(GOOD):
        shutil.copy(FSDD / "recordings" / name, root / ("a/b" if i % 2 else "a") / name)
    shutil.copytree(BAD, root / "bad", ignore=shutil.ignore_patterns("*.csv", "*.md"))
    return root


def test_expand_paths_recurses_and_keeps_missing_files(folder):
    files = expand_paths([folder / "a", folder / "missing.wav"])
    assert len(files) == len(GOOD) + 1 and files[-1].endswith("missing.wav")


def test_predict_paths_right_labels_and_listed_errors(folder):
    import pandas as pd

    manifest = pd.read_csv(BAD / "manifest.csv")
    rows = predict_paths(fsdd_model(), [folder], k=3, workers=2)
    by_name = {r["path"].rsplit("/", 1)[-1]: r for r in rows}
    for name in GOOD:
        assert by_name[name]["label"] == name[0] and by_name[name]["error"] is None
        assert len(by_name[name]["top"]) == 3
    for row in manifest.itertuples():
        r = by_name.get(row.file.rsplit("/", 1)[-1])
        if r is None:  # not an audio extension: not scanned
            continue
        if row.expected == "error":
            assert r["error"] and r["label"] is None, row.file
        else:
            assert r["error"] is None, (row.file, r["error"])
    # digital silence gets an answer (the model's guess), flagged as such; speech never is
    assert by_name["all_zeros.wav"]["silent"] is True and by_name["all_zeros.wav"]["label"] is not None
    assert not any(by_name[name].get("silent") for name in GOOD)


def test_reject_below_labels_unknown():
    rows = predict_paths(fsdd_model(), [FSDD / "recordings" / GOOD[0]], reject_below=0.999999)
    assert rows[0]["label"] == "unknown" and rows[0]["confidence"] < 0.999999


def test_windows_give_a_timeline_and_a_clip_summary(tmp_path):
    a, sr = sf.read(FSDD / "recordings" / "3_theo_12.wav", dtype="float32")
    b, _ = sf.read(FSDD / "recordings" / "7_jackson_40.wav", dtype="float32")
    gap = np.zeros(int(0.3 * sr), np.float32)
    long = tmp_path / "long.wav"
    sf.write(long, np.concatenate([a, gap, b]), sr)
    rows = predict_paths(fsdd_model(), [long], window=0.5, hop=0.25)
    wins = rows[0]["windows"]
    assert len(wins) >= 4 and wins[0]["start"] == 0.0
    assert wins[-1]["end"] == pytest.approx(rows[0]["duration"], abs=1e-3)
    assert all(w["end"] - w["start"] == pytest.approx(0.5, abs=1e-3) for w in wins)
    ranked = predict_paths(fsdd_model(), [long], window=0.5, hop=0.25, k=3)[0]["windows"]
    assert all(len(w["top"]) == 3 and w["top"][0]["label"] == w["top_label"] for w in ranked)
    assert all(w["top"][0]["probability"] >= w["top"][1]["probability"] >= w["top"][2]["probability"] for w in ranked)
    # a window that is exactly the first clip (and one that ends exactly with the last) gets its label
    w = len(a) / sr
    first = predict_paths(fsdd_model(), [long], window=w, hop=w)[0]["windows"][0]
    assert first["label"] == "3" and first["end"] == pytest.approx(w, abs=1e-3)
    sf.write(long, np.concatenate([gap, b]), sr)
    w = len(b) / sr
    last = predict_paths(fsdd_model(), [long], window=w, hop=w)[0]["windows"][-1]
    assert last["label"] == "7"


def test_silent_windows_are_flagged_and_left_out_of_the_summary(tmp_path):
    """A recording with long gaps was summarised by the model's guesses about its gaps."""
    b, sr = sf.read(FSDD / "recordings" / "7_jackson_40.wav", dtype="float32")
    gap = np.zeros(3 * sr, np.float32)
    gappy = tmp_path / "gappy.wav"
    sf.write(gappy, np.concatenate([gap, b, gap, b, gap]), sr)
    row = predict_paths(fsdd_model(), [gappy], window=0.5)[0]
    wins = row["windows"]
    silent = [w for w in wins if w.get("silent")]
    assert len(silent) >= 12 and row["silent_windows"] == len(silent) and not row.get("silent")
    full = predict_paths(fsdd_model(), [gappy], window=0.5, k=len(fsdd_model().classes))[0]
    heard = [w for w in full["windows"] if not w.get("silent")]
    means = np.mean([[dict((t["label"], t["probability"]) for t in w["top"])[c] for c in fsdd_model().classes]
                     for w in heard], axis=0)
    assert full["probabilities"] == pytest.approx(dict(zip(fsdd_model().classes, means)), abs=1e-6)
    # the command line: a silent column, and a note of how many windows were left out
    from typer.testing import CliRunner

    from earmark.bundle import save_model
    from earmark.cli.main import app

    bundle = save_model(fsdd_model(), tmp_path / "m.earmark")
    res = CliRunner().invoke(app, ["predict", str(bundle), str(gappy), "--window", "0.5"])
    assert res.exit_code == 0, res.output
    lines = res.stdout.strip().splitlines()
    assert lines[0].endswith("start,end,silent,error") and sum(line.endswith(",true,") for line in lines) == len(silent)
    assert f"{len(silent)} windows of digital silence" in " ".join(res.stderr.split())
    res = CliRunner().invoke(app, ["predict", str(bundle), str(gappy), "--window", "0.5", "--hop", "0.75"])
    assert res.exit_code == 0 and "0.25 s between windows is never heard" in " ".join(res.stderr.split())
    # windows that hop over the only sound: the file still holds sound (not "only digital silence")
    mid = tmp_path / "mid.wav"
    sf.write(mid, np.concatenate([np.zeros(int(0.6 * sr), np.float32), b[: int(0.3 * sr)], np.zeros(sr, np.float32)]), sr)
    row = predict_paths(fsdd_model(), [mid], window=0.5, hop=1.0)[0]
    assert all(w.get("silent") for w in row["windows"]) and not row.get("silent")
    res = CliRunner().invoke(app, ["predict", str(bundle), str(mid), "--window", "0.5", "--hop", "1"])
    said = " ".join(res.stderr.split())
    assert "every window of 1 file is digital silence though the file holds sound" in said and "left out" not in said


def test_cli_predict_csv_json_and_exit_code(folder, tmp_path):
    require_training()
    from typer.testing import CliRunner

    from earmark.bundle import save_model
    from earmark.cli.main import app

    bundle = save_model(fsdd_model(), tmp_path / "m.earmark")
    runner = CliRunner()
    res = runner.invoke(app, ["predict", str(bundle), str(folder / "a"), "--format", "csv"])
    assert res.exit_code == 0, res.output
    lines = res.stdout.strip().splitlines()
    assert lines[0].startswith("path,label,confidence") and len(lines) == len(GOOD) + 1
    res = runner.invoke(app, ["predict", str(bundle), str(folder), "--format", "json", "--top-k", "2"])
    assert res.exit_code == 1  # some files failed
    rows = json.loads(res.stdout)
    assert any(r["error"] for r in rows) and all(len(r["top"]) == 2 for r in rows if not r["error"])
    assert "hold only digital silence" in " ".join(res.stderr.split()) and "all_zeros.wav" in res.stderr
    # more classes asked for than the model has: all of them, and no empty columns
    n_classes = len(fsdd_model().classes)
    res = runner.invoke(app, ["predict", str(bundle), str(folder / "a"), "--top-k", str(n_classes + 5),
                              "-o", str(tmp_path / "new" / "p.csv")])
    assert res.exit_code == 0, res.output
    head = (tmp_path / "new" / "p.csv").read_text().splitlines()[0].split(",")
    assert head[-3:] == [f"label_{n_classes}", f"probability_{n_classes}", "error"]
    # a model bundle that is not one is named before any audio is searched
    res = runner.invoke(app, ["predict", str(folder), str(bundle)])
    assert res.exit_code == 3 and str(folder) in res.stderr
    # a float file louder than full scale: earmark's warning as one 'warning:' line, not Python's format
    y, sr = sf.read(FSDD / "recordings" / "7_jackson_40.wav", dtype="float32")
    sf.write(tmp_path / "loud.wav", 1.5 * y / np.abs(y).max(), sr, subtype="FLOAT")
    res = runner.invoke(app, ["predict", str(bundle), str(tmp_path / "loud.wav")])
    assert res.exit_code == 0 and "warning:" in res.stderr and "loud.wav" in res.stderr
    assert "AudioRangeWarning" not in res.stderr


def test_a_folder_without_audio_among_the_inputs_is_an_error_row_and_out_is_checked_first(folder, tmp_path):
    require_training()
    from typer.testing import CliRunner

    from earmark.bundle import save_model
    from earmark.cli.main import app

    empty, notes = tmp_path / "empty", tmp_path / "notes"
    empty.mkdir()
    notes.mkdir()
    (notes / "readme.txt").write_text("no audio here")
    clip = str(folder / "a" / GOOD[0])
    rows = predict_paths(fsdd_model(), [empty, clip, notes], workers=1)
    assert [r["path"] for r in rows] == [str(empty), clip, str(notes)]  # in input order, none dropped
    assert rows[1]["error"] is None and rows[1]["label"] == GOOD[0][0]
    assert all("a folder with no audio files in it" in rows[i]["error"] for i in (0, 2))
    windowed = predict_paths(fsdd_model(), [empty, clip], window=0.5, workers=1)
    assert windowed[0]["windows"] == [] and windowed[1]["windows"]  # every row has its windows
    bundle = save_model(fsdd_model(), tmp_path / "m.earmark")
    runner = CliRunner()
    res = runner.invoke(app, ["predict", str(bundle), str(empty), clip, "--format", "csv"])
    assert res.exit_code == 1 and "a folder with no audio files" in " ".join(res.stderr.split())
    res = runner.invoke(app, ["predict", str(bundle), str(empty)])  # nothing at all to predict: a usage error
    assert res.exit_code == 2 and "No audio files under" in res.stderr
    # an --out that is a folder is refused before any prediction
    res = runner.invoke(app, ["predict", str(bundle), clip, "-o", str(empty)])
    assert res.exit_code == 2 and "is a folder; give the path of the file" in " ".join(res.stderr.split())
    assert not any(empty.iterdir())


def test_predictions_through_the_feature_store_equal_direct_ones(folder, tmp_path):
    """--cache: the same labels, probabilities and durations as without it, failures alike listed;
    a second run reads every clip from the store."""
    files = expand_paths([folder])
    direct = predict_paths(fsdd_model(), files, k=2)
    cached = predict_paths(fsdd_model(), files, k=2, cache=tmp_path / "store")
    again = predict_paths(fsdd_model(), files, k=2, cache=tmp_path / "store")
    for a, b, c in zip(direct, cached, again, strict=True):
        assert a["path"] == b["path"] == c["path"] and bool(a["error"]) == bool(b["error"]) == bool(c["error"])
        if a["error"]:
            continue
        assert a["label"] == b["label"] == c["label"]
        assert b["duration"] == pytest.approx(a["duration"], abs=1e-3) and b["duration"] > 0
        assert b["confidence"] == pytest.approx(a["confidence"], abs=1e-4)
        assert a.get("silent", False) == b.get("silent", False) == c.get("silent", False)  # from the stored features
    assert sum(bool(r.get("silent")) for r in again) >= 1
    with pytest.raises(ParameterError, match="Drop cache"):  # windows would never use the store
        predict_paths(fsdd_model(), files[:1], window=0.5, cache=tmp_path / "store")


def test_predict_paths_checks_workers():
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ParameterError, match="'workers' parameter of predict_paths"):
            predict_paths(fsdd_model(), [FSDD / "recordings" / GOOD[0]], workers=bad)
