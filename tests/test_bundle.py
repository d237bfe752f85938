"""Model bundles: round trip (directory and packed), and refusal of corrupt, tampered, unknown-version ones."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from _serving_model import FSDD, fsdd_model, require_training
from earmark.bundle import BUNDLE_FORMAT_VERSION, load_model, read_manifest, save_model
from earmark.errors import BundleError, ParameterError

CLIPS = [str(FSDD / "recordings" / n) for n in ("7_jackson_40.wav", "3_theo_12.wav", "0_george_5.wav")]


@pytest.fixture(scope="module")
def model():
    require_training()
    return fsdd_model()


@pytest.fixture
def bundle(model, tmp_path):
    return save_model(model, tmp_path / "digits")


def _proba(m):
    from earmark.serving import Predictor

    p = Predictor.load(m)
    return np.stack([list(p.predict_file(c).probabilities.values()) for c in CLIPS])


@pytest.mark.parametrize("packed", [False, True])
def test_round_trip_gives_identical_predictions(model, tmp_path, packed):
    path = save_model(model, tmp_path / ("m.earmark" if packed else "m"))
    assert path.is_file() == packed
    loaded = load_model(path)
    assert [str(c) for c in loaded.classes] == [str(c) for c in model.classes]
    assert np.array_equal(_proba(loaded), _proba(model))
    m = read_manifest(path)
    assert m["format_version"] == BUNDLE_FORMAT_VERSION and m["features"]["settings"]["sample_rate"] == 8000
    assert {"numpy", "scikit-learn", "python"} <= set(m["libraries"]) and m["earmark_version"]
    assert all(not name.endswith((".pkl", ".pickle")) for name in m["files"])


def test_tampered_weights_are_refused(bundle):
    weights = next(p for p in (bundle / "estimator").iterdir() if p.is_file())
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="hash mismatch.*tampered"):
        load_model(bundle)


def test_edited_manifest_is_refused(bundle):
    m = json.loads((bundle / "manifest.json").read_text())
    m["classes"] = list(reversed(m["classes"]))
    (bundle / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BundleError, match=r"manifest\.json.*modified"):
        load_model(bundle)


def test_unknown_format_version_is_refused(bundle):
    import hashlib

    from earmark.bundle import _canonical

    m = json.loads((bundle / "manifest.json").read_text())
    m["format_version"] = BUNDLE_FORMAT_VERSION + 1
    m["manifest_sha256"] = hashlib.sha256(_canonical(m)).hexdigest()
    (bundle / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BundleError, match="unknown bundle format version .*Upgrade earmark"):
        load_model(bundle)


def test_corrupt_and_missing_are_refused(model, tmp_path, bundle):
    packed = save_model(model, tmp_path / "x.earmark")
    truncated = tmp_path / "t.earmark"
    truncated.write_bytes(packed.read_bytes()[: packed.stat().st_size // 2])
    with pytest.raises(BundleError, match="corrupt"):
        load_model(truncated)
    (bundle / "manifest.json").write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        load_model(bundle)
    with pytest.raises(BundleError, match="no such model bundle"):
        load_model(tmp_path / "nothing.earmark")
    with zipfile.ZipFile(tmp_path / "empty.earmark", "w") as zf:
        zf.writestr("hello.txt", "hi")
    with pytest.raises(BundleError, match="not a model bundle"):
        load_model(tmp_path / "empty.earmark")
    wav = tmp_path / "clip.wav"  # an audio file where the model goes: not "corrupt", not a bundle
    wav.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(32))
    with pytest.raises(BundleError, match=r"clip\.wav: not a model bundle \(neither a bundle folder nor"):
        load_model(wav)


def test_reference_statistics_survive(model, tmp_path):
    ref = {"drift_features": np.arange(14, dtype=np.float32).reshape(2, 7), "note": ["a", "b"]}
    loaded = load_model(save_model(model, tmp_path / "r", reference=ref))
    assert np.array_equal(loaded.reference["drift_features"], ref["drift_features"])
    assert list(loaded.reference["note"]) == ["a", "b"]


def test_bundle_files_get_the_usual_modes_and_a_file_is_never_replaced(model, tmp_path):
    """safetensors writes 0600 files: other users of a shared model folder could not read the
    weights. A bundle's files get what this user's umask gives new files. save_model replaces a
    bundle, never another file (a CSV given as --out by mistake)."""
    import os
    import stat

    mask = os.umask(0o022)
    try:
        folder = save_model(model, tmp_path / "m")
    finally:
        os.umask(mask)
    files = [p for p in folder.rglob("*") if p.is_file()]
    assert any(p.suffix == ".safetensors" for p in files)
    assert {stat.S_IMODE(p.stat().st_mode) for p in files} == {0o644}
    victim = tmp_path / "data.csv"
    victim.write_text("path,label\n")
    with pytest.raises(ParameterError, match="not a model bundle; refusing"):
        save_model(model, victim)
    assert victim.read_text() == "path,label\n"
    fake = tmp_path / "x.earmark"
    fake.write_text("not a zip")
    with pytest.raises(ParameterError, match="not a model bundle"):
        save_model(model, fake)
    packed = save_model(model, tmp_path / "y.earmark")
    assert save_model(model, packed) == packed  # a bundle is replaced (overwrite=True)
    load_model(packed)
