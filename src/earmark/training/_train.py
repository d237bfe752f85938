"""``train``: from a dataset table to a :class:`TrainedModel` (split, features, fit, validate)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from earmark.audio import file_digests
from earmark.errors import DatasetError, EarmarkWarning, ParameterError
from earmark.training._trained import TrainedModel, summary_vectors

__all__ = ["DEFAULT_CLASSIFIER", "DEFAULT_REGRESSOR", "PARALLEL_MIN_STEPS", "PARALLEL_MIN_WORK", "ChanceLevelWarning", "ValidationCoverageWarning", "train"]


class ValidationCoverageWarning(EarmarkWarning):
    """Some classes occur only in the part of the data held out for validation."""


class ChanceLevelWarning(EarmarkWarning):
    """A classifier's validation accuracy is no better than guessing: the model did not learn."""


#: Model trained when ``model`` is not given.
DEFAULT_CLASSIFIER = "cnn"
DEFAULT_REGRESSOR = "cnn-reg"
_REFERENCE_CLIPS = 2000


def _is_numeric(col: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col)


def _refuse_mostly_numeric(dataset: pd.DataFrame, column: str) -> None:
    """A target column of numbers but for a few cells ('n/a', '?') was read as text, and would
    silently make every value a class: refuse it, naming the cells that are not numbers."""
    values = dataset[column]
    filled = values[values.notna() & values.astype(str).str.strip().ne("")]
    if len(filled) < 10:
        return
    as_number = pd.to_numeric(filled, errors="coerce")
    bad = filled[as_number.isna()]
    if 0 < len(bad) <= 0.1 * len(filled):
        rows = ", ".join(f"{dataset['path'].loc[i] if 'path' in dataset.columns else i}: {v!r}"
                         for i, v in bad.head(5).items())
        raise DatasetError(
            f"Column {column!r} holds numbers except in {len(bad)} of {len(filled)} rows ({rows}"
            f"{' …' if len(bad) > 5 else ''}), so it was read as text and every value would become a class. "
            f"Fix or blank those cells for a numeric target; to learn its values as classes, name a classifier "
            f"(--model) or give the column as the label (--label {column}).")


def _fingerprint(paths: list[str], targets: list[str]) -> str:
    lines = sorted(f"{p}\t{t}" for p, t in zip(paths, targets))
    return hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()


def _jsonable_params(params: dict) -> dict:
    out = {}
    for k, v in params.items():
        if isinstance(v, (str, int, float, bool)) or v is None:
            out[k] = v
        elif isinstance(v, (list, tuple)) and all(isinstance(x, (str, int, float, bool)) for x in v):
            out[k] = list(v)
        elif isinstance(v, dict):
            out[k] = _jsonable_params(v)
        elif isinstance(v, np.generic):
            out[k] = v.item()
        else:
            out[k] = repr(v)
    return out


def _metrics(task: str, y_true: np.ndarray, pred: np.ndarray, proba: np.ndarray | None,
             classes: list[str]) -> dict[str, float]:
    from sklearn import metrics as skm

    if len(y_true) == 0:
        return {}
    if task == "classification":
        out = {
            "accuracy": float(skm.accuracy_score(y_true, pred)),
            # mean recall over the classes the validation part holds (balanced_accuracy_score's
            # value, without its warning when the model answers a class the part lacks)
            "balanced_accuracy": float(skm.recall_score(y_true, pred, labels=np.unique(y_true), average="macro",
                                                        zero_division=0)),
            "macro_f1": float(skm.f1_score(y_true, pred, average="macro", zero_division=0)),
        }
        if proba is not None:
            p = np.clip(proba, 1e-7, 1)
            out["log_loss"] = float(skm.log_loss(y_true, p / p.sum(axis=1, keepdims=True), labels=classes))
        out["n"] = len(y_true)
        return out
    err = pred - y_true
    return {
        "mae": float(np.mean(np.abs(err))),
        "rmse": float(np.sqrt(np.mean(err**2))),
        "r2": float(skm.r2_score(y_true, pred)) if len(y_true) > 1 else float("nan"),
        "n": len(y_true),
    }


def check_targets(frame: pd.DataFrame, target_col: str, task: str, name: str = "dataset") -> None:
    """Raise :class:`DatasetError` naming the rows of ``frame`` whose ``target_col`` is missing
    (an empty cell), or, for regression, not a finite number. A row without a label can neither
    be learnt nor scored, and a blank must not become a class called ``'nan'``."""
    values = frame[target_col]
    if task == "regression":
        bad = np.flatnonzero(~np.isfinite(pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)))
        what = "missing or non-finite value(s)"
    else:
        bad = np.flatnonzero(values.isna().to_numpy() | (values.astype(object).map(
            lambda v: isinstance(v, str) and not v.strip()).to_numpy(dtype=bool)))
        what = "missing (empty) label(s)"
    if len(bad):
        rows = frame.index[bad][:5].tolist()
        raise DatasetError(
            f"Column {target_col!r} of the {name} table has {len(bad)} {what} (rows {rows}, e.g. "
            f"{frame['path'].iloc[bad[0]]}); drop those rows or fill them in.")


def _warn_if_chance(model: str, y_val: np.ndarray, accuracy: float, n_classes: int, epochs: int | None,
                    budget: int | None = None) -> None:
    """Warn (:class:`ChanceLevelWarning`) when ``accuracy`` on the validation labels ``y_val`` is
    not above what guessing gets: ``1 / n_classes`` or always answering the validation set's most
    common class, whichever is higher, plus two binomial standard errors of that rate (at most
    0.1) so that luck on a small validation set does not pass for learning."""
    n = len(y_val)
    if n == 0 or n_classes < 2:
        return
    values, counts = np.unique(y_val, return_counts=True)
    chance = max(1.0 / n_classes, counts.max() / n)
    if counts.max() / n > 1.0 / n_classes:
        basis = f"always answering the validation part's most common class ({str(values[counts.argmax()])!r})"
    else:
        basis = f"1/{n_classes} for {n_classes} classes"
    bar = chance + min(0.1, 2.0 * float(np.sqrt(chance * (1.0 - chance) / n)))
    if accuracy > bar:
        return
    if epochs is not None and budget is not None and epochs < budget:  # early stopping ended it
        more = (f"a lower learning rate or more patience (-p lr=…, -p patience=…; early stopping ended it at "
                f"epoch {epochs} of {budget}), ")
    else:
        more = f"more epochs (--epochs; it trained {epochs}), " if epochs is not None else ""
    how = "at or below" if accuracy <= chance else f"not clearly above (it needs more than {bar:.3f} on {n} clips)"
    warnings.warn(
        f"Model {model!r} may not have learned: its validation accuracy {accuracy:.3f} on {n} clips is {how} "
        f"chance level, {chance:.3f} ({basis}). Try {more}more training data, or another model "
        "(e.g. --model svm --features stats; earmark compare ranks several).",
        ChanceLevelWarning, stacklevel=3,
    )


