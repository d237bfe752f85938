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
from pathlib import Path
from typing import Any

import numpy as np

from earmark.errors import DatasetError

__all__ = ["RequestLog", "check_request_log", "is_request_log"]

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

    Example
    -------
    >>> import tempfile, os
    >>> with RequestLog(os.path.join(tempfile.mkdtemp(), "r.sqlite"), classes=["a", "b"]) as log:
    ...     len(log)
    0
    """

    def __init__(self, path: str | os.PathLike[str], *, classes: list[str] | None = None) -> None:
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
            if classes is not None:
                self._db.execute("INSERT OR REPLACE INTO meta VALUES ('classes', ?)",
                                 (json.dumps([str(c) for c in classes]),))
            # set up with SQLite's usual patience (workers open the log together); rows then wait little
            self._db.execute(f"PRAGMA busy_timeout = {int(WRITE_WAIT_S * 1000)}")
        except sqlite3.Error as exc:
            raise DatasetError(f"{self.path}: cannot be used as a request log ({exc}); pass a new .sqlite path.") from None

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
            (n, d) or ``None`` when no row holds features, ``classes`` (list or ``None``).
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
                meta = self._db.execute("SELECT value FROM meta WHERE key='classes'").fetchone()
            except sqlite3.DatabaseError as exc:
                raise DatasetError(f"{self.path}: the request log cannot be read ({exc}).") from None
        proba = [np.frombuffer(r[3], dtype=np.float32) for r in rows]
        feats = [None if r[4] is None else np.frombuffer(r[4], dtype=np.float32) for r in rows]
        have = [f for f in feats if f is not None]
        return {
            "ts": np.array([r[0] for r in rows], dtype=np.float64),
            "label": np.array([r[1] for r in rows], dtype=object),
            "confidence": np.array([r[2] for r in rows], dtype=np.float64),
            "proba": np.stack(proba) if proba else np.zeros((0, 0), np.float32),
            "features": np.stack(have) if have and len(have) == len(feats) else None,
            "classes": json.loads(meta[0]) if meta else None,
        }
