"""Time to train the default cnn on all of FSDD (2,500 clips), against the reference CNN.

Both models are trained on the same features for the same number of epochs in this run; the
table prints wall time, process CPU time (this process only: a refit run in a second process is
not counted), seconds per epoch of the validated run and the ratio to the reference. Goal
(issue 4): default cnn on all of FSDD in <= 180 s on a 2-core machine (feature extraction included).

    python benchmarks/train_speed.py --sequential   # also the one-process run, for comparison
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

from earmark.features import extract, get_preset
from earmark.sources import load_dataset
from earmark.training import train

SHARED = Path(os.environ.get("EARMARK_SHARED", Path(__file__).resolve().parents[1].parent / "shared")) / "data"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--epochs", type=int, default=None, help="default: the model's")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reference", action="store_true", help="also train arch='reference' (slow)")
    ap.add_argument("--sequential", action="store_true",
                    help="also train the default with the refit after the validated run, in one process "
                         "(parallel=False), for comparison with the default (refit beside it)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    df = load_dataset(SHARED / "fsdd" / "manifest.csv")
    t0, c0 = time.perf_counter(), time.process_time()
    extract(df, get_preset("logmel"))
    feat_wall, feat_cpu = time.perf_counter() - t0, time.process_time() - c0
    print(f"feature extraction (logmel, {len(df)} clips): {feat_wall:.1f} s wall, {feat_cpu:.1f} s CPU (main process)")
    rows = []
    runs = [("cnn (default)", {})]
    if args.sequential:
        runs.append(("cnn parallel=False", {"parallel": False}))
    if args.reference:
        runs.append(("cnn arch=reference", {"arch": "reference"}))
    for label, params in runs:
        t0, c0 = time.perf_counter(), time.process_time()
        model = train(df, model="cnn", epochs=args.epochs, **params)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        rows.append((label, wall, cpu, len(model.history), model.metrics.get("accuracy", float("nan"))))
        print(f"{label}: {wall:.1f} s (refit beside the validated run: {model.config['parallel_refit']})", flush=True)
    print(f"\n{'model':22s} {'wall_s':>7s} {'cpu_s':>7s} {'epochs':>6s} {'s/epoch':>7s} {'val_acc':>7s} {'vs_ref':>6s} {'vs_goal':>7s}")
    ref = rows[-1][1] if args.reference else None
    for label, wall, cpu, n_ep, acc in rows:
        total = wall  # train() extracts its own features: they are in wall already
        ratio = f"{wall / ref:6.2f}" if ref else "     -"
        print(f"{label:22s} {wall:7.1f} {cpu:7.1f} {n_ep:6d} {wall / max(n_ep, 1):7.1f} {acc:7.3f} {ratio} "
              f"{total / 180:7.2f}")
    print("\nvs_goal = train()'s wall time (its own feature extraction included) / 180 s; < 1 meets the goal. "
          "The extraction above is timed apart, for reference.")
    default_wall = rows[0][1]
    if len(df) >= 2500 and args.epochs is None:
        print(f"goal (issue 4: default cnn on all of FSDD in <= 180 s): {'met' if default_wall <= 180 else 'NOT met'} "
              f"({default_wall:.0f} s)")
    else:
        print("goal (issue 4) is judged on all 2,500 FSDD clips with the default epochs only")
    print(f"load average now: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (shared machine)")


if __name__ == "__main__":
    main()
