"""Synthetic speakers: espeak-ng rendering, reproducibility, post-processing, the dataset and the CLI."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

pytest.importorskip("espeakng_loader", reason="earmark.synth needs the optional espeakng-loader package")

from earmark.errors import EarmarkError, ParameterError
from earmark.synth import (
    MANIFEST_COLUMNS,
    PostProcessing,
    SynthUnavailableError,
    Voice,
    VoiceDesign,
    add_noise,
    add_reverb,
    design_voices,
    list_voices,
    parse_text_map,
    postprocess,
    render_speech,
    set_peak,
    synthesize,
    trim_silence,
    voice_variants,
)

DIGITS = "0=zero,1=one,2=two,3=three,4=four,5=five,6=six,7=seven,8=eight,9=nine"


def _digest(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*.wav"))
    }


@pytest.fixture(scope="module")
def small_set(tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    out = tmp_path_factory.mktemp("synth") / "set"
    df = synthesize(["7", "yes", "turn on"], voices=4, out=out, sample_rate=16000, seed=5, text_map="7=seven")
    return out, df


# --- the engine -------------------------------------------------------------------------------


def test_render_speech_gives_real_speech_at_engine_rate():
    y, sr = render_speech("seven", voice="en-us+m3", rate=175)
    assert sr == 22050 and y.dtype == np.int16 and y.ndim == 1
    assert 0.25 < y.size / sr < 1.2  # one spoken word
    x = y.astype(np.float32) / 32768
    assert np.abs(x).max() > 0.1
    frames = x[: x.size // 441 * 441].reshape(-1, 441)  # 20 ms frames
    assert (np.sqrt((frames**2).mean(axis=1)) > 0.01).sum() >= 5  # several voiced frames, not a click


def test_render_speech_does_not_depend_on_what_was_rendered_before():
    first, _ = render_speech("six", voice="en+klatt4", seed=1)
    render_speech("something else entirely", voice="en-029+whisperf", rate=300)
    again, _ = render_speech("six", voice="en+klatt4", seed=1)
    assert np.array_equal(first, again)


def test_render_speech_voice_settings_change_the_sound():
    base, _ = render_speech("nine", voice="en-us", rate=150)
    faster, _ = render_speech("nine", voice="en-us", rate=300)
    other, _ = render_speech("nine", voice="en-gb-scotland+f2", rate=150)
    assert faster.size < 0.8 * base.size
    assert not np.array_equal(base, other)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"voice": "en+no-such-variant"}, "no-such-variant"),
        ({"voice": "xx-nowhere"}, "xx-nowhere"),
        ({"voice": "en", "rate": 5}, "'rate'"),
        ({"voice": "en", "pitch": 120}, "'pitch'"),
    ],
)
def test_render_speech_rejects_bad_voices_and_settings(kwargs, match):
    with pytest.raises(ParameterError, match=match):
        render_speech("one", **kwargs)


def test_missing_engine_gives_install_hint(monkeypatch):
    from earmark.synth import _engine

    _engine.espeak_paths.cache_clear()
    monkeypatch.setitem(sys.modules, "espeakng_loader", None)  # import now fails
    try:
        with pytest.raises(SynthUnavailableError, match=r"pip install earmark\[synth\]") as info:
            render_speech("one", voice="en")
        assert isinstance(info.value, (EarmarkError, ImportError))
    finally:
        _engine.espeak_paths.cache_clear()


# --- voices -----------------------------------------------------------------------------------


def test_design_voices_are_distinct_reproducible_and_prefix_stable():
    voices = design_voices(40, seed=2)
    assert len({v.name for v in voices}) == 40  # every (language, variant) pair is used once first
    assert len({v.id for v in voices}) == 40 and voices[3].id == "s2-v0003"
    assert design_voices(40, seed=2) == voices
    assert design_voices(10, seed=2) == voices[:10]
    assert design_voices(10, seed=3) != voices[:10]
    d = VoiceDesign()
    for v in voices:
        assert v.language in d.languages and (v.variant == "" or v.variant in voice_variants())
        assert d.rate[0] <= v.rate <= d.rate[1] and d.pitch[0] <= v.pitch <= d.pitch[1]


def test_design_voices_honours_the_design_and_validates():
    design = VoiceDesign(languages=("en-us",), variants=("m1", "f1"), rate=(150, 150))
    voices = design_voices(5, seed=0, design=design)
    assert {v.name for v in voices} == {"en-us+m1", "en-us+f1"} and {v.rate for v in voices} == {150}
    with pytest.raises(ParameterError, match="klingon"):
        design_voices(2, design=VoiceDesign(languages=("klingon",)))
    with pytest.raises(ParameterError, match="'rate'"):
        VoiceDesign(rate=(200, 100))
    with pytest.raises(ParameterError, match="'voices'"):
        design_voices(0)


def test_configs_round_trip_through_json():
    design = VoiceDesign(languages=("en", "de"), variants=("m3",), pitch=(30, 40))
    assert VoiceDesign.from_json(design.to_json()) == design
    post = PostProcessing(trim_db=None, snr_db=(5.0, 10.0), reverb_probability=1.0)
    assert PostProcessing.from_json(post.to_json()) == post
    voice = Voice(id="x", language="en-029", variant="croak", rate=130)
    assert Voice.from_dict(json.loads(json.dumps(voice.to_dict()))) == voice
    with pytest.raises(ParameterError, match="unknown keys"):
        PostProcessing.from_dict({"noise": 1})


def test_list_voices_combines_languages_and_variants():
    names = list_voices(languages=["en-us", "en-029"])
    assert len(names) == 2 * (len(voice_variants()) + 1)
    assert "en-us" in names and "en-029+m3" in names


# --- post-processing --------------------------------------------------------------------------


def test_trim_pad_and_peak():
    y = np.r_[np.zeros(800), 0.5 * np.ones(80), np.zeros(800)].astype(np.float32)
    assert trim_silence(y, sr=8000, margin_seconds=0.0).size == 80
    assert trim_silence(np.zeros(10, np.float32), sr=8000).size == 10  # silence stays as it is
    out = set_peak(y, dbfs=-6.0)
    assert np.isclose(np.abs(out).max(), 10 ** (-6 / 20), rtol=1e-5)


def test_noise_and_reverb_are_what_they_claim():
    rng = np.random.default_rng(0)
    y = np.sin(np.arange(16000) / 7).astype(np.float32)
    for colour in (0.0, 1.0):
        noisy = add_noise(y, snr_db=15.0, colour=colour, rng=rng)
        snr = 10 * np.log10(np.mean(y**2) / np.mean((noisy - y) ** 2))
        assert abs(snr - 15.0) < 0.1
    click = np.r_[1.0, np.zeros(999)].astype(np.float32)
    wet = add_reverb(click, sr=8000, rt60=0.25, wet_db=-10.0, rng=rng)
    assert wet.size == 1000 + 2000 and wet[0] == 1.0
    tail_db = 10 * np.log10(np.sum(wet[1:] ** 2))
    assert abs(tail_db + 10.0) < 0.5
    early, late = np.abs(wet[1:400]).mean(), np.abs(wet[1600:2000]).mean()
    assert late < early / 10  # it decays


def test_postprocess_is_a_function_of_its_generator():
    y = (0.3 * np.sin(np.arange(6000) / 4)).astype(np.float32)
    y = np.r_[np.zeros(2000, np.float32), y, np.zeros(2000, np.float32)]
    cfg = PostProcessing(noise_probability=1.0, reverb_probability=1.0)
    a, drawn = postprocess(y, sr=8000, config=cfg, rng=np.random.default_rng(1))
    b, _ = postprocess(y, sr=8000, config=cfg, rng=np.random.default_rng(1))
    c, _ = postprocess(y, sr=8000, config=cfg, rng=np.random.default_rng(2))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.abs(a).max() <= 1.0 and a.dtype == np.float32
    assert cfg.snr_db[0] <= drawn["snr_db"] <= cfg.snr_db[1] and cfg.rt60[0] <= drawn["rt60"] <= cfg.rt60[1]
    assert a.size < y.size + 0.5 * 8000 + 0.1 * 8000  # the long silences were trimmed
    _clean, drawn = postprocess(y, sr=8000, config=PostProcessing(noise_probability=0, reverb_probability=0), rng=np.random.default_rng(1))
    assert np.isnan(drawn["snr_db"]) and np.isnan(drawn["rt60"])


# --- the dataset ------------------------------------------------------------------------------


def test_synthesize_writes_a_dataset_of_real_clips(small_set):
    out, df = small_set
    assert list(df.columns) == list(MANIFEST_COLUMNS) and len(df) == 3 * 4
    assert set(df["label"]) == {"7", "yes", "turn on"}
    assert set(df.loc[df["label"] == "7", "text"]) == {"seven"}
    assert df["group"].nunique() == 4 and df.groupby("group")["label"].nunique().eq(3).all()
    for row in df.itertuples():
        y, sr = sf.read(row.path, dtype="float32")
        info = sf.info(row.path)
        assert sr == 16000 and info.channels == 1 and info.subtype == "PCM_16"
        assert np.isclose(y.size / sr, row.duration, atol=1e-3)
        assert 0.1 < row.duration < 3.0
        peak_db = 20 * np.log10(np.abs(y).max())
        assert abs(peak_db - row.peak_dbfs) < 0.2  # the drawn level, within 16-bit rounding
    info = json.loads((out / "synth.json").read_text())
    assert "GPL" in info["license"] and len(info["voices"]) == 4


def test_synthesized_folder_is_a_dataset(small_set):
    from earmark.sources import load_dataset

    out, df = small_set
    loaded = load_dataset(out)
    assert len(loaded) == len(df)
    assert set(loaded["group"]) == set(df["group"])
    assert set(loaded["label"]) == set(df["label"])
    assert loaded["sample_rate"].eq(16000).all()


def test_same_seed_gives_identical_files(tmp_path, small_set):
    out, _ = small_set
    again = tmp_path / "again"
    # Another word order and other clips rendered in between: every clip depends on (seed, voice, word) only.
    render_speech("interference", voice="en+croak")
    synthesize(["turn on", "7", "yes"], voices=4, out=again, sample_rate=16000, seed=5, text_map={"7": "seven"})
    assert _digest(again) == _digest(out)
    other = tmp_path / "other"
    synthesize(["7", "yes", "turn on"], voices=4, out=other, sample_rate=16000, seed=6, text_map="7=seven")
    assert not set(_digest(other).values()) & set(_digest(out).values())


def test_synthesize_accepts_explicit_voices_and_reports_progress(tmp_path):
    calls = []
    voices = [Voice(id="a", language="en-us", variant="m3"), Voice(id="b", language="en-029", rate=140)]
    df = synthesize(["1", "2"], voices=voices, out=tmp_path / "v", text_map=DIGITS, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert df["voice"].tolist() == ["en-us+m3", "en-us+m3", "en-029", "en-029"]
    assert df["sample_rate"].eq(8000).all()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"words": []}, "'words'"),
        ({"words": ["a", "a"]}, "repeats"),
        ({"sample_rate": 100}, "'sample_rate'"),
        ({"seed": -1}, "'seed'"),
        ({"voices": 0}, "'voices'"),
        ({"text_map": "7seven"}, "LABEL=TEXT"),
    ],
)
def test_synthesize_rejects_bad_parameters(tmp_path, kwargs, match):
    args = {"words": ["7"], "voices": 1, "out": tmp_path / "x", **kwargs}
    with pytest.raises(ParameterError, match=match):
        synthesize(args.pop("words"), **args)


def test_synthesize_refuses_to_overwrite_a_dataset(small_set):
    out, _ = small_set
    with pytest.raises(ParameterError, match="overwrite"):
        synthesize(["7"], voices=1, out=out)


def test_parse_text_map():
    assert parse_text_map(" 7 = seven ,, on=switch on ") == {"7": "seven", "on": "switch on"}
    assert parse_text_map(None) == {}
    with pytest.raises(ParameterError, match="=seven"):
        parse_text_map("=seven")


# --- synthetic clips stay in training -----------------------------------------------------------


def test_synthetic_voices_never_share_a_group_with_real_speakers(shared, small_set):
    """Voice ids cannot collide with real speakers, so a group split of real+synthetic never mixes them."""
    from earmark.sources import load_dataset

    _, synth = small_set
    real = load_dataset(shared / "fsdd" / "manifest.csv")
    assert not set(synth["group"]) & set(real["group"])


def test_extra_training_data_never_reaches_validation_or_test(shared, tmp_path, monkeypatch):
    """Through training.train's extra_train: synthetic clips are fitted on, never validated or scored."""
    training = pytest.importorskip("earmark.training")
    # 72 clips: featurize in-process (a spawned worker pool costs more than the work).
    monkeypatch.setattr("earmark.features._extract._cpu_count", lambda: 1, raising=False)
    from earmark.sources import load_dataset

    real = load_dataset(shared / "fsdd" / "manifest.csv")
    real = real[real["label"].isin(["1", "7"]) & real["path"].str.contains(r"_[0-5]\.wav$")].reset_index(drop=True)
    synth = synthesize(["1", "7"], voices=6, out=tmp_path / "s", text_map=DIGITS, seed=0)
    trained = training.train(real, model="logreg", features="mfcc-mean", seed=0, extra_train=synth)
    data = trained.data
    assert data["n"] == len(real) == 60
    assert data["n_train"] + data["n_val"] == data["n"] and data["n_val"] > 0  # validation rows are all real
    assert data["split"].startswith("group")  # whole real speakers held out for validation
    assert data["extra_train"]["n"] == len(synth) == 12
    assert len(trained.reference["features"]) == data["n_train"]  # drift reference: real training clips only
    # The model did learn from the synthetic voices: it recognises them.
    assert (trained.predict(list(synth["path"]))["label"].to_numpy() == synth["label"].to_numpy()).mean() >= 0.75


