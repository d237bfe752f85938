"""On-disk feature store: shards of features keyed by file content hash and preset settings.

Layout of a store folder ``DIR``::

    DIR/<preset cache key>/preset.json          the full preset record
    DIR/<preset cache key>/shard-<n>-<uid>.npy  features of one batch, flattened float32
    DIR/<preset cache key>/shard-<n>-<uid>.json entries: content hash, path, size, mtime, offset,
                                                shape; and the files that failed, with the reason
    DIR/<preset cache key>/report.json          files that failed (rewritten after each run)

A shard is complete when its ``.json`` exists: the ``.npy`` is written first, each through a
temporary file and an atomic rename, so a run killed at any moment leaves only whole shards
(and perhaps an orphan ``.npy`` or temporary file, ignored, and removed by a later open once it
is more than an hour old). Several processes may share a store: each writes its own shards, and
none removes a file that another may still be writing.

The content hash is BLAKE2b of the file's bytes. A file whose (path, size, mtime) matches an entry
is not read again; a changed file gets a new hash and is recomputed.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from earmark.errors import ParameterError

__all__ = ["FeatureStore", "file_hash"]

#: Seconds after which a temporary file or a data file without its index is taken to be left by
#: a killed run (and removed on open) rather than being written by another process right now.
STALE_AFTER_S = 3600.0


def file_hash(path: str | os.PathLike[str]) -> str:
    """BLAKE2b-128 hex digest of a file's bytes.

    Example
    -------
    >>> len(file_hash(__file__))
    32
    """
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".tmp-{uuid.uuid4().hex}-{path.name}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _atomic_save_npy(path: Path, arr: np.ndarray) -> None:
    tmp = path.with_name(f".tmp-{uuid.uuid4().hex}-{path.name}")
    with open(tmp, "wb") as f:
        np.save(f, arr, allow_pickle=False)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _remove_if_stale(path: Path) -> None:
    """Remove a leftover of a killed run; a recent one may belong to a writer still at work."""
    try:
        if time.time() - path.stat().st_mtime > STALE_AFTER_S:
            path.unlink(missing_ok=True)
    except OSError:  # gone already (another process cleaned it up or renamed it)
        pass


@dataclass
class _Entry:
    shard: str
    offset: int
    shape: tuple[int, ...]


class FeatureStore:
    """Sharded, content-addressed store of one preset's features in ``root``.

    Parameters
    ----------
    root : path
        Store folder (created if missing); may hold several presets.
    preset_record : dict
        ``Preset.to_dict()``; its hash names the sub-folder.
    key : str
        ``Preset.cache_key()``.

    Example
    -------
    >>> import tempfile
    >>> from earmark.features import get_preset
    >>> p = get_preset("mfcc-mean")
    >>> st = FeatureStore(tempfile.mkdtemp(), p.to_dict(), p.cache_key())
    >>> len(st)
    0
    """

    def __init__(self, root: str | os.PathLike[str], preset_record: dict[str, Any], key: str) -> None:
        self.root = Path(root)
        self.dir = self.root / key
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ParameterError(f"Cannot create the feature store folder {self.dir}: {exc}; "
                                 "choose a writable --out/cache folder.") from None
        meta = self.dir / "preset.json"
        if not meta.exists():
            _atomic_write_bytes(meta, json.dumps(preset_record, indent=2, sort_keys=True).encode())
        self.entries: dict[str, _Entry] = {}
        self.failures: dict[str, dict[str, Any]] = {}
        self.by_stat: dict[tuple[str, int, int], str] = {}
        self.corrupt: list[dict[str, str]] = []
        self._arrays: dict[str, np.ndarray] = {}
        self._load()

    def __len__(self) -> int:
        return len(self.entries)

    # -- reading ---------------------------------------------------------------------------

    def _load(self) -> None:
        metas = sorted(self.dir.glob("shard-*.json"))
        have = {m.stem for m in metas}
        for leftover in self.dir.glob(".tmp-*"):
            _remove_if_stale(leftover)
        for npy in self.dir.glob("shard-*.npy"):
            if npy.stem not in have:  # killed between the two renames, or being written right now
                _remove_if_stale(npy)
        for m in metas:
            try:
                info = json.loads(m.read_text())
                npy = m.with_suffix(".npy")
                if not npy.exists():
                    raise OSError("data file missing")
                entries = [(e, _Entry(m.stem, int(e["offset"]), tuple(e["shape"]))) for e in info["entries"]]
                if entries:
                    # a truncated or damaged data file is found here, once, not as a crash on first read
                    arr = np.load(npy, mmap_mode="r", allow_pickle=False)
                    end = max(en.offset + (int(np.prod(en.shape)) if en.shape else 1) for _, en in entries)
                    if arr.ndim != 1 or arr.dtype != np.float32 or arr.size < end:
                        raise ValueError(f"data file {npy.name} holds {arr.dtype} {arr.shape}, "
                                         f"not the {end} float32 values its index lists")
                    del arr  # opened again when read (one open file per shard in use, not per shard)
                for e, en in entries:
                    self.entries[e["hash"]] = en
                    self.by_stat[(e["path"], int(e["size"]), int(e["mtime_ns"]))] = e["hash"]
                for e in info.get("errors", []):
                    if e.get("hash"):
                        self.failures[e["hash"]] = e
                        self.by_stat[(e["path"], int(e["size"]), int(e["mtime_ns"]))] = e["hash"]
            except (OSError, ValueError, KeyError, TypeError) as exc:
                moved = []
                for part in (m, m.with_suffix(".npy")):  # set aside (kept for inspection), so reported once
                    try:
                        part.rename(part.with_name("damaged-" + part.name))
                        moved.append(part.with_name("damaged-" + part.name).name)
                    except OSError:
                        pass
                where = f"; moved aside as {' and '.join(moved)}" if moved else ""
                self.corrupt.append({"path": str(m), "reason": f"unreadable shard, ignored: {exc}{where}"})

    def lookup_hash(self, path: str, size: int, mtime_ns: int) -> str | None:
        """Hash recorded for this exact (path, size, mtime), if any."""
        return self.by_stat.get((path, size, mtime_ns))

    def get(self, h: str) -> np.ndarray:
        """Features stored under content hash ``h``."""
        e = self.entries[h]
        arr = self._arrays.get(e.shard)
        if arr is None:
            arr = np.load(self.dir / f"{e.shard}.npy", mmap_mode="r", allow_pickle=False)
            self._arrays[e.shard] = arr
        n = int(np.prod(e.shape)) if e.shape else 1
        return np.asarray(arr[e.offset:e.offset + n]).reshape(e.shape)

    # -- writing ---------------------------------------------------------------------------

    def write_shard(self, items: list[dict[str, Any]], arrays: list[np.ndarray],
                    errors: list[dict[str, Any]]) -> None:
        """Write one shard: ``items[i]`` (hash, path, size, mtime_ns) has features ``arrays[i]``."""
        if not items and not errors:
            return
        stem = f"shard-{len(list(self.dir.glob('shard-*.json'))):06d}-{uuid.uuid4().hex[:12]}"
        flat = [np.ascontiguousarray(a, dtype=np.float32).ravel() for a in arrays]
        data = np.concatenate(flat) if flat else np.zeros(0, np.float32)
        entries = []
        off = 0
        for it, a, f in zip(items, arrays, flat):
            entries.append({**it, "offset": off, "shape": list(np.shape(a))})
            off += f.size
        _atomic_save_npy(self.dir / f"{stem}.npy", data)
        _atomic_write_bytes(self.dir / f"{stem}.json",
                            json.dumps({"entries": entries, "errors": errors}).encode())
        for e in entries:
            self.entries[e["hash"]] = _Entry(stem, int(e["offset"]), tuple(e["shape"]))
            self.by_stat[(e["path"], int(e["size"]), int(e["mtime_ns"]))] = e["hash"]
        for e in errors:
            if e.get("hash"):
                self.failures[e["hash"]] = e
                self.by_stat[(e["path"], int(e["size"]), int(e["mtime_ns"]))] = e["hash"]

    def write_report(self, errors: list[dict[str, str]], n_ok: int) -> Path:
        """Write ``report.json`` (files that failed in the last run, and corrupt shards)."""
        path = self.dir / "report.json"
        _atomic_write_bytes(path, json.dumps(
            {"features": n_ok, "failed": errors, "corrupt_shards": self.corrupt}, indent=2).encode())
        return path
