"""Feature extraction benchmark: earmark against the reference librosa loops, in one run.

Measures, on the same FSDD files (all 2,500 by default):

1. ``classic173`` (earmark, all cores, files to arrays without a feature store) against the spoken-digit
   reference loop (librosa.load at 22,050 Hz; MFCC, chroma, mel, contrast, tonnetz; time means),
   one process. Goal: >= 30x.
2. ``logmel`` end to end (files → arrays) in clips/s, against a librosa loop (load at 16 kHz,
   melspectrogram, power_to_db). Goal: >= 3,000 clips/s.
3. The second ``classic173`` run over the same store against the first. Goal: >= 50x.
4. Peak RSS of extracting 20,000 clips (FSDD repeated) with ``logmel`` in a child process.
   Goal: < 1.5 GB.

Usage::

    python benchmarks/extract.py [--n 2500] [--ref-n 2500] [--workers N] [--skip-memory]

``--ref-n`` times the (slow) reference loops on the first files only; their per-clip time is then
applied to ``--n`` files (the ratio is per clip either way).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EARMARK_SHARED", REPO.parent / "shared")) / "data"


def reference_173(path: str) -> np.ndarray:
    import librosa

    X, sr = librosa.load(path, sr=22050)
    stft = np.abs(librosa.stft(X))
    mfccs = np.mean(librosa.feature.mfcc(y=X, sr=sr).T, axis=0)
    chroma = np.mean(librosa.feature.chroma_stft(S=stft, sr=sr).T, axis=0)
    mel = np.mean(librosa.feature.melspectrogram(y=X, sr=sr).T, axis=0)
    contrast = np.mean(librosa.feature.spectral_contrast(S=stft, sr=sr).T, axis=0)
    tonnetz = np.mean(librosa.feature.tonnetz(y=librosa.effects.harmonic(X), sr=sr).T, axis=0)
    return np.concatenate([mfccs, chroma, mel, contrast, tonnetz])


def reference_logmel(path: str) -> np.ndarray:
    import librosa

    y, sr = librosa.load(path, sr=16000)
    y = librosa.util.fix_length(y, size=16000)
    M = librosa.feature.melspectrogram(y=y, sr=sr, n_fft=512, win_length=400, hop_length=160, n_mels=64,
                                       fmin=20.0, fmax=8000.0)
    return librosa.power_to_db(M, top_db=80.0)


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


_MEMORY_CHILD = """
import json, os, sys, threading, time
from earmark.features import extract


