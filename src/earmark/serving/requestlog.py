"""The opt-in request log: one SQLite row per answered prediction, read back by ``earmark monitor``.

Each row holds the time, the top label, its probability, every class probability and the
clip's feature summary (float32 bytes), so drift can be measured later without the audio.

Example
-------
>>> import numpy as np, tempfile, os
>>> log = RequestLog(os.path.join(tempfile.mkdtemp(), "requests.sqlite"))
>>> log.append(features=np.zeros(3), proba=np.array([0.9, 0.1]), label="a")
>>> log.read()["features"].shape
(1, 3)
>>> log.close()
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from earmark.errors import DatasetError

__all__ = ["RequestLog", "check_request_log", "is_request_log", "same_model"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts REAL NOT NULL,
    label TEXT NOT NULL,
    confidence REAL NOT NULL,
    proba BLOB NOT NULL,
    features BLOB,
    n_features INTEGER,
    source TEXT
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
_SQLITE_MAGIC = b"SQLite format 3\x00"


def is_request_log(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is an SQLite file (a request log), as opposed to a dataset source.

    Example
    -------
    >>> is_request_log("../shared/data/fsdd/manifest.csv")
    False
    """
    p = Path(path)
    if not p.is_file():
        return False
    with open(p, "rb") as f:
        return f.read(16) == _SQLITE_MAGIC


def check_request_log(path: str | os.PathLike[str]) -> None:
    """Refuse an SQLite file that is not an earmark request log, reading it only (opening it
    as a :class:`RequestLog` would add earmark's tables to someone else's database).

    Example
    -------
    >>> check_request_log("requests.sqlite")  # doctest: +SKIP
    """
    p = Path(path)
    try:
        db = sqlite3.connect(f"{p.resolve().as_uri()}?mode=ro", uri=True)
        try:
            cols = {row[1] for row in db.execute("PRAGMA table_info(requests)")}
        finally:
            db.close()
    except sqlite3.DatabaseError as exc:
        raise DatasetError(f"{p}: cannot be read as an SQLite request log ({exc}).") from None
    if not {"ts", "label", "confidence", "proba", "features"} <= cols:
        raise DatasetError(
            f"{p} is an SQLite database but not an earmark request log (it has no 'requests' table of "
            "earmark's). Pass the file `earmark serve --log` writes, or a dataset source."
        )


def same_model(logged: Mapping[str, Any], model: Mapping[str, Any]) -> bool:
    """Whether a log's owner (``{"bundle", "task", "classes", ...}``) is ``model``: the same bundle
    where both name one (its manifest hash), else the same task and classes.

    Example
    -------
    >>> same_model({"bundle": "ab", "task": "classification"}, {"bundle": "cd", "task": "classification"})
    False
    """
    if logged.get("bundle") and model.get("bundle"):
        return bool(logged["bundle"] == model["bundle"])
    return bool(logged.get("task") == model.get("task") and logged.get("classes") == model.get("classes"))


def describe_model(model: Mapping[str, Any]) -> str:
    """A short description of a log's owner, for messages.

    Example
    -------
    >>> describe_model({"task": "classification", "classes": ["a", "b"]})
    'a classification model of classes a, b'
    """
    classes = list(model.get("classes") or [])
    what = f"a {model.get('task') or 'classification'} model"
    if classes:
        what += " of classes " + ", ".join(map(str, classes[:6])) + (", …" if len(classes) > 6 else "")
    if model.get("bundle"):
        made = f", made {model['created']}" if model.get("created") else ""
        what += f" (bundle {str(model['bundle'])[:12]}{made})"
    return what


#: Longest wait, in seconds, for a request-log write when another connection holds the database.
WRITE_WAIT_S = 0.25


