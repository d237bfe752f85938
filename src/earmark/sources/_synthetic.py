"""A small labelled dataset synthesized on the spot, for demos and smoke tests without data.

Each class is a "word" of two vowel-like sounds (a glide between two formant pairs over a
harmonic source); each "speaker" has its own pitch and vocal-tract length, so the task has the same shape as spoken digits (classes × speakers × repetitions)
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
    # each class is a "word" of two vowel-like sounds: a pair of formant (F1, F2) targets
    formants = np.stack([rng.uniform(300, 900, (n_classes, 2)), rng.uniform(900, 2600, (n_classes, 2))], axis=-1)
    rows = []
    for s in range(n_speakers):
        f0 = 100.0 * 2 ** (s / (2 * n_speakers))  # speaker pitch
        tract = 1.0 + 0.08 * (s / max(1, n_speakers - 1) - 0.5)  # speaker vocal-tract scaling
        for c in range(n_classes):
            for k in range(per_speaker):
                dur = rng.uniform(0.35, 0.6)
                n = int(dur * sample_rate)
                t = np.arange(n) / sample_rate
                w = np.clip(t / dur * 1.6 - 0.3, 0, 1)[:, None]  # glide from vowel 1 to vowel 2
                fmt = ((1 - w) * formants[c, 0] + w * formants[c, 1]) * tract * rng.uniform(0.97, 1.03)
                pitch = f0 * rng.uniform(0.95, 1.05) * (1 + 0.05 * np.sin(2 * np.pi * 3 * t))
                phase = 2 * np.pi * np.cumsum(pitch) / sample_rate
                y = np.zeros(n)
                for h in range(1, int(sample_rate / 2 / f0)):
                    fh = h * pitch
                    gain = sum(1.0 / (1.0 + ((fh - fmt[:, j]) / 90.0) ** 2) for j in range(2))
                    y += gain * np.sin(h * phase) / h**0.5
                y *= np.hanning(n) * rng.uniform(0.2, 0.8) / (np.abs(y).max() + 1e-9)
                y += rng.normal(0, 0.003, n)
                name = f"clips/{c}_speaker{s}_{k}.wav"
                sf.write(out / name, y.astype(np.float32), sample_rate, subtype="PCM_16")
                rows.append({"path": name, "label": str(c), "speaker": f"speaker{s}"})
    manifest = out / "manifest.csv"
    pd.DataFrame(rows).to_csv(manifest, index=False)
    (out / "README.txt").write_text(
        "SYNTHETIC STAND-IN DATA made by earmark's demo (formant glides over a harmonic source, not speech).\n"
    )
    return manifest