def tree_rss_kb(root):
    # sum of VmRSS over root and all its descendants (process workers live under a forkserver)
    parent = {{}}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{{d}}/stat") as f:
                    parent[int(d)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                pass
    tree, frontier = {{root}}, [root]
    while frontier:
        p = frontier.pop()
        for c, pp in parent.items():
            if pp == p and c not in tree:
                tree.add(c)
                frontier.append(c)
    total = 0
    for p in tree:
        try:
            with open(f"/proc/{{p}}/status") as f:
                total += next(int(x.split()[1]) for x in f if x.startswith("VmRSS:"))
        except (OSError, StopIteration):
            pass
    return total


peak = [0]
done = threading.Event()


def sample():
    while not done.is_set():
        peak[0] = max(peak[0], tree_rss_kb(os.getpid()))
        time.sleep(0.05)


paths = json.loads(sys.stdin.read())
t = threading.Thread(target=sample, daemon=True)
t.start()
fs = extract(paths, "logmel", workers={workers})
peak[0] = max(peak[0], tree_rss_kb(os.getpid()))
done.set()
print(json.dumps({{"rows": len(fs.rows), "shape": list(fs.X.shape), "peak_tree_kb": peak[0]}}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2500, help="FSDD files for earmark (default: all 2,500)")
    ap.add_argument("--ref-n", type=int, default=None, help="files for the reference loops (default: --n)")
    ap.add_argument("--workers", type=int, default=None, help="earmark processes (default: all cores)")
    ap.add_argument("--skip-memory", action="store_true", help="skip the 20,000-clip memory run")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")

    from earmark.features import extract

    files = [str(p) for p in sorted((SHARED / "fsdd/recordings").glob("*.wav"))][: args.n]
    ref_n = min(args.ref_n or len(files), len(files))
    workers = args.workers or len(os.sched_getaffinity(0))
    print(f"{len(files)} FSDD files, reference loops on {ref_n}, earmark workers={workers}, "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")

    # warm up imports and compiled kernels in this process (not timed for either side)
    reference_173(files[0])
    reference_logmel(files[0])
    extract(files[:2], "classic173", workers=1)

    # 1. classic173
    _, t_ref = timed(lambda: [reference_173(p) for p in files[:ref_n]])
    ref_per_clip = t_ref / ref_n
    # like the reference: files to arrays, no feature store (cold worker pool included)
    _, t_ours = timed(extract, files, "classic173", cache=None, workers=workers)
    ours_per_clip = t_ours / len(files)
    ratio = ref_per_clip / ours_per_clip
    print(f"classic173  reference {ref_per_clip * 1e3:7.1f} ms/clip | earmark {ours_per_clip * 1e3:6.2f} ms/clip "
          f"| ratio {ratio:6.1f}x (goal >= 30x: {'met' if ratio >= 30 else 'NOT met'})")

    # load-independent view: CPU time per clip of one process (reference) vs one earmark process
    # the reference on one thread too: its BLAS/OpenMP second threads add no speed, only spinning CPU time
    from threadpoolctl import threadpool_limits

    from earmark.features import get_preset
    from earmark.features._extract import compute_batch

    with threadpool_limits(1):
        ref_sub = files[: min(ref_n, 100)]
        cpu0 = time.process_time()
        for p in ref_sub:
            reference_173(p)
        ref_cpu = (time.process_time() - cpu0) / len(ref_sub)
    sub = files[: min(len(files), 500)]
    cpu0 = time.process_time()
    compute_batch(sub, get_preset("classic173").to_dict())
    ours_cpu = (time.process_time() - cpu0) / len(sub)
    print(f"classic173  CPU time per clip, one process: reference {ref_cpu * 1e3:.1f} ms | earmark "
          f"{ours_cpu * 1e3:.2f} ms (warm) | ratio {ref_cpu / ours_cpu:.1f}x per core")

    # 3. cache: a first run filling a fresh store, then a second run over the same store
    store = Path(tempfile.mkdtemp(prefix="earmark-bench-"))
    try:
        fs, t_first = timed(extract, files, "classic173", cache=store, workers=workers)
        fs2, t_cached = timed(extract, files, "classic173", cache=store, workers=workers)
    finally:
        shutil.rmtree(store, ignore_errors=True)
    assert fs2.cached == len(fs.rows)
    ratio = t_first / t_cached
    print(f"cache       first run {t_first:7.2f} s | second run {t_cached:6.3f} s "
          f"| ratio {ratio:6.1f}x (goal >= 50x: {'met' if ratio >= 50 else 'NOT met'})")

    # 2. logmel end to end
    _, t_ref_lm = timed(lambda: [reference_logmel(p) for p in files[:ref_n]])
    lm, t_lm = timed(extract, files, "logmel", workers=workers)
    rate = len(files) / t_lm
    print(f"logmel      reference {ref_n / t_ref_lm:7.0f} clips/s | earmark {rate:6.0f} clips/s "
          f"| ratio {rate / (ref_n / t_ref_lm):6.1f}x (goal >= 3,000 clips/s: {'met' if rate >= 3000 else 'NOT met'})")

    # 4. memory on 20,000 clips
    if not args.skip_memory:
        all_files = [str(p) for p in sorted((SHARED / "fsdd/recordings").glob("*.wav"))]
        many = (all_files * (20000 // len(all_files) + 1))[:20000]
        child = subprocess.run([sys.executable, "-c", _MEMORY_CHILD.format(workers=workers)],
                               input=json.dumps(many), capture_output=True, text=True, check=True)
        r = json.loads(child.stdout.strip().splitlines()[-1])
        print(f"memory      20,000 clips → X {tuple(r['shape'])}: peak RSS of the process tree "
              f"(driver + workers) {r['peak_tree_kb'] / 1024**2:.2f} GB (goal < 1.5 GB)")


if __name__ == "__main__":
    main()
