"""Turn a dataset source (class folders, a CSV manifest, or file names with a pattern) into a table."""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from earmark.audio import audio_info, is_audio_file, load_audio
from earmark.errors import AudioDecodeError, DatasetError, EarmarkWarning, ParameterError

__all__ = ["GROUP_COLUMNS", "LABEL_COLUMNS", "PATH_COLUMNS", "audio_files", "load_dataset", "parse_pattern"]

#: Column names tried, in order, for the file path of a manifest.
PATH_COLUMNS = ("path", "filepath", "file_path", "filename", "file", "slice_file_name", "audio", "wav")
#: Column names tried, in order, for the label (ESC-50 uses `category`, UrbanSound8K `class`).
LABEL_COLUMNS = ("label", "category", "class", "target_name")
#: Column names tried, in order, for the group (speaker, recording, voice…) that must not be split.
GROUP_COLUMNS = ("group", "speaker", "source", "voice", "src_file", "fsID", "speaker_id", "client_id")

_CHECKS = ("header", "decode", "none")


class SkippedFileWarning(EarmarkWarning):
    """Some files of a dataset could not be read and were left out (they are listed)."""


def load_dataset(
    source: str | os.PathLike[str] | pd.DataFrame,
    *,
    label_column: str | None = None,
    group_column: str | None = None,
    path_column: str | None = None,
    fold_column: str | None = "fold",
    pattern: str | None = None,
    allow_unlabelled: bool = False,
    check: str = "header",
    on_error: str = "skip",
    workers: int | None = None,
) -> pd.DataFrame:
    """Read an audio dataset into a table, one row per readable file.

    Parameters
    ----------
    source : path or DataFrame
        - a CSV manifest (paths relative to the CSV's folder, or absolute; ESC-50's
          ``meta/esc50.csv`` and UrbanSound8K's ``metadata/UrbanSound8K.csv`` layouts are
          recognised);
        - a folder holding ``manifest.csv`` (read through it);
        - a folder with one sub-folder per class;
        - a folder of files whose label and group come from their names (``pattern``);
        - a folder of unlabelled files, with ``allow_unlabelled=True``;
        - a DataFrame with a ``path`` column (validated and completed like a manifest).
    label_column, group_column, path_column : str, optional
        Manifest columns to use. Defaults: the first present of :data:`LABEL_COLUMNS`,
        :data:`GROUP_COLUMNS` and :data:`PATH_COLUMNS`. They are renamed to ``label``,
        ``group`` and ``path`` (the original column is kept under its name too).
    fold_column : str or None
        Column of predefined cross-validation folds, renamed ``fold`` (``None``: ignore).
    pattern : str, optional
        File-name pattern with ``{field}`` placeholders matched against each file's stem, e.g.
        ``'{label}_{group}_{index}'`` for FSDD's ``7_jackson_32.wav``. Fields become columns;
        ``{_}`` matches and discards a part.
    allow_unlabelled : bool
        Accept audio that has no label, for uses that need none (summaries, embeddings): a
        folder of loose files without class sub-folders gives a table without a ``label``
        column, and loose files beside class sub-folders are kept with a missing label. By
        default such a folder raises :class:`DatasetError` (training needs labels) and loose
        files beside class sub-folders are not read.
    check : {'header', 'decode', 'none'}
        How each file is checked: read its header (fast; fills ``duration`` and
        ``sample_rate``), decode it fully (also catches corrupt audio), or not at all.
    on_error : {'skip', 'raise'}
        Unreadable files are left out and listed in ``df.attrs['skipped']`` (with a
        :class:`SkippedFileWarning` giving their number), or the first one raises.
    workers : int, optional
        Threads used to check files (default: 1 for header checks, up to 4 for decoding).

    Returns
    -------
    pandas.DataFrame
        Columns ``path`` (absolute), ``label`` (str, where known), and where known ``group``, ``fold``,
        ``duration`` (s), ``sample_rate``, ``channels``, plus every other manifest column.
        ``attrs`` holds ``source``, ``skipped`` (list of ``{'path', 'reason'}``) and
        ``n_listed`` (files listed before checking).

    Example
    -------
    >>> df = load_dataset("../shared/data/fsdd/manifest.csv")  # doctest: +SKIP
    >>> df[["label", "group"]].nunique().tolist()  # doctest: +SKIP
    [10, 5]
    >>> "label" in load_dataset("recordings/unsorted", allow_unlabelled=True).columns  # doctest: +SKIP
    False
    """
    if check not in _CHECKS:
        raise ParameterError(f"The 'check' parameter of load_dataset must be one of {_CHECKS}. Got {check!r} instead.")
    if on_error not in ("skip", "raise"):
        raise ParameterError(f"The 'on_error' parameter of load_dataset must be 'skip' or 'raise'. Got {on_error!r} instead.")

    if isinstance(source, pd.DataFrame):
        if pattern is not None:
            raise ParameterError("The 'pattern' parameter applies to folders of files, not to a DataFrame.")
        df = _from_frame(source.copy(), Path.cwd(), label_column, group_column, path_column, fold_column)
        origin = "<DataFrame>"
    else:
        src = Path(source)
        origin = str(src)
        if not src.exists():
            raise DatasetError(f"{src}: no such file or folder; pass a CSV manifest or a folder of audio files")
        columns = {k: v for k, v in (("label_column", label_column), ("group_column", group_column),
                                      ("path_column", path_column)) if v is not None}
        if fold_column not in (None, "fold"):
            columns["fold_column"] = fold_column
        if src.is_file():
            if src.suffix.lower() not in (".csv", ".tsv"):
                raise DatasetError(f"{src}: a dataset source must be a .csv manifest or a folder, not a {src.suffix or 'plain'} file")
            if pattern is not None:
                raise ParameterError(
                    f"The 'pattern' parameter reads labels from file names in a folder; {src} is a manifest, "
                    "whose labels are a column (label_column=, --label-column). Pass the folder instead, or drop the pattern.")
            df = _from_manifest(src, label_column, group_column, path_column, fold_column)
        elif pattern is None and (src / "manifest.csv").is_file():
            df = _from_manifest(src / "manifest.csv", label_column, group_column, path_column, fold_column)
        elif pattern is not None:
            df = _from_pattern(src, pattern, columns.get("label_column") or "label",
                               columns.get("group_column") or "group")
            # label_column / group_column may name fields of the pattern ('{digit}_{speaker}_{_}')
            for key, name in (("label_column", "label"), ("group_column", "group")):
                wanted = columns.pop(key, None)
                if wanted is not None and wanted not in df.columns:
                    raise ParameterError(
                        f"{key}={wanted!r} is not a field of the pattern {pattern!r} (its fields: "
                        f"{[c for c in df.columns if c != 'path']}).")
                if wanted is not None and wanted != name:
                    df[name] = df[wanted].astype(str)
            if columns:
                raise ParameterError(
                    f"{', '.join(f'{k}={v!r}' for k, v in columns.items())}: {src} is read through a file-name "
                    "pattern, which has no such column. These options apply to a CSV manifest.")
            df = _order(df)
        else:
            if columns:  # nothing to apply them to: say so rather than ignore them
                raise ParameterError(
                    f"{', '.join(f'{k}={v!r}' for k, v in columns.items())}: {src} is read as class sub-folders, "
                    "which have no columns (the folder names are the labels). Column options apply to a CSV "
                    "manifest, label and group ones also to the fields of a --pattern.")
            df = _from_class_folders(src, allow_unlabelled=allow_unlabelled)

    unlabelled: list[dict[str, str]] = df.attrs.pop("unlabelled", [])
    unmatched: list[dict[str, str]] = df.attrs.pop("unmatched", []) + df.attrs.pop("no_path", [])
    if unmatched and on_error == "raise" and any(u["reason"].startswith("empty") for u in unmatched):
        bad = next(u for u in unmatched if u["reason"].startswith("empty"))
        raise DatasetError(f"{bad['path']}: {bad['reason']}; fill it in or drop the row")
    n_listed = len(df)
    skipped: list[dict[str, str]] = []
    if check != "none" and n_listed:
        df, skipped = _check_files(df, check, on_error, workers)
    df = df.reset_index(drop=True)
    df.attrs.update({"source": origin, "skipped": unmatched + unlabelled + skipped,
                     "n_listed": n_listed + len(unlabelled) + len(unmatched)})
    if unlabelled:
        shown = "; ".join(s["path"] for s in unlabelled[:3])
        more = f" (and {len(unlabelled) - 3} more)" if len(unlabelled) > 3 else ""
        warnings.warn(
            f"{len(unlabelled)} audio files lie directly in {origin}, beside its class sub-folders, so they have "
            f"no label and were left out (listed in df.attrs['skipped']): {shown}{more}. Move each into its "
            "class's sub-folder, or read them with allow_unlabelled=True.",
            SkippedFileWarning,
            stacklevel=2,
        )
    no_file = [u for u in unmatched if u["reason"].startswith("empty")]
    if no_file:
        warnings.warn(
            f"{len(no_file)} row(s) of {origin} name no file and were left out (listed in df.attrs['skipped']): "
            + "; ".join(u["path"] for u in no_file[:3]) + (" …" if len(no_file) > 3 else ""),
            SkippedFileWarning, stacklevel=2)
    if skipped:
        shown = "; ".join(f"{s['path']}: {s['reason']}" for s in skipped[:3])
        more = f" (and {len(skipped) - 3} more)" if len(skipped) > 3 else ""
        warnings.warn(
            f"{len(skipped)} of {n_listed} files could not be read and were left out "
            f"(listed in df.attrs['skipped']): {shown}{more}",
            SkippedFileWarning,
            stacklevel=2,
        )
    return df


