"""Extraction over many files: decode, featurize in batches, in parallel (processes or Ray), cached.

Example
-------
>>> from earmark.features import extract
>>> fs = extract(["a.wav", "b.wav"], "mfcc-mean")  # doctest: +SKIP
>>> fs.X.shape, fs.errors  # doctest: +SKIP
((2, 40), [])
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import CancelledError, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from earmark.errors import AudioDecodeError, EarmarkError, ParameterError
from earmark.features._presets import _KINDS, Preset, get_preset

__all__ = ["FeatureSet", "extract", "featurize", "shutdown_workers"]

ProgressCallback = Callable[[int, int], None]


#: Windows of a long recording featurized (and run through the model) together when predicting
#: window by window: memory per block is its features, ~0.1-0.5 MB per window for the default
#: presets, whatever the recording's length.
WINDOW_BLOCK = 256


@dataclass
class FeatureSet:
    """Features of the rows of a dataset that decoded.

    Attributes
    ----------
    X : np.ndarray or list of np.ndarray
        Stacked features, ``(n_ok, *preset.output_shape)``; a list of arrays when the preset's
        number of frames varies.
    rows : np.ndarray of int
        Positions (0-based, into the dataset given to :func:`extract`) of the rows in ``X``.
    errors : list of dict
        ``{"path", "reason"}`` for every file that could not be featurized (never fatal).
    preset : Preset
    paths : list of str
        Path of each row of ``X``.
    cached : int
        How many rows came from the feature store.
    """

    X: np.ndarray | list[np.ndarray]
    rows: np.ndarray
    errors: list[dict[str, str]]
    preset: Preset
    paths: list[str] = field(default_factory=list)
    cached: int = 0

    def __len__(self) -> int:
        return len(self.rows)

    def __repr__(self) -> str:
        shape = self.X.shape[1:] if isinstance(self.X, np.ndarray) else "variable"
        return (f"FeatureSet(preset={self.preset.name!r}, n={len(self.rows)}, shape={shape}, "
                f"errors={len(self.errors)}, cached={self.cached})")


def _as_preset(preset: str | Preset) -> Preset:
    return preset if isinstance(preset, Preset) else get_preset(preset)


def featurize(y_or_path: np.ndarray | str | os.PathLike[str] | bytes, preset: str | Preset, *,
              sr: int | None = None) -> np.ndarray:
    """Features of one clip: a file (decoded at the preset's rate) or samples.

    Parameters
    ----------
    y_or_path : np.ndarray, path or bytes
        Mono float samples, or an audio file (any format :func:`earmark.audio.load_audio` reads).
    preset : str or Preset
    sr : int or None
        Rate of the samples when ``y_or_path`` is an array and not already at
        ``preset.sample_rate`` (resampled with soxr).

    Raises
    ------
    AudioDecodeError
        The file cannot be decoded.

    Example
    -------
    >>> import numpy as np
    >>> featurize(np.zeros(8000, np.float32), "mfcc-mean", sr=8000).shape
    (40,)
    """
    from earmark.audio import float_samples, load_audio, to_mono

    if isinstance(y_or_path, tuple) and len(y_or_path) == 2 and isinstance(y_or_path[0], np.ndarray):
        raise TypeError("featurize takes the samples and their rate apart: featurize(y, preset, sr=sr) for "
                        "y, sr = earmark.load_audio(path) (or pass the path itself).")
    if isinstance(y_or_path, (list, tuple)) or hasattr(y_or_path, "columns"):
        raise TypeError(
            f"featurize computes the features of one clip, got a {type(y_or_path).__name__}; "
            "for a table or a list of files use earmark.extract(dataset, preset)."
        )
    p = _as_preset(preset)
    if isinstance(y_or_path, np.ndarray):
        y = to_mono(float_samples(y_or_path), channels_first=None)
        if y.size and not np.isfinite(y).all():
            raise ParameterError(f"The samples hold {int(np.count_nonzero(~np.isfinite(y)))} non-finite values "
                                 "(NaN or Inf); fix the array before computing features.")
        if sr is not None and (isinstance(sr, bool) or not isinstance(sr, (int, np.integer)) or sr <= 0):
            raise ParameterError(f"sr must be the samples' rate in Hz, a positive integer; got {sr!r}.")
        if sr is not None and sr != p.sample_rate:
            y = resample_like_librosa(y, orig_sr=int(sr), target_sr=p.sample_rate)
    else:
        y, native = load_audio(y_or_path)
        y = resample_like_librosa(y, orig_sr=native, target_sr=p.sample_rate)
    return p.transform(y)


# ----------------------------------------------------------------------------------------------
# one batch (runs in a worker process, a Ray task or in-process)
# ----------------------------------------------------------------------------------------------


def _read_native(path: str, want_hash: bool) -> tuple[np.ndarray, int, dict[str, Any]]:
    """Mono samples of ``path`` at its own rate, and its metadata (size, mtime, content hash)."""
    from earmark.audio import load_audio

    meta: dict[str, Any] = {"path": path}
    try:
        st = os.stat(path)
        meta["size"], meta["mtime_ns"] = int(st.st_size), int(st.st_mtime_ns)
        if want_hash and os.path.isfile(path):
            with open(path, "rb") as f:
                data = f.read()
            meta["hash"] = hashlib.blake2b(data, digest_size=16).hexdigest()
            src: Any = data
        else:
            src = path
    except OSError:
        src = path  # load_audio names the problem (missing, permission, …)
    try:
        y, native = load_audio(src)
    except AudioDecodeError as exc:
        raise AudioDecodeError(path, exc.reason) from None
    return y, native, meta


def resample_like_librosa(y: np.ndarray, *, orig_sr: int, target_sr: int) -> np.ndarray:
    """soxr high-quality resampling to exactly ``ceil(len(y) * target_sr / orig_sr)`` samples
    (zero-padded or trimmed), as ``librosa.load(path, sr=target_sr)`` returns them.

    Example
    -------
    >>> resample_like_librosa(np.ones(8000, np.float32), orig_sr=8000, target_sr=22050).shape
    (22050,)
    """
    from earmark.audio import resample

    if orig_sr == target_sr:
        return y
    n = int(np.ceil(len(y) * float(target_sr) / orig_sr))
    z = resample(y, orig_sr=orig_sr, target_sr=target_sr)
    if len(z) < n:
        z = np.pad(z, (0, n - len(z)))
    return z[:n]


def compute_batch(paths: Sequence[str], preset_record: dict[str, Any], want_hash: bool = False
                  ) -> tuple[list[int], list[np.ndarray], list[dict[str, Any]], list[dict[str, Any]]]:
    """Decode and featurize ``paths``; returns (ok indices, arrays, metas of ok, errors).

    Never raises for a bad file: it lands in ``errors`` (``{"path", "reason", ...meta}``).
    """
    from threadpoolctl import threadpool_limits

    kind_module = preset_record.get("kind_module")
    if kind_module and preset_record.get("kind") not in _KINDS:
        # a kind registered by a later layer (``embed``: earmark.transfer) in the calling process;
        # a worker process imports the module that registers it
        import importlib

        importlib.import_module(str(kind_module))
    record = {k: v for k, v in preset_record.items() if k != "kind_module"}
    # Parallelism comes from processes; threaded BLAS on many small products only contends.
    with threadpool_limits(1):
        return _compute_batch(paths, Preset.from_dict(record), want_hash)


def _compute_batch(paths: Sequence[str], preset: Preset, want_hash: bool
                   ) -> tuple[list[int], list[np.ndarray], list[dict[str, Any]], list[dict[str, Any]]]:
    import warnings

    from earmark.audio import resample_many

    clips: list[np.ndarray] = []
    rates: list[int] = []
    ok: list[int] = []
    metas: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i, p in enumerate(paths):
            try:
                y, native, meta = _read_native(p, want_hash)
            except AudioDecodeError as exc:
                errors.append({"path": p, "reason": exc.reason})
                continue
            except Exception as exc:  # a decoder bug must not stop a run of thousands of files
                errors.append({"path": p, "reason": f"{type(exc).__name__}: {exc}"})
                continue
            ok.append(i)
            clips.append(y)
            rates.append(native)
            metas.append(meta)
    # resample the clips of each native rate together (the same samples as one by one)
    for rate in set(rates):
        if rate == preset.sample_rate:
            continue
        idx = [k for k, r in enumerate(rates) if r == rate]
        for k, z in zip(idx, resample_many([clips[k] for k in idx], orig_sr=rate, target_sr=preset.sample_rate)):
            clips[k] = z
    arrays: list[np.ndarray] | np.ndarray = []
    if clips:
        try:
            out = preset.transform_batch(clips)
            # one stacked float32 array pickles back from a worker much faster than a list
            arrays = np.asarray(out, dtype=np.float32) if isinstance(out, np.ndarray) else list(out)
        except Exception:
            # one clip broke the batch (e.g. too short for a setting): isolate it
            keep_ok, keep_meta = [], []
            for i, c, m in zip(ok, clips, metas):
                try:
                    arrays.append(preset.transform_batch([c])[0])
                    keep_ok.append(i)
                    keep_meta.append(m)
                except Exception as exc:
                    reason = str(exc) if isinstance(exc, EarmarkError) else f"{type(exc).__name__}: {exc}"
                    errors.append({**m, "reason": f"feature extraction failed: {reason}"})
            ok, metas = keep_ok, keep_meta
    if not isinstance(arrays, np.ndarray):
        arrays = [np.asarray(a, dtype=np.float32) for a in arrays]
    return ok, arrays, metas, errors


# ----------------------------------------------------------------------------------------------
# executors
# ----------------------------------------------------------------------------------------------


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return os.cpu_count() or 1


_POOL_LOCK = threading.Lock()
_POOL: dict[str, Any] = {}


def _exit_with(parent: int) -> None:
    """Worker initializer: leave when the process that started the pool is gone. A killed parent
    (SIGTERM, SIGKILL) runs no exit handler, and its workers, each holding the fork server's pipe,
    kept it and themselves waiting for work forever."""

    def watch() -> None:
        while True:
            time.sleep(1.0)
            try:
                os.kill(parent, 0)
            except ProcessLookupError:
                os._exit(0)
            except PermissionError:  # alive, under another user (a reused pid would be too)
                pass

    threading.Thread(target=watch, name="earmark-parent-watch", daemon=True).start()


def _leave_ctrl_c_to_the_parent() -> None:
    """Block SIGINT in this (feeder) thread. The pool's fork server is started from it, and a
    blocked signal mask is inherited by the server and the workers it forks: a terminal's Ctrl-C,
    which reaches every process of the group, printed a ``KeyboardInterrupt`` traceback per
    process (during their start-up in particular). The parent's main thread, which owns the
    interrupt, still gets it; the workers leave when the parent has gone (see :func:`_exit_with`)."""
    import signal

    if hasattr(signal, "pthread_sigmask"):
        from multiprocessing import resource_tracker

        resource_tracker.ensure_running()  # started first: its start unblocks SIGINT in the calling thread
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})


def _shared_pool(workers: int, kind: str | None) -> ProcessPoolExecutor:
    """The process pool of this interpreter, kept between :func:`extract` calls (its workers keep
    their imports, compiled kernels and filter caches); replaced when ``workers`` changes or it
    broke, shut down at exit (or by :func:`shutdown_workers`)."""
    import multiprocessing as mp

    with _POOL_LOCK:
        pool = _POOL.get("pool")
        if pool is not None and _POOL.get("workers") == workers and not getattr(pool, "_broken", False):
            return pool
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
        ctx = mp.get_context("forkserver" if sys.platform.startswith("linux") else "spawn")
        if ctx.get_start_method() == "forkserver":
            # workers fork from a server that imported these once (librosa builds chroma/CQT filters);
            # only the first pool of a process sets them (the server then keeps running)
            preload = ["earmark.features._extract"]
            if kind in ("classic173", "stats"):
                # and loaded the compiled kernels (numba loads them per process, at first call)
                preload += ["librosa.filters", "librosa.core.intervals", "librosa.util.utils",
                            "earmark.features._warm"]
            ctx.set_forkserver_preload(preload)
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_exit_with,
                                   initargs=(os.getpid(),))
        if not _POOL.get("atexit"):
            import atexit

            atexit.register(shutdown_workers)
            _POOL["atexit"] = True
        _POOL.update(pool=pool, workers=workers)
        return pool


def shutdown_workers(*, now: bool = False) -> None:
    """Stop the worker processes that :func:`extract` keeps between calls (they also stop at exit).

    ``now=True`` ends them without letting their current batches finish (after an interrupt).

    Example
    -------
    >>> shutdown_workers()
    """
    with _POOL_LOCK:
        pool = _POOL.pop("pool", None)
        _POOL.pop("workers", None)
    if pool is not None:
        if now:
            for proc in list(getattr(pool, "_processes", {}).values()):
                proc.terminate()
        pool.shutdown(wait=True, cancel_futures=True)


def _run_local(batches: list[list[str]], record: dict[str, Any], want_hash: bool, workers: int
               ) -> Iterator[tuple[int, Any]]:
    """Batches on ``workers`` processes. This process computes batches too until the first worker
    result arrives, so the workers' start-up (first call of a session) costs no idle time.

    Workers that die before any of them returned a result (a main script without a
    ``if __name__ == "__main__":`` guard, which every worker re-runs; a script read from standard
    input, which they cannot re-run) are given up for this process, with one
    :class:`~earmark.errors.EarmarkWarning`: this process computes every batch instead.
    """
    if workers <= 1 or len(batches) <= 1 or _POOL.get("unusable"):
        for b, paths in enumerate(batches):
            yield b, compute_batch(paths, record, want_hash)
        return
    import multiprocessing

    if getattr(multiprocessing.current_process(), "_inheriting", False):
        # A worker re-runs the main script's top level before it starts (spawn / forkserver); an
        # unguarded script would start workers of its own here and wait on them for ever. This
        # worker stops quietly instead; the main process computes the batches itself.
        sys.stderr.write(
            "earmark: a feature-extraction worker stopped: the main script calls earmark at top level "
            "without `if __name__ == \"__main__\":` (worker processes re-run it).\n"
        )
        raise SystemExit(1)
    import queue

    results: queue.Queue = queue.Queue()
    lock = threading.Lock()
    state = {"next": 0, "worker_done": False, "stop": False, "no_pool": False, "from_workers": 0}

    def claim() -> int | None:
        with lock:
            if state["stop"] or state["next"] >= len(batches):
                return None
            b = state["next"]
            state["next"] += 1
            return b

    def on_done(b: int, fut: Future) -> None:
        state["worker_done"] = True
        results.put((b, fut))
        sem.release()

    sem = threading.Semaphore(2 * workers)  # batches in flight on the pool

    def feed() -> None:
        _leave_ctrl_c_to_the_parent()
        try:
            pool = _shared_pool(workers, record.get("kind"))
            while True:
                sem.acquire()
                if state["no_pool"]:
                    break
                b = claim()
                if b is None:
                    break
                try:
                    fut = pool.submit(compute_batch, batches[b], record, want_hash)
                except BrokenProcessPool as exc:  # this batch is computed here (see below)
                    results.put((b, exc))
                    break
                fut.add_done_callback(functools.partial(on_done, b))
        except BaseException as exc:  # the pool could not start: this process does the rest
            results.put((-1, exc))
        finally:
            results.put((-2, None))

    feeder = threading.Thread(target=feed, name="earmark-extract-feeder", daemon=True)
    feeder.start()
    n_yielded = 0
    try:
        while n_yielded < len(batches):
            if not state["worker_done"]:
                b = claim()
                if b is not None:
                    yield b, compute_batch(batches[b], record, want_hash)
                    n_yielded += 1
                    continue
            b, item = results.get()
            if b == -1:  # the pool could not start: this process takes the remaining batches
                if isinstance(item, (KeyboardInterrupt, SystemExit)):
                    raise item
                state["worker_done"] = False
            elif b >= 0:
                try:
                    if isinstance(item, BaseException):
                        raise item
                    out = item.result()
                except (BrokenProcessPool, CancelledError) as exc:
                    if state["from_workers"] or (isinstance(exc, CancelledError) and not state["no_pool"]):  # (the next call starts a fresh pool)
                        raise RuntimeError(
                            "A feature-extraction worker process died (its own error, if any, is printed "
                            "above). Common causes: it ran out of memory, or the main script calls earmark "
                            "at top level without `if __name__ == \"__main__\":`. Retry with workers=1 "
                            "to compute in this process."
                        ) from exc
                    _give_up_workers(workers)  # they never worked: compute here from now on
                    state["no_pool"] = True
                    sem.release()
                    state["worker_done"] = False
                    out = compute_batch(batches[b], record, want_hash)
                else:
                    state["from_workers"] += 1
                yield b, out
                n_yielded += 1
    finally:
        with lock:
            state["stop"] = True
        sem.release()


def _give_up_workers(workers: int) -> None:
    """Stop using worker processes in this process (they died before their first result), once, loudly."""
    import warnings

    from earmark.errors import EarmarkWarning

    with _POOL_LOCK:
        if _POOL.get("unusable"):
            return
        _POOL["unusable"] = True
        pool = _POOL.pop("pool", None)
        _POOL.pop("workers", None)
    if pool is not None:
        pool.shutdown(wait=False, cancel_futures=True)
    main = sys.modules.get("__main__")
    where = getattr(main, "__file__", None) or "the main script"
    warnings.warn(
        f"earmark could not start its {workers} feature-extraction worker processes, so features are "
        f"computed in this process only (slower). Usual cause: {where} calls earmark at top level "
        "without `if __name__ == \"__main__\":` (each worker process re-runs the script), or the code "
        "was read from standard input. Put the code under that guard to use the workers; workers=1 "
        "silences this warning.",
        EarmarkWarning,
        stacklevel=2,
    )


def _probe_ray_address(address: str, timeout: float = 10.0) -> None:
    """Refuse a ``host:port`` (or ``ray://host:port``) nobody answers on, before ``ray.init``
    retries it for minutes; ``auto``, ``local`` and forms Ray parses itself pass through."""
    import socket

    host, sep, port = address.split("://", 1)[-1].rpartition(":")
    if not sep or not port.isdigit() or not host:
        return
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise ParameterError(
            f"No Ray cluster answers at {address!r} ({exc.strerror or exc}). Check the address, or start "
            f"a cluster there (ray start --head --port {port}); without an address earmark starts a local "
            "Ray instance."
        ) from None


def _run_ray(batches: list[list[str]], record: dict[str, Any], want_hash: bool, workers: int,
             address: str | None) -> Iterator[tuple[int, Any]]:
    try:
        import ray
    except ImportError:
        raise ParameterError("backend='ray' needs Ray: pip install 'earmark[ray]'.") from None
    started = False
    if not ray.is_initialized():
        # Ray's own convention: RAY_ADDRESS names the cluster to join when no address is given
        address = address or os.environ.get("RAY_ADDRESS") or None
        try:
            if address:
                _probe_ray_address(address)
                ray.init(address=address, include_dashboard=False, log_to_driver=False)
            else:
                ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
        except ParameterError:  # said already (nobody answers at the address)
            raise
        except (ValueError, ConnectionError, RuntimeError, TimeoutError) as exc:
            why = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            where = f"join the Ray cluster at {address!r}" if address else "start a local Ray instance"
            raise ParameterError(
                f"Could not {where}: {why}. Check the address (host:port of `ray start --head`, or 'auto' "
                "with a cluster running on this machine) and that this client may join it; without an "
                "address (and RAY_ADDRESS unset) earmark starts a local Ray instance."
            ) from None
        started = True
    try:
        task = ray.remote(compute_batch)
        max_inflight = 2 * max(1, int(ray.available_resources().get("CPU", workers)))
        pending: dict[Any, int] = {}
        nxt = 0
        while nxt < len(batches) or pending:
            while nxt < len(batches) and len(pending) < max_inflight:
                pending[task.remote(batches[nxt], record, want_hash)] = nxt
                nxt += 1
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                b = pending.pop(ref)
                yield b, ray.get(ref)
    finally:
        if started:
            ray.shutdown()


# ----------------------------------------------------------------------------------------------
# extract
# ----------------------------------------------------------------------------------------------


def _paths_of(dataset: Any) -> list[str]:
    try:
        import pandas as pd

        if isinstance(dataset, pd.DataFrame):
            if "path" not in dataset.columns:
                raise ParameterError(
                    f"The dataset table has no 'path' column (columns: {list(dataset.columns)}); "
                    "build it with earmark.sources.load_dataset."
                )
            return [os.fspath(p) for p in dataset["path"].tolist()]
    except ImportError:  # pragma: no cover
        pass
    if isinstance(dataset, (str, os.PathLike)):
        raise ParameterError(
            f"extract takes a dataset table or a list of paths, not the single path {dataset!r}; "
            "use featurize() for one file or earmark.sources.load_dataset() for a folder."
        )
    return [os.fspath(p) for p in dataset]


def _rich_progress() -> tuple[ProgressCallback, Callable[[], None]]:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    prog = Progress(TextColumn("features"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[rate]} files/s"), TimeRemainingColumn(),
                    console=Console(stderr=True), transient=True)
    task = prog.add_task("extract", total=None, rate="-")
    prog.start()

    def update(done: int, total: int) -> None:
        t = prog.tasks[0]
        rate = done / t.elapsed if t.elapsed else 0.0
        prog.update(task, completed=done, total=total, rate=f"{rate:,.0f}")

    return update, prog.stop


_COMPUTABLE: set[str] = set()


def _check_computable(p: Preset) -> None:
    """Refuse settings the preset cannot compute (e.g. a CQT hop the multirate algorithm cannot
    use) once, up front, instead of as the same error for every file."""
    _KINDS[p.kind].ready(p.params)  # e.g. the bundle an embed preset uses has changed: once, not per file
    key = p.cache_key()
    if key in _COMPUTABLE or p.kind.startswith("embed"):  # embeddings load a network: left to the workers
        return
    probe = (0.01 * np.sin(np.arange(p.sample_rate // 4) * 0.3)).astype(np.float32)
    try:
        p.transform_batch([probe])
    except Exception as exc:  # whatever the feature code raises, it would raise for every file
        reason = str(exc) if isinstance(exc, EarmarkError) else f"{type(exc).__name__}: {exc}"
        raise ParameterError(f"Feature preset {p.name!r} cannot be computed with these settings: {reason}") from exc
    _COMPUTABLE.add(key)


def extract(
    dataset: Any,
    preset: str | Preset,
    *,
    cache: str | os.PathLike[str] | None = None,
    workers: int | None = None,
    backend: str = "local",
    progress: bool | ProgressCallback = False,
    ray_address: str | None = None,
    batch_size: int | None = None,
) -> FeatureSet:
    """Features of every file of a dataset, in parallel, optionally through an on-disk store.

    Parameters
    ----------
    dataset : pandas.DataFrame with a ``path`` column, or a sequence of paths
    preset : str or Preset
        See :func:`list_presets`.
    cache : path or None
        Feature store folder: cached features are read from it, new ones written to it (sharded,
        keyed by file content hash and the preset's full settings; atomic writes, so an
        interrupted run resumes). ``None`` computes without a store.
    workers : int or None
        Processes (or Ray CPUs for a local Ray instance); ``None``: all cores.
    backend : {"local", "ray"}
        ``"ray"`` runs the batches as Ray tasks on ``ray_address`` (or a local Ray instance).
    progress : bool or callable
        ``True`` shows a progress bar on stderr; a callable receives ``(done, total)``.
    ray_address : str or None
        Address of a running Ray cluster (``backend="ray"``).
    batch_size : int or None
        Files per batch (one task); ``None`` picks one from the dataset size.

    Returns
    -------
    FeatureSet
        ``X`` aligned with ``rows`` (positions into ``dataset``); failed files in ``errors``.

    Example
    -------
    >>> fs = extract(["../shared/data/fsdd/recordings/7_jackson_32.wav"], "mfcc-mean")  # doctest: +SKIP
    >>> fs.X.shape  # doctest: +SKIP
    (1, 40)
    """
    p = _as_preset(preset)
    paths = _paths_of(dataset)
    if paths:
        _check_computable(p)
    if backend not in ("local", "ray"):
        raise ParameterError(f"The 'backend' parameter of extract must be 'local' or 'ray'. Got {backend!r}.")
    if workers is None:
        workers = _cpu_count()
    if not isinstance(workers, int) or workers < 1:
        raise ParameterError(f"The 'workers' parameter of extract must be an int >= 1. Got {workers!r}.")
    n = len(paths)
    record = p.to_dict()
    shape = p.output_shape
    results: list[np.ndarray | None] = [None] * n
    X = np.empty((n, *shape), dtype=np.float32) if shape is not None else None
    done_mask = np.zeros(n, dtype=bool)
    error_of: dict[int, str] = {}
    cached = 0

    store = None
    if cache is not None:
        from earmark.features._store import FeatureStore

        store = FeatureStore(cache, record, p.cache_key())

    def put(pos: int, arr: np.ndarray) -> None:
        if X is not None:
            if arr.shape != shape:
                raise EarmarkError(f"internal: features of shape {arr.shape}, expected {shape}")
            X[pos] = arr
        else:
            results[pos] = arr
        done_mask[pos] = True

    # which positions need computing; identical paths are computed once
    todo: dict[str, list[int]] = {}
    for pos, path in enumerate(paths):
        if store is not None:
            try:
                st = os.stat(path)
                h = store.lookup_hash(path, int(st.st_size), int(st.st_mtime_ns))
                if h is None and os.path.isfile(path):  # new path: maybe known content
                    from earmark.features._store import file_hash

                    h = file_hash(path)
            except OSError:
                h = None
            if h is not None and h in store.entries:
                put(pos, store.get(h))
                cached += 1
                continue
            if h is not None and h in store.failures:
                error_of[pos] = store.failures[h]["reason"]
                continue
        todo.setdefault(path, []).append(pos)

    uniq = list(todo)
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer))
                                   or batch_size < 1):
        raise ParameterError(f"The 'batch_size' parameter of extract must be an int >= 1 or None. Got {batch_size!r} instead.")
    if batch_size is None:
        # costly presets (~10 ms a clip): many small batches, so the tail (one worker finishing the
        # last batch alone) stays short; cheap ones (< 1 ms a clip): fewer, larger batches
        split = 16 if p.kind in ("classic173", "stats", "cqt") else 4
        per = math.ceil(len(uniq) / max(1, split * workers)) if uniq else 1
        batch_size = int(min(256, max(16, per)))
    batches = [uniq[i:i + batch_size] for i in range(0, len(uniq), batch_size)]

    cb: ProgressCallback | None = None
    stop: Callable[[], None] | None = None
    if progress is True:
        cb, stop = _rich_progress()
    elif callable(progress):
        cb = progress
    total = n
    n_done = n - sum(len(v) for v in todo.values())
    if cb:
        cb(n_done, total)
    want_hash = store is not None
    task = {**record, "kind_module": _KINDS[p.kind].batch.__module__}  # what a worker imports for the kind
    runner = (_run_ray(batches, task, want_hash, workers, ray_address) if backend == "ray"
              else _run_local(batches, task, want_hash, workers))
    try:
        for b, (ok, arrays, metas, errors) in runner:
            bpaths = batches[b]
            for i, arr in zip(ok, arrays):
                for pos in todo[bpaths[i]]:
                    put(pos, arr)
            for e in errors:
                for pos in todo[e["path"]]:
                    error_of[pos] = e["reason"]
            if store is not None:
                items = [{k: m[k] for k in ("hash", "path", "size", "mtime_ns")} for m in metas if "hash" in m]
                arrs = [a for a, m in zip(arrays, metas) if "hash" in m]
                errs = [e for e in errors if "hash" in e]
                store.write_shard(items, arrs, errs)
            n_done += sum(len(todo[pp]) for pp in bpaths)
            if cb:
                cb(n_done, total)
    finally:
        if stop:
            stop()

    rows = np.flatnonzero(done_mask)
    if X is not None:
        if len(rows) < n:  # compact in place, keeping the order
            for k, pos in enumerate(rows):
                if k != pos:
                    X[k] = X[pos]
            X = X[: len(rows)]
        Xout: np.ndarray | list[np.ndarray] = X
    else:
        Xout = [results[i] for i in rows]  # type: ignore[misc]
    errors_out = [{"path": paths[i], "reason": error_of[i]} for i in sorted(error_of)]
    if store is not None:
        store.write_report(errors_out, len(rows))
    return FeatureSet(X=Xout, rows=rows, errors=errors_out, preset=p, paths=[paths[i] for i in rows],
                      cached=cached)
