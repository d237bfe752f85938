"""Evaluation commands: ``earmark evaluate``, ``earmark cv``, ``earmark compare`` and ``earmark explain``.

Scores go to stdout as a table (or JSON with ``--json -``); progress, warnings and the list of
files left out go to stderr. Files that cannot be decoded are excluded from the scores and
listed; the command then exits with :attr:`ExitCode.PARTIAL`.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Column, Table

from earmark.cli._common import (
    ExitCode,
    all_models,
    check_output_file,
    check_writable_folder,
    earmark_warnings,
    err_console,
    fail,
    register_features,
    report_skipped,
)

_HEADLINE = ("accuracy", "balanced_accuracy", "macro_f1", "micro_f1", "log_loss", "ece",
             "roc_auc", "pr_auc", "mae", "rmse", "r2")

_SOURCE_HELP = "CSV manifest, folder of class folders, or folder of files."
_LABEL_HELP = "Manifest column of the labels."
_GROUP_HELP = "Manifest column of the groups (speaker, recording…)."
_JSON_HELP = "Write all scores as one JSON object to this file ('-' for stdout)."
_REPORT_HELP = "Write a self-contained HTML report (plots, misclassified clips with audio)."
_LOG_HELP = "Also log the run to an experiment tracker: tensorboard or mlflow."
_FOLDS_HELP = ("'fold' (the manifest's fold column), 'group' (leave one group out), an integer K "
               "(K stratified group folds) or 'auto'.")


def register(app: typer.Typer) -> None:
    """Add ``evaluate``, ``cv``, ``compare`` and ``explain`` to ``app``."""
    app.command("evaluate")(evaluate)
    app.command("cv")(cv)
    app.command("compare")(compare)
    app.command("explain")(explain)


def _folds(value: str) -> str | int:
    value = value.strip().lower()
    if value in ("auto", "fold", "group"):
        return value
    try:
        k = int(value)
    except ValueError:
        fail(f"--folds must be 'auto', 'fold', 'group' or an integer >= 2; got {value!r}.",
             ExitCode.USAGE)
    if k < 2:
        fail(f"--folds must be at least 2 when a number; got {k}.", ExitCode.USAGE)
    return k


def _check_outputs(json_out: str | None, report: Path | None) -> None:
    """Refuse, before any work, a --json or --report file that could not be written."""
    for option, target in (("--json", json_out), ("--report", report)):
        check_output_file(target, option)


def _check_log(log: str | None) -> None:
    if log is None:
        return
    import importlib.util

    from earmark.evaluation import TRACKERS

    if log not in TRACKERS:
        fail(f"--log must be one of {', '.join(sorted(TRACKERS))}; got {log!r}.", ExitCode.USAGE)
    if importlib.util.find_spec(TRACKERS[log]) is None:
        fail(f"--log {log} needs the {TRACKERS[log]!r} package: `pip install {TRACKERS[log]}` "
             "(or leave out --log).", ExitCode.USAGE)


def _load(source: Path, label_column: str | None, group_column: str | None, pattern: str | None = None) -> Any:
    from earmark.sources import SkippedFileWarning, load_dataset

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkippedFileWarning)  # skipped files are listed by the command itself
        return load_dataset(source, label_column=label_column, group_column=group_column, pattern=pattern)


def _scored_summary(table: Any, skipped: list[dict[str, str]]) -> dict[str, Any]:
    """The report's Dataset section as the scores saw the table: files that failed while being
    scored (corrupt audio a header check passes) count as unreadable there too."""
    from earmark.sources import summarize

    unreadable = [s for s in skipped if s.get("kind") != "no_value"]  # a clip without truth is readable
    failed = {str(s.get("path")) for s in unreadable}
    kept = table[~table["path"].astype(str).isin(failed)].copy()
    kept.attrs = {**table.attrs, "skipped": unreadable}
    return summarize(kept, duplicates=False)


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def _print_metrics(metrics: dict[str, Any], title: str, spread: dict | None = None) -> None:
    out = Console()
    table = Table("metric", "mean of folds" if spread else "value", *(["± std", "worst"] if spread else []),
                  title=title)
    n_folds = max((s.get("n_folds", 0) for s in (spread or {}).values()), default=0)
    for key in _HEADLINE:
        if metrics.get(key) is None and not (spread and key in spread):
            continue
        shown = key
        if key in ("roc_auc", "pr_auc") and metrics.get("positive_class") is not None:
            shown = f"{key} (positive: {metrics['positive_class']})"  # the class scored as positive
        if spread and key in spread:
            s = spread[key]
            worst = s["max"] if key in ("log_loss", "ece", "mae", "rmse") else s["min"]
            # a metric some folds cannot compute (ROC-AUC without every class) says over how many
            few = s.get("n_folds", n_folds) < n_folds
            table.add_row(f"{shown} ({s['n_folds']} of {n_folds} folds)" if few else shown, _fmt(s["mean"]),
                          _fmt(s["std"]), _fmt(worst))
        elif spread:  # no per-fold value: the pooled predictions', said so rather than passed for a mean
            table.add_row(f"{shown} (pooled)", _fmt(metrics[key]), "", "")
        else:
            table.add_row(shown, _fmt(metrics[key]))
    for k, v in (metrics.get("top_k_accuracy") or {}).items():
        table.add_row(f"top-{k} accuracy" + (" (pooled)" if spread else ""), _fmt(v), *([""] * 2 if spread else []))
    table.add_row("clips scored", str(metrics.get("n")), *([""] * 2 if spread else []))
    out.print(table)
    per_class = metrics.get("per_class")
    if per_class and not spread:
        t = Table("class", "precision", "recall", "f1", "support", title="per class")
        for label, s in per_class.items():
            t.add_row(label, _fmt(s["precision"]), _fmt(s["recall"]), _fmt(s["f1"]),
                      str(s["support"]))
        out.print(t)


def _check_models(names: list[str]) -> None:
    """An unknown model name is a usage error, found before any data is read."""
    from earmark.errors import EarmarkError
    from earmark.models import get_spec

    all_models(*names)
    for name in names:
        try:
            get_spec(name)
        except EarmarkError as exc:
            fail(str(exc), ExitCode.USAGE)


def _write_outputs(result: Any, *, json_out: str | None, report: Path | None, model: Any,
                   summary: dict | None, max_clips: int, embedding: str, config: dict,
                   explain: int = 0, json_config: bool = False) -> None:
    from earmark.evaluation import build_report, to_json, write_report

    try:
        if json_out is not None:
            data = result.to_dict()
            if json_config:  # how the run was made (model parameters, extra training sources…)
                data["config"] = {k: v for k, v in config.items() if v is not None}
            if json_out == "-":
                typer.echo(to_json(data))
            else:
                to_json(data, json_out)
                err_console.print(f"scores written to {escape(str(json_out))}", highlight=False)
        if report is not None:
            with earmark_warnings():  # e.g. an explanation left out of the report, and why
                html = build_report(result, model=model, summary=summary, max_clips=max_clips,
                                    embedding=embedding, config=config, explain=explain)
            write_report(html, report)
            err_console.print(f"report written to {escape(str(report))}", highlight=False)
    except OSError as exc:
        fail(f"Cannot write {exc.filename or json_out or report}: {exc.strerror or exc}. Choose a writable path.")


def _log(log: str | None, logdir: Path, run_name: str, metrics: dict, history: Any,
         params: dict) -> None:
    if log is None:
        return
    from earmark.evaluation import log_run

    where = log_run(backend=log, metrics=metrics, history=list(history or []), logdir=logdir,
                    run_name=run_name, params=params)
    err_console.print(f"logged to {log}: {where}", highlight=False)


def evaluate(
    model_dir: Path = typer.Argument(..., exists=True, help="A saved model (earmark train --out)."),
    source: Path = typer.Argument(..., exists=True, help=_SOURCE_HELP),
    json_out: str | None = typer.Option(None, "--json", help=_JSON_HELP),
    report: Path | None = typer.Option(None, "--report", help=_REPORT_HELP, dir_okay=False),
    label_column: str | None = typer.Option(None, "--label-column", "--label", help=_LABEL_HELP),
    group_column: str | None = typer.Option(None, "--group-column", "--group", help=_GROUP_HELP),
    pattern: str | None = typer.Option(None, "--pattern", help="File-name pattern giving labels (and groups) to a folder of files, e.g. '{label}_{group}_{index}'."),
    target: str | None = typer.Option(None, "--target", help="Column of the truth (default: the model's target)."),
    unknown_labels: str = typer.Option("error", "--unknown-labels", help="Labels the model never learnt: 'error' (refuse) or 'wrong' (score those clips as mistakes, e.g. open-set tests)."),
    max_clips: int = typer.Option(20, "--max-clips", min=0, help="Misclassified clips (a regressor's: those of the largest errors) in the report."),
    explain_n: int = typer.Option(4, "--explain", min=0, help="Occlusion maps in the report: which regions of the N most confident mistakes (a regressor's: largest errors) the answers rested on (0: none)."),
    embedding: str = typer.Option("pca", "--embedding", help="2-D map in the report: pca or tsne."),
    log: str | None = typer.Option(None, "--log", help=_LOG_HELP),
    logdir: Path = typer.Option(Path("runs"), "--logdir", help="Where --log writes."),
    workers: int | None = typer.Option(None, "--workers", "-j", min=1, help="Processes for feature extraction (default: the CPU count)."),
) -> None:
    """Score a trained model on a dataset: accuracy, F1, confusion, calibration (or MAE/RMSE/R²).

    Files that cannot be decoded are listed and left out of the scores (exit code 1).
    """
    from earmark.bundle import load_model
    from earmark.errors import EarmarkError, ParameterError
    from earmark.evaluation import evaluate as run_evaluation

    if embedding not in ("pca", "tsne"):
        fail(f"--embedding must be 'pca' or 'tsne'; got {embedding!r}.", ExitCode.USAGE)
    if unknown_labels not in ("error", "wrong"):
        fail(f"--unknown-labels must be 'error' or 'wrong'; got {unknown_labels!r}.", ExitCode.USAGE)
    _check_log(log)
    _check_outputs(json_out, report)
    try:
        model = load_model(model_dir)
        table = _load(source, label_column, group_column, pattern)
        with earmark_warnings():  # e.g. clips it was trained on
            result = run_evaluation(model, table, target=target, unknown_labels=unknown_labels, workers=workers)
        summary = _scored_summary(table, result.skipped) if report is not None else None
        if json_out != "-":
            _print_metrics(result.metrics, f"{model_dir.name} on {source.name}")
        _write_outputs(result, json_out=json_out, report=report, model=model, summary=summary,
                       max_clips=max_clips, embedding=embedding, explain=explain_n,
                       config={"model": str(model_dir), "source": str(source)})
        _log(log, logdir, f"evaluate-{model_dir.name}", result.to_dict(),
             getattr(model, "history", None), {"model": str(model_dir), "source": str(source)})
    except ParameterError as exc:  # a value that cannot apply: a usage error (exit 2)
        fail(str(exc), ExitCode.USAGE)
    except EarmarkError as exc:
        fail(str(exc))
    report_skipped(result.skipped)
    if result.skipped:
        raise typer.Exit(int(ExitCode.PARTIAL))


def _fold_printer(prefix: str = "") -> Any:
    def show(fold: Any) -> None:
        m = fold.result.metrics
        key = "accuracy" if "accuracy" in m else "rmse"
        # numbered and predefined folds are already called 'fold 2'; a held-out group is just its name
        name = str(fold.name)
        label = name if name.startswith("fold ") else f"fold {name}"
        scored = int(m.get("n", fold.n_test))
        left_out = f", {fold.n_test - scored} unreadable left out" if scored < fold.n_test else ""
        err_console.print(
            f"{prefix}{label}: {key} {m[key]:.4f} on {scored} clips{left_out} "
            f"(trained on {fold.n_train}" + (f" + {fold.n_extra_train} extra" if fold.n_extra_train else "")
            + f" in {fold.train_seconds:.1f} s"
            + (f", features {fold.feature_seconds:.1f} s" if fold.feature_seconds >= 0.05 else "") + ")",
            highlight=False)
    return show


def cv(
    source: Path = typer.Argument(..., exists=True, help=_SOURCE_HELP),
    model: str | None = typer.Option(None, "--model", "-m", help="Model name (earmark models list)."),
    features: str | None = typer.Option(None, "--features", help="Feature preset, settings after a colon: 'logmel:n_mels=128' (default: the model's)."),
    folds: str = typer.Option("auto", "--folds", help=_FOLDS_HELP),
    seed: int = typer.Option(0, "--seed", help="Seed of the folds and of training."),
    epochs: int | None = typer.Option(None, "--epochs", min=1, help="Training epochs (neural models)."),
    duration: float | None = typer.Option(None, "--duration", min=0.01, max=600.0, help="Seconds each clip is padded/cropped to (fixed-length presets; default: from each fold's training clips, as earmark train)."),
    target: str | None = typer.Option(None, "--target", help="Column to predict (e.g. pitch for a regressor)."),
    json_out: str | None = typer.Option(None, "--json", help=_JSON_HELP),
    report: Path | None = typer.Option(None, "--report", help=_REPORT_HELP, dir_okay=False),
    label_column: str | None = typer.Option(None, "--label-column", "--label", help=_LABEL_HELP),
    group_column: str | None = typer.Option(None, "--group-column", "--group", help=_GROUP_HELP),
    pattern: str | None = typer.Option(None, "--pattern", help="File-name pattern giving labels (and groups) to a folder of files, e.g. '{label}_{group}_{index}'."),
    max_clips: int = typer.Option(20, "--max-clips", min=0, help="Misclassified clips (a regressor's: those of the largest errors) in the report."),
    embedding: str = typer.Option("pca", "--embedding", help="2-D map in the report: pca or tsne."),
    log: str | None = typer.Option(None, "--log", help=_LOG_HELP),
    logdir: Path = typer.Option(Path("runs"), "--logdir", help="Where --log writes."),
    workers: int | None = typer.Option(None, "--workers", "-j", min=1, help="Processes for feature extraction (default: the CPU count)."),
    param: list[str] = typer.Option([], "--param", "-p", help="Model parameter KEY=VALUE (JSON value), repeatable, as for earmark train."),
    extra_train: str | None = typer.Option(None, "--extra-train", help="Extra source added to every fold's training only (never scored)."),
    synthetic_voices: int = typer.Option(0, "--synthetic-voices", min=0, help="Add every label spoken by N espeak-ng voices to every fold's training only (needs the synth extra; GPL)."),
    text_map: str | None = typer.Option(None, "--text-map", help="Label→text for --synthetic-voices, e.g. '7=seven'."),
    extra_weight: float = typer.Option(1.0, "--extra-weight", help="Loss weight (> 0) of the extra training clips."),
) -> None:
    """Cross-validate a model: per-fold scores, mean ± std and the worst fold.

    No group (speaker, recording, program…) is ever on both sides of a split. Extra training
    clips (--extra-train, --synthetic-voices) join each fold's training side only: the scores are
    the dataset's own clips, so they measure what the extra clips are worth on held-out groups.
    """
    from earmark.cli.models import (
        _check_extra_options,
        _check_param_keys,
        _concat,
        _extra_label,
        _parse_params,
        _synthetic_voices,
    )
    from earmark.errors import EarmarkError, ParameterError
    from earmark.evaluation import cross_validate

    params = _parse_params(param)
    # cv's own settings, and train()'s that cv sets; train()'s others (val_fraction, refit…) pass through
    _check_param_keys(params, {
        "dataset": "SOURCE", "table": "SOURCE", "model": "--model", "features": "--features", "folds": "--folds",
        "seed": "--seed", "target": "--target", "workers": "--workers", "epochs": "--epochs",
        "duration": "--duration", "label_column": "--label-column", "group_column": "--group-column",
        "extra_train": "--extra-train", "extra_weight": "--extra-weight", "on_fold": None, "progress": None,
        "cache": None})
    _check_extra_options(extra_train, synthetic_voices, text_map, extra_weight)
    k = _folds(folds)
    _check_log(log)
    _check_models([model] if model else [])
    if epochs is not None and model:
        from earmark.models import get_spec

        if get_spec(model).kind != "torch":
            fail(f"--epochs applies to neural models; {model!r} is not trained in epochs. Drop --epochs.",
                 ExitCode.USAGE)
    if embedding not in ("pca", "tsne"):
        fail(f"--embedding must be 'pca' or 'tsne'; got {embedding!r}.", ExitCode.USAGE)
    _check_outputs(json_out, report)
    train_kwargs: dict[str, Any] = {"epochs": epochs} if epochs is not None else {}
    if duration is not None:
        train_kwargs["duration"] = duration
    try:
        table = _load(source, label_column, group_column, pattern)
        features = register_features(features)
        extras = [_load(Path(extra_train), _extra_label(extra_train, label_column), None)] if extra_train else []
        if synthetic_voices:
            if target not in (None, "label"):
                raise ParameterError(f"--synthetic-voices speaks the labels; it cannot go with --target {target}.")
            extras.append(_synthetic_voices(table, synthetic_voices, seed, text_map))
        if extras:
            train_kwargs.update(extra_train=_concat(extras), extra_weight=extra_weight)
        with earmark_warnings():  # e.g. a fold whose model did not learn: one line each
            result = cross_validate(table, model=model, features=features, folds=k, seed=seed,
                                    target=target, workers=workers, on_fold=_fold_printer(), **train_kwargs,
                                    **params)
        summary = _scored_summary(table, result.skipped) if report is not None else None
        if json_out != "-":
            w = result.worst_fold
            _print_metrics(result.pooled.metrics,
                           f"{result.model}: {len(result.folds)} folds ({result.folds_kind}); "
                           f"worst {w['fold']} ({w['metric']} {w['value']:.4f})",
                           spread=result.summary)
        config = {"model": model, "features": features, "folds": folds, "seed": seed,
                  "epochs": epochs, "duration": duration, "source": str(source), "params": params or None,
                  "extra_train": extra_train, "synthetic_voices": synthetic_voices or None,
                  "text_map": text_map, "extra_weight": extra_weight if (extra_train or synthetic_voices) else None,
                  "label_column": label_column, "group_column": group_column}
        _write_outputs(result, json_out=json_out, report=report, model=None, summary=summary,
                       max_clips=max_clips, embedding=embedding, config=config, json_config=True)
        _log(log, logdir, f"cv-{result.model}", result.to_dict(),
             getattr(result.last_model, "history", None), config)
    except ParameterError as exc:  # a value that cannot apply: a usage error (exit 2)
        fail(str(exc), ExitCode.USAGE)
    except EarmarkError as exc:
        fail(str(exc))
    report_skipped(result.skipped)
    if result.skipped:
        raise typer.Exit(int(ExitCode.PARTIAL))


def compare(
    source: Path = typer.Argument(..., exists=True, help=_SOURCE_HELP),
    models: str = typer.Option(..., "--models", help="Comma-separated model names, e.g. logreg,rf,cnn."),
    features: str | None = typer.Option(None, "--features", help="One feature preset for all, settings after a colon: 'logmel:n_mels=128' (default: each model's)."),
    folds: str = typer.Option("auto", "--folds", help=_FOLDS_HELP),
    seed: int = typer.Option(0, "--seed", help="Seed of the folds and of training."),
    epochs: int | None = typer.Option(None, "--epochs", min=1, help="Training epochs of the neural models (others ignore it)."),
    target: str | None = typer.Option(None, "--target", help="Column to predict."),
    duration: float | None = typer.Option(None, "--duration", min=0.01, max=600.0, help="Seconds each clip is padded/cropped to, for the models on fixed-length presets (default: from each fold's training clips); models on pooled features ignore it."),
    json_out: str | None = typer.Option(None, "--json", help=_JSON_HELP),
    report: Path | None = typer.Option(None, "--report", help="Write a self-contained HTML report: the leaderboard and per-fold scores of every model.", dir_okay=False),
    label_column: str | None = typer.Option(None, "--label-column", "--label", help=_LABEL_HELP),
    group_column: str | None = typer.Option(None, "--group-column", "--group", help=_GROUP_HELP),
    pattern: str | None = typer.Option(None, "--pattern", help="File-name pattern giving labels (and groups) to a folder of files, e.g. '{label}_{group}_{index}'."),
    workers: int | None = typer.Option(None, "--workers", "-j", min=1, help="Processes for feature extraction (default: the CPU count)."),
) -> None:
    """Cross-validate several models on the same folds: one leaderboard of scores, time and size."""
    from earmark.errors import EarmarkError, ParameterError
    from earmark.evaluation import compare as run_compare

    names = [m.strip() for m in models.split(",") if m.strip()]
    if not names:
        fail("--models needs at least one model name, e.g. --models logreg,rf.",
             ExitCode.USAGE)
    _check_models(names)
    k = _folds(folds)
    _check_outputs(json_out, report)
    train_kwargs: dict[str, Any] = {"epochs": epochs} if epochs is not None else {}
    if duration is not None:
        train_kwargs["duration"] = duration
    try:
        table = _load(source, label_column, group_column, pattern)
        features = register_features(features)
        with earmark_warnings():
            board = run_compare(table, models=names, features=features, folds=k, seed=seed,
                                target=target, workers=workers,
                                on_fold=lambda name, f: _fold_printer(f"{name} ")(f), **train_kwargs)
        first = next(iter(board.results.values()), None)
        summary = _scored_summary(table, first.skipped if first is not None else []) if report is not None else None
        if json_out != "-":
            _print_board(board)
        config = {"models": names, "features": features, "folds": folds, "seed": seed,
                  "epochs": epochs, "duration": duration, "source": str(source)}
        _write_outputs(board, json_out=json_out, report=report, model=None, summary=summary,
                       max_clips=0, embedding="pca", config=config)
    except ParameterError as exc:  # a value that cannot apply: a usage error (exit 2)
        fail(str(exc), ExitCode.USAGE)
    except EarmarkError as exc:
        fail(str(exc))
    skipped = next(iter(board.results.values())).skipped if board.results else []
    report_skipped(skipped)
    if skipped:
        raise typer.Exit(int(ExitCode.PARTIAL))


def _print_board(board: Any) -> None:
    header, rows = board.display()
    t = Table(*header, title="Leaderboard (same folds for every model)")
    for row in rows:
        t.add_row(*row)
    Console().print(t)


def explain(
    model: Path = typer.Argument(..., exists=True, help="Model bundle (directory or .earmark file)."),
    paths: list[Path] = typer.Argument(..., help="Audio files and folders (searched recursively)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Folder for one PNG per file: the spectrogram with each region's importance over it."),
    target: str | None = typer.Option(None, "--target", help="Class to explain (default: each file's predicted class)."),
    window: float = typer.Option(0.1, "--window", min=0.005, max=5.0, help="Width of a region in seconds (at least one analysis step of the model's rate: 8-12 ms)."),
    bands: int = typer.Option(8, "--bands", min=1, max=64, help="Mel-spaced frequency bands."),
    top: int = typer.Option(3, "--top", min=1, help="Regions listed per file."),
    as_json: bool = typer.Option(False, "--json", help='Print {"explanations": \\[one object per file], "failed": \\[{"path", "reason"}]} on stdout.'),
) -> None:
    """Explain predictions: silence each time-frequency region of a clip in turn and measure how
    much the model's score for the class falls (or its value moves).

    Works for every model (it re-runs the model's own features on the altered sound). Clips up to
    30 s; files that cannot be decoded are listed (exit code 1).
    """
    from earmark.bundle import load_model
    from earmark.cli._common import progress_bar, write_json
    from earmark.errors import EarmarkError, ParameterError
    from earmark.evaluation._explain import explain as explain_clip
    from earmark.evaluation._explain import min_window, plot_explanation
    from earmark.serving.batch import expand_paths

    if out is not None:
        if out.exists() and not out.is_dir():
            fail(f"--out {out} is a file; give a folder for the figures.", ExitCode.USAGE)
        check_writable_folder(out, "--out")
    try:
        trained = load_model(model)
        if target is not None and trained.task != "classification":
            fail(f"--target names a class; {model} is a regressor (of {trained.target!r}): drop --target.",
                 ExitCode.USAGE)
        if target is not None and target not in trained.classes:
            fail(f"--target {target!r} is not a class of {model}; classes: {', '.join(trained.classes)}.",
                 ExitCode.USAGE)
        if window < min_window(trained.preset.sample_rate):
            fail(f"--window must be at least {min_window(trained.preset.sample_rate):g} s for this model "
                 f"(one step of the analysis at {trained.preset.sample_rate} Hz).", ExitCode.USAGE)
        files = expand_paths(paths)
    except ParameterError as exc:  # a value that cannot apply: a usage error (exit 2)
        fail(str(exc), ExitCode.USAGE)
    except EarmarkError as exc:
        fail(str(exc))
    if all(Path(f).is_dir() for f in files):
        fail(f"No audio files under {', '.join(map(str, paths))}.", ExitCode.USAGE)
    if out is not None:
        if out.exists() and not out.is_dir():
            fail(f"--out {out} is a file; give a folder for the figures.", ExitCode.USAGE)
        out.mkdir(parents=True, exist_ok=True)
    results, failed, flat = [], [], []
    with progress_bar("explaining", len(files)) as advance:
        for f in files:
            try:
                exp = explain_clip(trained, f, target=target, window=window, bands=bands)
            except EarmarkError as exc:
                failed.append({"path": str(f), "reason": str(exc)})
                advance(1)
                continue
            record = exp.to_dict()
            record["top_regions"] = exp.top_regions(top)
            if not any(abs(float(v)) > 1e-4 for v in exp.importance.ravel()):  # float noise aside
                flat.append(str(f))
            if out is not None:
                figure = out / f"{Path(f).stem}.png"
                n = 1
                while figure.exists() and any(r.get("figure") == str(figure) for r in results):
                    n += 1
                    figure = out / f"{Path(f).stem}-{n}.png"
                plot_explanation(exp).savefig(figure, dpi=110, bbox_inches="tight", pad_inches=0.05)
                record["figure"] = str(figure)
            results.append(record)
            advance(1)
    if as_json:
        write_json({"explanations": results, "failed": failed}, None)
    else:
        unit = "|change|" if trained.task == "regression" else "score fall"
        # numbers never cut: they keep their width, the file name folds to what is left
        table = Table(Column("file", overflow="fold", min_width=8, ratio=1), Column("answer", overflow="fold"),
                      Column("explained", overflow="fold"), Column("seconds", no_wrap=True),
                      Column("Hz", no_wrap=True), Column(unit, no_wrap=True, justify="right"))
        for r in results:
            answer = r["predicted"] if isinstance(r["predicted"], str) else f"{r['predicted']:.3g}"
            for i, reg in enumerate(r["top_regions"]):
                first = i == 0
                table.add_row(Path(r["source"]).name if first else "", answer if first else "",
                              f"{r['explained']} ({r['score']:.3g})" if first else "",
                              f"{reg['start_s']:.2f}-{reg['end_s']:.2f}", f"{reg['low_hz']:.0f}-{reg['high_hz']:.0f}",
                              f"{reg['drop']:.3f}" if trained.task == "regression" else f"{reg['drop']:+.3f}")
        console = Console()
        if console.width >= 72:
            console.print(table)
        else:  # too narrow for the table without cutting numbers: one line per region
            for r in results:
                answer = r["predicted"] if isinstance(r["predicted"], str) else f"{r['predicted']:.3g}"
                console.print(f"{escape(Path(r['source']).name)}: {escape(answer)} (explained: "
                              f"{escape(str(r['explained']))}, {r['score']:.3g})", highlight=False)
                for reg in r["top_regions"]:
                    drop = f"{reg['drop']:.3f}" if trained.task == "regression" else f"{reg['drop']:+.3f}"
                    console.print(f"  {reg['start_s']:.2f}-{reg['end_s']:.2f} s, {reg['low_hz']:.0f}-"
                                  f"{reg['high_hz']:.0f} Hz: {unit} {drop}", highlight=False)
        if out is not None and results:
            err_console.print(f"figures in {out}", highlight=False)
    if flat:  # e.g. digital silence: the map is all zeros and its 'top regions' mean nothing
        err_console.print(f"[yellow]warning:[/] silencing no region changes the answer for {len(flat)} file"
                          f"{'' if len(flat) == 1 else 's'} (digital silence, or sound the model does not use): "
                          + escape(", ".join(flat[:5])) + (" …" if len(flat) > 5 else ""), highlight=False)
    for item in failed:
        reason = item["reason"] if item["path"] in item["reason"] else f"{item['path']}: {item['reason']}"
        err_console.print(f"[yellow]not explained:[/] {escape(str(reason))}", highlight=False)
    if failed:
        raise typer.Exit(int(ExitCode.PARTIAL))