# --- the command line -------------------------------------------------------------------------


def test_cli_synth_writes_a_dataset(tmp_path, shared):
    from typer.testing import CliRunner

    from earmark.cli.main import app

    manifest = tmp_path / "tiny.csv"
    fsdd = shared / "fsdd"
    pd.DataFrame(
        {"path": [str(fsdd / f"recordings/{d}_jackson_0.wav") for d in (3, 8)], "label": ["3", "8"]}
    ).to_csv(manifest, index=False)
    out = tmp_path / "cli"
    result = CliRunner().invoke(
        app, ["synth", "go", "--words-from", str(manifest), "--text-map", DIGITS, "--voices", "2", "--out", str(out),
              "--sample-rate", "8000", "--seed", "1", "--noise", "0"],
    )
    assert result.exit_code == 0, result.output
    df = pd.read_csv(out / "manifest.csv")
    assert sorted(df["label"].astype(str).unique()) == ["3", "8", "go"]
    assert set(df.loc[df["label"].astype(str) == "8", "text"]) == {"eight"}
    assert df["snr_db"].isna().all() and df["group"].nunique() == 2

    again = CliRunner().invoke(app, ["synth", "go", "--voices", "1", "--out", str(out)])
    assert again.exit_code == 2 and "overwrite" in again.output
    nothing = CliRunner().invoke(app, ["synth", "--voices", "1", "--out", str(tmp_path / "none")])
    assert nothing.exit_code == 2 and "--words-from" in nothing.output
    assert "GPL" in CliRunner().invoke(app, ["synth", "--help"]).output
    replaced = CliRunner().invoke(app, ["synth", "go", "--voices", "1", "-o", str(out), "--overwrite"])
    assert "wrote 1 clip, 1 voice," in " ".join(replaced.output.split())
    assert len(list(out.rglob("*.wav"))) == 1  # the replaced dataset's other clips are gone
    blank = CliRunner().invoke(app, ["synth", "", "--voices", "1", "--out", str(tmp_path / "blank")])
    assert blank.exit_code == 2 and "Word 1 of 1" in blank.output and "render_speech" not in blank.output
    assert not (tmp_path / "blank").exists()  # a refused run leaves no folder behind
    typo = CliRunner().invoke(app, ["synth", "yes", "--text-map", "no=nope", "-n", "1", "-o", str(tmp_path / "t")])
    assert typo.exit_code == 0 and "applies to none of the words" in typo.output


