"""Datasets from every kind of source, splits without leakage, summaries, the catalog."""

from __future__ import annotations

import hashlib
import shutil
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from earmark.errors import DatasetError, EarmarkWarning, ParameterError
from earmark.sources import (
    SkippedFileWarning,
    check_leakage,
    find_duplicates,
    iter_folds,
    load_dataset,
    parse_pattern,
    summarize,
    train_test_split,
)
from earmark.sources.catalog import download, get_entry, list_entries, tree_digest


@pytest.fixture(scope="module")
def fsdd(shared: Path) -> pd.DataFrame:
    return load_dataset(shared / "fsdd" / "manifest.csv")


@pytest.fixture(scope="module")
def instruments(shared: Path) -> pd.DataFrame:
    return load_dataset(shared / "instruments" / "manifest.csv")


def _link_files(paths: list[Path], folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for p in paths:
        dst = folder / p.name
        dst.symlink_to(p)
        out.append(dst)
    return out


# ----------------------------------------------------------------------------- sources


def test_fsdd_manifest(fsdd: pd.DataFrame, shared: Path) -> None:
    assert len(fsdd) == 2500 and fsdd.attrs["skipped"] == []
    assert fsdd["label"].value_counts().to_dict() == {str(d): 250 for d in range(10)}
    assert fsdd["group"].nunique() == 5 and (fsdd["group"] == fsdd["speaker"]).all()
    assert all(Path(p).is_absolute() and Path(p).exists() for p in fsdd["path"].head(20))
    assert (fsdd["sample_rate"] == 8000).all()
    assert fsdd["duration"].between(0.1, 2.5).all()


def test_manifest_keeps_extra_columns_with_types(instruments: pd.DataFrame) -> None:
    assert len(instruments) == 1000
    assert instruments["fold"].nunique() == 5
    assert pd.api.types.is_float_dtype(instruments["pitch"])
    assert pd.api.types.is_integer_dtype(instruments["velocity"])
    assert set(instruments["kind"]) == {"note", "chord"}


def test_manifest_column_options(shared: Path) -> None:
    df = load_dataset(shared / "instruments" / "manifest.csv", label_column="kind", group_column="program")
    assert set(df["label"]) == {"note", "chord"}
    assert df["group"].nunique() == pd.read_csv(shared / "instruments" / "manifest.csv")["program"].nunique() == 84
    with pytest.raises(DatasetError, match="no column 'nope'.*label"):
        load_dataset(shared / "fsdd" / "manifest.csv", label_column="nope")


def test_folder_with_manifest_reads_it(shared: Path) -> None:
    df = load_dataset(shared / "tts-digits" / "espeak")
    assert len(df) == 500 and df["label"].nunique() == 10
    assert "group" in df.columns and (df["group"] == df["voice"]).all()


def test_class_folders(tmp_path: Path, shared: Path) -> None:
    rec = shared / "fsdd" / "recordings"
    for digit in ("3", "8"):
        _link_files(sorted(rec.glob(f"{digit}_theo_*.wav"))[:5], tmp_path / digit)
    (tmp_path / ".hidden").mkdir()
    df = load_dataset(tmp_path)
    assert sorted(df["label"].value_counts().items()) == [("3", 5), ("8", 5)]


def test_file_name_pattern(shared: Path) -> None:
    df = load_dataset(shared / "fsdd" / "recordings", pattern="{label}_{group}_{index}")
    assert len(df) == 2500 and df["group"].nunique() == 5
    assert pd.api.types.is_integer_dtype(df["index"]) and df["index"].max() == 49
    assert df.loc[df["path"].str.endswith("7_jackson_32.wav"), ["label", "group"]].values.tolist() == [["7", "jackson"]]


def test_pattern_with_dashes_and_plus(shared: Path) -> None:
    df = load_dataset(shared / "tts-digits" / "espeak", pattern="{label}_{group}_{_}")
    assert len(df) == 500 and df["group"].str.startswith("espeak-").all()


def test_pattern_errors() -> None:
    assert parse_pattern("{label}-{group}").fullmatch("dog-17").groupdict() == {"label": "dog", "group": "17"}
    with pytest.raises(ParameterError, match="label"):
        parse_pattern("{group}_{index}")
    with pytest.raises(ParameterError, match="repeated"):
        parse_pattern("{label}_{label}")


def test_files_the_pattern_does_not_match_are_listed(tmp_path: Path, shared: Path) -> None:
    for name in ("3_theo_1.wav", "4_theo_2.wav", "5_george_3.wav"):
        shutil.copy(shared / "fsdd" / "recordings" / name, tmp_path / name)
    shutil.copy(shared / "fsdd" / "recordings" / "6_theo_4.wav", tmp_path / "take six.wav")
    with pytest.warns(SkippedFileWarning, match="1 files .* do not match the pattern"):
        df = load_dataset(tmp_path, pattern="{label}_{group}_{index}")
    assert len(df) == 3 and df.attrs["n_listed"] == 4
    assert [(Path(s["path"]).name, "does not match the pattern" in s["reason"]) for s in df.attrs["skipped"]] == [
        ("take six.wav", True)]


def test_unreadable_files_are_listed_not_dropped(shared: Path) -> None:
    with pytest.warns(SkippedFileWarning, match="5 of 17"):
        df = load_dataset(shared / "bad-audio", pattern="{label}", check="decode")
    bad = pd.read_csv(shared / "bad-audio" / "manifest.csv")
    expected_errors = set(bad.loc[bad.expected == "error", "file"])
    skipped = {Path(s["path"]).name: s["reason"] for s in df.attrs["skipped"]}
    assert set(skipped) == expected_errors and all(skipped.values())
    assert len(df) + len(skipped) == df.attrs["n_listed"] == 17
    with pytest.raises(Exception, match="empty.wav"):
        load_dataset(shared / "bad-audio", pattern="{label}", on_error="raise")


def test_esc50_layout(tmp_path: Path, shared: Path) -> None:
    files = sorted((shared / "fsdd" / "recordings").glob("*_george_1.wav"))
    _link_files(files, tmp_path / "audio")
    rows = [
        {"filename": f.name, "fold": i % 5 + 1, "target": int(f.name[0]), "category": f"c{f.name[0]}",
         "esc10": False, "src_file": f"s{i // 2}", "take": "A"}
        for i, f in enumerate(files)
    ]
    (tmp_path / "meta").mkdir()
    pd.DataFrame(rows).to_csv(tmp_path / "meta" / "esc50.csv", index=False)
    df = load_dataset(tmp_path / "meta" / "esc50.csv")
    assert len(df) == 10 and set(df["label"]) == {f"c{d}" for d in range(10)}
    assert df["group"].nunique() == 5 and df["fold"].nunique() == 5


def test_urbansound8k_layout(tmp_path: Path, shared: Path) -> None:
    files = sorted((shared / "fsdd" / "recordings").glob("*_nicolas_2.wav"))
    rows = []
    for i, f in enumerate(files):
        fold = i % 3 + 1
        _link_files([f], tmp_path / "audio" / f"fold{fold}")
        rows.append({"slice_file_name": f.name, "fsID": 100 + i // 2, "start": 0, "end": 1, "salience": 1,
                     "fold": fold, "classID": int(f.name[0]), "class": f"k{f.name[0]}"})
    (tmp_path / "metadata").mkdir()
    pd.DataFrame(rows).to_csv(tmp_path / "metadata" / "UrbanSound8K.csv", index=False)
    df = load_dataset(tmp_path / "metadata" / "UrbanSound8K.csv")
    assert len(df) == 10 and df.attrs["skipped"] == []
    assert set(df["label"]) == {f"k{d}" for d in range(10)} and df["group"].nunique() == 5


def test_missing_source_and_bad_manifest(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no such file"):
        load_dataset(tmp_path / "absent")
    (tmp_path / "m.csv").write_text("name,label\na.wav,1\n")
    with pytest.raises(DatasetError, match="[Rr]ename the column of file paths to 'path'") as info:
        load_dataset(tmp_path / "m.csv")
    assert "--path-column" not in str(info.value)  # no command has that option
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no audio files"):
        load_dataset(tmp_path / "empty")


# ----------------------------------------------------------------------------- splits


def test_group_split_is_the_default_and_never_leaks(fsdd: pd.DataFrame) -> None:
    train, test = train_test_split(fsdd, test_size=0.2, seed=0)
    assert not set(train["group"]) & set(test["group"])
    assert len(train) + len(test) == 2500 and len(test) == 500
    again = train_test_split(fsdd, test_size=0.2, seed=0)[1]
    assert test.index.equals(again.index)


def test_group_split_with_many_groups_is_stratified(shared: Path) -> None:
    df = load_dataset(shared / "tts-digits" / "espeak")
    train, test = train_test_split(df, test_size=0.25, seed=3)
    assert not set(train["group"]) & set(test["group"])
    assert set(test["label"]) == set(df["label"])
    assert 0.15 < len(test) / len(df) < 0.35


def test_random_split_is_stratified_and_seeded(fsdd: pd.DataFrame) -> None:
    train, test = train_test_split(fsdd, by="random", test_size=0.2, seed=1)
    assert (test["label"].value_counts() == 50).all()
    other = train_test_split(fsdd, by="random", test_size=0.2, seed=2)[1]
    assert not test.index.equals(other.index)


def test_split_of_one_group_warns_that_it_is_random_within_it(fsdd: pd.DataFrame) -> None:
    one = fsdd[fsdd["group"] == "theo"]
    with pytest.warns(EarmarkWarning, match="one group .'theo'.*random within it"):
        train, test = train_test_split(one, test_size=0.2, seed=0)
    assert len(test) == 100 and set(test["group"]) == {"theo"}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        train_test_split(one, by="random", test_size=0.2, seed=0)  # asked for: no warning
        train_test_split(fsdd, test_size=0.2, seed=0)  # two or more groups: a group split


def test_fold_split(instruments: pd.DataFrame) -> None:
    train, test = train_test_split(instruments, by="fold", test_fold=2)
    assert set(test["fold"]) == {2} and 2 not in set(train["fold"])
    assert not set(train["program"]) & set(test["program"])
    with pytest.raises(DatasetError, match="fold"):
        train_test_split(instruments.drop(columns="fold"), by="fold")


def test_iter_folds_predefined(instruments: pd.DataFrame) -> None:
    folds = list(iter_folds(instruments))
    assert [name for name, _, _ in folds] == [f"fold {k}" for k in range(1, 6)]
    covered = np.concatenate([test for _, _, test in folds])
    assert sorted(covered) == list(range(1000))
    for _, train, test in folds:
        assert not set(instruments.iloc[train]["program"]) & set(instruments.iloc[test]["program"])


def test_iter_folds_leave_one_speaker_out(fsdd: pd.DataFrame) -> None:
    folds = list(iter_folds(fsdd, folds="group"))
    assert sorted(name for name, _, _ in folds) == sorted(fsdd["group"].unique())
    for name, train, test in folds:
        assert set(fsdd.iloc[test]["group"]) == {name}
        assert name not in set(fsdd.iloc[train]["group"])


def test_iter_folds_k_group_folds(shared: Path) -> None:
    df = load_dataset(shared / "tts-digits" / "espeak")
    folds = list(iter_folds(df, folds=4, seed=0))
    assert len(folds) == 4
    for _, train, test in folds:
        assert not set(df.iloc[train]["group"]) & set(df.iloc[test]["group"])
    assert [t.tolist() for _, _, t in folds] == [t.tolist() for _, _, t in iter_folds(df, folds=4, seed=0)]
    fsdd = load_dataset(shared / "fsdd" / "manifest.csv", check="none")
    with pytest.raises(DatasetError, match="at least 6 groups"):
        list(iter_folds(fsdd, folds=6))


def test_iter_folds_regression_table_without_labels(instruments: pd.DataFrame) -> None:
    table = instruments.drop(columns=["label", "fold"]).assign(group=instruments["program"].astype(str))
    folds = list(iter_folds(table, folds=5))
    for _, train, test in folds:
        assert not set(table.iloc[train]["group"]) & set(table.iloc[test]["group"])


# ----------------------------------------------------------------------------- leakage, summary


def test_leakage_check_finds_same_audio_under_other_names(tmp_path: Path, fsdd: pd.DataFrame) -> None:
    train, test = train_test_split(fsdd, seed=0)
    assert check_leakage(train.head(50), test.head(50)).ok
    # the same recording, re-encoded as FLAC under another name, slips into the test side
    src = Path(train["path"].iloc[0])
    y, sr = sf.read(src, dtype="int16")
    copy = tmp_path / "renamed.flac"
    sf.write(copy, y, sr, subtype="PCM_16")
    leaky_test = pd.concat([test.head(50), pd.DataFrame({"path": [str(copy)], "group": ["someone"]})])
    report = check_leakage(train.head(50), leaky_test)
    assert not report.ok and len(report.duplicates) == 1
    assert report.duplicates[0]["train"] == [str(src)] and report.duplicates[0]["test"] == [str(copy)]
    shared_groups = check_leakage(fsdd.head(5), fsdd.head(10)).shared_groups
    assert shared_groups == ["george"]


def test_summarize_fsdd(fsdd: pd.DataFrame) -> None:
    s = summarize(fsdd)
    assert s["n_files"] == s["n_ok"] == 2500 and s["errors"] == [] and s["duplicates"] == []
    assert s["classes"] == {str(d): 250 for d in range(10)} and len(s["groups"]) == 5
    assert s["sample_rates"] == {"8000": 2500} and s["balance"] == 1.0
    assert 15 * 60 < s["duration"]["total"] < 19 * 60


def test_find_duplicates(tmp_path: Path, shared: Path) -> None:
    src = shared / "fsdd" / "recordings" / "1_theo_3.wav"
    shutil.copy(src, tmp_path / "a.wav")
    shutil.copy(src, tmp_path / "b.wav")
    shutil.copy(shared / "fsdd" / "recordings" / "1_theo_4.wav", tmp_path / "c.wav")
    assert find_duplicates([str(tmp_path / n) for n in ("a.wav", "b.wav", "c.wav")]) == [
        [str(tmp_path / "a.wav"), str(tmp_path / "b.wav")]
    ]


# ----------------------------------------------------------------------------- catalog


def _fsdd_zip(shared: Path, dest: Path, *, drop: int = 0, tamper: bool = False) -> Path:
    archive = dest / "fsdd.zip"
    files = sorted((shared / "fsdd" / "recordings").glob("*.wav"))[drop:]
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED) as z:
        z.writestr("free-spoken-digit-dataset-x/README.md", "FSDD")
        for i, f in enumerate(files):
            data = f.read_bytes()
            if tamper and i == 0:
                data = data[:-2] + b"\x00\x01"
            z.writestr(f"free-spoken-digit-dataset-x/recordings/{f.name}", data)
    return archive


def test_catalog_entries() -> None:
    names = [e.name for e in list_entries()]
    assert {"fsdd", "esc50", "urbansound8k", "speech_commands"} <= set(names)
    fsdd = get_entry("fsdd")
    assert fsdd.downloadable and fsdd.version in fsdd.url and fsdd.n_files == 2500
    with pytest.raises(ParameterError, match="catalog has"):
        get_entry("nope")
    with pytest.raises(DatasetError, match="not downloaded automatically"):
        download("esc50", "/tmp/never")


def test_pinned_digest_matches_the_shared_copy(shared: Path) -> None:
    files = sorted((shared / "fsdd" / "recordings").glob("*.wav"))
    assert tree_digest(files) == get_entry("fsdd").digest


def test_download_verifies_and_writes_a_manifest(tmp_path: Path, shared: Path) -> None:
    archive = _fsdd_zip(shared, tmp_path)
    # a folder to complete may hold other files: they are kept, and the manifest lists the dataset only
    (tmp_path / "fsdd" / "recordings").mkdir(parents=True)
    (tmp_path / "fsdd" / "recordings" / "all_zeros.wav").write_bytes(b"RIFF")  # named unlike FSDD: no crash
    (tmp_path / "fsdd" / "recordings" / "3_lucas_0.wav").write_bytes(b"RIFF")  # named like it: not listed
    dest = download("fsdd", tmp_path / "fsdd", url=archive.as_uri())
    assert (dest / "recordings" / "all_zeros.wav").exists()
    assert "lucas" not in (dest / "manifest.csv").read_text()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        df = load_dataset(dest / "manifest.csv", check="none")
    assert len(df) == 2500 and df["group"].nunique() == 5 and df["label"].nunique() == 10
    got = hashlib.sha256((dest / "recordings" / "7_jackson_32.wav").read_bytes()).hexdigest()
    want = hashlib.sha256((shared / "fsdd" / "recordings" / "7_jackson_32.wav").read_bytes()).hexdigest()
    assert got == want


@pytest.mark.parametrize(("drop", "tamper", "message"), [(1, False, "2499 recordings"), (0, True, "do not match")])
def test_download_refuses_incomplete_or_altered(tmp_path: Path, shared: Path, drop: int, tamper: bool, message: str) -> None:
    archive = _fsdd_zip(shared, tmp_path, drop=drop, tamper=tamper)
    with pytest.raises(DatasetError, match=message):
        download("fsdd", tmp_path / "fsdd", url=archive.as_uri())
    assert not (tmp_path / "fsdd").exists()


# ----------------------------------------------------------------------------- unlabelled audio


def _three_wavs(shared: Path, folder: Path) -> list[Path]:
    rec = shared / "fsdd" / "recordings"
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name in ("0_george_0.wav", "1_jackson_3.wav", "2_theo_5.wav"):
        shutil.copy(rec / name, folder / name)
        out.append(folder / name)
    return out


def test_flat_folder_needs_labels_unless_allowed(tmp_path: Path, shared: Path) -> None:
    files = _three_wavs(shared, tmp_path / "long")
    with pytest.raises(DatasetError, match="3 audio files but no class sub-folders"):
        load_dataset(tmp_path / "long")  # training needs labels: the clear error stays
    df = load_dataset(tmp_path / "long", allow_unlabelled=True)
    assert list(df["path"]) == [str(f.resolve()) for f in files] and "label" not in df.columns
    assert (df["sample_rate"] == 8000).all() and df.attrs["skipped"] == []
    s = summarize(df)
    assert s["n_files"] == s["n_ok"] == s["n_unlabelled"] == 3 and s["classes"] == {}
    assert s["sample_rates"] == {"8000": 3} and s["duplicates"] == []


def test_loose_files_beside_class_folders_are_kept_only_when_allowed(tmp_path: Path, shared: Path) -> None:
    loose, *in_class = _three_wavs(shared, tmp_path)
    (tmp_path / "digit").mkdir()
    for f in in_class:
        f.rename(tmp_path / "digit" / f.name)
    with pytest.warns(SkippedFileWarning, match="no label"):
        labelled = load_dataset(tmp_path)
    assert list(labelled["label"]) == ["digit", "digit"]
    # left out, but never silently: counted and listed with the reason
    assert [s["path"] for s in labelled.attrs["skipped"]] == [str(loose.resolve())]
    assert "not in a class sub-folder" in labelled.attrs["skipped"][0]["reason"]
    assert labelled.attrs["n_listed"] == 3
    df = load_dataset(tmp_path, allow_unlabelled=True)
    assert len(df) == 3 and df["label"].isna().tolist() == [True, False, False]
    assert df["path"].iloc[0] == str(loose.resolve())
    s = summarize(df, duplicates=False)
    assert s["classes"] == {"digit": 2} and s["n_unlabelled"] == 1


def test_small_tables_without_groups_still_split(shared: Path) -> None:
    # 8 classes x 4 files, no group column: a 15 % stratified split would hold 5 rows for 8 classes
    fsdd = load_dataset(shared / "fsdd" / "manifest.csv")
    small = fsdd[fsdd["label"].astype(int) < 8].groupby("label").head(4).drop(columns=["group"]).reset_index(drop=True)
    train, test = train_test_split(small, test_size=0.15, by="random")
    assert set(test["label"]) == set(small["label"]) == set(train["label"]) and len(test) == 8
    tiny = small.groupby("label").head(1).reset_index(drop=True)  # one file per class: no stratification
    train, test = train_test_split(tiny, test_size=0.25, by="random")
    assert len(train) + len(test) == 8 and len(test) == 2
    with pytest.raises(DatasetError, match="Use at most 4 folds"):
        list(iter_folds(small, folds=5))
    assert len(list(iter_folds(small, folds=4))) == 4


def test_rows_without_a_file_are_listed_by_line_not_a_crash(tmp_path: Path, shared: Path) -> None:
    wav = sorted((shared / "fsdd" / "recordings").glob("6_theo_*.wav"))[:2]
    (tmp_path / "m.csv").write_text(f"path,label\n{wav[0]},six\n,six\n  ,six\n{wav[1]},six\n")
    with pytest.warns(SkippedFileWarning, match=r"2 row\(s\) of .*m.csv name no file.*line 3; .*line 4"):
        df = load_dataset(tmp_path / "m.csv")
    assert len(df) == 2 and df.attrs["n_listed"] == 4
    assert [s["path"].rsplit(", ", 1)[1] for s in df.attrs["skipped"]] == ["line 3", "line 4"]
    assert all("empty 'path' cell" in s["reason"] for s in df.attrs["skipped"])
    with pytest.raises(DatasetError, match="line 3: empty 'path' cell"):
        load_dataset(tmp_path / "m.csv", on_error="raise")
    frame = pd.DataFrame({"file": [str(wav[0]), None], "label": ["six", "six"]}, index=[10, 11])
    with pytest.warns(SkippedFileWarning, match="DataFrame, row 11"):
        assert len(load_dataset(frame, path_column="file")) == 1


def test_linked_class_folders_are_followed_once(tmp_path: Path, shared: Path) -> None:
    rec = shared / "fsdd" / "recordings"
    store = tmp_path / "store"
    _link_files(sorted(rec.glob("3_theo_*.wav"))[:3], store)
    (tmp_path / "data" / "a").mkdir(parents=True)
    _link_files(sorted(rec.glob("8_theo_*.wav"))[:2], tmp_path / "data" / "a")
    (tmp_path / "data" / "b").mkdir()
    (tmp_path / "data" / "b" / "takes").symlink_to(store, target_is_directory=True)  # audio lies elsewhere
    (tmp_path / "data" / "a" / "loop").symlink_to(tmp_path / "data" / "a", target_is_directory=True)
    (tmp_path / "data" / "a" / "up").symlink_to(tmp_path / "data", target_is_directory=True)  # b's files are not a's
    df = load_dataset(tmp_path / "data")
    assert df["label"].value_counts().to_dict() == {"b": 3, "a": 2}  # the loop neither hangs nor repeats
    from earmark.serving.batch import expand_paths

    (tmp_path / "data" / "a" / ".trash").mkdir()
    _link_files(sorted(rec.glob("9_theo_*.wav"))[:1], tmp_path / "data" / "a" / ".trash")
    assert len(expand_paths([tmp_path / "data"])) == 5  # predict reads folders as datasets do: no hidden ones


def test_options_that_cannot_apply_are_refused_and_fold_headers_match_any_case(tmp_path: Path, shared: Path) -> None:
    wav = sorted((shared / "fsdd" / "recordings").glob("6_theo_*.wav"))[:4]
    (tmp_path / "m.csv").write_text("Path,Label,Fold\n" + "".join(f"{w},six,{i % 2 + 1}\n" for i, w in enumerate(wav)))
    df = load_dataset(tmp_path / "m.csv")
    assert df["fold"].tolist() == [1, 2, 1, 2]
    with pytest.raises(DatasetError, match="no column 'nofold' for the folds"):
        load_dataset(tmp_path / "m.csv", fold_column="nofold")
    with pytest.raises(ParameterError, match="is a manifest"):
        load_dataset(tmp_path / "m.csv", pattern="{label}_{_}")
    _link_files(wav[:2], tmp_path / "cls" / "six")
    with pytest.raises(ParameterError, match="label_column='foo'.*class sub-folders"):
        load_dataset(tmp_path / "cls", label_column="foo")
    # the fields of a pattern can be named as the label and group
    flat = _link_files(sorted((shared / "fsdd" / "recordings").glob("[12]_george_[0-2].wav")), tmp_path / "flat")
    named = load_dataset(tmp_path / "flat", pattern="{digit}_{speaker}_{_}", label_column="digit", group_column="speaker")
    assert len(named) == len(flat) == 6 and set(named["label"]) == {"1", "2"} and set(named["group"]) == {"george"}
    # as written: a field named as the label is not read as a number first ('07' stays '07')
    padded = tmp_path / "padded"
    padded.mkdir()
    (padded / "07_george_x.wav").symlink_to(wav[0])
    (padded / "7_george_y.wav").symlink_to(wav[1])
    both = load_dataset(padded, pattern="{digit}_{speaker}_{_}", label_column="digit")
    assert sorted(both["label"]) == ["07", "7"] == sorted(load_dataset(padded, pattern="{label}_{_}_{_}")["label"])
    with pytest.raises(ParameterError, match="'who' is not a field of the pattern"):
        load_dataset(tmp_path / "flat", pattern="{digit}_{speaker}_{_}", label_column="digit", group_column="who")
    (tmp_path / "dup.csv").write_text(f"path,label\n{wav[0]},six\n{wav[0]},six\n{wav[1]},six\n")
    with pytest.warns(EarmarkWarning, match=r"1 file\(s\) are listed more than once \(2 rows"):
        assert len(load_dataset(tmp_path / "dup.csv")) == 3  # kept: the user may mean it


def test_folder_sources_keep_the_paths_the_user_gave(tmp_path: Path, shared: Path) -> None:
    """Links in a class folder or a pattern-named folder keep their own names in ``path`` (a
    manifest keeps them too), so predictions and duplicate reports name the user's files."""
    recordings = shared / "fsdd" / "recordings"
    (tmp_path / "seven").mkdir()
    (tmp_path / "seven" / "alice_1.wav").symlink_to(recordings / "7_jackson_32.wav")
    (tmp_path / "seven" / "bob_1.wav").symlink_to(recordings / "7_jackson_32.wav")
    df = load_dataset(tmp_path)
    assert sorted(df["path"]) == [str(tmp_path / "seven" / "alice_1.wav"), str(tmp_path / "seven" / "bob_1.wav")]
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "seven_alice_1.wav").symlink_to(recordings / "7_jackson_32.wav")
    named = load_dataset(flat, pattern="{label}_{group}_{index}")
    assert list(named["path"]) == [str(flat / "seven_alice_1.wav")] and list(named["label"]) == ["seven"]
    duplicates = summarize(df)["duplicates"]
    assert [sorted(d) for d in duplicates] == [sorted(df["path"])]  # the two names, not the target twice


