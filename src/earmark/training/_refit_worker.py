"""The refit of a neural model, run in a child process while the validated run trains.

:func:`earmark.training.train` validates a neural model on held-out groups and, when there are
few groups, trains a second network on all the data (the refit). The two runs do not depend on
each other, so with ``parallel=True`` the refit runs in a fresh interpreter
(``python -m earmark.training._refit_worker JOB_DIR THREADS``) with half of torch's threads while
the validated run trains in the calling process with the other half. Two networks on one thread
each keep two cores busier than one network on two threads (small convolutions parallelise
poorly), so the pair finishes sooner.

A fresh interpreter, not :mod:`multiprocessing`: it does not re-run the caller's main script, so
it works from notebooks, from scripts without an ``if __name__ == "__main__":`` guard and from
standard input. The job folder holds ``job.pkl`` (estimator, inputs, targets, weights) on the
way in and ``result.pkl`` (the fitted estimator) on the way out; each finished epoch's record is
one JSON line on standard output.
"""

from __future__ import annotations

import json
import os
import pickle
import sys
from pathlib import Path
from typing import Any

__all__ = ["main"]


def _report(_est: Any, record: dict) -> None:
    sys.stdout.write(json.dumps(record, default=float) + "\n")
    sys.stdout.flush()


def _watch_parent(job: Path) -> None:
    """Exit (removing the job folder) when the parent goes away: its end of our standard input
    closes, which happens however it ends (SIGTERM, SIGKILL, out of memory)."""
    import shutil

    try:  # the raw descriptor, not sys.stdin: a buffered reader's lock would stall shutdown
        while os.read(0, 1 << 16):
            pass
    except OSError:
        pass
    shutil.rmtree(job, ignore_errors=True)
    os._exit(3)


def main(argv: list[str] | None = None) -> int:
    """Fit the job in ``argv[0]`` on ``argv[1]`` torch threads; write ``result.pkl`` beside it
    (or ``error.pkl``, the exception, when the fit fails).

    Example
    -------
    >>> main(["/tmp/earmark-refit-job", "1"])  # doctest: +SKIP
    0
    """
    import threading

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        sys.stderr.write("usage: python -m earmark.training._refit_worker JOB_DIR THREADS\n")
        return 2
    job, threads = Path(args[0]), int(args[1])
    threading.Thread(target=_watch_parent, args=(job,), daemon=True).start()
    try:
        import torch

        torch.set_num_threads(max(1, threads))
        with open(job / "job.pkl", "rb") as f:
            est, X, y, w = pickle.load(f)
        (job / "job.pkl").unlink()  # the data lives in this process now
        est.set_params(callbacks=[_report])
        est.fit(X, y, sample_weight=w)
        est.set_params(callbacks=None)
    except BaseException as exc:
        try:  # the parent raises the same error (its class and message)
            with open(job / "error.pkl.tmp", "wb") as f:
                pickle.dump(exc, f)
            os.replace(job / "error.pkl.tmp", job / "error.pkl")
        except Exception:  # an exception that does not pickle: the traceback on stderr says it
            pass
        raise
    tmp = job / "result.pkl.tmp"
    with open(tmp, "wb") as f:
        pickle.dump(est, f, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(tmp, job / "result.pkl")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