def test_overwrite_replaces_the_dataset_and_keeps_other_files(tmp_path):
    out = tmp_path / "syn"
    synthesize(["yes", "no"], voices=3, out=out, seed=1)
    (out / "README.txt").write_text("mine")
    df = synthesize(["yes"], voices=2, out=out, seed=1, overwrite=True)
    wavs = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.wav"))
    assert len(df) == 2 and wavs == sorted(Path(p).relative_to(out.resolve()).as_posix() for p in df["path"])
    assert not (out / "no").exists() and (out / "README.txt").read_text() == "mine"
    # a run that fails part-way removes what it wrote and keeps what was there
    with pytest.raises(ParameterError, match="no sound"):
        synthesize(["maybe", "..."], voices=1, out=tmp_path / "half", seed=1)
    assert not (tmp_path / "half").exists()
    # a failed --overwrite run leaves the earlier dataset whole: nothing is replaced until all is made
    before = {p: p.read_bytes() for p in out.rglob("*.wav")}
    with pytest.raises(ParameterError, match="no sound"):
        synthesize(["yes", "..."], voices=2, out=out, seed=1, sample_rate=8000, overwrite=True)
    assert {p: p.read_bytes() for p in out.rglob("*.wav")} == before
    assert not [p for p in out.iterdir() if p.name.startswith(".synth-")]  # no staging left behind


