"""FSDD leave-one-speaker-out cross-validation with the full HTML report.

Prints per-fold accuracy, mean ± std, worst fold, and what the report costs (build time, size),
then writes the JSON scores and the report next to ``--out``.

    python benchmarks/report_fsdd.py                          # logreg on MFCC means (fast)
    python benchmarks/report_fsdd.py --model cnn --epochs 8   # the default CNN
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from earmark.evaluation import build_report, cross_validate, to_json, write_report
from earmark.sources import load_dataset, summarize

SHARED = Path(os.environ.get("EARMARK_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="logreg")
    ap.add_argument("--features", default="mfcc-mean")
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="fsdd_loso")
    args = ap.parse_args()
    features = None if args.features in ("", "default") else args.features
    df = load_dataset(SHARED / "data" / "fsdd" / "manifest.csv")
    kwargs = {"epochs": args.epochs} if args.epochs else {}
    start = time.perf_counter()
    cv = cross_validate(df, model=args.model, features=features, folds="group", seed=args.seed,
                        on_fold=lambda f: print(f"{f.name:10s} acc {f.result.metrics['accuracy']:.4f}"
                                                f"  train {f.train_seconds:6.1f} s", flush=True),
                        **kwargs)
    cv_seconds = time.perf_counter() - start
    s = cv.summary
    print(f"{cv.model}: accuracy {s['accuracy']['mean']:.4f} ± {s['accuracy']['std']:.4f}, "
          f"macro F1 {s['macro_f1']['mean']:.4f}, worst {cv.worst_fold['fold']} "
          f"{cv.worst_fold['value']:.4f}; CV took {cv_seconds:.0f} s")
    start = time.perf_counter()
    html = build_report(cv, summary=summarize(df, duplicates=False))
    report_seconds = time.perf_counter() - start
    out = Path(args.out)
    write_report(html, out.with_suffix(".html"))
    to_json(cv.to_dict(), out.with_suffix(".json"))
    print(f"report: {len(html) / 1e6:.2f} MB built in {report_seconds:.1f} s -> {out.with_suffix('.html')}")


if __name__ == "__main__":
    main()
