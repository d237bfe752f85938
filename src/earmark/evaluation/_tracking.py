"""Optional experiment tracking: write a training history and final metrics to TensorBoard or MLflow.

Neither package is a dependency of earmark; asking for one that is not installed raises an
:class:`~earmark.errors.EarmarkError` that says what to install.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from earmark.errors import EarmarkError, ParameterError

__all__ = ["TRACKERS", "log_run"]

#: Tracking backends and the package each one needs.
TRACKERS = {"tensorboard": "tensorboard", "mlflow": "mlflow"}


def _scalars(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, int | float):
            out[name] = float(value)
        elif isinstance(value, Mapping) and (
            key in ("top_k_accuracy", "summary") or prefix.startswith("summary/")
        ):
            out.update(_scalars(value, prefix=f"{name}/"))
    return out


def log_run(
    *,
    backend: str,
    metrics: Mapping[str, Any],
    history: Sequence[Mapping[str, Any]] = (),
    logdir: str | Path = "runs",
    run_name: str = "earmark",
    params: Mapping[str, Any] | None = None,
) -> str:
    """Write a run's per-epoch history and final scalar metrics where the tracker expects them.

    Parameters
    ----------
    backend : {"tensorboard", "mlflow"}
        The tracker.
    metrics : mapping
        Final metrics (nested ``top_k_accuracy``/``summary`` dicts are flattened as ``a/b``).
    history : sequence of dict, optional
        Per-epoch dicts (``epoch``, ``loss``, ``val_loss``, ``accuracy``, ``val_accuracy``, ``lr``).
    logdir : str or Path, default "runs"
        TensorBoard log folder, or the MLflow tracking folder (``file:`` store) unless
        ``MLFLOW_TRACKING_URI`` is set.
    run_name : str, default "earmark"
        Name of the run (a sub-folder for TensorBoard).
    params : mapping, optional
        Run parameters (model, features, folds…), logged as MLflow params / TensorBoard text.

    Returns
    -------
    str
        Where the run was written.

    Raises
    ------
    EarmarkError
        The tracker's package is not installed (the message names it).

    Examples
    --------
    >>> log_run(backend="tensorboard", metrics={"accuracy": 0.9}, logdir="runs")  # doctest: +SKIP
    'runs/earmark'
    """
    if backend not in TRACKERS:
        raise ParameterError(
            f"The 'backend' parameter (--log) must be one of {sorted(TRACKERS)}. "
            f"Got {backend!r} instead."
        )
    package = TRACKERS[backend]
    if importlib.util.find_spec(package) is None:
        raise EarmarkError(
            f"--log {backend} needs the {package!r} package, which is not installed. "
            f"Install it with `pip install {package}`, or leave out --log."
        )
    scalars = _scalars(metrics)
    if backend == "tensorboard":
        from torch.utils.tensorboard import SummaryWriter

        where = Path(logdir) / run_name
        writer = SummaryWriter(log_dir=str(where))
        try:
            for i, epoch in enumerate(history):
                step = int(epoch.get("epoch", i + 1))
                for key, value in epoch.items():
                    if key != "epoch" and isinstance(value, int | float) and value is not None:
                        writer.add_scalar(f"train/{key}", float(value), step)
            for key, value in scalars.items():
                writer.add_scalar(f"final/{key}", value, 0)
            if params:
                writer.add_text("params", "\n".join(f"{k}: {v}" for k, v in params.items()))
        finally:
            writer.close()
        return str(where)
    import os

    import mlflow

    if "MLFLOW_TRACKING_URI" not in os.environ:
        mlflow.set_tracking_uri(Path(logdir).resolve().as_uri())
    with mlflow.start_run(run_name=run_name) as run:
        if params:
            mlflow.log_params({k: str(v) for k, v in params.items()})
        for i, epoch in enumerate(history):
            step = int(epoch.get("epoch", i + 1))
            mlflow.log_metrics(
                {k: float(v) for k, v in epoch.items()
                 if k != "epoch" and isinstance(v, int | float) and v is not None},
                step=step,
            )
        mlflow.log_metrics({k.replace("/", "_"): v for k, v in scalars.items()})
        return f"{mlflow.get_tracking_uri()} (run {run.info.run_id})"