def _fit_sklearn(est: Any, X: Any, y: np.ndarray, w: np.ndarray, *, said_numeric: bool = False) -> None:
    """Fit a scikit-learn estimator, passing weights only when they are not all one.

    A ``class_weight`` dict ``{label: weight}`` is applied as per-sample weights, keyed by the
    labels as text (scikit-learn 1.9's LogisticRegression looks the classes up by their encoded
    index, so ``{"7": 5}`` failed on digit labels); a key that is no class is refused. A value
    scikit-learn refuses when fitting becomes a :class:`ParameterError`, not a traceback.
    """
    params = est.get_params()
    neighbours = [v for k, v in params.items() if k.endswith("n_neighbors") and isinstance(v, (int, np.integer))]
    if neighbours and neighbours[0] > len(y):  # scikit-learn says so only when predicting
        raise ParameterError(f"n_neighbors={neighbours[0]} is more than the {len(y)} training clips; "
                             f"give -p n_neighbors={min(5, len(y))} or another value up to {len(y)}.")
    keys = [k for k, v in params.items() if k.endswith("class_weight") and isinstance(v, dict)]
    saved = {k: params[k] for k in keys}
    if keys:
        from earmark.models._torch import class_weights_by_label

        labels = [str(v) for v in np.asarray(y)]
        weights = class_weights_by_label(saved[keys[0]], sorted(set(labels)))
        w = np.asarray(w, np.float64) * np.array([weights.get(c, 1.0) for c in labels])
        est.set_params(**{k: None for k in keys})
    try:
        with warnings.catch_warnings():
            if said_numeric:  # scikit-learn's remark on numbers learnt as classes: train() said it, with the fix
                warnings.filterwarnings("ignore", message="The number of unique classes is greater than 50%")
            if np.allclose(w, 1.0):
                est.fit(X, y)
                return
            last = est.steps[-1][0] if hasattr(est, "steps") else None
            key = f"{last}__sample_weight" if last else "sample_weight"
            try:
                est.fit(X, y, **{key: w})
            except TypeError as exc:
                raise ParameterError(f"This model does not take per-sample weights ({exc}); use extra_weight=1"
                                     + (" and no class_weight." if keys else ".")) from exc
    except ValueError as exc:
        if isinstance(exc, ParameterError):
            raise
        raise ParameterError(f"scikit-learn could not train this model with its parameters: {str(exc).rstrip('.')}. "
                             "Change the -p value it names.") from exc
    finally:
        if saved:
            est.set_params(**saved)  # the model keeps the settings it was given


#: A refit job whose inputs (job.pkl) are older than this was never picked up: its run was killed.
STALE_REFIT_S = 3600.0


def check_seed(seed: Any, owner: str) -> None:
    """Refuse a seed that is not a whole number in [0, 2**32) (NumPy's and scikit-learn's range;
    before any work, not after training)."""
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**32:
        raise ParameterError(f"The 'seed' parameter of {owner} must be a whole number from 0 to 2**32 - 1 "
                             f"(4294967295). Got {seed!r} instead.")


def source_columns(frame: pd.DataFrame) -> list[str]:
    """The table's columns as its source names them (``speaker`` for the ``group`` it became)."""
    named = {k: v for k, v in (frame.attrs.get("columns_from") or {}).items() if v}
    return list(dict.fromkeys(str(named.get(c, c)) for c in frame.columns))  # 'speaker' once, not twice


def _sweep_stale_refit_jobs(tmp: Path) -> None:
    """Remove refit job folders left by runs killed together with their refit process (SIGKILL of
    the process group) before the refit read its inputs; a live refit deletes ``job.pkl`` within
    seconds of starting, so an hour-old one is an orphan holding a copy of the training features."""
    import shutil

    try:
        for job in tmp.glob("earmark-refit-*/job.pkl"):
            try:
                if time.time() - job.stat().st_mtime > STALE_REFIT_S:
                    shutil.rmtree(job.parent, ignore_errors=True)
            except OSError:
                continue
    except OSError:
        pass


def _rich_epoch_progress(*tasks: tuple[str, int]) -> tuple[list[Callable[[Any, dict], None]], Callable[[], None]]:
    """One progress display with a bar per ``(label, epochs)`` task (the validated run and a
    refit running beside it share it); returns each task's epoch callback and the display's stop."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[info]}"),
                   TimeElapsedColumn(), transient=True)
    bar.start()

    def callback(label: str, total: int) -> Callable[[Any, dict], None]:
        task = bar.add_task(label, total=total, info="")
        done = [0]

        def update(_est: Any, rec: dict) -> None:
            done[0] += 1
            info = f"epoch {rec['epoch']} loss {rec['loss']:.3f}"
            if "member" in rec:
                info = f"network {rec['member']}, " + info
            if "val_accuracy" in rec:
                info += f" val_acc {rec['val_accuracy']:.3f}"
            elif "val_mae" in rec:
                info += f" val_mae {rec['val_mae']:.3f}"
            bar.update(task, completed=done[0], info=info)

        return update

    return [callback(label, total) for label, total in tasks], bar.stop


def _hf_rate(est: Any) -> int | None:
    """The sampling rate a Hugging Face network's extractor expects, or None for other models."""
    if getattr(est, "network", None) != "hf":
        return None
    extractor = (getattr(est, "net_options", None) or {}).get("extractor") or {}
    return int(extractor.get("sampling_rate", 16000))


def _default_preset(est: Any, spec: Any) -> str:
    """The preset a model trains on when none is named: a Hugging Face network hears raw waveforms
    at its extractor's rate; the others their spec's preset."""
    rate = _hf_rate(est)
    return f"raw:sample_rate={rate}" if rate is not None else spec.preset


def _check_waveform_rate(est: Any, preset: Any) -> None:
    """A Hugging Face checkpoint learnt from waveforms at one rate: other features, or another
    rate, would train it on what it cannot read (refused before any audio is read)."""
    rate = _hf_rate(est)
    if rate is None:
        return
    if preset.kind != "raw" or preset.sample_rate != rate:
        raise ParameterError(
            f"The Hugging Face network reads raw waveforms at {rate} Hz (its feature extractor's rate); the "
            f"features are {preset.name} at {preset.sample_rate} Hz. Use --features raw:sample_rate={rate} "
            "(or leave --features out: that is the default for it).")


