"""The data commands, called in-process as a user would."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from typer.testing import CliRunner

from earmark.cli.main import app

runner = CliRunner()


def test_help_lists_commands() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "info" in result.output and "datasets" in result.output


def test_info_json_on_fsdd(shared: Path) -> None:
    result = runner.invoke(app, ["info", str(shared / "fsdd" / "manifest.csv"), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["n_files"] == 2500 and data["n_ok"] == 2500
    assert data["classes"] == {str(d): 250 for d in range(10)}
    assert len(data["groups"]) == 5 and data["errors"] == [] and data["duplicates"] == []


def test_info_lists_bad_files_and_still_succeeds(shared: Path) -> None:
    result = runner.invoke(app, ["info", str(shared / "bad-audio"), "--pattern", "{label}", "--json"])
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["n_files"] == 17 and data["n_ok"] == 12
    assert {Path(e["path"]).name for e in data["errors"]} == {
        "empty.wav", "text_as_wav.wav", "png_as_wav.wav", "float32_nan_inf.wav", "truncated_in_first_frame.flac"
    }
    table = runner.invoke(app, ["info", str(shared / "bad-audio"), "--pattern", "{label}"])
    assert table.exit_code == 0 and "unreadable files" in table.output


def test_info_reports_a_missing_column(shared: Path) -> None:
    result = runner.invoke(app, ["info", str(shared / "fsdd" / "manifest.csv"), "--label-column", "digit"])
    assert result.exit_code == 3 and "digit" in result.output


def test_datasets_list_and_download(tmp_path: Path, shared: Path) -> None:
    listing = runner.invoke(app, ["datasets", "list"])
    assert listing.exit_code == 0 and "fsdd" in listing.output and "esc50" in listing.output
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("x/recordings/0_a_0.wav", (shared / "fsdd" / "recordings" / "0_george_0.wav").read_bytes())
    bad = runner.invoke(app, ["datasets", "download", "fsdd", "--to", str(tmp_path / "d"), "--url", archive.as_uri()])
    assert bad.exit_code == 3 and "expected 2500" in bad.output
    missing = runner.invoke(app, ["datasets", "download", "fsdd", "-o", str(tmp_path / "e"),
                                  "--url", (tmp_path / "nope.zip").as_uri()])
    assert missing.exit_code == 3 and "--url" in missing.output  # says how to use a local copy
    manual = runner.invoke(app, ["datasets", "download", "esc50", "--out", str(tmp_path / "f")])
    assert manual.exit_code == 3 and "not downloaded automatically" in manual.output
    assert "downloading" not in manual.output
    unknown = runner.invoke(app, ["datasets", "download", "nosuch"])
    assert unknown.exit_code == 2 and "fsdd" in unknown.output


def _fsdd_copies(shared: Path, folder: Path, names: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes((shared / "fsdd" / "recordings" / name).read_bytes())


def test_info_on_a_flat_folder_summarises_without_labels(tmp_path: Path, shared: Path) -> None:
    long = tmp_path / "long"
    _fsdd_copies(shared, long, ["0_george_0.wav", "1_jackson_3.wav", "2_theo_5.wav"])
    result = runner.invoke(app, ["info", str(long)])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "3 of 3 files readable" in text and "no labels" in text and "8000 Hz × 3" in text
    assert "error" not in text and "balance" not in text  # no class table
    data = json.loads(runner.invoke(app, ["info", str(long), "--json"]).stdout)
    assert data["n_ok"] == data["n_unlabelled"] == 3 and data["classes"] == {}
    assert len(data["duplicates"]) == 0 and data["duration"]["max"] < 1.0


def test_info_counts_are_pluralised(tmp_path: Path, shared: Path) -> None:
    folder = tmp_path / "one"
    _fsdd_copies(shared, folder, ["0_george_0.wav"])
    (folder / "0_george_1.wav").write_bytes((folder / "0_george_0.wav").read_bytes())  # a duplicate
    (folder / "0_george_2.wav").write_bytes(b"")  # unreadable
    result = runner.invoke(app, ["info", str(folder), "--pattern", "{label}_{group}_{index}"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "2 of 3 files readable" in text
    for singular in ("1 class ", "1 group", "1 unreadable file ", "1 set of files with identical audio"):
        assert singular in text, (singular, text)
    for wrong in ("1 classes", "1 groups", "1 unreadable files", "1 sets"):
        assert wrong not in text, (wrong, text)


def test_fold_lines_name_each_fold_once(shared: Path) -> None:
    from types import SimpleNamespace

    from earmark.cli._common import err_console
    from earmark.cli.evaluate import _fold_printer
    from earmark.sources import iter_folds, load_dataset

    table = load_dataset(shared / "fsdd" / "manifest.csv", check="none").groupby(["label", "group"]).head(2)
    names = [n for n, _, _ in iter_folds(table, folds=2)] + [n for n, _, _ in iter_folds(table, folds="group")][:1]
    assert names == ["fold 1", "fold 2", "george"]
    result = SimpleNamespace(metrics={"accuracy": 0.5})
    with err_console.capture() as cap:
        for name in names:
            _fold_printer("logreg ")(SimpleNamespace(name=name, result=result, n_test=10, n_train=90, n_extra_train=0, train_seconds=0.1,
                                                     feature_seconds=0.0))
        _fold_printer()(SimpleNamespace(name="fold 2", result=result, n_test=10, n_train=90, n_extra_train=0, train_seconds=0.1,
                                        feature_seconds=0.0))
    lines = [line.split(":")[0] for line in cap.get().splitlines()]
    assert lines == ["logreg fold 1", "logreg fold 2", "logreg fold george", "fold 2"]  # `compare`, then `cv`


def test_train_on_a_flat_folder_still_asks_for_labels(tmp_path: Path, shared: Path) -> None:
    long = tmp_path / "long"
    _fsdd_copies(shared, long, ["0_george_0.wav", "1_jackson_3.wav"])
    result = runner.invoke(app, ["train", str(long), "--model", "logreg", "--out", str(tmp_path / "m")])
    text = " ".join(result.output.split())
    assert result.exit_code == 3 and "2 audio files but no class sub-folders" in text and "manifest" in text
    assert "give a --pattern" not in text  # train has no --pattern option


def test_split_by_speaker_writes_manifests_that_train_and_evaluate_read(tmp_path: Path, shared: Path) -> None:
    import pandas as pd

    from earmark.sources import load_dataset

    result = runner.invoke(app, ["split", str(shared / "fsdd" / "manifest.csv"), "--out", str(tmp_path),
                                 "--test-size", "0.2", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    train, test = pd.read_csv(tmp_path / "train.csv"), pd.read_csv(tmp_path / "test.csv")
    assert summary["by"] == "group" and len(train) + len(test) == 2500
    assert not set(train["speaker"]) & set(test["speaker"]) and summary["shared_groups"] == []
    assert summary["duplicates_across"] == [] and len(set(test["speaker"])) == 1  # 1 of 5 speakers ≈ 0.2
    assert set(train.columns) >= {"path", "label", "speaker"} and "duration" not in train.columns
    again = load_dataset(tmp_path / "test.csv")  # absolute paths: readable from anywhere
    assert sorted(again["label"].unique()) == [str(d) for d in range(10)]
    # same seed, same split; another seed holds out another speaker
    runner.invoke(app, ["split", str(shared / "fsdd" / "manifest.csv"), "--out", str(tmp_path / "b")])
    assert pd.read_csv(tmp_path / "b" / "test.csv").equals(test)
    runner.invoke(app, ["split", str(shared / "fsdd" / "manifest.csv"), "--out", str(tmp_path / "c"), "--seed", "3"])
    assert set(pd.read_csv(tmp_path / "c" / "test.csv")["speaker"]) != set(test["speaker"])


def test_split_holds_out_a_predefined_fold_and_writes_k_folds(tmp_path: Path, shared: Path) -> None:
    import pandas as pd

    from earmark.sources import iter_folds, load_dataset

    manifest = str(shared / "instruments" / "manifest.csv")
    result = runner.invoke(app, ["split", manifest, "--out", str(tmp_path / "a"), "--no-duplicates", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["by"] == "fold"  # auto: the manifest's folds, not a random (leaky) split
    test = pd.read_csv(tmp_path / "a" / "test.csv")
    assert set(test["fold"]) == {5} and len(test) == 200
    result = runner.invoke(app, ["split", manifest, "--out", str(tmp_path / "b"), "--test-fold", "2", "--no-duplicates"])
    assert result.exit_code == 0 and set(pd.read_csv(tmp_path / "b" / "test.csv")["fold"]) == {2}
    bad = runner.invoke(app, ["split", manifest, "--out", str(tmp_path / "c"), "--test-fold", "9"])
    assert bad.exit_code == 2 and "not a fold" in bad.output

    result = runner.invoke(app, ["split", str(shared / "fsdd" / "manifest.csv"), "--out", str(tmp_path / "k"),
                                 "--folds", "5", "--no-duplicates"])
    assert result.exit_code == 0, result.output
    folds = pd.read_csv(tmp_path / "k" / "manifest.csv")
    assert sorted(folds["fold"].unique()) == [1, 2, 3, 4, 5]
    assert (folds.groupby("speaker")["fold"].nunique() == 1).all()  # a speaker sits in one fold
    names = [name for name, _, _ in iter_folds(load_dataset(tmp_path / "k" / "manifest.csv"), folds="fold")]
    assert len(names) == 5


def test_split_reports_identical_audio_across_sides_and_unreadable_files(tmp_path: Path, shared: Path) -> None:
    import shutil

    import pandas as pd

    src = tmp_path / "data"
    for speaker in ("george", "jackson", "theo", "nicolas"):
        for digit in (1, 2):
            (src / str(digit)).mkdir(parents=True, exist_ok=True)
            for take in range(3):
                shutil.copy(shared / "fsdd" / "recordings" / f"{digit}_{speaker}_{take}.wav",
                            src / str(digit) / f"{speaker}_{take}.wav")
    # one recording under another speaker's name, and one file that is not audio
    shutil.copy(shared / "fsdd" / "recordings" / "1_george_0.wav", src / "1" / "theo_9.wav")
    (src / "2" / "broken.wav").write_bytes(b"not audio")
    rows = [{"path": str(p), "label": p.parent.name, "speaker": p.stem.split("_")[0]} for p in sorted(src.rglob("*.wav"))]
    pd.DataFrame(rows).to_csv(tmp_path / "m.csv", index=False)
    for seed in range(10):  # a seed that puts george and theo on different sides, so the copy straddles them
        out = tmp_path / f"out{seed}"
        result = runner.invoke(app, ["split", str(tmp_path / "m.csv"), "--out", str(out), "--test-size", "0.5",
                                     "--seed", str(seed), "--json"])
        summary = json.loads(result.stdout)
        train, test = pd.read_csv(out / "train.csv"), pd.read_csv(out / "test.csv")
        assert [Path(s["path"] if isinstance(s, dict) else s).name for s in summary["skipped"]] == ["broken.wav"]
        assert len(train) + len(test) == 25 and not set(train["speaker"]) & set(test["speaker"])
        assert result.exit_code == 1  # a file was left out
        if ("george" in set(train["speaker"])) != ("theo" in set(train["speaker"])):
            break
        assert summary["duplicates_across"] == []
    else:
        raise AssertionError("no seed of 10 split george from theo")
    (dup,) = summary["duplicates_across"]
    assert {Path(dup["train"][0]).name, Path(dup["test"][0]).name} == {"george_0.wav", "theo_9.wav"}
    # K folds are checked as well: george and theo land in different folds of 4 speakers
    result = runner.invoke(app, ["split", str(tmp_path / "m.csv"), "--out", str(tmp_path / "k"), "--folds", "4", "--json"])
    assert result.exit_code == 1
    (dup,) = json.loads(result.stdout)["duplicates_across"]
    named = {Path(ps[0]).name for ps in dup["folds"].values()}
    assert named == {"george_0.wav", "theo_9.wav"} and len(dup["folds"]) == 2
    result = runner.invoke(app, ["split", str(tmp_path / "m.csv"), "--out", str(tmp_path / "k2"), "--folds", "4",
                                 "--no-duplicates", "--json"])
    assert json.loads(result.stdout)["duplicates_across"] is None
    too_many = runner.invoke(app, ["split", str(tmp_path / "m.csv"), "--out", str(tmp_path / "k3"), "--folds", "7"])
    text = " ".join(too_many.output.split())
    assert too_many.exit_code == 2 and "has 4" in text and "--folds 4 or fewer" in text and "folds='group'" not in text


def test_split_refuses_what_it_cannot_do_with_the_reason(tmp_path: Path, shared: Path) -> None:
    import shutil

    classes = tmp_path / "classes"
    for label in ("1", "2"):
        (classes / label).mkdir(parents=True)
        for take in range(3):
            shutil.copy(shared / "fsdd" / "recordings" / f"{label}_theo_{take}.wav", classes / label)
    no_groups = runner.invoke(app, ["split", str(classes), "--folds", "2", "--by", "group", "--out", str(tmp_path / "a")])
    assert no_groups.exit_code == 2 and "needs a group column" in no_groups.output
    (tmp_path / "rel.csv").write_text("path,label\nrecordings/x.wav,1\nrecordings/y.wav,2\n")
    missing = runner.invoke(app, ["split", str(tmp_path / "rel.csv"), "--out", str(tmp_path / "b")])
    text = " ".join(missing.output.split())
    assert missing.exit_code == 3 and "0 readable file(s) of 2 listed" in text and "x.wav" in text
    both = runner.invoke(app, ["split", str(classes), "--folds", "2", "--test-fold", "1", "--out", str(tmp_path / "c")])
    assert both.exit_code == 2 and "one or the other" in both.output
    assert runner.invoke(app, ["split", str(classes), "--by", "bogus", "--out", str(tmp_path / "d")]).exit_code == 2
    assert not any((tmp_path / d).exists() for d in "abcd")  # nothing written when refused


def test_version_alone_and_the_catalog_as_json() -> None:
    from earmark import __version__

    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and res.stdout.strip() == __version__  # no command needed
    res = runner.invoke(app, ["datasets", "list", "--json"])
    assert res.exit_code == 0
    entries = json.loads(res.stdout)
    fsdd = next(e for e in entries if e["name"] == "fsdd")
    assert fsdd["url"].startswith("https://") and fsdd["downloadable"] is True


def test_init_from_refuses_what_it_cannot_fine_tune(shared: Path, tmp_path: Path) -> None:
    """--init-from fine-tunes a neural classifier: a numeric target or a classical --model was
    trained silently as something else (a 59-class 'pitch' classifier, finetune instead of svm)."""
    inst = shared / "instruments" / "manifest.csv"
    res = runner.invoke(app, ["train", str(inst), "--target", "pitch", "--init-from", "bundle:/nonexistent",
                              "--out", str(tmp_path / "a")])
    assert res.exit_code == 2 and "--target pitch is numeric" in " ".join(res.output.split())
    res = runner.invoke(app, ["train", str(inst), "--model", "svm", "--init-from", "bundle:/nonexistent",
                              "--out", str(tmp_path / "b")])
    assert res.exit_code == 2 and "--model svm is not a neural network" in " ".join(res.output.split())


def test_a_row_without_a_group_never_turns_the_split_random(tmp_path: Path, shared: Path) -> None:
    """One blank speaker cell used to make the whole split random (every speaker on both sides);
    now the known speakers still stay apart and the blank row is a group of its own, said once."""
    import warnings

    import pandas as pd
    import pytest

    from earmark.errors import MissingGroupWarning
    from earmark.sources import iter_folds, load_dataset, train_test_split

    rows = pd.read_csv(shared / "fsdd" / "manifest.csv").groupby(["speaker", "label"]).head(2)
    rows["path"] = [str(shared / "fsdd" / p) for p in rows["path"]]
    rows.loc[rows.index[0], "speaker"] = None
    manifest = tmp_path / "m.csv"
    rows.to_csv(manifest, index=False)
    res = CliRunner().invoke(app, ["split", str(manifest), "--out", str(tmp_path / "s"), "--no-duplicates", "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["by"] == "group" and summary["shared_groups"] == []
    said = " ".join(res.stderr.split())
    assert "warning: 1 of 100 rows have no group" in said and said.count("have no group") == 1
    train = pd.read_csv(tmp_path / "s" / "train.csv")
    test = pd.read_csv(tmp_path / "s" / "test.csv")
    assert not set(train["speaker"].dropna()) & set(test["speaker"].dropna()) and len(train) + len(test) == 100
    df = load_dataset(manifest)
    with pytest.warns(MissingGroupWarning, match="1 of 100 rows"):
        names = [name for name, _, _ in iter_folds(df, folds="group")]
    assert len(names) == 6 and sum(n.startswith("<no group") for n in names) == 1  # 5 speakers + the blank row
    with pytest.warns(MissingGroupWarning):  # auto: K group-aware folds, not one-clip folds of blank rows
        assert len(list(iter_folds(df))) == 5
    cv = CliRunner().invoke(app, ["cv", str(manifest), "--model", "logreg", "--features", "mfcc-mean", "--folds", "4",
                                  "--json", "-"])
    assert cv.exit_code in (0, 1), cv.output  # every fold scored (a blank row was a group 'nan' on both sides)
    assert json.loads(cv.stdout)["n_folds"] == 4 and json.loads(cv.stdout)["grouping"] == "group"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MissingGroupWarning)
        a, b = train_test_split(df, test_size=0.2, seed=0)
    assert not set(a["group"].dropna()) & set(b["group"].dropna())


def test_split_details_from_a_review(tmp_path: Path, shared: Path) -> None:
    """Case variants of the columns split writes, test shares above one half, bracketed names,
    files broken after their header, a plain path as --url, and info without the duplicate check."""
    import pandas as pd

    rows = pd.read_csv(shared / "fsdd" / "manifest.csv").groupby(["speaker", "label"]).head(2)
    rows["path"] = [str(shared / "fsdd" / p) for p in rows["path"]]
    caps = tmp_path / "caps.csv"
    rows.rename(columns={"path": "Path", "label": "Label"}).assign(Fold=10).to_csv(caps, index=False)
    res = runner.invoke(app, ["split", str(caps), "--out", str(tmp_path / "s"), "--no-duplicates", "--folds", "5"])
    assert res.exit_code == 0, res.output
    written = pd.read_csv(tmp_path / "s" / "manifest.csv")
    assert "Fold" not in written.columns and "Path" not in written.columns
    back = json.loads(runner.invoke(app, ["info", str(tmp_path / "s" / "manifest.csv"), "--json",
                                          "--no-duplicates"]).stdout)
    assert back["n_ok"] == 100 and sorted(back["folds"]) == ["1", "2", "3", "4", "5"]
    assert back["duplicates"] is None  # not looked for, which [] would not say
    # a test share above one half is what it says (it was capped at one half)
    big = json.loads(runner.invoke(app, ["split", str(shared / "tts-digits" / "espeak"), "--out", str(tmp_path / "t"),
                                         "--test-size", "0.9", "--no-duplicates", "--json"]).stdout)
    assert big["sides"]["test"]["files"] == 450 and big["shared_groups"] == []
    from earmark.sources import load_dataset, train_test_split

    five = load_dataset(shared / "fsdd" / "manifest.csv")  # 5 speakers: shares of 0.2, 0.4, 0.6, 0.8
    for share in (0.2, 0.4, 0.6, 0.8):
        assert len(train_test_split(five, test_size=share)[1]) == round(share * 2500)
    # a column of the source that only looks like a standard one (a 'Group' of sessions) stays
    sessions = tmp_path / "sessions.csv"
    rows.assign(Group="s1").to_csv(sessions, index=False)
    assert runner.invoke(app, ["split", str(sessions), "--out", str(tmp_path / "g"), "--group-column", "speaker",
                              "--no-duplicates"]).exit_code == 0
    assert "Group" in pd.read_csv(tmp_path / "g" / "train.csv").columns
    # files that cannot be decoded are left out of both sides, as info lists them
    bad = json.loads(runner.invoke(app, ["split", str(shared / "bad-audio"), "--out", str(tmp_path / "b"),
                                         "--json"]).stdout)
    info = json.loads(runner.invoke(app, ["info", str(shared / "bad-audio"), "--json", "--no-duplicates"]).stdout)
    assert {Path(e["path"]).name for e in bad["skipped"]} == {Path(e["path"]).name for e in info["errors"]}
    # bracketed names are text, not markup
    (tmp_path / "brk" / "dog [old]").mkdir(parents=True)
    (tmp_path / "brk" / "cat").mkdir()
    for i in range(2):
        (tmp_path / "brk" / "dog [old]" / f"{i}.wav").write_bytes((shared / "fsdd/recordings/0_george_0.wav").read_bytes())
        (tmp_path / "brk" / "cat" / f"{i}.wav").write_bytes((shared / "fsdd/recordings/1_george_0.wav").read_bytes())
    (tmp_path / "brk" / "cat" / "bad [red]x.wav").write_text("no")
    shown = " ".join(runner.invoke(app, ["info", str(tmp_path / "brk")], terminal_width=200).output.split())
    assert "dog [old]" in shown and "[red]" in shown  # (a table cell may wrap at the space)
    # a plain path to a local copy of the archive is a URL too; a file as the folder is refused
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("x/recordings/0_a_0.wav", (shared / "fsdd" / "recordings" / "0_george_0.wav").read_bytes())
    plain = runner.invoke(app, ["datasets", "download", "fsdd", "--to", str(tmp_path / "d"), "--url", str(archive)])
    assert plain.exit_code == 3 and "expected 2500" in plain.output  # read, then refused as incomplete
    onto = runner.invoke(app, ["datasets", "download", "fsdd", "--to", str(caps), "--url", str(archive)])
    assert onto.exit_code == 3 and "is a file" in " ".join(onto.output.split())


def test_group_splits_of_small_tables_and_few_named_groups(tmp_path: Path, shared: Path) -> None:
    """Shares no fold count can give fall back to what works (9 rows, 3 per class, 0.3 was a
    scikit-learn traceback); blank rows spread over min(5, named groups) folds; one named group plus
    blank rows is said to be one group."""
    import warnings

    import pandas as pd
    import pytest

    from earmark.errors import DatasetError, MissingGroupWarning
    from earmark.evaluation import cross_validate
    from earmark.sources import iter_folds, load_dataset, train_test_split

    tiny = pd.DataFrame({"path": [f"f{i}" for i in range(9)], "label": list("aaabbbccc"), "group": list("vwxyzvwxy")})
    a, b = train_test_split(tiny, test_size=0.3)
    assert len(b) == 3 and not set(a["group"]) & set(b["group"])
    five = load_dataset(shared / "fsdd" / "manifest.csv")
    assert len(train_test_split(five, test_size=0.25)[1]) == 500  # one speaker: nearer 0.25 than two
    rows = five[five["group"].isin(["george", "jackson", "theo"])].groupby(["group", "label"]).head(3).copy()
    rows.loc[rows.index[:2], "group"] = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MissingGroupWarning)
        sizes = [len(te) for _, _, te in iter_folds(rows)]
    assert len(sizes) == 3 and min(sizes) > 20  # not one-clip folds of the blank rows
    one = rows.copy()
    one.loc[one["group"] != "george", "group"] = None
    with pytest.raises(DatasetError, match=r"belongs to one group \('george'\) and \d+ have none"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cross_validate(one, model="logreg", features="mfcc-mean", workers=1)


def test_split_and_info_say_when_a_file_is_listed_twice(tmp_path: Path, shared: Path) -> None:
    import pandas as pd

    rows = pd.read_csv(shared / "fsdd" / "manifest.csv").groupby("speaker").head(10)
    rows = pd.concat([rows, rows.head(3)])  # three files listed twice
    rows["path"] = [str(shared / "fsdd" / p) for p in rows["path"]]
    csv = tmp_path / "m.csv"
    rows.to_csv(csv, index=False)
    for args in (["info", str(csv), "--no-duplicates"],
                 ["split", str(csv), "--out", str(tmp_path / "s"), "--no-duplicates"]):
        result = runner.invoke(app, args)
        assert "file(s) are listed more than once" in " ".join(result.stderr.split()), (args, result.output)


def test_split_says_when_groups_cannot_make_the_share_and_when_labels_are_missing(tmp_path: Path,
                                                                                 shared: Path) -> None:
    import pandas as pd

    rows = pd.read_csv(shared / "fsdd" / "manifest.csv")
    big = rows[rows["speaker"] == "theo"].head(60)
    small = rows[rows["speaker"] != "theo"].groupby("speaker").head(1)  # four groups of one clip
    table = pd.concat([big, small])
    table["path"] = [str(shared / "fsdd" / p) for p in table["path"]]
    table.iloc[0, table.columns.get_loc("label")] = None
    csv = tmp_path / "m.csv"
    table.to_csv(csv, index=False)
    result = runner.invoke(app, ["split", str(csv), "--out", str(tmp_path / "s"), "--no-duplicates"])
    said = " ".join(result.stderr.split())
    assert result.exit_code == 0, result.output
    assert "the test side holds" in said and "asked for 20%" in said
    assert "1 file without a label: the split is not stratified by label" in said
    fine = runner.invoke(app, ["split", str(shared / "fsdd" / "manifest.csv"), "--out", str(tmp_path / "f"),
                               "--no-duplicates"])
    assert "the test side holds" not in fine.stderr and "without a label" not in fine.stderr


def test_split_in_auto_mode_skips_a_fold_column_with_blanks_and_says_so(tmp_path: Path, shared: Path) -> None:
    import pandas as pd

    rows = pd.read_csv(shared / "fsdd" / "manifest.csv").head(40).drop(columns=["speaker"])
    rows["path"] = [str(shared / "fsdd" / p) for p in rows["path"]]
    rows["fold"] = [1, 2, 3, None] * 10
    rows.to_csv(tmp_path / "m.csv", index=False)
    result = runner.invoke(app, ["split", str(tmp_path / "m.csv"), "--out", str(tmp_path / "s"), "--no-duplicates"])
    said = " ".join(result.stderr.split())
    assert result.exit_code == 0 and "the fold column is not used: 10 rows have no fold" in said, result.output
