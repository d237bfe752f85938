"""`earmark predict` on all of FSDD: files per second cold and with the feature cache warm.

Runs :func:`earmark.serving.predict_paths` (what ``earmark predict`` calls) on the 2,500 FSDD
recordings with the default FSDD model (see ``benchmarks/serve.py``; ``--model`` for another bundle):

* cold: no feature cache, every file decoded and featurized;
* cache fill: the first run with ``--cache DIR`` (computes and stores the features);
* cached: the same run again (features read from the store);

each with the network in PyTorch (``runtime="estimator"``) and in ONNX Runtime (what
``earmark predict`` picks for this many files), the model loaded once beforehand;
* the command line ``earmark predict MODEL FOLDER --cache DIR`` as a user runs it (process start
  and imports included), warm.

Reference measured in the same run: a naive loop, ``librosa.load`` + librosa log-mel + the same
network one file at a time, on ``--reference-n`` files (its rate is per file, like the others).

    python benchmarks/predict.py
    python benchmarks/predict.py --model digits.earmark --workers 2 --repeat 3

Goals (issue 6): >= 300 files/s cold, >= 1,000 files/s with the features cached.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve import SHARED, default_model, naive_reference


def _run(fn, repeat: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, help="Bundle (default: earmark's default model trained on FSDD, cached).")
    ap.add_argument("--epochs", type=int, default=8, help="Epochs when training the default model (0: its own default).")
    ap.add_argument("--data", type=Path, default=SHARED / "fsdd")
    ap.add_argument("--workers", type=int, default=None, help="predict_paths workers (default: its own).")
    ap.add_argument("--repeat", type=int, default=2, help="Runs of each timed case (best kept).")
    ap.add_argument("--reference-n", type=int, default=300, help="Files timed by the naive reference loop.")
    args = ap.parse_args()

    from earmark.serving import Predictor, predict_paths

    bundle = args.model or default_model(epochs=args.epochs or None, data=args.data)
    folder = args.data / "recordings"
    files = sorted(str(p) for p in folder.glob("*.wav"))
    n = len(files)
    print(f"model {bundle.name}; {n} FSDD files; {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f} at start")
    t = time.perf_counter()
    estimator = Predictor.load(bundle, runtime="estimator")
    load_s = time.perf_counter() - t
    t = time.perf_counter()
    onnx = Predictor(estimator.model, runtime="auto")  # what predict_paths picks for 2,500 files
    onnx_s = time.perf_counter() - t
    print(f"bundle loaded in {load_s:.1f} s; network exported to ONNX Runtime in {onnx_s:.1f} s "
          f"(runtime {onnx.runtime}); both once per `earmark predict` run, outside the timings below")
    predictors = [estimator] if onnx.runtime == "estimator" else [estimator, onnx]
    for p in predictors:
        predict_paths(p, files[:64], workers=args.workers)  # warm imports and kernels

    rows = []
    cold = warm = None
    store = Path(tempfile.mkdtemp(prefix="earmark-bench-store-"))
    try:
        for p in predictors:
            cold_s, cold = _run(lambda p=p: predict_paths(p, files, workers=args.workers), args.repeat)
            rows.append((f"cold, {p.runtime}", cold_s, p.runtime))
        fill_s, _ = _run(lambda: predict_paths(predictors[-1], files, workers=args.workers, cache=store), 1)
        rows.append((f"cache fill (first --cache run), {predictors[-1].runtime}", fill_s, None))
        for p in predictors:
            warm_s, warm = _run(lambda p=p: predict_paths(p, files, workers=args.workers, cache=store), args.repeat)
            rows.append((f"cached features, {p.runtime}", warm_s, p.runtime))
        t = time.perf_counter()
        cli = subprocess.run([sys.executable, "-m", "earmark.cli.main", "predict", str(bundle), str(folder),
                              "--cache", str(store), "--format", "csv", "-o", os.devnull],
                             capture_output=True, text=True)
        cli_s = time.perf_counter() - t
        if cli.returncode != 0:
            raise SystemExit(f"earmark predict failed ({cli.returncode}):\n{cli.stderr[-2000:]}")
        rows.append(("CLI earmark predict --cache, warm (all in)", cli_s, None))
    finally:
        shutil.rmtree(store, ignore_errors=True)
    naive = naive_reference(bundle, [Path(f) for f in files], args.reference_n)

    errors = sum(r["error"] is not None for r in cold)
    right = np.mean([r["label"] == Path(r["path"]).name.split("_", 1)[0] for r in cold if r["error"] is None])
    agree = all(a["label"] == b["label"] for a, b in zip(cold, warm, strict=True))
    diff = max(max(abs(a["probabilities"][k] - b["probabilities"][k]) for k in a["probabilities"])
               for a, b in zip(cold, warm, strict=True) if a["error"] is None)

    print(f"load average {os.getloadavg()[0]:.1f} at end; best of {args.repeat}; "
          f"{errors} errors; labels right {right:.3f} (training data); "
          f"cold vs cached: labels {'identical' if agree else 'DIFFER'}, max |Δp| {diff:.1e}")
    head = f"{'run':<44}{'seconds':>9}{'files/s':>10}{'vs naive':>10}"
    print(head)
    print("-" * len(head))
    for name, s, _ in rows:
        rel = f"{n / s / naive['rate']:>9.1f}x" if naive else ""
        print(f"{name:<44}{s:>9.2f}{n / s:>10,.0f}{rel}")
    if naive:
        print(f"{'naive librosa + model loop':<44}{n / naive['rate']:>9.2f}{naive['rate']:>10,.0f}{1:>9.1f}x"
              f"   ({naive['n']} files timed, rate extrapolated; max |Δp| vs earmark {naive['max_diff']:.1e})")
    best = predictors[-1].runtime
    cold_s = next(s for name, s, rt in rows if rt == best and name.startswith("cold"))
    warm_s = next(s for name, s, rt in rows if rt == best and name.startswith("cached"))
    print(f"ratio cached / cold ({best}): {cold_s / warm_s:.1f}x")
    goals = [(">= 300 files/s cold", n / cold_s >= 300), (">= 1,000 files/s cached", n / warm_s >= 1000)]
    print(f"goals ({best}): " + "; ".join(f"{g} {'met' if ok else 'NOT met'}" for g, ok in goals))


if __name__ == "__main__":
    main()
