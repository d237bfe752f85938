"""Leakage-free splits: group-aware by default, predefined folds, seeded and reproducible."""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.model_selection import (
    GroupShuffleSplit,
    KFold,
    LeaveOneGroupOut,
    StratifiedGroupKFold,
    StratifiedKFold,
)
from sklearn.model_selection import train_test_split as _sk_split

from earmark.audio import content_hash
from earmark.errors import AudioDecodeError, DatasetError, ParameterError

__all__ = ["LeakageReport", "check_leakage", "find_duplicates", "iter_folds", "split_kind", "train_test_split"]

_BY = ("auto", "group", "fold", "random")


def _blank(values: pd.Series) -> np.ndarray:
    """Cells with no value: missing, or only spaces."""
    return (values.isna() | values.astype(str).str.strip().eq("")).to_numpy()


def _has(df: pd.DataFrame, col: str) -> bool:
    """Whether the table can be split by ``col``: folds must be complete; groups need two values
    (rows without a group become groups of their own, see :func:`_group_array`)."""
    if col not in df.columns:
        return False
    if col == "group":
        return df[col][~_blank(df[col])].astype(str).nunique() > 1
    return bool(df[col].notna().all()) and df[col].nunique() > 1


def group_digests(values: pd.Series) -> np.ndarray:
    """A 64-bit digest of each group name (``0`` for a blank cell): what a model bundle keeps of
    the groups it trained on, so that evaluation can say when it is scored on them again
    without the bundle holding the names.

    Example
    -------
    >>> group_digests(pd.Series(["george", None, "george"])).tolist()[1]
    0
    """
    import hashlib

    blank = _blank(values)
    out = np.zeros(len(values), dtype=np.uint64)
    for i, (v, b) in enumerate(zip(values.astype(str), blank)):
        if not b:
            out[i] = max(1, int.from_bytes(hashlib.blake2b(v.encode(), digest_size=8).digest(), "little"))
    return out


def _fold_order(v: object) -> tuple:
    """Sort key of fold values: numbers by value (2 before 10), then text (a column may mix them)."""
    if isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool):
        return (0, float(v), "")
    try:  # a CSV's folds are text when one of them is not a number: '2' still comes before '10'
        return (0, float(str(v)), str(v))
    except ValueError:
        return (1, 0.0, str(v))


def _fold_values(df: pd.DataFrame) -> list:
    """The fold column's values, in order."""
    return sorted(pd.unique(df["fold"].dropna()), key=_fold_order)


def _no_folds(df: pd.DataFrame, asked: str) -> DatasetError:
    """Why a table cannot be split by its predefined folds, naming the rows at fault."""
    if "fold" not in df.columns:
        return DatasetError(f"{asked} needs a 'fold' column with at least two values; the table has none "
                            "(name it with fold_column=, or split by group).")
    blank = df["fold"].isna().to_numpy()
    if blank.any():
        where = np.flatnonzero(blank)
        example = f" (e.g. {df['path'].iloc[where[0]]})" if "path" in df.columns else ""
        return DatasetError(f"{asked}: {len(where)} of {len(df)} rows have no fold{example}; fill in their "
                            "fold, or drop those rows, so that every clip is in one fold.")
    return DatasetError(f"{asked} needs at least two fold values; the fold column holds only "
                        f"{_fold_values(df)}.")


def _group_array(df: pd.DataFrame, *, warn: bool = True) -> np.ndarray:
    """The group of each row as text; a row without one is a group of its own (it can share no
    group with another row), with a :class:`~earmark.errors.MissingGroupWarning` saying how many."""
    col = df["group"]
    groups = col.astype(str).to_numpy(dtype=object)
    blank = _blank(col)
    if blank.any() and not warn:
        groups[np.flatnonzero(blank)] = [f"<no group: row {i}>" for i in np.flatnonzero(blank)]
    elif blank.any():
        import warnings

        from earmark.errors import MissingGroupWarning

        where = np.flatnonzero(blank)
        example = f" (e.g. {df['path'].iloc[where[0]]})" if "path" in df.columns else ""
        warnings.warn(
            f"{len(where)} of {len(df)} rows have no group{example}; each is kept as a group of its own. "
            "Fill in their group (speaker, recording…) so that rows of one group stay on one side.",
            MissingGroupWarning, stacklevel=3)
        groups[where] = [f"<no group: row {i}>" for i in where]
    return groups


def _labels(df: pd.DataFrame) -> np.ndarray | None:
    if "label" in df.columns and df["label"].notna().all():
        return df["label"].astype(str).to_numpy()
    return None