def test_overwrite_never_replaces_a_dataset_synth_did_not_make(tmp_path, shared):
    import shutil

    data = tmp_path / "recordings"
    (data / "rec").mkdir(parents=True)
    for name in ("0_george_0.wav", "1_theo_3.wav"):
        shutil.copy(shared / "fsdd" / "recordings" / name, data / "rec" / name)
    (data / "manifest.csv").write_text("path,label,speaker\nrec/0_george_0.wav,0,george\nrec/1_theo_3.wav,1,theo\n")
    with pytest.raises(ParameterError, match="did not make"):
        synthesize(["yes"], voices=1, out=data, seed=1, overwrite=True)
    assert sorted(p.name for p in (data / "rec").iterdir()) == ["0_george_0.wav", "1_theo_3.wav"]
    assert (data / "manifest.csv").read_text().startswith("path,label,speaker")


def test_cli_words_from_unlabelled_data_and_text_map_alone_are_refused(tmp_path, shared):
    from typer.testing import CliRunner

    from earmark.cli.main import app

    res = CliRunner().invoke(app, ["synth", "--words-from", str(shared / "bad-audio"), "--voices", "1",
                                   "--out", str(tmp_path / "w")])
    assert res.exit_code != 0 and "no labels to speak" in " ".join(res.output.split())
    assert not isinstance(res.exception, (KeyError, TypeError))
    manifest = tmp_path / "m.csv"
    pd.DataFrame({"path": [str(shared / "fsdd/recordings/0_george_0.wav")], "label": ["0"]}).to_csv(manifest, index=False)
    res = CliRunner().invoke(app, ["train", str(manifest), "--model", "logreg", "--text-map", "0=zero",
                                   "--out", str(tmp_path / "b")])
    assert res.exit_code == 2 and "needs --synthetic-voices" in " ".join(res.output.split())
    for weight, said in (("0.5", "needs --extra-train or --synthetic-voices"), ("0", "must be above 0")):
        extra = ["--synthetic-voices", "1"] if weight == "0" else []
        res = CliRunner().invoke(app, ["train", str(manifest), "--model", "logreg", "--extra-weight", weight,
                                       *extra, "--out", str(tmp_path / "b")])
        assert res.exit_code == 2 and said in " ".join(res.output.split()), res.output