def _check_extra_apart(main: pd.DataFrame, extra: pd.DataFrame, group_col: str | None, va_pos: np.ndarray) -> None:
    """Extra training rows must not be the dataset's own files (they would be validated on, or
    weigh twice); a validation group among them is said (its clips are then heard in training)."""
    import os

    own = {os.path.realpath(str(p)): str(p) for p in main["path"]}
    both = [str(p) for p in extra["path"] if os.path.realpath(str(p)) in own]
    if both:
        raise DatasetError(
            f"extra_train lists {len(both)} file(s) of the dataset itself (e.g. {both[0]}); extra rows are "
            "trained on only, and these would also be validated on or weigh twice. Leave them out of the "
            "extra table (--extra-train), or out of the dataset.")
    if group_col is not None and "group" in extra.columns and len(va_pos):
        val_groups = set(main[group_col].iloc[va_pos].dropna().astype(str))
        shared = sorted(val_groups & set(extra["group"].dropna().astype(str)))
        if shared:
            warnings.warn(
                f"extra_train holds clips of {len(shared)} validation group(s) ({', '.join(shared[:5])}): the "
                "validation score then includes groups heard in training, so it overstates accuracy on new "
                "ones. Give the extra clips other group names only if they really are other speakers.",
                EarmarkWarning, stacklevel=3)


def _split(df: pd.DataFrame, group_col: str | None, val_fraction: float, seed: int
           ) -> tuple[np.ndarray, np.ndarray, str]:
    """Positions of the training and validation rows, and how they were split."""
    from earmark.sources import train_test_split

    n = len(df)
    pos = np.arange(n)
    if val_fraction <= 0 or n < 4:
        return pos, pos[:0], "none"
    tmp = pd.DataFrame({"path": df["path"].to_numpy(), "_pos": pos})
    if "label" in df.columns:
        tmp["label"] = df["label"].astype(str).to_numpy()
    by = "random"
    if group_col is not None and df[group_col].nunique() >= 2:
        tmp["group"] = df[group_col].to_numpy()  # blanks stay blank: each such row is a group of its own
        by = "group"
    try:
        tr, va = train_test_split(tmp, test_size=val_fraction, seed=seed, by=by)
    except (DatasetError, ValueError):
        if by != "group":
            raise
        tr, va = train_test_split(tmp.drop(columns="group"), test_size=val_fraction, seed=seed, by="random")
        by = "random"
    return np.sort(tr["_pos"].to_numpy()), np.sort(va["_pos"].to_numpy()), f"{by}:{group_col}" if by == "group" else by


#: Below this many groups, neural models are refitted on all data after validation (see ``train``).
_FEW_GROUPS = 6


def _phase_checkpoints(est: Any, phase: str) -> str | None:
    """Point ``est``'s ``checkpoint_dir`` (if it has one) at its ``phase`` sub-folder
    (``validation``, ``refit`` or ``train``) and return the folder it had, so that one phase never
    resumes from another's checkpoint (the refit taking the validated run's as finished, or the
    validated run loading a refit trained on the validation clips)."""
    base = getattr(est, "checkpoint_dir", None)
    if base:
        est.set_params(checkpoint_dir=str(Path(base) / phase))
    return base


def _budget(est: Any, n_samples: int) -> int:
    """Epochs a torch estimator trains on ``n_samples`` examples at most (``min_steps`` may raise
    its ``epochs``)."""
    return int(est.epoch_budget(n_samples)) if hasattr(est, "epoch_budget") else int(est.epochs)


def _refit_rows(X_tr: Any, y_tr: np.ndarray, w_tr: np.ndarray, X_va: Any, y_va: np.ndarray,
                order: np.ndarray) -> tuple[Any, np.ndarray, np.ndarray]:
    """Training + validation rows, put back in dataset order by ``order``, so the refit sees exactly
    what training without a validation split would (same shuffles for a seed)."""
    X_all = np.concatenate([X_tr, X_va]) if isinstance(X_tr, np.ndarray) else [*X_tr, *X_va]
    y_fit = np.concatenate([y_tr, y_va])[order]
    w_fit = np.concatenate([w_tr, np.ones(len(y_va))])[order]
    X_all = X_all[order] if isinstance(X_all, np.ndarray) else [X_all[i] for i in order]
    return X_all, y_fit, w_fit


def _refit_torch(est: Any, X_all: Any, y_fit: np.ndarray, w_fit: np.ndarray, callbacks: list,
                 progress: Any) -> Any:
    """A fresh copy of ``est`` trained on all rows (:func:`_refit_rows`) for its full epoch budget."""
    from sklearn.base import clone

    final = clone(est)
    checkpoint_dir = _phase_checkpoints(final, "refit")
    stop = None
    cbs = list(callbacks) + ([progress] if callable(progress) else [])
    if progress is True:
        (cb,), stop = _rich_epoch_progress(("refit", _budget(final, len(y_fit)) * int(getattr(final, "ensemble", 1))))
        cbs.append(cb)
    final.set_params(callbacks=cbs or None, validation_fraction=0.0)
    try:
        final.fit(X_all, y_fit, sample_weight=w_fit)
    finally:
        if stop is not None:
            stop()
    final.set_params(callbacks=None, checkpoint_dir=checkpoint_dir)
    return final


#: ``parallel=None`` runs the refit beside the validated run when it takes at least this many
#: optimizer steps and :data:`PARALLEL_MIN_WORK` input values pass through the network (steps ×
#: batch size × values per example): below that, starting a second interpreter (3-7 s of CPU:
#: importing torch) costs more than it saves. The default cnn on 2,500 FSDD clips: 1,580 steps,
#: 3.3e8 values.
PARALLEL_MIN_STEPS = 400
PARALLEL_MIN_WORK = 5e7