def split_kind(df: pd.DataFrame, by: str = "auto") -> str:
    """Resolve ``by='auto'`` to the split a table calls for: ``'group'`` when it has a group
    column, else ``'random'`` (folds are only used when asked for, or by :func:`iter_folds`).

    Example
    -------
    >>> import pandas as pd
    >>> split_kind(pd.DataFrame({"path": ["a", "b"], "group": ["x", "y"]}))
    'group'
    """
    if by not in _BY:
        raise ParameterError(f"The 'by' parameter must be one of {_BY}. Got {by!r} instead.")
    if by != "auto":
        return by
    return "group" if _has(df, "group") else "random"


def train_test_split(
    df: pd.DataFrame,
    *,
    test_size: float = 0.2,
    seed: int = 0,
    by: str = "auto",
    test_fold: object | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split a dataset table into train and test without leakage.

    Parameters
    ----------
    df : DataFrame
        A table from :func:`load_dataset`.
    test_size : float
        Fraction of rows (approximately, when splitting by group) for the test side.
    seed : int
        Seed of the shuffle; the same seed gives the same split.
    by : {'auto', 'group', 'fold', 'random'}
        ``'group'`` keeps every group (speaker, recording…) on one side and stratifies by label
        as far as groups allow; ``'fold'`` tests on one predefined fold (``test_fold``, default
        the last); ``'random'`` is a stratified random split. ``'auto'`` means ``'group'`` when
        the table has a group column, else ``'random'``.
    test_fold : optional
        The fold value held out when ``by='fold'``.

    Returns
    -------
    (train, test) : tuple of DataFrame
        Row subsets of ``df`` (original index kept).

    Example
    -------
    >>> train, test = train_test_split(load_dataset("../shared/data/fsdd/manifest.csv"))  # doctest: +SKIP
    >>> set(train.group) & set(test.group)  # doctest: +SKIP
    set()
    """
    if not 0.0 < test_size < 1.0:
        raise ParameterError(f"The 'test_size' parameter must be a float in (0, 1). Got {test_size!r} instead.")
    kind = split_kind(df, by)
    n = len(df)
    if n < 2:
        raise DatasetError(f"Cannot split {n} row(s) into train and test; the dataset needs at least 2 files.")
    if by == "auto" and kind == "random" and "group" in df.columns:
        named = df["group"][~_blank(df["group"])].astype(str).unique()
        if len(named) == 1:
            import warnings

            from earmark.errors import EarmarkWarning

            warnings.warn(
                f"The group column holds one group ({named[0]!r}), so the split is random within it: the test "
                "side hears the same speaker or recording as training, which inflates the scores. Test on "
                "another group's files, or pass by='random' to say that this is meant.",
                EarmarkWarning, stacklevel=2)
    pos = np.arange(n)
    y = _labels(df)
    if kind == "fold":
        if not _has(df, "fold"):
            raise _no_folds(df, "Holding out a predefined fold (by='fold', --by fold)")
        folds = df["fold"].to_numpy()
        value = _fold_values(df)[-1] if test_fold is None else test_fold
        test_mask = folds == value
        if not test_mask.any():
            raise ParameterError(f"The 'test_fold' value {value!r} is not in the fold column {_fold_values(df)}.")
        return df.iloc[pos[~test_mask]], df.iloc[pos[test_mask]]
    if kind == "group":
        if not _has(df, "group"):
            raise DatasetError(
                "by='group' needs a 'group' column with at least two groups; "
                "pass group_column= to load_dataset, or by='random'."
            )
        groups = _group_array(df)
        n_groups = len(np.unique(groups))
        # one fold of K stratified group folds is one side: of the K near 1 / share (of the smaller
        # side), of every fold and of the fold or the rest, the first split whose test share is
        # closest to test_size (the default 0.2 keeps the first of 5 folds)
        small = min(test_size, 1.0 - test_size)
        ks = sorted({max(2, int(np.floor(1.0 / small + 1e-9))), max(2, int(np.ceil(1.0 / small - 1e-9)))})
        best = None
        for k in (k for k in ks if k <= n_groups) if y is not None else ():
            try:
                for fold_rest in StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed).split(pos, y, groups):
                    for tr_, te_ in (fold_rest, fold_rest[::-1]):
                        gap = abs(len(te_) / n - test_size)
                        if best is None or gap < best[0] - 1e-12:
                            best = (gap, tr_, te_)
            except ValueError:  # too few rows of a class for K folds: the other K, or a plain group split
                continue
        if best is not None:
            _, train_pos, test_pos = best
        else:
            n_test = min(n_groups - 1, max(1, int(round(test_size * n_groups))))
            gss = GroupShuffleSplit(n_splits=1, test_size=n_test, random_state=seed)
            train_pos, test_pos = next(gss.split(pos, y, groups))
        return df.iloc[np.sort(train_pos)], df.iloc[np.sort(test_pos)]
    stratify = y if y is not None and pd.Series(y).value_counts().min() >= 2 else None
    size: float | int = test_size
    if stratify is not None:
        # a stratified split puts every class on both sides: each side needs a row per class
        n_classes = int(pd.Series(y).nunique())
        n_test = int(np.ceil(test_size * n))
        if n_test < n_classes or n - n_test < n_classes:
            if n >= 2 * n_classes:
                size = max(n_classes, min(n_test, n - n_classes))
            else:
                stratify = None  # too few rows to hold every class on both sides: a plain random split
    train_pos, test_pos = _sk_split(pos, test_size=size, random_state=seed, stratify=stratify)
    return df.iloc[np.sort(train_pos)], df.iloc[np.sort(test_pos)]


def iter_folds(
    df: pd.DataFrame,
    *,
    folds: str | int = "auto",
    seed: int = 0,
) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """Yield cross-validation folds as ``(name, train_positions, test_positions)``.

    Parameters
    ----------
    df : DataFrame
        A table from :func:`load_dataset`.
    folds : {'auto', 'fold', 'group'} or int
        ``'fold'``: one split per value of the predefined ``fold`` column (ESC-50 /
        UrbanSound8K style); ``'group'``: leave one group out; an int K: K stratified folds,
        group-aware when a group column exists. ``'auto'``: ``'fold'`` if the table has
        folds, else ``'group'`` when it has at most 10 groups, else 5 group-aware folds, else
        5 stratified folds.
    seed : int
        Seed of the shuffle for K-fold splits.

    Yields
    ------
    (name, train, test) : (str, ndarray of int, ndarray of int)
        Row positions (for ``df.iloc``); no group is ever on both sides.

    Example
    -------
    >>> [name for name, _, _ in iter_folds(load_dataset("../shared/data/fsdd/manifest.csv"))]  # doctest: +SKIP
    ['george', 'jackson', 'nicolas', 'theo', 'yweweler']
    """
    n = len(df)
    pos = np.arange(n)
    y = _labels(df)
    has_group = _has(df, "group")
    if folds == "auto":
        if not _has(df, "fold") and "fold" in df.columns and df["fold"].isna().any() and df["fold"].nunique() > 1:
            import warnings

            from earmark.errors import EarmarkWarning

            warnings.warn(str(_no_folds(df, "The table's predefined folds are not used")) + " Until then the "
                          "folds are made from the groups (or at random).", EarmarkWarning, stacklevel=2)
        if _has(df, "fold"):
            folds = "fold"
        elif has_group:
            # leave one speaker out for a few speakers; rows without a group (each its own group)
            # would each be a one-clip fold, so then K group-aware folds spread them instead
            blank = _blank(df["group"])
            named = int(df["group"][~blank].astype(str).nunique())
            folds = "group" if not blank.any() and named <= 10 else min(5, named)
        else:
            folds = 5
    if folds == "fold":
        if not _has(df, "fold"):
            raise _no_folds(df, "Cross-validating over predefined folds (folds='fold', --folds fold)")
        values = df["fold"].to_numpy()
        for v in _fold_values(df):
            mask = values == v
            yield f"fold {v}", pos[~mask], pos[mask]
        return
    if folds == "group":
        if not has_group:
            raise DatasetError("folds='group' needs a 'group' column with at least two groups; the table has none.")
        groups = _group_array(df)
        for train, test in LeaveOneGroupOut().split(pos, y, groups):
            yield str(groups[test[0]]), train, test
        return
    if isinstance(folds, (int, np.integer)) and not isinstance(folds, bool):
        k = int(folds)
        if k < 2:
            raise ParameterError(f"The 'folds' parameter must be >= 2 when an int. Got {k} instead.")
        if has_group:
            groups = _group_array(df)
            if len(np.unique(groups)) < k:
                raise DatasetError(
                    f"folds={k} needs at least {k} groups; the table has {len(np.unique(groups))}. "
                    "Use folds='group' (leave one group out) or fewer folds."
                )
            splitter = (
                StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
                if y is not None
                else _GroupKFoldShuffled(k, seed)
            )
            split = splitter.split(pos, y, groups)
        elif y is not None:
            counts = pd.Series(y).value_counts()
            if counts.max() < k:  # no class fills k folds (sklearn's own error, said our way)
                raise DatasetError(
                    f"folds={k} stratified folds need a class with at least {k} files; the largest class "
                    f"({counts.idxmax()!r}) has {int(counts.max())}. Use at most {max(int(counts.max()), 2)} "
                    "folds (--folds N), or add files."
                )
            split = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(pos, y)
        else:
            split = KFold(n_splits=k, shuffle=True, random_state=seed).split(pos)
        for i, (train, test) in enumerate(split, start=1):
            yield f"fold {i}", train, test
        return
    raise ParameterError(f"The 'folds' parameter must be 'auto', 'fold', 'group' or an int >= 2. Got {folds!r} instead.")


class _GroupKFoldShuffled:
    """K folds of whole groups, assigned at random (for unlabelled / regression tables)."""

    def __init__(self, k: int, seed: int) -> None:
        self.k, self.seed = k, seed

    def split(self, pos, y, groups):
        uniq = np.unique(groups)
        rng = np.random.default_rng(self.seed)
        assign = dict(zip(rng.permutation(uniq), np.arange(len(uniq)) % self.k))
        fold_of = np.array([assign[g] for g in groups])
        for f in range(self.k):
            yield pos[fold_of != f], pos[fold_of == f]


def _hashes(paths: list[str], workers: int | None) -> list[str | None]:
    def one(p: str) -> str | None:
        try:
            return content_hash(p)
        except AudioDecodeError:
            return None

    n = workers or min(8, (os.cpu_count() or 2) * 2)
    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, paths, chunksize=32))


def find_duplicates(paths: list[str] | pd.DataFrame, *, workers: int | None = None) -> list[list[str]]:
    """Groups of files whose decoded audio is identical (whatever their names or containers).

    Example
    -------
    >>> find_duplicates(["a.wav", "copy_of_a.flac", "b.wav"])  # doctest: +SKIP
    [['a.wav', 'copy_of_a.flac']]
    """
    if isinstance(paths, pd.DataFrame):
        paths = paths["path"].tolist()
    by_hash: dict[str, list[str]] = defaultdict(list)
    for p, h in zip(paths, _hashes(list(paths), workers)):
        if h is not None:
            by_hash[h].append(p)
    return [sorted(ps) for ps in by_hash.values() if len(ps) > 1]


@dataclass
class LeakageReport:
    """What a train/test split shares that it should not.

    Attributes
    ----------
    duplicates : list of dict
        ``{'hash', 'train': [paths], 'test': [paths]}`` for audio content found on both sides.
    shared_groups : list of str
        Groups present on both sides.
    """

    duplicates: list[dict[str, object]] = field(default_factory=list)
    shared_groups: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing leaks."""
        return not self.duplicates and not self.shared_groups


def duplicates_across_folds(table: pd.DataFrame, *, column: str = "fold", workers: int | None = None) -> list[dict]:
    """Sets of files with identical audio content that sit in more than one fold of ``table``.

    Each item is ``{"hash", "folds": {fold: [paths]}}``: cross-validation would test on audio it
    trained on.

    Example
    -------
    >>> duplicates_across_folds(pd.DataFrame({"path": ["a.wav", "b.wav"], "fold": [1, 2]}))  # doctest: +SKIP
    []
    """
    paths = table["path"].astype(str).tolist()
    folds = table[column].tolist()
    by_hash: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for p, f, h in zip(paths, folds, _hashes(paths, workers)):
        if h is not None:
            by_hash[h][str(f)].append(p)
    return [{"hash": h, "folds": {f: sorted(ps) for f, ps in sorted(where.items())}}
            for h, where in sorted(by_hash.items()) if len(where) > 1]


def check_leakage(train: pd.DataFrame, test: pd.DataFrame, *, workers: int | None = None) -> LeakageReport:
    """Report identical audio content and shared groups across the two sides of a split.

    Example
    -------
    >>> report = check_leakage(*train_test_split(load_dataset("../shared/data/fsdd")))  # doctest: +SKIP
    >>> report.ok  # doctest: +SKIP
    True
    """
    tr_paths, te_paths = train["path"].tolist(), test["path"].tolist()
    hashes = _hashes(tr_paths + te_paths, workers)
    tr_h: dict[str, list[str]] = defaultdict(list)
    te_h: dict[str, list[str]] = defaultdict(list)
    for p, h in zip(tr_paths, hashes[: len(tr_paths)]):
        if h is not None:
            tr_h[h].append(p)
    for p, h in zip(te_paths, hashes[len(tr_paths):]):
        if h is not None:
            te_h[h].append(p)
    dups = [{"hash": h, "train": sorted(tr_h[h]), "test": sorted(te_h[h])} for h in sorted(set(tr_h) & set(te_h))]
    shared: list[str] = []
    if "group" in train.columns and "group" in test.columns:
        shared = sorted(set(train["group"].dropna().astype(str)) & set(test["group"].dropna().astype(str)))
    return LeakageReport(duplicates=dups, shared_groups=shared)