# --------------------------------------------------------------------------- sources


def _from_manifest(
    csv: Path,
    label_column: str | None,
    group_column: str | None,
    path_column: str | None,
    fold_column: str | None,
) -> pd.DataFrame:
    try:
        raw = pd.read_csv(csv, sep="\t" if csv.suffix.lower() == ".tsv" else ",", dtype=str, keep_default_na=False)
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{csv}: cannot be read as a CSV manifest: it is not UTF-8 text ({exc}). "
                           "Save it as UTF-8 CSV (e.g. Excel's 'CSV UTF-8').") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise DatasetError(f"{csv}: cannot be read as a CSV manifest ({exc})") from None
    raw = raw.replace("", np.nan)
    return _from_frame(raw, csv.parent, label_column, group_column, path_column, fold_column, csv=csv)


def _pick(columns: Iterable[str], wanted: str | None, candidates: tuple[str, ...], what: str, where: str) -> str | None:
    cols = list(columns)
    if wanted is not None:
        if wanted not in cols:
            raise DatasetError(
                f"{where}: has no column {wanted!r} for the {what}; its columns are {cols}. "
                f"Name one of them instead."
            )
        return wanted
    for cand in candidates:  # a column spelled exactly as earmark writes it first ('path' before 'Path')
        if cand in cols:
            return cand
        same = [c for c in cols if c.lower() == cand.lower()]
        if same:
            return same[0]
    return None