def _parallel_threads(parallel: bool | None, est: Any, n_refit: int, callbacks: list, progress: Any,
                      example_size: int = 1) -> int:
    """Torch threads for a refit run beside the validated run; 0 runs them one after the other."""
    import torch

    if parallel is False:
        return 0
    if callbacks or callable(progress):
        if parallel:
            raise ParameterError(
                "parallel=True (--parallel-refit) runs the refit in another process, which cannot call the "
                "estimator's callbacks or a progress function; drop them or use parallel=False."
            )
        return 0
    threads = torch.get_num_threads()
    if parallel:
        return max(1, threads // 2)
    device = str(getattr(est, "device", "cpu"))
    on_cpu = device == "cpu" or (device == "auto" and not torch.cuda.is_available() and not (
        getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()))
    steps = _budget(est, n_refit) * est._steps_per_epoch(n_refit) * int(getattr(est, "ensemble", 1))
    work = steps * min(int(getattr(est, "batch_size", 1)), n_refit) * example_size
    if not on_cpu or threads < 2 or steps < PARALLEL_MIN_STEPS or work < PARALLEL_MIN_WORK:
        return 0
    return threads // 2


class _RefitProcess:
    """A refit running in a fresh interpreter (:mod:`earmark.training._refit_worker`); ``wait()``
    returns the fitted estimator, ``check()`` raises at once if it has failed, ``kill()`` stops it.

    The child holds the read end of a pipe as its standard input: when this process ends in any
    way (an exception, SIGTERM, SIGKILL), the pipe closes and the child exits and removes its
    job folder, so no refit outlives the run that started it."""

    def __init__(self, est: Any, X: Any, y: np.ndarray, w: np.ndarray, threads: int,
                 on_epoch: Callable[[Any, dict], None] | None) -> None:
        import os
        import pickle
        import subprocess
        import sys
        import tempfile
        import threading

        import earmark

        _sweep_stale_refit_jobs(Path(tempfile.gettempdir()))
        self._tmp = tempfile.TemporaryDirectory(prefix="earmark-refit-")
        self.job = Path(self._tmp.name)
        env = dict(os.environ)
        root = str(Path(earmark.__file__).resolve().parents[1])  # the child imports this earmark
        env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
        env["OMP_NUM_THREADS"] = str(threads)
        try:
            with open(self.job / "job.pkl", "wb") as f:
                pickle.dump((est, X, y, w), f, protocol=pickle.HIGHEST_PROTOCOL)
            self._stderr = open(self.job / "stderr.txt", "w+b")  # noqa: SIM115 (closed by close())
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "earmark.training._refit_worker", str(self.job), str(threads)],
                stdout=subprocess.PIPE, stderr=self._stderr, stdin=subprocess.PIPE, env=env,
            )
        except BaseException:  # a full disk, no interpreter: nothing is left behind
            if hasattr(self, "_stderr"):
                self._stderr.close()
            self._tmp.cleanup()
            raise
        self._reader = threading.Thread(target=self._read, args=(on_epoch,), daemon=True)
        self._reader.start()

    def _read(self, on_epoch: Callable[[Any, dict], None] | None) -> None:
        import json
        import sys

        assert self._proc.stdout is not None
        for raw in self._proc.stdout:
            line = raw.decode("utf-8", "replace")
            try:
                record = json.loads(line)
            except ValueError:
                record = None
            if not isinstance(record, dict):
                sys.stdout.write(line)  # something the child printed: pass it on
                continue
            if on_epoch is not None:
                with contextlib.suppress(Exception):  # a progress display must not stop the refit
                    on_epoch(None, record)

    def _failure(self, rc: int) -> BaseException:
        """The child's own exception (its class and message) if it left one, else a RuntimeError
        with the end of its stderr (or the signal that killed it)."""
        import pickle
        import signal

        error = self.job / "error.pkl"
        if error.exists():
            with contextlib.suppress(Exception), open(error, "rb") as f:
                exc = pickle.load(f)
                if isinstance(exc, BaseException):
                    return exc
        self._stderr.seek(0)
        tail = "\n".join(self._stderr.read().decode("utf-8", "replace").strip().splitlines()[-20:])
        if rc < 0:
            try:
                name = signal.Signals(-rc).name
            except ValueError:
                name = str(-rc)
            how = f"was killed by signal {name}" + (" (out of memory?)" if -rc == signal.SIGKILL else "")
        else:
            how = f"failed with exit status {rc}"
        return RuntimeError(
            f"The refit on all the data, run in a second process (parallel=True, --parallel-refit), {how}"
            + (f":\n{tail}" if tail else ".")
            + "\nRetry with parallel=False (earmark train --no-parallel-refit) to run it in this process."
        )

    def check(self, *_: Any) -> None:
        """Raise the child's error now if it has already failed (an epoch callback of the validated run)."""
        rc = self._proc.poll()
        if rc is not None and rc != 0:
            raise self._failure(rc)

    def wait(self) -> Any:
        import pickle
        import sys

        rc = self._proc.wait()
        self._reader.join()
        result = self.job / "result.pkl"
        try:
            if rc != 0 or not result.exists():
                raise self._failure(rc)
            self._stderr.seek(0)
            err = self._stderr.read().decode("utf-8", "replace")
            if err.strip():
                sys.stderr.write(err)  # the child's warnings, as the one-process run would show them
            with open(result, "rb") as f:
                return pickle.load(f)
        finally:
            self.close()

    def kill(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self.close()

    def close(self) -> None:
        self._stderr.close()
        for pipe in (self._proc.stdin, self._proc.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
        self._tmp.cleanup()


def auto_duration(
    dataset: pd.DataFrame, *, default: float = 1.0, quantile: float = 0.95, step: float = 0.5,
    limit: float = 10.0, sample: int = 512, seed: int = 0,
) -> float:
    """Clip length (seconds) that lets a fixed-length model hear whole clips of ``dataset``.

    The ``quantile`` of the clips' durations rounded up to a multiple of ``step``, no shorter than
    ``default`` and no longer than ``limit`` (longer clips are cropped; see ``earmark predict
    --window`` for long recordings). Durations come from the table's ``duration`` column
    (:func:`earmark.sources.load_dataset` fills it) or, without one, from the headers of up to
    ``sample`` of its files; unreadable files are left out (training reports them).

    Example
    -------
    >>> auto_duration(pd.DataFrame({"path": ["a.wav"] * 3, "duration": [0.4, 4.2, 5.0]}))
    5.0
    >>> auto_duration(pd.DataFrame({"path": ["a.wav"], "duration": [0.6]}))
    1.0
    """
    if "duration" in dataset.columns and pd.to_numeric(dataset["duration"], errors="coerce").notna().any():
        seconds = pd.to_numeric(dataset["duration"], errors="coerce").dropna().to_numpy(dtype=float)
    else:
        from earmark.audio import audio_info
        from earmark.errors import AudioDecodeError

        paths = dataset["path"]
        if len(paths) > sample:
            paths = paths.sample(sample, random_state=seed)
        found = []
        for p in paths:
            try:
                found.append(audio_info(p).duration)
            except (AudioDecodeError, OSError):
                continue
        seconds = np.asarray(found, dtype=float)
    if seconds.size == 0:
        return float(default)
    want = float(np.quantile(seconds, quantile))
    return float(min(max(np.ceil(want / step - 1e-9) * step, default), max(limit, default)))


def names_duration(features: Any) -> bool:
    """Whether ``features`` fixes the clip length itself: a preset object (taken as given), a
    ``"name:…,duration=…"`` string, or the name of a registered preset whose duration differs
    from its kind's default. A built-in name (``"cqt"``) leaves the length to the data.

    Example
    -------
    >>> names_duration("cqt"), names_duration("cqt:duration=1.5")
    (False, True)
    """
    from earmark.features._presets import _KINDS, _PRESETS

    if features is None:
        return False
    if not isinstance(features, str):
        return True
    name, _, settings = features.partition(":")
    if any(item.partition("=")[0].strip() == "duration" for item in settings.split(",")):
        return True
    registered = _PRESETS.get(name)
    own = registered.params.get("duration") if registered is not None else None
    return own is not None and own != _KINDS[registered.kind].defaults.get("duration")


def _set_duration(preset: Any, dataset: pd.DataFrame, *, duration: float | None, chosen: bool) -> tuple[Any, str]:
    """The preset with the clip length to use, and where that length came from
    (``"user"``: ``duration``; ``"data"``: :func:`auto_duration`; ``"preset"``: its own)."""
    from earmark.features import get_preset

    own = preset.params.get("duration")
    if duration is None and (chosen or own is None):
        return preset, "preset"
    if own is None:
        raise ParameterError(
            f"The 'duration' parameter only applies to fixed-length presets such as 'logmel' or 'raw'; "
            f"preset {preset.name!r} has no fixed length. Leave duration unset."
        )
    if duration is not None:
        if isinstance(duration, bool) or not isinstance(duration, (int, float)) or not 0 < duration <= 600:
            raise ParameterError(f"The 'duration' parameter must be a number of seconds in (0, 600]. Got {duration!r} instead.")
        seconds, source = float(duration), "user"
    else:
        seconds, source = auto_duration(dataset, default=float(own)), "data"
    return (preset if seconds == own else get_preset(preset, duration=seconds)), source


def train(
    dataset: pd.DataFrame,
    *,
    model: str | None = None,
    features: Any = None,
    target: str | None = None,
    group: str | None = None,
    epochs: int | None = None,
    seed: int = 0,
    val_fraction: float | None = None,
    refit: bool | None = None,
    parallel: bool | None = None,
    duration: float | None = None,
    extra_train: pd.DataFrame | None = None,
    extra_weight: float = 1.0,
    cache: Any = None,
    workers: int | None = None,
    progress: bool | Callable[[Any, dict], None] = False,
    **model_params: Any,
) -> TrainedModel:
    """Train a model on a dataset table, validating on held-out groups of it.

    Parameters
    ----------
    dataset : DataFrame
        Table from :func:`earmark.sources.load_dataset` (``path``, ``label``, optional ``group``…).
    model : str, optional
        Registry name (``earmark models list``). Default: ``"cnn"`` for labels, ``"cnn-reg"``
        for a numeric ``target``.
    features : str or Preset, optional
        Feature preset, by name with optional settings (``"cqt:hop_length=256"``) or as an
        object; default: the model's preset.
    duration : float, optional
        Seconds each clip is padded or cropped to (fixed-length presets). Default: the duration
        a :class:`~earmark.features.Preset` object or a ``"name:duration=…"`` string carries,
        else one chosen from the data (:func:`auto_duration`).
    target : str, optional
        Column to learn (default ``"label"``). A numeric column gives a regression task unless
        ``model`` is a classifier.
    group : str, optional
        Column whose values must not be split between training and validation (default: the
        ``group`` column, else ``fold``, else a stratified random split).
    epochs : int, optional
        Maximum epochs of neural models (their default otherwise).
    seed : int
        Seed of the split, initialisation, shuffling and augmentation.
    val_fraction : float, optional
        Share of the data (by group) held out for early stopping and validation metrics
        (default 0.15; 0 trains on everything without validation).
    refit : bool, optional
        After validating, train a fresh network on all the data (validation part included) for
        the full epoch budget and keep that one; the reported metrics stay those of the validated
        run. Default: on for neural models when a class has fewer than 6 groups (for regression:
        the data has fewer than 6), since holding one speaker out of 4 for early stopping costs
        more than it gives (FSDD leave-one-speaker-out: mean 0.815 -> 0.860). Classical models
        are refitted on all data unless ``refit=False``.
    parallel : bool, optional
        Train the refit at the same time as the validated run, in a second Python process with
        half of torch's threads (the two runs do not depend on each other). Default: when the
        refit is trained on the CPU, torch has at least 2 threads, the refit takes at least
        :data:`PARALLEL_MIN_STEPS` optimizer steps on :data:`PARALLEL_MIN_WORK` input values, and
        no callback or progress function is given
        (the other process cannot call them). On 2 cores, training the default cnn on all of
        FSDD (validation, then refit) takes 123-132 s instead of 149-196 s. Each run then has
        fewer threads, which changes float rounding: the refit and the validation metrics can
        differ slightly from a one-process run (bit-identical when both use one thread per run);
        the same seed and setting give the same model.
    extra_train : DataFrame, optional
        Additional rows used for training only, never for validation (e.g. synthetic voices).
    extra_weight : float
        Loss weight of the ``extra_train`` rows relative to the dataset's.
    cache : path, optional
        Feature store directory for :func:`earmark.features.extract`.
    workers : int, optional
        Feature-extraction processes (default: all cores; 1 computes in this process, which is
        quicker for small tables).
    progress : bool or callable
        ``True`` shows a progress bar (command line); a callable is called as
        ``cb(estimator, epoch_record)`` after each epoch.
    **model_params
        Estimator parameters (e.g. ``arch="reference"``, ``lr=1e-3``, ``C=10``), by the final
        estimator's names or as ``get_params()`` spells them (the names :func:`tune` reports).
        A neural model's ``checkpoint_dir`` gets one sub-folder per phase, ``validation/`` (or
        ``train/`` without a validation split) and ``refit/``, so ``resume=True`` continues each
        phase from its own checkpoint; one that another run wrote is refused (see
        :class:`~earmark.models.TorchClassifier`).

    Returns
    -------
    TrainedModel

    Raises
    ------
    ParameterError
        Unknown model, preset, column or model parameter (with the valid names); a sequence
        preset for a classical model.
    DatasetError
        Too few usable clips or classes.

    Warns
    -----
    ChanceLevelWarning
        A classifier's validation accuracy is not above chance (the bundle is still written).

    Examples
    --------
    >>> from earmark.sources import load_dataset
    >>> df = load_dataset("../shared/data/fsdd/manifest.csv")  # doctest: +SKIP
    >>> model = train(df, model="logreg", features="mfcc-mean")  # doctest: +SKIP
    >>> round(model.metrics["accuracy"], 2)  # doctest: +SKIP
    0.9
    """
    from earmark.features import Preset, extract, get_preset
    from earmark.models import get_model, get_spec

    started = time.perf_counter()
    if not isinstance(dataset, pd.DataFrame) or "path" not in dataset.columns:
        raise ParameterError("train() takes a dataset table with a 'path' column; build it with "
                             "earmark.sources.load_dataset(SOURCE).")
    if len(dataset) == 0:
        raise DatasetError("The dataset table is empty; check the source and its filters.")
    check_seed(seed, "train")
    for pname, value in (("refit", refit), ("parallel", parallel)):
        if value is not None and not isinstance(value, (bool, np.bool_)):
            raise ParameterError(f"The '{pname}' parameter of train must be True, False or None. Got {value!r} instead.")
    if not isinstance(progress, (bool, np.bool_)) and not callable(progress):
        raise ParameterError(f"The 'progress' parameter of train must be a bool or a callable(estimator, record). "
                             f"Got {progress!r} instead.")
    if extra_train is not None and not isinstance(extra_train, pd.DataFrame):
        raise ParameterError("The 'extra_train' parameter of train takes a table (earmark.load_dataset(SOURCE)), "
                             f"not a {type(extra_train).__name__}.")
    if cache is not None and not isinstance(cache, (str, os.PathLike)):
        raise ParameterError(f"The 'cache' parameter of train must be a folder path or None. Got {cache!r} instead.")
    target_col = target or "label"
    for name, frame in (("dataset", dataset), ("extra_train", extra_train)):
        if frame is not None and target_col not in frame.columns:
            raise ParameterError(
                f"The {name} table has no column {target_col!r} (columns: {source_columns(frame)}); "
                "name the column to learn (--target COLUMN; target= in Python)."
            )
    if val_fraction is None:
        val_fraction = 0.15
    if not 0 <= val_fraction < 1:
        raise ParameterError(f"The 'val_fraction' parameter must be a float in [0, 1). Got {val_fraction!r} instead.")
    if extra_weight <= 0:
        raise ParameterError(f"The 'extra_weight' parameter must be > 0. Got {extra_weight!r} instead.")
    numeric = _is_numeric(dataset[target_col]) and target_col != "label"
    chosen = model is None
    if model is None:
        model = DEFAULT_REGRESSOR if numeric else DEFAULT_CLASSIFIER
    spec = get_spec(model)
    if not numeric and target_col != "label" and (chosen or spec.task == "regression"):
        _refuse_mostly_numeric(dataset, target_col)  # a classifier named by the user learns the values as classes
    numbers_as_classes = numeric and spec.task == "classification"
    if numbers_as_classes:
        n_values = int(dataset[target_col].nunique())
        warnings.warn(
            f"Column {target_col!r} holds numbers and {model!r} is a classifier: each of its {n_values} values "
            "becomes a class of its own, and nearness between values is lost. To predict the number, use a "
            "regressor (ridge, svr, rf-reg, gbdt-reg, cnn-reg; or no --model).", EarmarkWarning, stacklevel=2)
    est = get_model(model, **model_params)  # refuses unknown names and bad values before extraction
    for key in model_params:  # parameters train() sets itself would be silently overwritten
        if key == "random_state" or key.endswith("__random_state"):
            raise ParameterError(f"train() seeds {model!r} itself: give seed={model_params[key]!r} "
                                 f"(--seed {model_params[key]}) instead of {key}.")
        if key == "validation_fraction" and spec.kind == "torch":
            raise ParameterError(f"train() carves the validation part itself (by group): give "
                                 f"val_fraction={model_params[key]!r} (--val-fraction) instead of validation_fraction.")
    if epochs is not None and "epochs" not in est.get_params():
        raise ParameterError(f"Model {model!r} is not trained in epochs; drop --epochs.")
    model_params = spec.short_names(model_params)
    task = spec.task
    if task == "regression" and not _is_numeric(dataset[target_col]):
        hint = (" (the label column is always read as text: give the numeric column as --target)"
                if target_col == "label" else "")
        raise ParameterError(f"Model {model!r} is a regressor but column {target_col!r} is not numeric{hint}; "
                             "choose a classifier (earmark models list) or a numeric --target.")
    preset = features if isinstance(features, Preset) else get_preset(features or _default_preset(est, spec))
    _check_waveform_rate(est, preset)
    preset, duration_from = _set_duration(preset, dataset, duration=duration, chosen=names_duration(features))

    group_col = group
    if group_col is None:
        group_col = next((c for c in ("group", "fold") if c in dataset.columns and dataset[c].notna().all()), None)
    elif group_col not in dataset.columns:
        raise ParameterError(f"The group column {group_col!r} is not in the dataset (columns: {list(dataset.columns)}).")
    if group_col is not None and (group_col == target_col or (
            len(dataset) > 1 and (dataset[group_col].astype(str) == dataset[target_col].astype(str)).all())):
        raise ParameterError(
            f"The group column is the column being learnt ({target_col!r}): validation would hold out whole "
            "classes the model never sees. Name the column of who or what recorded each clip (speaker, session, "
            "program), or leave group out.")

    main = dataset.reset_index(drop=True)
    tr_pos, va_pos, split_how = _split(main, group_col, val_fraction, seed)
    if group_col is not None and split_how == "random":
        warnings.warn(
            f"The validation part is drawn at random, not by {group_col!r}: the table has "
            f"{main[group_col].nunique()} value(s) of it where a group split needs two or more, each with "
            "enough clips. The validation score then includes clips of groups seen in training, so it "
            "overstates accuracy on new ones.", EarmarkWarning, stacklevel=2)
    extra = extra_train.reset_index(drop=True) if extra_train is not None else None
    if extra is not None and task == "classification":
        known = set(main[target_col].dropna().astype(str))
        foreign = sorted(set(extra[target_col].dropna().astype(str)) - known)
        if foreign:
            raise DatasetError(
                f"extra_train has {len(foreign)} label(s) the dataset does not: {foreign[:10]}; the model would "
                f"learn classes it is never validated on. Keep only the dataset's labels {sorted(known)[:10]} in "
                "the extra table (or map its labels to them, e.g. --text-map for synthetic voices)."
            )
    if extra is not None:
        _check_extra_apart(main, extra, group_col, va_pos)
    # before any audio is read: a missing target is a fix to the table
    for name, frame in (("dataset", main), ("extra_train", extra)):
        if frame is not None:
            check_targets(frame, target_col, task, name)
    table = pd.concat([main[["path"]], extra[["path"]]], ignore_index=True) if extra is not None else main[["path"]]
    feature_start = time.perf_counter()
    fs = extract(table, preset, cache=cache, workers=workers)
    feature_seconds = time.perf_counter() - feature_start
    if len(fs.rows) == 0:
        raise DatasetError(f"No clip of the dataset could be featurized ({len(fs.errors)} errors, e.g. "
                           f"{fs.errors[:1]}); check the files.")
    X_all = fs.X
    ok = np.asarray(fs.rows)
    n_main = len(main)
    all_targets = pd.concat([main[target_col], extra[target_col]], ignore_index=True) if extra is not None else main[target_col]
    if task == "classification":
        y_all = all_targets.astype(str).to_numpy(dtype=object)
    else:
        y_all = all_targets.to_numpy(dtype=np.float64)
        if not np.isfinite(y_all[ok]).all():
            raise DatasetError(f"Column {target_col!r} has missing or non-finite values; drop those rows first.")
    is_train = np.zeros(len(table), bool)
    is_train[tr_pos] = True
    if extra is not None:
        is_train[n_main:] = True
    is_val = np.zeros(len(table), bool)
    is_val[va_pos] = True

    def take(mask: np.ndarray) -> tuple[Any, np.ndarray]:
        sel = np.flatnonzero(mask[ok])
        if isinstance(X_all, np.ndarray):
            return X_all[sel], sel
        return [X_all[i] for i in sel], sel

    X_tr, sel_tr = take(is_train)
    X_va, sel_va = take(is_val)
    y_tr, y_va = y_all[ok][sel_tr], y_all[ok][sel_va]
    w_tr = np.where(ok[sel_tr] >= n_main, extra_weight, 1.0)
    if task == "classification" and len(np.unique(y_tr)) < 2:
        raise DatasetError(f"Training needs at least 2 classes of {target_col!r}; the training part holds "
                           f"{sorted(set(y_tr))}.")
    # every validation clip goes into a refit on all the data; only those of classes the training
    # part has are scored (and steer early stopping)
    X_va_all, y_va_all, sel_va_all = X_va, y_va, sel_va
    val_only: list[str] = []
    if task == "classification" and len(X_va):
        known = set(y_tr)
        keep = np.array([v in known for v in y_va], bool)
        if not keep.all():
            val_only = sorted({str(v) for v in y_va[~keep]})
            warnings.warn(
                f"{len(val_only)} class(es) of {target_col!r} occur only in the part held out for validation "
                f"({int((~keep).sum())} clips): {val_only[:10]}. They are not scored in validation"
                + ("; with refit=False (--no-refit) a neural model never learns them." if refit is False else
                   "; the model is refitted on all the data, so it learns them.")
                + " Record those classes in more groups for a validation score that covers them.", ValidationCoverageWarning, stacklevel=2)
        X_va = X_va[keep] if isinstance(X_va, np.ndarray) else [x for x, k in zip(X_va, keep) if k]
        y_va, sel_va = y_va[keep], sel_va[keep]

    params = est.get_params()
    is_torch = spec.kind == "torch"
    if not is_torch:
        x0 = X_tr[0] if len(X_tr) else None
        if x0 is not None and np.ndim(x0) != 1:
            raise ParameterError(
                f"Model {model!r} needs one feature vector per clip, but preset {preset.name!r} gives "
                f"arrays of shape {np.shape(x0)}; use a pooled preset such as 'classic173' or 'mfcc-mean'."
            )
    seed_keys = [k for k in params if k == "random_state" or k.endswith("__random_state")]
    if seed_keys:
        est.set_params(**{k: seed for k in seed_keys})
    if epochs is not None:
        if "epochs" not in params:
            raise ParameterError(f"Model {model!r} is not trained in epochs; drop --epochs.")
        est.set_params(epochs=int(epochs))
        if "min_steps" in params and "min_steps" not in model_params:
            est.set_params(min_steps=0)  # exactly the epochs asked for

    n_groups = 0
    if group_col is not None:
        # the fewest groups any class has: holding one out for validation costs that class most
        n_groups = int(main[group_col].nunique()) if task != "classification" else int(
            main.groupby(main[target_col].astype(str))[group_col].nunique().min())
    if parallel and not is_torch:
        raise ParameterError(f"parallel=True (--parallel-refit) runs a neural model's refit in a second process; "
                             f"{model!r} is not a neural model (its refit is one quick fit). Drop it.")
    refit_torch = bool(is_torch and len(X_va_all) and (
        refit if refit is not None else (split_how.startswith("group") and n_groups < _FEW_GROUPS) or bool(val_only)))

    stop_progress = None
    user_callbacks: list = []
    refit_process: _RefitProcess | None = None
    parallel_threads = 0
    if is_torch:
        user_callbacks = list(est.callbacks or [])
        if refit_torch:
            order = np.argsort(np.concatenate([sel_tr, sel_va_all]), kind="stable")
            n_refit = len(y_tr) + len(y_va_all)
            example_size = int(np.prod(np.shape(X_tr[0]))) if len(X_tr) else 1
            parallel_threads = _parallel_threads(parallel, est, n_refit, user_callbacks, progress, example_size)
        elif parallel:
            raise ParameterError("parallel=True (--parallel-refit) runs a refit beside the validated run, but "
                                 "this run has no refit (refit=False / --no-refit, or no validation part); drop it.")
        callbacks = list(user_callbacks)
        members = int(getattr(est, "ensemble", 1))
        if callable(progress):
            callbacks.append(progress)
        elif progress:
            tasks = [("validation" if len(X_va) else "training", _budget(est, len(X_tr)) * members)]
            if parallel_threads:
                tasks.append(("refit", _budget(est, n_refit) * members))
            cbs, stop_progress = _rich_epoch_progress(*tasks)
            callbacks.append(cbs[0])
        torch_threads = None
        try:
            if parallel_threads:
                import torch
                from sklearn.base import clone

                final = clone(est)
                final_dir = _phase_checkpoints(final, "refit")
                final.set_params(callbacks=None, validation_fraction=0.0)
                refit_process = _RefitProcess(final, *_refit_rows(X_tr, y_tr, w_tr, X_va_all, y_va_all, order),
                                              parallel_threads, cbs[1] if stop_progress is not None else None)
                # (the rows went to the job folder: the child reads them from there, no copy stays here)
                callbacks.append(refit_process.check)  # a refit that failed stops the validated run too
                torch_threads = torch.get_num_threads()
                torch.set_num_threads(max(1, torch_threads - parallel_threads))
            est.set_params(callbacks=callbacks or None, validation_fraction=0.0)
            checkpoint_dir = _phase_checkpoints(est, "validation" if len(X_va) else "train")
            fit_kw: dict[str, Any] = {"sample_weight": w_tr}
            if len(X_va):
                fit_kw.update(X_val=X_va, y_val=y_va)
            est.fit(X_tr, y_tr, **fit_kw)
            est.set_params(callbacks=None, checkpoint_dir=checkpoint_dir)
            if refit_process is not None:
                fitted = refit_process.wait()
                refit_process = None
                fitted.set_params(checkpoint_dir=final_dir)
        finally:
            if refit_process is not None:
                refit_process.kill()
            if torch_threads is not None:
                torch.set_num_threads(torch_threads)
            if stop_progress is not None:
                stop_progress()
        history = [dict(h) for h in est.history_]
    else:
        _fit_sklearn(est, X_tr, y_tr, w_tr, said_numeric=numbers_as_classes)
        history = []
    val_est = est
    if refit_torch:
        if parallel_threads:
            est = fitted
        else:
            est = _refit_torch(est, *_refit_rows(X_tr, y_tr, w_tr, X_va_all, y_va_all, order), user_callbacks, progress)

    val_classes = [str(c) for c in val_est.classes_] if task == "classification" else []
    proba_va = None
    if len(X_va):
        if task == "classification":
            proba_va = val_est.predict_proba(X_va)
            pred_va = np.asarray(val_est.classes_)[proba_va.argmax(axis=1)].astype(str)
        else:
            pred_va = np.asarray(val_est.predict(X_va), np.float64)
        metrics = _metrics(task, y_va, pred_va, proba_va, val_classes)
        if task == "classification":
            _warn_if_chance(model, y_va, metrics["accuracy"], len(val_classes),
                            len(history) if is_torch else None,
                            getattr(val_est, "epoch_budget_", None) if is_torch else None)
    else:
        pred_va = np.zeros(0)
        metrics = {}
    refit_sklearn = False
    if not is_torch and len(X_va_all) and refit is not False:
        # classical models do not early-stop: validate, then refit on all the data
        X_fit = np.concatenate([X_tr, X_va_all]) if isinstance(X_tr, np.ndarray) else [*X_tr, *X_va_all]
        y_fit = np.concatenate([y_tr, y_va_all])
        w_fit = np.concatenate([w_tr, np.ones(len(y_va_all))])
        _fit_sklearn(est, X_fit, y_fit, w_fit, said_numeric=numbers_as_classes)
        refit_sklearn = True
    classes = [str(c) for c in est.classes_] if task == "classification" else []
    if proba_va is not None and classes != val_classes:
        # the refit learnt classes only the validation part has: their columns, never predicted, are 0
        full = np.zeros((len(proba_va), len(classes)), proba_va.dtype)
        full[:, [classes.index(c) for c in val_classes]] = proba_va
        proba_va = full

    rng = np.random.default_rng(seed)
    main_tr = sel_tr[ok[sel_tr] < n_main]
    pick = main_tr if len(main_tr) <= _REFERENCE_CLIPS else np.sort(rng.choice(main_tr, _REFERENCE_CLIPS, replace=False))
    ref_X = X_all[pick] if isinstance(X_all, np.ndarray) else [X_all[i] for i in pick]
    reference: dict[str, np.ndarray] = {"features": summary_vectors(ref_X)}
    if proba_va is not None:
        reference["proba"] = np.asarray(proba_va, np.float32)
    elif task == "regression" and len(pred_va):
        reference["pred"] = np.asarray(pred_va, np.float32)

    main_ok = ok[ok < n_main]
    main_targets = [str(v) for v in main[target_col].to_numpy()[main_ok]]
    # fingerprints of the files it learnt from (the validation part too once refitted on it):
    # evaluate() says when it is scored on them
    fitted = np.concatenate([sel_tr, sel_va_all]) if (refit_sklearn or refit_torch) else sel_tr
    fitted_rows = np.sort(ok[fitted][ok[fitted] < n_main])
    extra_rows = np.sort(ok[fitted][ok[fitted] >= n_main]) - n_main  # extra clips are learnt from too
    fitted_paths = [str(p) for p in main["path"].to_numpy()[fitted_rows]]
    if extra is not None:
        fitted_paths += [str(p) for p in extra["path"].to_numpy()[extra_rows]]
    reference["train_files"] = file_digests(fitted_paths)
    heard_groups = [main["group"].iloc[fitted_rows]] if "group" in main.columns else []
    if extra is not None and "group" in extra.columns:
        heard_groups.append(extra["group"].iloc[extra_rows])
    if heard_groups:  # and of the groups (speakers…) it heard, to say when a test set holds them
        from earmark.sources._splits import group_digests

        heard = np.unique(group_digests(pd.concat(heard_groups, ignore_index=True)))
        if len(heard[heard != 0]):
            reference["train_groups"] = heard[heard != 0]
    data: dict[str, Any] = {
        "n": int(len(main_ok)),
        "n_train": int(len(main_tr)),
        "n_val": int(len(sel_va_all)),
        "val_only_classes": val_only,
        "sha256": _fingerprint([str(p) for p in main["path"].to_numpy()[main_ok]], main_targets),
        # files the source could not list as audio (load_dataset) and files that failed to decode
        "skipped": [*(dict(e) for e in dataset.attrs.get("skipped", [])), *(dict(e) for e in fs.errors)],
        "split": split_how,
        "group": group_col,
    }
    if task == "classification":
        counts = pd.Series(main_targets).value_counts()
        data["class_counts"] = {str(k): int(v) for k, v in counts.sort_index().items()}
    else:
        vals = main[target_col].to_numpy(dtype=np.float64)[main_ok]
        data["target_stats"] = {"mean": float(vals.mean()), "std": float(vals.std()),
                                "min": float(vals.min()), "max": float(vals.max())}
    if extra is not None:
        extra_ok = ok[ok >= n_main]
        data["extra_train"] = {
            "n": int(len(extra_ok)),
            "weight": float(extra_weight),
            "sha256": _fingerprint([str(p) for p in extra["path"].to_numpy()[extra_ok - n_main]],
                                   [str(v) for v in extra[target_col].to_numpy()[extra_ok - n_main]]),
        }

    est_params = _jsonable_params(est.get_params(deep=False) if is_torch else model_params)
    if is_torch:
        est_params.pop("callbacks", None)
    config: dict[str, Any] = {
        "model": model,
        "kind": spec.kind,
        "task": task,
        "params": est_params,
        "preset": preset.to_dict(),
        "target": target_col,
        "group": group_col,
        "seed": int(seed),
        "epochs": _budget(val_est, len(X_tr)) if is_torch else None,
        "epochs_run": len(history),
        "best_epoch": int(getattr(val_est, "best_epoch_", 0)) if is_torch else None,
        "val_fraction": float(val_fraction),
        "split": split_how,
        "refit_on_all": refit_sklearn or refit_torch,
        "refit_epochs": _budget(est, len(y_tr) + len(y_va_all)) if refit_torch else None,
        "parallel_refit": bool(parallel_threads),
        "extra_weight": float(extra_weight) if extra is not None else None,
        "padding": {
            "preset_duration": preset.params.get("duration"),
            "duration_from": duration_from,
            "preset_align": preset.params.get("align"),
            "n_frames": getattr(est, "n_frames_", None),
            "pad": getattr(est, "pad", None),
            "crop": getattr(est, "crop", None),
        },
        "train_seconds": round(time.perf_counter() - started, 2),
        "feature_seconds": round(feature_seconds, 2),
    }
    return TrainedModel(
        estimator=est, preset=preset, task=task, classes=classes, target=target_col, config=config,
        history=history, metrics=metrics, data=data, reference=reference,
    )
