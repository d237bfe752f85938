"""FSDD leave-one-speaker-out: train on 4 speakers, test on the 5th, for earmark's models.

Prints one row per (model, held-out speaker) and a summary (mean and worst fold) per model.
Goal (issue 4): default ``cnn`` mean >= 95 %, worst >= 90 %.

    python benchmarks/fsdd_loso.py                       # default cnn, all 5 folds
    python benchmarks/fsdd_loso.py --models cnn,logreg --folds theo --epochs 10
    python benchmarks/fsdd_loso.py --models "mlp:arch=reference-173,cnn:arch=reference"
    python benchmarks/fsdd_loso.py --features cqt:hop_length=256    # another front end for every model
    python benchmarks/fsdd_loso.py --models "cnn:net_options={'norm':'feature'}" --extra SYNTH/manifest.csv
                                                        # speech recipe: per-band normalisation + synthetic voices
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch

from earmark.sources import load_dataset
from earmark.training import train

SHARED = Path(os.environ.get("EARMARK_SHARED", Path(__file__).resolve().parents[1].parent / "shared")) / "data"


def parse_models(text: str) -> list[tuple[str, str, dict]]:
    """``"cnn,mlp:arch=reference-173"`` -> [(label, name, params)]."""
    out = []
    for item in text.split(","):
        name, _, rest = item.partition(":")
        params = {}
        for kv in filter(None, rest.split(";")):
            k, _, v = kv.partition("=")
            try:
                params[k] = eval(v, {})  # numbers, tuples
            except Exception:
                params[k] = v
        out.append((item, name, params))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--models", default="cnn")
    ap.add_argument("--folds", default="all", help="comma-separated speakers, or 'all'")
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cache", default=None, help="feature store directory")
    ap.add_argument("--extra", default=None, help="extra training source (e.g. synthetic voices)")
    ap.add_argument("--val-fraction", type=float, default=0.15)
    ap.add_argument("--features", default=None,
                    help="feature preset for every model, settings after a colon: 'cqt:hop_length=256'")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    df = load_dataset(SHARED / "fsdd" / "manifest.csv")
    extra = load_dataset(args.extra) if args.extra else None
    speakers = sorted(df["group"].unique()) if args.folds == "all" else args.folds.split(",")
    unknown = sorted(set(speakers) - set(df["group"]))
    if unknown:  # said before any training, not after a whole model
        raise SystemExit(f"--folds names no FSDD speaker: {unknown}; speakers: {sorted(set(df['group']))}")
    print(f"{'model':34s} {'held-out':10s} {'acc':>6s} {'val_acc':>7s} {'epochs':>6s} {'wall_s':>7s} {'cpu_s':>7s}")
    summary = {}
    for label, name, params in parse_models(args.models):
        accs = []
        for spk in speakers:
            t0, c0 = time.perf_counter(), time.process_time()
            tr, te = df[df["group"] != spk], df[df["group"] == spk]
            model = train(tr, model=name, features=args.features, epochs=args.epochs, seed=args.seed, cache=args.cache,
                          extra_train=extra, val_fraction=args.val_fraction, **params)
            pred = model.predict(te)
            acc = float((pred["label"].astype(str).to_numpy() == te["label"].astype(str).to_numpy()).mean())
            accs.append(acc)
            print(f"{label:34s} {spk:10s} {acc:6.3f} {model.metrics.get('accuracy', float('nan')):7.3f} "
                  f"{len(model.history):6d} {time.perf_counter() - t0:7.0f} {time.process_time() - c0:7.0f}",
                  flush=True)
        summary[label] = (float(np.mean(accs)), float(np.min(accs)), len(accs))
    print()
    print(f"{'model':34s} {'mean':>6s} {'worst':>6s} {'folds':>5s}")
    for label, (mean, worst, n) in summary.items():
        print(f"{label:34s} {mean:6.3f} {worst:6.3f} {n:5d}   goal mean >= 0.95, worst >= 0.90: "
              f"{'met' if mean >= 0.95 and worst >= 0.90 else 'NOT met'}")


if __name__ == "__main__":
    main()