def _from_frame(
    raw: pd.DataFrame,
    base: Path,
    label_column: str | None,
    group_column: str | None,
    path_column: str | None,
    fold_column: str | None,
    csv: Path | None = None,
) -> pd.DataFrame:
    where = str(csv) if csv is not None else "DataFrame"
    pcol = _pick(raw.columns, path_column, PATH_COLUMNS, "path", where)
    if pcol is None:
        cols = [str(c) for c in raw.columns]
        sep = next((c for c in ";|" if len(cols) == 1 and c in cols[0]), None)
        if sep:
            fix = (f"its one column is {cols[0]!r}: the file looks separated by {sep!r}, so save it with commas "
                   "(or as .tsv with tabs).")
        else:
            fix = (f"its columns are {cols[:12]}. Rename the column of file paths to 'path' (or pass "
                   "path_column= to load_dataset).")
        raise DatasetError(f"{where}: no column names the audio files (looked for {list(PATH_COLUMNS)}); {fix}")
    lcol = _pick(raw.columns, label_column, LABEL_COLUMNS, "label", where)
    gcol = _pick(raw.columns, group_column, GROUP_COLUMNS, "group", where)
    fcol = None
    if fold_column == "fold":  # the default: any spelling ('Fold'), and none is fine
        fcol = _pick(raw.columns, None, ("fold",), "folds", where)
    elif fold_column is not None:  # named by the user: it must be there
        fcol = _pick(raw.columns, fold_column, (), "folds", where)

    df = raw.copy()
    # a row without a file is listed (with its row: the CSV's line, or the DataFrame's index), not a crash
    blank = df[pcol].isna().to_numpy() | df[pcol].astype(object).map(
        lambda v: isinstance(v, str) and not v.strip()).to_numpy(dtype=bool)
    no_path = [{"path": f"{where}, {'line' if csv is not None else 'row'} {i + 2 if csv is not None else i}",
                "reason": f"empty {pcol!r} cell: no file to read"} for i in (
                    np.flatnonzero(blank) if csv is not None else df.index[blank])]
    df = df.loc[~blank]
    rel = df[pcol].astype(str).str.strip()
    if csv is not None and pcol == "slice_file_name" and fcol is not None:
        # UrbanSound8K: metadata/UrbanSound8K.csv → audio/fold{fold}/{slice_file_name}
        root = csv.parent.parent / "audio"
        paths = [str(root / f"fold{f}" / p) for f, p in zip(df[fcol].astype(str), rel)]
    elif csv is not None and csv.name == "esc50.csv" and csv.parent.name == "meta":
        root = csv.parent.parent / "audio"
        paths = [str(root / p) for p in rel]
    else:
        paths = [p if os.path.isabs(p) else str(base / p) for p in rel]
    df["path"] = [os.path.abspath(p) for p in paths]
    # labels and groups are names: 'theo ' is theo (else one speaker is two, on both sides of a split)
    if lcol is not None:
        df["label"] = df[lcol].map(_name)
    if gcol is not None:
        df["group"] = df[gcol].map(_name)
    if fcol is not None:
        df["fold"] = df[fcol].map(lambda v: (v.strip() or None) if isinstance(v, str) else v)
    for col in ("fold",):
        if col in df.columns:
            df[col] = _maybe_numeric(df[col])
    for col in df.columns:
        if col not in ("path", "label", "group", "fold") and not pd.api.types.is_numeric_dtype(df[col]):
            df[col] = _maybe_numeric(df[col])
    repeated = df["path"].duplicated(keep=False).to_numpy()
    if repeated.any():
        first = df["path"][repeated].iloc[0]
        warnings.warn(
            f"{where}: {int(df['path'][repeated].nunique())} file(s) are listed more than once "
            f"({int(repeated.sum())} rows, e.g. {first}); each row counts as a clip in training and scores. "
            "Drop the repeats unless they are meant.", EarmarkWarning, stacklevel=4)
    df = _order(df)
    df.attrs["no_path"] = no_path
    # which source column each standard one was made from ('Path' → path, 'speaker' → group…)
    df.attrs["columns_from"] = {k: v for k, v in (("path", pcol), ("label", lcol), ("group", gcol),
                                                  ("fold", fcol)) if v is not None}
    return df


