"""Decode all of FSDD on one core: earmark.load_audio against librosa.load in the same run.

Usage: python benchmarks/decode.py [--data ../shared/data/fsdd] [--repeat 3]
Goal (issue 2): the 2,500 files in under 5 s on one core.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import librosa
import numpy as np

from earmark.audio import load_audio

REPO = Path(__file__).resolve().parents[1]


def _time(fn, paths: list[Path], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for p in paths:
            fn(p)
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("EARMARK_SHARED", REPO.parent / "shared")) / "data" / "fsdd")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    paths = sorted((args.data / "recordings").glob("*.wav"))
    assert paths, f"no recordings under {args.data}"
    load_audio(paths[0]), librosa.load(paths[0], sr=None)  # warm imports
    native = _time(lambda p: load_audio(p), paths, args.repeat)
    native_ref = _time(lambda p: librosa.load(p, sr=None), paths, args.repeat)
    res = _time(lambda p: load_audio(p, sr=16000), paths, args.repeat)
    res_ref = _time(lambda p: librosa.load(p, sr=16000, res_type="soxr_hq"), paths, args.repeat)
    y, _ = load_audio(paths[0], sr=16000)
    ref, _ = librosa.load(paths[0], sr=16000, res_type="soxr_hq")
    assert np.allclose(y, ref, atol=1e-5)
    n = len(paths)
    print(f"{n} FSDD files, one core, best of {args.repeat}")
    print(f"{'task':<28}{'earmark s':>10}{'librosa s':>11}{'ratio':>8}{'files/s':>10}")
    for task, a, b in (("decode (8 kHz native)", native, native_ref), ("decode + resample 16 kHz", res, res_ref)):
        print(f"{task:<28}{a:>10.2f}{b:>11.2f}{b / a:>7.1f}x{n / a:>10,.0f}")
    print(f"goal: all {n} files < 5 s → {'met' if max(native, res) < 5 else 'NOT met'}")


if __name__ == "__main__":
    main()
