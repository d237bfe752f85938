"""``earmark predict``, ``earmark export``, ``earmark serve`` and ``earmark monitor``."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

import typer
from rich.markup import escape

from earmark.cli._common import (
    ExitCode,
    check_output_file,
    check_writable_folder,
    err_console,
    fail,
    progress_bar,
    report_skipped,
    warnings_as_lines,
    write_json,
    write_text,
)
from earmark.errors import EarmarkError, ParameterError


class OutputFormat:
    CHOICES = ("csv", "json")


def register(app: typer.Typer) -> None:
    """Add predict, export, serve and monitor to ``app``."""
    app.command("predict")(warnings_as_lines(predict))
    app.command("export")(warnings_as_lines(export))
    app.command("serve")(serve)
    app.command("monitor")(monitor)


def predict(
    model: Path = typer.Argument(..., exists=True, help="Model bundle (directory or .earmark file)."),
    paths: list[Path] = typer.Argument(..., help="Audio files and folders (searched recursively)."),
    fmt: str = typer.Option("csv", "--format", "-f", help="Output format: csv or json."),
    top_k: int = typer.Option(1, "--top-k", "-k", min=1, help="Classes listed per file (classifiers)."),
    window: float | None = typer.Option(None, "--window", min=0.01, help="Predict per window of this many seconds."),
    hop: float | None = typer.Option(None, "--hop", min=0.01, help="Step between windows, seconds (default: --window)."),
    reject_below: float | None = typer.Option(
        None, "--reject-below", min=0.0, max=1.0, help="Label files 'unknown' below this top probability (the top class stays in column top_label)."
    ),
    workers: int | None = typer.Option(None, "--workers", "-j", min=1, help="Parallel threads (default: CPU count, at most 8)."),
    cache: Path | None = typer.Option(None, "--cache", help="Feature store folder (read, and filled)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Write here instead of stdout."),
) -> None:
    """Predict audio files with a trained model; undecodable files are listed with their error."""
    from earmark.serving.batch import expand_paths, predict_paths

    if fmt not in OutputFormat.CHOICES:
        fail(f"--format must be one of {', '.join(OutputFormat.CHOICES)}; got {fmt!r}.", ExitCode.USAGE)
    if hop is not None and window is None:
        fail("--hop needs --window (both in seconds).", ExitCode.USAGE)
    if hop is not None and window is not None and hop > window + 1e-9:
        err_console.print(f"[yellow]warning:[/] --hop {hop:g} is longer than --window {window:g}: {hop - window:g} s "
                          "between windows is never heard (nor counted in each file's summary). Use a hop of at "
                          "most the window to hear all of it.", highlight=False)
    from earmark.serving.predictor import Predictor

    check_output_file(out, "--out")  # refused now, not after predicting every file
    try:
        predictor = Predictor.load(model)  # a bad bundle is named before any audio is looked at
    except EarmarkError as exc:
        fail(str(exc))
    if predictor.task == "regression" and reject_below is not None:
        fail("--reject-below applies to classifiers; this model is a regressor.", ExitCode.USAGE)
    if ((predictor.manifest or {}).get("data") or {}).get("stand_in"):
        err_console.print(f"[yellow]warning:[/] {escape(str(model))} was trained on a synthesized stand-in dataset "
                          "(earmark demo without FSDD), not on real recordings: its answers say nothing about them.",
                          highlight=False)
    if predictor.task == "classification":
        top_k = min(top_k, len(predictor.classes))  # no empty columns past the last class
    try:
        files = expand_paths(paths)
        if all(Path(f).is_dir() for f in files):
            fail(f"No audio files under {', '.join(map(str, paths))}.", ExitCode.USAGE)
        with progress_bar("predicting", len(files)) as advance:
            rows = predict_paths(predictor, files, k=top_k, window=window, hop=hop, reject_below=reject_below,
                                 workers=workers, cache=cache, progress=advance)
    except ParameterError as exc:  # e.g. a window longer than the model's clips
        fail(str(exc), ExitCode.USAGE)
    except EarmarkError as exc:
        fail(str(exc))
    text = _format(rows, fmt, top_k, reject=reject_below is not None)
    if out is None:
        sys.stdout.write(text)
    else:
        write_text(out, text)
    quiet = [(r["path"], r["silent_windows"], len(r["windows"])) for r in rows
             if r.get("silent_windows") and not r.get("silent") and r["silent_windows"] < len(r["windows"])]
    missed = [r["path"] for r in rows if r.get("windows") and not r.get("silent")
              and r.get("silent_windows") == len(r["windows"])]
    if missed:  # sound only between the windows (a hop longer than the window): the summary heard nothing
        err_console.print(f"[yellow]warning:[/] every window of {len(missed)} file{'' if len(missed) == 1 else 's'} is "
                          "digital silence though the file holds sound (it lies between the windows: a shorter "
                          "--hop hears it); the summary is a guess about silence: "
                          + escape(", ".join(missed[:5])) + (" …" if len(missed) > 5 else ""), highlight=False)
    if quiet:
        n_quiet = sum(q for _, q, _ in quiet)
        whose = "its file's summary" if len(quiet) == 1 else "their files' summaries"
        err_console.print(f"[yellow]note:[/] {n_quiet} window{'' if n_quiet == 1 else 's'} of digital silence "
                          f"(silent=true) left out of {whose}: "
                          + escape(", ".join(f"{p} ({q} of {n})" for p, q, n in quiet[:5]))
                          + (" …" if len(quiet) > 5 else ""), highlight=False)
    silent = [r["path"] for r in rows if r.get("silent")]
    if silent:
        err_console.print(f"[yellow]warning:[/] {len(silent)} file{' holds' if len(silent) == 1 else 's hold'} only digital "
                          f"silence; the model's answer for {'it' if len(silent) == 1 else 'them'} is a guess about "
                          f"nothing: {escape(', '.join(silent[:5]))}" + (" …" if len(silent) > 5 else ""), highlight=False)
    clip = predictor.preset.params.get("duration")
    longer = [r["path"] for r in rows if window is None and clip and (r.get("duration") or 0) > 1.25 * float(clip)]
    if longer:  # a long recording through a 1 s model: say what was heard
        part = "its centre" if predictor.preset.params.get("align") == "center" else "its first"
        err_console.print(
            f"[yellow]warning:[/] {len(longer)} file{'' if len(longer) == 1 else 's'} {'is' if len(longer) == 1 else 'are'} "
            f"longer than the model's {float(clip):g} s clips; of each, the model heard {part} {float(clip):g} s only: "
            f"{escape(', '.join(longer[:3]))}" + (" …" if len(longer) > 3 else "")
            + f". Predict along long recordings with --window {float(clip):g} --hop {float(clip) / 2:g}.", highlight=False)
    failed = [r for r in rows if r["error"]]
    for r in failed:
        err_console.print(f"[red]failed[/] {escape(str(r['path']))}: {escape(str(r['error']))}", highlight=False)
    if failed:
        err_console.print(f"{len(failed)} of {len(rows)} files failed.", highlight=False)
        raise typer.Exit(int(ExitCode.PARTIAL))


def _format(rows: list[dict], fmt: str, k: int, *, reject: bool = False) -> str:
    """Rows of :func:`~earmark.serving.batch.predict_paths` as JSON or CSV.

    CSV columns: ``path``, ``label`` (``unknown`` when rejected), ``confidence`` (the top class's
    probability), with ``reject`` a ``top_label`` column (the top class, rejected or not), then
    ``label_i``/``probability_i`` for the next classes up to ``k``; a regressor's rows are ``path``,
    ``prediction``. Windowed rows add ``start``/``end`` and ``silent`` (a window of digital silence); every row ends with ``error``.
    """
    if fmt == "json":
        return json.dumps(rows, indent=2, ensure_ascii=False) + "\n"
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    windowed = any("windows" in r for r in rows)
    regression = any("prediction" in r for r in rows)
    if regression:
        head = ["path", "prediction"]
    else:
        head = ["path", "label", "confidence"] + (["top_label"] if reject else [])
        for i in range(2, k + 1):
            head += [f"label_{i}", f"probability_{i}"]
    w.writerow([*head, "start", "end", "silent", "error"] if windowed else [*head, "error"])

    def line(path: str, r: dict, start: float | None = None, end: float | None = None) -> None:
        if regression:
            cells = [path, "" if r.get("prediction") is None else f"{r['prediction']:.6g}"]
        else:
            conf, top = r.get("confidence"), r.get("top", [])
            cells = [path, r.get("label") or "", "" if conf is None else f"{conf:.6f}"]
            if reject:
                cells.append(top[0]["label"] if top else r.get("top_label") or "")
            for i in range(1, k):
                cells += [top[i]["label"], f"{top[i]['probability']:.6f}"] if i < len(top) else ["", ""]
        if windowed:
            cells += ["" if start is None else f"{start:.3f}", "" if end is None else f"{end:.3f}",
                      "true" if r.get("silent") else ""]
        cells.append(r.get("error") or "")
        w.writerow(cells)

    for r in rows:
        line(r["path"], r)
        for win in r.get("windows", []):
            line(r["path"], win, win["start"], win["end"])
    return buf.getvalue()


def export(
    model: Path = typer.Argument(..., exists=True, help="Model bundle (directory or .earmark file)."),
    onnx: Path = typer.Option(..., "--onnx", help="ONNX file to write."),
    frontend: bool = typer.Option(True, "--frontend/--no-frontend",
                                  help="Include the feature frontend (waveform in) where it is expressible."),
    check: bool = typer.Option(True, "--check/--no-check", help="Compare ONNX Runtime with PyTorch on random input, including clips shorter and longer than the model's clip length."),
) -> None:
    """Export a neural model to ONNX (network, and the log-mel frontend where expressible)."""
    from earmark.serving.export import export_onnx

    if onnx.is_dir():
        fail(f"--onnx {onnx} is a folder; give the path of the .onnx file to write.", ExitCode.USAGE)
    check_writable_folder(onnx.parent, "--onnx")
    try:
        info = export_onnx(model, onnx, frontend=frontend, check=check)
    except EarmarkError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"Cannot write {onnx}: {exc.strerror or exc}. Choose a writable --onnx path.")
    what = (f"waveform (mono float32 at {info['sample_rate']} Hz, any length; padded/cropped to "
            f"{float(info['duration']):g} s in the graph as earmark predict does)"
            if info.get("frontend") and info.get("duration") is not None
            else f"{info['input_name']} {info['input_shape']}")
    err_console.print(
        f"wrote {onnx}: input {what} → {info['output_name']}"
        + (f"; max |onnxruntime − torch| = {info['max_abs_diff']:.2e}" if info.get("max_abs_diff") is not None else "")
        + (f"; max |onnxruntime − earmark features| = {info['pipeline_max_abs_diff']:.2e}"
           if info.get("pipeline_max_abs_diff") is not None else ""),
        highlight=False,
    )


def serve(
    model: Path = typer.Argument(..., exists=True, help="Model bundle (directory or .earmark file)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on."),
    port: int = typer.Option(8000, "--port", "-p", min=1, max=65535, help="TCP port (1-65535; a fixed one, so that clients know where to find it)."),
    workers: int = typer.Option(
        1, "--workers", "-w", min=1,
        help="Server processes, each listening on the port itself (the kernel spreads connections); "
        "one per CPU core gives the most throughput."),
    max_bytes: int | None = typer.Option(None, "--max-bytes", min=1, help="Largest upload (bytes)."),
    max_seconds: float | None = typer.Option(None, "--max-seconds", min=0.01, help="Longest upload (seconds)."),
    reject_below: float | None = typer.Option(None, "--reject-below", min=0.0, max=1.0,
                                              help="Answer 'unknown' below this top probability."),
    log: Path | None = typer.Option(None, "--log", help="Record requests for drift monitoring (SQLite file)."),
    runtime: str | None = typer.Option(
        None, "--runtime",
        help="What runs the model: auto (torch networks in ONNX Runtime, checked against PyTorch at startup; "
        "others as they are), onnx (fail if impossible) or estimator (PyTorch / scikit-learn). Default auto."),
    micro_batch: int | None = typer.Option(
        None, "--micro-batch", min=1,
        help="Most concurrent /predict clips run through the model together (never waits for a timer); "
        "1 turns batching off. Default 32."),
    inline_bytes: int | None = typer.Option(
        None, "--inline-bytes", min=0,
        help="A batch of WAV/FLAC/Ogg uploads up to this many bytes in all is computed on the event loop's "
        "thread (cheaper); larger ones in the thread pool. 0: always the thread pool. Default 1000000."),
    threads: int | None = typer.Option(
        None, "--threads", min=1,
        help="Threads of BLAS / OpenMP / PyTorch / ONNX Runtime per server process. Default 1 "
        "(requests already run in parallel)."),
    explain_max_regions: int | None = typer.Option(
        None, "--explain-max-regions", min=0,
        help="Most regions (windows x bands) one POST /explain may silence, each a full prediction; "
        "0 turns /explain off. Default 400."),
    http: str = typer.Option(
        "auto", "--http",
        help="HTTP parser: auto (httptools when installed, else h11), httptools or h11."),
    loop: str = typer.Option(
        "auto", "--loop", help="Event loop: auto (uvloop when installed, else asyncio), uvloop or asyncio."),
) -> None:
    """Serve a model over HTTP (FastAPI + uvicorn): /predict, /explain, /docs, a web page at /.

    Every setting can also come from an EARMARK_SERVE_<SETTING> environment variable (flags win).
    """
    import os

    from earmark.bundle import read_manifest
    from earmark.serving.settings import ENV_PREFIX, ServeSettings

    try:
        manifest = read_manifest(model)  # refuse a bad bundle before binding the port
        if reject_below is not None and manifest.get("task") == "regression":
            fail("--reject-below applies to classifiers; this model is a regressor.", ExitCode.USAGE)
        settings = ServeSettings.from_env(max_bytes=max_bytes, max_seconds=max_seconds, reject_below=reject_below,
                                          log_path=str(log) if log else None, runtime=runtime,
                                          micro_batch=micro_batch, inline_bytes=inline_bytes,
                                          threads=threads, explain_max_regions=explain_max_regions)
        # what the service would refuse at startup, refused here: one line, not a traceback per worker
        model_type = str((manifest.get("model") or {}).get("type", ""))
        if runtime == "onnx" and (manifest.get("task") != "classification" or "Classifier" not in model_type):
            fail(f"--runtime onnx serves neural classifiers; {model} holds a {manifest.get('task')} model "
                 f"({model_type.rsplit(':', 1)[-1] or 'unknown'}). Use --runtime auto or estimator.", ExitCode.USAGE)
        if settings.log_path:  # --log, or EARMARK_SERVE_LOG_PATH
            from earmark.serving.predictor import bundle_identity
            from earmark.serving.requestlog import RequestLog

            # a folder, a file that is not SQLite, a folder without write access, another model's log
            RequestLog(settings.log_path, model=bundle_identity(manifest)).close()
    except EarmarkError as exc:
        fail(str(exc))
    if http not in ("auto", "httptools", "h11"):
        fail(f"--http must be auto, httptools or h11; got {http!r}.", ExitCode.USAGE)
    if loop not in ("auto", "uvloop", "asyncio"):
        fail(f"--loop must be auto, uvloop or asyncio; got {loop!r}.", ExitCode.USAGE)
    metrics_dir = None
    if workers > 1 and settings.metrics_dir is None:  # /metrics sums the workers' counters
        import tempfile

        metrics_dir = tempfile.mkdtemp(prefix="earmark-metrics-")
        settings = settings.replace(metrics_dir=metrics_dir)
    # the workers build the app from the environment (uvicorn's factory mode)
    os.environ[ENV_PREFIX + "MODEL"] = str(model.resolve())
    for key, value in settings.to_dict().items():
        if value is not None:
            os.environ[ENV_PREFIX + key.upper()] = str(value)
    err_console.print(f"starting {workers} server process{'es' if workers > 1 else ''} for {model} on "
                      f"http://{host}:{port} (docs at /docs); it answers once the model is loaded", highlight=False)
    from earmark.serving.workers import run_workers

    try:
        run_workers("earmark.serving.app:app_from_env", host=host, port=port, workers=workers, factory=True,
                    log_level="warning", access_log=False, http=http, loop=loop)
    except (OSError, ValueError) as exc:
        fail(f"cannot serve on {host}:{port}: {exc}")
    except RuntimeError as exc:
        fail(str(exc))
    finally:
        if metrics_dir is not None:
            import shutil

            shutil.rmtree(metrics_dir, ignore_errors=True)


def monitor(
    model: Path = typer.Argument(..., exists=True, help="Model bundle (directory or .earmark file)."),
    log: str = typer.Option(..., "--log", help="Request log (SQLite) of the service, or a dataset source."),
    reference: str | None = typer.Option(None, "--reference",
                                         help="Data to compare with (default: the sample of its training data the bundle holds)."),
    report: Path | None = typer.Option(None, "--report", help="Write an HTML report here."),
    json_out: Path | None = typer.Option(None, "--json", help="Write the result as JSON here ('-': stdout)."),
    alpha: float | None = typer.Option(None, "--alpha", min=1e-9, max=1.0, help="False-discovery rate of the tests (default 0.01)."),
    psi: float | None = typer.Option(None, "--psi", min=0.0, help="PSI above which a descriptor drifts (default 2.0)."),
    prediction_psi: float | None = typer.Option(None, "--prediction-psi", min=0.0, help="PSI above which the predicted-class shares drift (default 2.0)."),
    confidence_drop: float | None = typer.Option(None, "--confidence-drop", min=0.0, max=1.0, help="Fall of the mean top-class probability that counts as drift (default 0.25)."),
    min_samples: int | None = typer.Option(None, "--min-samples", min=2, help="Fewest current clips to judge (default 20)."),
    workers: int | None = typer.Option(None, "--workers", "-j", min=1, help="Threads for a dataset source."),
    last: int | None = typer.Option(None, "--last", min=1, help="Judge only the latest N requests of the log (recent traffic)."),
    since: str | None = typer.Option(None, "--since", help="Judge only requests logged since this time: ISO date/time (2026-11-23T09:00, UTC unless it says) or a duration back from now (30m, 6h, 2d)."),
) -> None:
    """Compare what the model hears now (request log or data) with its training data; exit 4 on drift."""
    from earmark.serving.monitor import monitor as run_monitor
    from earmark.serving.monitor import render_html

    check_output_file(report, "--report")  # before any work
    check_output_file(json_out, "--json")
    thresholds = {k: v for k, v in (("alpha", alpha), ("psi_threshold", psi), ("prediction_psi", prediction_psi),
                                    ("confidence_drop", confidence_drop), ("min_samples", min_samples))
                  if v is not None}
    from earmark.serving.monitor import since_time

    try:
        since_ts = since_time(since) if since is not None else None
    except ParameterError as exc:
        fail(f"--since: {exc}", ExitCode.USAGE)
    try:
        result = run_monitor(model, log, reference_source=reference, workers=workers, last=last, since=since_ts,
                             **thresholds)
    except EarmarkError as exc:
        fail(str(exc))
    if report is not None:
        write_text(report, render_html(result, title=f"earmark drift report: {model.name}"))
    if json_out is not None:
        write_json(result.to_dict(), json_out)
    verdict = "[bold red]drift[/]" if result.drift else "[green]no drift[/]"
    err_console.print(f"{verdict}: {result.n} clips vs {result.n_reference} reference clips", highlight=False)
    for reason in result.reasons:
        err_console.print(f"  - {reason}", highlight=False)
    report_skipped(result.skipped, label="skipped", of="the comparison")
    if result.drift:
        raise typer.Exit(int(ExitCode.DRIFT))
    if result.skipped:
        raise typer.Exit(int(ExitCode.PARTIAL))