def _name(v: object) -> str | None:
    """A label or group cell as text, stripped; blank → None. (A number is its ``str``: a float
    column's 7.0 stays '7.0', as pandas writes it to a CSV and as train() reads a table.)"""
    if v is None or (not isinstance(v, str) and pd.isna(v)):
        return None
    text = str(v).strip()
    return text or None


def _maybe_numeric(col: pd.Series) -> pd.Series:
    conv = pd.to_numeric(col, errors="coerce")
    if conv.notna().sum() == col.notna().sum() and col.notna().any():
        if (conv.dropna() == conv.dropna().round()).all() and not col.dropna().astype(str).str.contains(r"\.").any():
            return conv.astype("Int64")
        return conv.astype(float)
    return col


def audio_files(folder: str | os.PathLike[str]) -> list[Path]:
    """Audio files under ``folder``, sorted, hidden files and folders left out. Linked folders are
    followed (a class folder often links to where its audio lies), each real folder once, so a
    link back up the tree cannot loop.

    Example
    -------
    >>> len(audio_files("../shared/data/fsdd/recordings"))  # doctest: +SKIP
    2500
    """
    folder = Path(folder)
    start = os.path.realpath(folder)
    files = []
    seen: set[str] = set()

    def above(real: str) -> bool:  # a link up the tree (to the folder or one that holds it)
        return real == start or start.startswith(real.rstrip(os.sep) + os.sep)

    for root, dirs, names in os.walk(folder, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")
                         and os.path.realpath(os.path.join(root, d)) not in seen
                         and not above(os.path.realpath(os.path.join(root, d))))
        files.extend(Path(root) / n for n in sorted(names) if is_audio_file(n) and not n.startswith("."))
    return files