def test_pattern_fields_stop_at_the_whole_separator() -> None:
    assert parse_pattern("{label}__{group}").fullmatch("dog_bark__alice").groupdict() == {
        "label": "dog_bark", "group": "alice"}
    assert parse_pattern("{label} ({group})").fullmatch("hi hat (carol)").groupdict() == {
        "label": "hi hat", "group": "carol"}
    assert parse_pattern("{label}_{group}_{index}").fullmatch("7_jackson_32").groupdict() == {
        "label": "7", "group": "jackson", "index": "32"}


def _fsdd_rows(shared: Path, n: int = 40) -> pd.DataFrame:
    rows = pd.read_csv(shared / "fsdd" / "manifest.csv").groupby("speaker").head(n // 5).reset_index(drop=True)
    rows["path"] = [str(shared / "fsdd" / p) for p in rows["path"]]
    return rows


def test_groups_and_labels_are_names_with_spaces_aside(shared: Path, tmp_path: Path) -> None:
    rows = _fsdd_rows(shared)
    rows["speaker"] = [s + " " if i % 2 else s for i, s in enumerate(rows["speaker"])]  # 'theo ' is theo
    csv = tmp_path / "m.csv"
    rows.to_csv(csv, index=False)
    df = load_dataset(csv)
    assert sorted(df["group"].unique()) == ["george", "jackson", "nicolas", "theo", "yweweler"]
    train, test = train_test_split(df, test_size=0.2, seed=0)
    assert not set(train["group"]) & set(test["group"])
    # a table whose labels became floats (a NaN dropped) names them as its CSV does ('7.0')
    frame = rows.assign(label=rows["label"].astype(float))
    frame.to_csv(tmp_path / "f.csv", index=False)
    assert sorted(load_dataset(frame)["label"].unique()) == sorted(load_dataset(tmp_path / "f.csv")["label"].unique())


def test_folds_of_mixed_types_sort_and_blank_folds_are_named(shared: Path, tmp_path: Path) -> None:
    rows = _fsdd_rows(shared)
    rows.assign(fold=[2, 3, 10, "x"] * 10).to_csv(tmp_path / "f.csv", index=False)  # a CSV's folds are text
    as_text = load_dataset(tmp_path / "f.csv", check="none")
    assert [name for name, _, _ in iter_folds(as_text, folds="fold")] == ["fold 2", "fold 3", "fold 10", "fold x"]
    mixed = load_dataset(rows.assign(fold=[1, 2, 10, "x"] * 10), check="none")
    assert [name for name, _, _ in iter_folds(mixed, folds="fold")] == ["fold 1", "fold 2", "fold 10", "fold x"]
    assert set(train_test_split(mixed, by="fold")[1]["fold"]) == {"x"}
    assert summarize(mixed, duplicates=False)["folds"] == {"1": 10, "2": 10, "10": 10, "x": 10}
    holes = load_dataset(rows.assign(fold=[1.0, 2.0, 3.0, None] * 10), check="none")
    with pytest.raises(DatasetError, match=r"10 of 40 rows have no fold \(e\.g\. .*wav\); fill in"):
        list(iter_folds(holes, folds="fold"))
    with pytest.raises(DatasetError, match="10 of 40 rows have no fold"):
        train_test_split(holes, by="fold")
    with pytest.warns(EarmarkWarning, match="predefined folds are not used.*10 of 40 rows have no fold"):
        names = [name for name, _, _ in iter_folds(holes)]
    assert names == sorted(set(rows["speaker"]))  # the groups' folds, said so


def test_manifest_errors_say_how_to_save_the_file(shared: Path, tmp_path: Path) -> None:
    semi = tmp_path / "semi.csv"
    semi.write_text("path;label;speaker\nrecordings/0_theo_0.wav;0;theo\n")
    with pytest.raises(DatasetError, match="separated by ';', so save it with commas"):
        load_dataset(semi)
    latin = tmp_path / "latin.csv"
    latin.write_bytes("path,label\nrecordings/0_theo_0.wav,fünf\n".encode("cp1252"))
    with pytest.raises(DatasetError, match="not UTF-8 text .*Save it as UTF-8 CSV"):
        load_dataset(latin)
