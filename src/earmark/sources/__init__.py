"""Where clips and labels come from: folders, manifests, file-name patterns, the catalog, splits.

Example
-------
>>> from earmark.sources import load_dataset, train_test_split
>>> df = load_dataset("../shared/data/fsdd/manifest.csv")  # doctest: +SKIP
>>> train, test = train_test_split(df, seed=0)  # doctest: +SKIP
"""

from earmark.sources._dataset import (
    GROUP_COLUMNS,
    LABEL_COLUMNS,
    PATH_COLUMNS,
    SkippedFileWarning,
    audio_files,
    load_dataset,
    parse_pattern,
)
from earmark.sources._splits import (
    LeakageReport,
    check_leakage,
    find_duplicates,
    iter_folds,
    split_kind,
    train_test_split,
)
from earmark.sources._summary import summarize
from earmark.sources._synthetic import make_demo_dataset

__all__ = [
    "GROUP_COLUMNS",
    "LABEL_COLUMNS",
    "PATH_COLUMNS",
    "LeakageReport",
    "SkippedFileWarning",
    "audio_files",
    "check_leakage",
    "find_duplicates",
    "iter_folds",
    "load_dataset",
    "make_demo_dataset",
    "parse_pattern",
    "split_kind",
    "summarize",
    "train_test_split",
]