def _from_class_folders(folder: Path, *, allow_unlabelled: bool = False) -> pd.DataFrame:
    classes = sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
    rows: list[dict[str, str]] = [{"path": os.path.abspath(p), "label": c.name} for c in classes for p in audio_files(c)]
    # files directly in the folder have no class: kept without a label when allowed (without class
    # sub-folders they are the dataset), else left out and listed (beside class sub-folders)
    loose_here = sorted(
        p for p in folder.iterdir() if p.is_file() and is_audio_file(p.name) and not p.name.startswith(".")
    )
    if allow_unlabelled:
        rows = [{"path": os.path.abspath(p)} for p in loose_here] + rows
        loose_here = []
    if not rows:
        loose = audio_files(folder)
        if loose:
            raise DatasetError(
                f"{folder}: holds {len(loose)} audio files but no class sub-folders, so they have no labels; "
                "put each class's files in a sub-folder named after it, or list them with their labels in a "
                "CSV manifest (or read labels from the file names with --pattern / pattern=, "
                "e.g. '{label}_{group}_{index}')"
            )
        raise DatasetError(f"{folder}: no audio files found (looked for {', '.join(sorted({'.wav', '.flac', '.mp3', '.ogg'}))}, …)")
    df = _order(pd.DataFrame(rows))
    reason = "directly in the dataset folder, not in a class sub-folder: no label"
    df.attrs["unlabelled"] = [{"path": os.path.abspath(p), "reason": reason} for p in loose_here]
    return df


def parse_pattern(pattern: str, label: str = "label") -> re.Pattern[str]:
    """Compile a ``{field}`` file-name pattern into a regular expression over file stems; it must
    have a field named ``label`` (or the field given as the label).

    Example
    -------
    >>> parse_pattern("{label}_{group}_{index}").fullmatch("7_jackson_32").groupdict()
    {'label': '7', 'group': 'jackson', 'index': '32'}
    """
    parts = re.split(r"(\{[^{}]*\})", pattern)
    fields: list[str] = []
    regex = ""
    for i, part in enumerate(parts):
        if part.startswith("{") and part.endswith("}"):
            name = part[1:-1]
            if name == "_":
                regex += ".+?"
                continue
            if not name.isidentifier() or name in fields:
                raise ParameterError(
                    f"The 'pattern' parameter has a bad or repeated field {part!r} in {pattern!r}; "
                    "use distinct names such as {label}, {group}, {index}."
                )
            fields.append(name)
            nxt = parts[i + 1] if i + 1 < len(parts) else ""
            # a field stops at its literal separator (all of it: '__', ' (') when one follows
            if nxt and not nxt.startswith("{"):
                regex += f"(?P<{name}>(?:(?!{re.escape(nxt)}).)+)"
            else:
                regex += f"(?P<{name}>.+?)"
        else:
            regex += re.escape(part)
    if label not in fields:
        raise ParameterError(f"The 'pattern' parameter must contain {{{label}}}, the label. Got {pattern!r} instead.")
    return re.compile(regex)