class RequestLog:
    """Append-only SQLite log of predictions, safe to share between the service's threads.

    Parameters
    ----------
    path : str or path-like
        The SQLite file (created with its folder when missing).
    classes : sequence of str, optional
        Class names, stored once so the log can be read without the model.
    model : mapping, optional
        The model that writes the log (``{"bundle": manifest hash, "created", "task", "classes"}``,
        :meth:`earmark.serving.Predictor.identity`), stored once. A log belongs to one model:
        opening another model's log raises :class:`~earmark.errors.DatasetError`.

    Example
    -------
    >>> import tempfile, os
    >>> with RequestLog(os.path.join(tempfile.mkdtemp(), "r.sqlite"), classes=["a", "b"]) as log:
    ...     len(log)
    0
    """

    def __init__(self, path: str | os.PathLike[str], *, classes: list[str] | None = None,
                 model: Mapping[str, Any] | None = None) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DatasetError(f"{self.path}: cannot be used as a request log: its folder cannot be made "
                               f"({exc.strerror or exc}); pass a .sqlite path in a writable folder.") from None
        self._lock = threading.Lock()
        try:
            # a short busy wait: someone holding the file locked (a sqlite3 shell pruning it) must not
            # stall the service's answers for SQLite's default 5 s; a row that cannot wait is dropped
            # and counted by the service (earmark_errors_total{endpoint="request_log"})
            self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(_SCHEMA)
            if model is not None and classes is None:
                classes = model.get("classes")
            if classes is not None or model is not None:
                self._claim(classes, model)
            # set up with SQLite's usual patience (workers open the log together); rows then wait little
            self._db.execute(f"PRAGMA busy_timeout = {int(WRITE_WAIT_S * 1000)}")
        except sqlite3.Error as exc:
            raise DatasetError(f"{self.path}: cannot be used as a request log ({exc}); pass a new .sqlite path.") from None

    def _claim(self, classes: Any, model: Mapping[str, Any] | None) -> None:
        """Store the writer's classes and identity, refusing a log another model wrote."""
        stored = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
        owner = json.loads(stored["model"]) if "model" in stored else None
        logged_classes = json.loads(stored["classes"]) if "classes" in stored else None
        names = None if classes is None else [str(c) for c in classes]
        rows = int(self._db.execute("SELECT COUNT(*) FROM requests").fetchone()[0])
        if owner is None and rows and names is not None and logged_classes is not None and logged_classes != names:
            # a log of an earlier version, which stored the classes only (a regressor's: none)
            owner = {"task": "classification" if logged_classes else "regression", "classes": logged_classes}
        if owner is not None and model is not None and rows and not same_model(owner, model):  # empty: anyone's
            raise DatasetError(
                f"{self.path} holds the requests of another model ({describe_model(owner)}), not of this one "
                f"({describe_model(model)}). A request log belongs to one model, so that earmark monitor "
                "compares it with that model's training data: pass a new --log path, or move this file away."
            )
        if names is not None and (logged_classes is None or not rows):
            self._db.execute("INSERT OR REPLACE INTO meta VALUES ('classes', ?)", (json.dumps(names),))
        if model is not None and (owner is None or not rows):
            self._db.execute("INSERT OR REPLACE INTO meta VALUES ('model', ?)", (json.dumps(dict(model)),))

    def __enter__(self) -> RequestLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM requests").fetchone()[0])

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._db.close()

    def append(self, *, features: np.ndarray | None, proba: np.ndarray, label: str, source: str | None = None) -> None:
        """Record one prediction."""
        p = np.asarray(proba, dtype=np.float32).ravel()
        f = None if features is None else np.asarray(features, dtype=np.float32).ravel()
        row = (time.time(), str(label), float(p.max()) if p.size else 0.0, p.tobytes(),
               None if f is None else f.tobytes(), None if f is None else int(f.size), source)
        with self._lock:
            self._db.execute(
                "INSERT INTO requests (ts, label, confidence, proba, features, n_features, source) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                row,
            )

    def read(self, *, since: float | None = None, limit: int | None = None) -> dict[str, Any]:
        """Everything logged (optionally after a UNIX time ``since``; the latest ``limit`` rows).

        Returns
        -------
        dict
            ``ts`` (n,), ``label`` (n,), ``confidence`` (n,), ``proba`` (n, k), ``features``
            (n, d) or ``None`` when no row holds features, ``classes`` (list or ``None``), ``model``
            (the writer's identity, see ``model`` above, or ``None``).

        Raises
        ------
        DatasetError
            The log cannot be read, or its rows differ in size (two models wrote to it).
        """
        sql = "SELECT ts, label, confidence, proba, features FROM requests"
        args: list[Any] = []
        if since is not None:
            sql += " WHERE ts >= ?"
            args.append(float(since))
        sql += " ORDER BY id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(int(limit))
        with self._lock:
            try:
                rows = self._db.execute(sql, args).fetchall()[::-1]
                meta = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
            except sqlite3.DatabaseError as exc:
                raise DatasetError(f"{self.path}: the request log cannot be read ({exc}).") from None
        proba = [np.frombuffer(r[3], dtype=np.float32) for r in rows]
        feats = [None if r[4] is None else np.frombuffer(r[4], dtype=np.float32) for r in rows]
        have = [f for f in feats if f is not None]
        for name, arrays in (("probabilities", proba), ("feature summaries", have)):
            if len({a.size for a in arrays}) > 1:
                raise DatasetError(
                    f"{self.path}: its rows hold {name} of different sizes "
                    f"({', '.join(str(n) for n in sorted({a.size for a in arrays}))}): more than one model wrote "
                    "to it. Give each model its own --log file."
                )
        return {
            "ts": np.array([r[0] for r in rows], dtype=np.float64),
            "label": np.array([r[1] for r in rows], dtype=object),
            "confidence": np.array([r[2] for r in rows], dtype=np.float64),
            "proba": np.stack(proba) if proba else np.zeros((0, 0), np.float32),
            "features": np.stack(have) if have and len(have) == len(feats) else None,
            "classes": json.loads(meta["classes"]) if "classes" in meta else None,
            "model": json.loads(meta["model"]) if "model" in meta else None,
        }
