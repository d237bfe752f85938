"""A small labelled dataset synthesized on the spot, for demos and smoke tests without data.

Each class is a fixed melodic contour of three harmonic tones; each "speaker" shifts the pitch
and timbre, so the task has the same shape as spoken digits (classes × speakers × repetitions)
and a group-aware split is meaningful. It is a stand-in, not speech, and says so in its manifest.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

__all__ = ["make_demo_dataset"]


def make_demo_dataset(
    out: str | os.PathLike[str],
    *,
    n_classes: int = 10,
    n_speakers: int = 5,
    per_speaker: int = 10,
    sample_rate: int = 8000,
    seed: int = 0,
) -> Path:
    """Write a synthetic classes × speakers dataset and its ``manifest.csv``; returns the manifest.

    Example
    -------
    >>> manifest = make_demo_dataset("/tmp/earmark-demo-data")  # doctest: +SKIP
    >>> load_dataset(manifest)["label"].nunique()  # doctest: +SKIP
    10
    """
    out = Path(out)
    (out / "clips").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    contours = rng.uniform(-7, 7, size=(n_classes, 3))  # semitone steps of each class's contour
    rows = []
    for s in range(n_speakers):
        f0 = 110.0 * 2 ** (s / n_speakers)  # speaker pitch
        tilt = 0.5 + 0.4 * s / max(1, n_speakers - 1)  # speaker timbre: harmonic roll-off
        for c in range(n_classes):
            for k in range(per_speaker):
                dur = rng.uniform(0.35, 0.6)
                t = np.arange(int(dur * sample_rate)) / sample_rate
                seg = np.minimum((t / dur * 3).astype(int), 2)
                semis = contours[c, seg] + rng.normal(0, 0.3)
                freq = f0 * 2 ** (semis / 12) * rng.uniform(0.97, 1.03)
                phase = 2 * np.pi * np.cumsum(freq) / sample_rate
                y = sum(tilt**h * np.sin(h * phase) for h in range(1, 6))
                y *= np.hanning(t.size) * rng.uniform(0.2, 0.8) / 3
                y += rng.normal(0, 0.003, t.size)
                name = f"clips/{c}_speaker{s}_{k}.wav"
                sf.write(out / name, y.astype(np.float32), sample_rate, subtype="PCM_16")
                rows.append({"path": name, "label": str(c), "speaker": f"speaker{s}"})
    manifest = out / "manifest.csv"
    pd.DataFrame(rows).to_csv(manifest, index=False)
    (out / "README.txt").write_text(
        "SYNTHETIC STAND-IN DATA made by earmark's demo (harmonic tone contours, not speech).\n"
    )
    return manifest
