"""How good is a model, and why: metrics, cross-validation, comparison, plots and the HTML report.

Example
-------
>>> from earmark.evaluation import compute_metrics
>>> compute_metrics(["a", "b"], ["a", "a"])["accuracy"]
0.5
"""

from earmark.evaluation import plots
from earmark.evaluation._explain import Explanation, deletion_curve, explain, plot_explanation
from earmark.evaluation._html import audio_to_data_uri, figure_to_data_uri, render_report
from earmark.evaluation._metrics import (
    calibration_curve,
    compute_metrics,
    expected_calibration_error,
)
from earmark.evaluation._results import (
    CVResult,
    EvaluationResult,
    FoldResult,
    Leaderboard,
    evaluate_predictions,
    summarize_folds,
    to_json,
)
from earmark.evaluation._run import (
    UnlearntClassWarning,
    compare,
    cross_validate,
    evaluate,
    load_table,
    predict_table,
)
from earmark.evaluation._tracking import TRACKERS, log_run
from earmark.evaluation.report import build_report, write_report

__all__ = [
    "TRACKERS",
    "CVResult",
    "EvaluationResult",
    "Explanation",
    "FoldResult",
    "Leaderboard",
    "UnlearntClassWarning",
    "audio_to_data_uri",
    "build_report",
    "calibration_curve",
    "compare",
    "compute_metrics",
    "cross_validate",
    "deletion_curve",
    "evaluate",
    "evaluate_predictions",
    "expected_calibration_error",
    "explain",
    "figure_to_data_uri",
    "load_table",
    "log_run",
    "plot_explanation",
    "plots",
    "predict_table",
    "render_report",
    "summarize_folds",
    "to_json",
    "write_report",
]