def test_long_labels_get_short_folders_and_a_bad_out_is_named(tmp_path, shared):
    from typer.testing import CliRunner

    from earmark.cli.main import app
    from earmark.synth._synthesize import _slug

    long = "a" * 300
    assert len(_slug(long).encode()) <= 90 and _slug(long) != _slug(long + "b")
    assert len(_slug("数" * 100).encode()) <= 90 and _slug("seven") == "seven"
    res = CliRunner().invoke(app, ["synth", long, "--voices", "1", "--out", str(tmp_path / "long")])
    assert res.exit_code == 0, res.output
    df = pd.read_csv(tmp_path / "long" / "manifest.csv")
    assert df["label"].tolist() == [long] and (tmp_path / "long" / df["path"][0]).is_file()
    a_file = tmp_path / "m.csv"
    a_file.write_text("path,label\n")
    res = CliRunner().invoke(app, ["synth", "yes", "--voices", "1", "--out", str(a_file / "x")])
    assert res.exit_code == 2 and "is a file, not a folder" in " ".join(res.output.split())
    assert res.exception is None or isinstance(res.exception, SystemExit)


def test_cv_adds_synthetic_voices_to_every_folds_training_only(tmp_path, shared):
    from typer.testing import CliRunner

    from earmark.cli.main import app

    rows = pd.read_csv(shared / "fsdd" / "manifest.csv")
    rows = rows[rows["speaker"].isin(["theo", "george", "jackson"])].groupby(["speaker", "label"]).head(2)
    rows["path"] = [str(shared / "fsdd" / p) for p in rows["path"]]
    manifest = tmp_path / "m.csv"
    rows.to_csv(manifest, index=False)
    out = tmp_path / "cv.json"
    res = CliRunner().invoke(app, ["cv", str(manifest), "--model", "logreg", "--features", "mfcc-mean",
                                   "-p", "C=0.5", "--synthetic-voices", "2", "--json", str(out)],
                             env={"EARMARK_CACHE": str(tmp_path / "cache")})
    assert res.exit_code == 0, res.output
    folds = json.loads(out.read_text())["folds"]
    assert [(f["n_train"], f["n_extra_train"], f["n_test"], f["n"]) for f in folds] == [(40, 20, 20, 20)] * 3
    assert all(set(f["test_groups"]) <= {"theo", "george", "jackson"} for f in folds)  # voices never scored
    assert "+ 20 extra" in " ".join(res.stderr.split())
    res = CliRunner().invoke(app, ["cv", str(manifest), "--model", "logreg", "-p", "seed=3"])
    assert res.exit_code == 2 and "use its own option (--seed" in " ".join(res.output.split())
