"""The HTML report in a real browser: headless Chromium loads it, renders it, and logs no error."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from _chromium import chromium_path, open_page

SHARED = Path(os.environ.get("EARMARK_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))
FSDD = SHARED / "data" / "fsdd"

pytestmark = [
    pytest.mark.skipif(chromium_path() is None,
                       reason="chromium is not installed (apt-get install chromium; CI has it)"),
    pytest.mark.skipif(not (FSDD / "manifest.csv").exists(), reason=f"no FSDD at {FSDD}"),
]


@pytest.fixture(scope="module")
def report_file(tmp_path_factory):
    """A report of a real model: a small MLP on MFCC means (real training curves), trained on
    4 speakers, scored on the unseen speaker theo."""
    from earmark.evaluation import build_report, evaluate, write_report
    from earmark.features import get_preset
    from earmark.sources import load_dataset, summarize

    df = load_dataset(FSDD / "manifest.csv")
    df = df[df["path"].str.extract(r"_(\d+)\.wav$")[0].astype(int) < 10]
    test = (df["group"] == "theo").to_numpy()
    preset = get_preset("mfcc-mean", sample_rate=8000, n_fft=256, hop_length=80, n_mels=40,
                        n_mfcc=20)
    try:
        from earmark.training import train
    except ImportError:
        train = None
    if train is not None:
        model = train(df[~test], model="mlp", features=preset, epochs=6, seed=0)
        assert len(model.history) >= 2
    else:  # until earmark.training lands: the same pipeline pieces by hand
        from types import SimpleNamespace

        from earmark.features import extract
        from earmark.models import get_model

        fs = extract(df[~test], preset, workers=2)
        y = df[~test]["label"].astype(str).to_numpy()[np.asarray(fs.rows)]
        est = get_model("logreg").fit(fs.X, y)
        model = SimpleNamespace(estimator=est, preset=preset, task="classification",
                                classes=[str(c) for c in est.classes_], config=None,
                                history=[{"epoch": e, "loss": 2.0 / e, "lr": 0.01}
                                         for e in range(1, 6)])
    result = evaluate(model, df[test], workers=1)
    html = build_report(result, model=model, summary=summarize(df, duplicates=False),
                        max_clips=8)
    path = write_report(html, tmp_path_factory.mktemp("report") / "report.html")
    return path, result


def test_report_renders_in_chromium_without_errors(report_file, tmp_path):
    path, result = report_file
    n_wrong = int((~result.predictions["correct"]).sum())
    assert n_wrong > 0  # an unseen speaker: there are mistakes to listen to
    with open_page(path.as_uri()) as page:
        images = page.evaluate(
            "Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight])"
        )
        captions = page.evaluate("Array.from(document.images).map(i => i.alt)")
        audio = page.evaluate("""
            Promise.all(Array.from(document.querySelectorAll('audio')).map(a =>
                new Promise(done => {
                    const report = () => done([a.readyState, a.duration, a.error && a.error.code]);
                    if (a.readyState >= 1 || a.error) return report();
                    a.addEventListener('loadedmetadata', report);
                    a.addEventListener('error', report);
                    setTimeout(report, 10000);
                })))
        """)
        title = page.evaluate("document.querySelector('h1').textContent")
        shot = page.screenshot(tmp_path / "report.png")
        errors = page.console_errors()
    assert errors == []
    for expected in ("Training curves", "Confusion matrix", "Precision, recall and F1",
                     "Reliability diagram", "One clip per class", "Feature distributions",
                     "2-D map"):
        assert any(c.startswith(expected) for c in captions), (expected, captions)
    assert len(images) == len(captions) >= 7
    assert all(complete and w > 0 and h > 0 for complete, w, h in images), images
    assert len(audio) == min(8, n_wrong)
    # every clip's WAV decodes in the browser: metadata loaded, a positive duration, no error
    assert all(state >= 1 and duration > 0 and err is None for state, duration, err in audio), audio
    assert title.startswith("Evaluation of")
    assert shot.stat().st_size > 50_000 and shot.read_bytes()[:4] == b"\x89PNG"


def test_page_with_a_broken_image_is_caught(tmp_path):
    """The checks above can fail: a page referring to a missing file logs an error."""
    bad = tmp_path / "bad.html"
    bad.write_text('<!DOCTYPE html><html><body><img src="missing.png"></body></html>')
    with open_page(bad.as_uri()) as page:
        widths = page.evaluate("Array.from(document.images).map(i => i.naturalWidth)")
        errors = page.console_errors()
    assert widths == [0]
    assert errors, "a missing image must show up as a console/network error"