def _from_pattern(folder: Path, pattern: str, label: str = "label", group: str = "group") -> pd.DataFrame:
    rx = parse_pattern(pattern, label)
    rows, unmatched = [], []
    for p in audio_files(folder):
        m = rx.fullmatch(p.stem)
        if m is None:
            unmatched.append(str(p))
            continue
        rows.append({"path": os.path.abspath(p), **m.groupdict()})
    if not rows:
        raise DatasetError(
            f"{folder}: no file name matches the pattern {pattern!r} "
            f"(e.g. {Path(unmatched[0]).name!r} does not); check --pattern"
            if unmatched
            else f"{folder}: no audio files found"
        )
    if unmatched:
        warnings.warn(
            f"{len(unmatched)} files in {folder} do not match the pattern {pattern!r} and were left out, "
            f"e.g. {unmatched[0]}",
            SkippedFileWarning,
            stacklevel=3,
        )
    df = pd.DataFrame(rows)
    for col in df.columns:  # labels and groups stay as written ('07' is not '7')
        if col not in ("path", "label", "group", label, group):
            df[col] = _maybe_numeric(df[col])
    df = _order(df)
    df.attrs["unmatched"] = [{"path": os.path.abspath(u), "reason": f"file name does not match the pattern {pattern!r}"}
                             for u in unmatched]
    return df


def _order(df: pd.DataFrame) -> pd.DataFrame:
    first = [c for c in ("path", "label", "group", "fold") if c in df.columns]
    return df[first + [c for c in df.columns if c not in first]]


# --------------------------------------------------------------------------- checks


def _check_one(path: str, check: str) -> tuple[dict[str, float] | None, str | None]:
    try:
        if check == "decode":
            y, sr = load_audio(path, mono=False)
            return {"duration": y.shape[-1] / sr, "sample_rate": sr, "channels": y.shape[0] if y.ndim > 1 else 1}, None
        info = audio_info(path)
        if info.frames == 0:
            return None, "holds zero audio frames"
        return {"duration": info.duration, "sample_rate": info.sample_rate, "channels": info.channels}, None
    except AudioDecodeError as exc:
        return None, exc.reason


def _check_files(
    df: pd.DataFrame, check: str, on_error: str, workers: int | None
) -> tuple[pd.DataFrame, list[dict[str, str]]]:
    paths = df["path"].tolist()
    # Header reads are too quick to gain from threads; full decodes release the GIL and do.
    n_workers = workers or (1 if check == "header" else min(4, os.cpu_count() or 1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if n_workers > 1 and len(paths) > 64:
            with ThreadPoolExecutor(n_workers) as pool:
                results = list(pool.map(_check_one, paths, [check] * len(paths), chunksize=64))
        else:
            results = [_check_one(p, check) for p in paths]
    keep = np.ones(len(paths), dtype=bool)
    skipped = []
    meta: dict[str, list[float]] = {"duration": [], "sample_rate": [], "channels": []}
    for i, (info, reason) in enumerate(results):
        if reason is not None:
            if on_error == "raise":
                raise AudioDecodeError(paths[i], reason)
            keep[i] = False
            skipped.append({"path": paths[i], "reason": reason})
            continue
        for k in meta:
            meta[k].append(info[k])
    out = df.loc[keep].copy()
    out["duration"] = np.asarray(meta["duration"], dtype=float)
    out["sample_rate"] = np.asarray(meta["sample_rate"], dtype=np.int64)
    out["channels"] = np.asarray(meta["channels"], dtype=np.int64)
    return out, skipped
