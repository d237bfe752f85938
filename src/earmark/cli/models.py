"""Model commands: ``earmark models list``, ``earmark train`` and ``earmark tune``.

Results go to stdout; progress and errors to stderr. Exit codes are
:class:`earmark.cli._common.ExitCode`.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from earmark.cli._common import (
    ExitCode,
    all_models,
    check_writable_folder,
    earmark_warnings,
    err_console,
    fail,
    register_features,
    report_skipped,
    write_json,
)

models_app = typer.Typer(help="The model registry: list the models earmark can train.", no_args_is_help=True)

_SOURCE_HELP = "CSV manifest, folder of class folders, or folder of files."


def register(app: typer.Typer) -> None:
    """Add ``models list``/``show``, ``train`` and ``tune`` to ``app``."""
    models_app.command("list")(list_command)
    models_app.command("show")(show_command)
    app.add_typer(models_app, name="models")
    app.command("train")(train_command)
    app.command("tune")(tune_command)


def list_command(
    task: str | None = typer.Option(None, "--task", help="Only 'classification' or 'regression' models."),
    as_json: bool = typer.Option(False, "--json", help="Print the registry as JSON."),
) -> None:
    """List the registered models with their task and default feature preset."""
    from earmark.models import list_models

    all_models()
    if task not in (None, "classification", "regression"):
        fail(f"--task must be 'classification' or 'regression'; got {task!r}.", ExitCode.USAGE)
    specs = list_models(task)  # type: ignore[arg-type]
    if as_json:
        write_json([s.to_dict() for s in specs], None)
        return
    table = Table(title="earmark models")
    for col in ("name", "task", "preset", "kind", "description"):
        table.add_column(col)
    for s in specs:
        table.add_row(s.name, s.task, s.preset, s.kind, s.description)
    Console().print(table)


def _value(v: Any) -> str:
    return json.dumps(v) if isinstance(v, (dict, list, bool)) or v is None else repr(v) if isinstance(v, str) else str(v)


def _space(v: Any) -> str:
    """A tune search space entry: ``('log', 1e-4, 0.1)`` -> ``'log 0.0001..0.1'``."""
    if isinstance(v, tuple) and len(v) == 3 and v[0] in ("log", "int"):
        return f"{v[0]} {v[1]}..{v[2]}"
    return ", ".join(_value(x) for x in v)


def show_command(
    name: str = typer.Argument(..., help="Model name (see 'earmark models list')."),
    as_json: bool = typer.Option(False, "--json", help="Print the model's description as JSON."),
) -> None:
    """Show one model: its task, default features, every parameter '-p' takes with its default,
    the architectures, augmentations and the search space of 'earmark tune'."""
    from dataclasses import asdict

    from earmark.errors import EarmarkError
    from earmark.models import get_spec

    all_models(name)
    try:
        spec = get_spec(name)
    except EarmarkError as exc:
        fail(str(exc), ExitCode.USAGE)
    defaults = spec.defaults()
    # train() sets these itself (--seed, --val-fraction): not parameters -p changes
    for key in [k for k in defaults if k == "random_state" or (k == "validation_fraction" and spec.kind == "torch")]:
        defaults.pop(key)
    space = spec.short_names(dict(spec.search_space))
    info: dict[str, Any] = {**spec.to_dict(), "parameters": defaults, "tune_space": {
        k: ({"scale": v[0], "low": v[1], "high": v[2]} if isinstance(v, tuple) and len(v) == 3
            and v[0] in ("log", "int") else list(v)) for k, v in space.items()}}
    if spec.kind == "torch":
        from earmark.models._augment import AugmentConfig
        from earmark.models._nets import ARCHS

        network = spec.builder().network
        info["architectures"] = sorted(arch for net, arch in ARCHS if net == network)
        # -p net_options={...}: the keyword options of the network each architecture builds
        import inspect

        own = defaults.get("net_options") or {}  # this model's own options (of its default architecture)
        info["net_options"] = {
            arch: {**{k: p.default for k, p in inspect.signature(builder).parameters.items()
                      if p.kind is inspect.Parameter.KEYWORD_ONLY}, **(own if arch == "default" else {})}
            for (net, arch), builder in sorted(ARCHS.items()) if net == network}
        info["augment_options"] = asdict(AugmentConfig.from_options(defaults.get("augment_options")))
    if as_json:
        write_json(info, None)
        return
    out = Console()
    out.print(f"[bold]{spec.name}[/] ({spec.task}, {spec.kind}): {spec.description}", highlight=False)
    out.print(f"default features: {spec.preset} (another with --features)", highlight=False)
    if "architectures" in info:
        out.print("architectures (-p arch=…): " + ", ".join(info["architectures"]), highlight=False)
        for arch, options in info.get("net_options", {}).items():
            if options:
                out.print(f"  {arch}: -p 'net_options={json.dumps(options, default=str)}'", highlight=False)
    table = Table("parameter (-p NAME=VALUE)", "default", "tune searches", title=f"{spec.name} parameters")
    for key, value in defaults.items():
        if key in ("callbacks", "network") or value == "deprecated":
            continue  # Python callables, the model's own network, scikit-learn's deprecated names
        searched = space.get(key)
        table.add_row(key, _value(value), "" if searched is None else _space(searched))
    out.print(table)
    own = "--seed (default 0) seeds it" + ("; --val-fraction (default 0.15) sets its validation part, by group"
                                          if spec.kind == "torch" else "")
    out.print(f"train's own options: {own}.", highlight=False)
    if defaults.get("min_steps"):
        out.print(f"min_steps: a small training set gets more than `epochs` epochs, so that training takes "
                  f"at least {defaults['min_steps']} optimizer steps; --epochs N (or -p epochs=N) "
                  "trains exactly N.", highlight=False)
    if "augment_options" in info:
        out.print("augment_options (-p 'augment_options={\"mixup\": 0}'; 0 switches one off): "
                  + ", ".join(f"{k}={v}" for k, v in info["augment_options"].items()), highlight=False)
        if spec.builder().network == "mlp":
            out.print("  on pooled features (one vector per clip) only noise and (for classes) mixup apply; "
                      "pad, crop and max_frames concern sequences.", highlight=False)


def _load(source: str, label: str | None, group: str | None, pattern: str | None = None) -> Any:
    from earmark.sources import load_dataset

    kwargs: dict[str, Any] = {"pattern": pattern} if pattern else {}
    if label:
        kwargs["label_column"] = label
    if group:
        kwargs["group_column"] = group
    with earmark_warnings():  # files left out: one 'warning:' line, not Python's warning format
        return load_dataset(source, **kwargs)


def _extra_label(source: str, label: str | None) -> str | None:
    """--label for the --extra-train source too, where that source is a manifest with such a
    column; class folders, or a manifest that names its labels 'label', keep their own."""
    if not label:
        return None
    import pandas as pd

    path = Path(source)
    manifest = path if path.is_file() else path / "manifest.csv"
    try:
        columns = pd.read_csv(manifest, nrows=0, sep="\t" if manifest.suffix.lower() == ".tsv" else ",").columns
    except (OSError, ValueError):
        return None
    return label if label in columns else None


def _parse_params(items: list[str]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            fail(f"--param takes KEY=VALUE (e.g. --param lr=0.001); got {item!r}.", ExitCode.USAGE)
        words = {"true": True, "false": False, "none": None, "null": None}  # Python's spelling too
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = words.get(value.strip().lower(), value)
    return params


def _check_extra_options(extra_train: str | None, synthetic_voices: int, text_map: str | None,
                         extra_weight: float) -> None:
    """Exit with a usage error when the options of extra training clips do not go together
    (``train`` and ``cv`` take the same ones)."""
    if extra_weight != 1.0 and not (extra_train or synthetic_voices):
        fail("--extra-weight weighs extra training clips; it needs --extra-train or --synthetic-voices.",
             ExitCode.USAGE)
    if not extra_weight > 0:
        fail(f"--extra-weight must be above 0 (got {extra_weight}); leave the extra clips out instead of "
             "weighing them 0.", ExitCode.USAGE)
    if text_map and not synthetic_voices:
        fail("--text-map says how synthetic voices speak each label; it needs --synthetic-voices N.", ExitCode.USAGE)


def _check_param_keys(params: dict[str, Any], options: dict[str, str | None] | None = None) -> None:
    """Exit with a usage error when a ``-p`` key is a setting of the command rather than of the
    model: ``options`` maps each such key to its option (``None``: the command has none, so it
    cannot be set); by default, ``earmark train``'s (train()'s own parameters)."""
    if options is None:
        import inspect

        from earmark.training import train

        names = {"parallel": "--parallel-refit", "val_fraction": "--val-fraction", "extra_train": "--extra-train",
                 "extra_weight": "--extra-weight", "progress": None, "dataset": "SOURCE"}
        options = {n: names.get(n, "--" + n.replace("_", "-")) for n, p in inspect.signature(train).parameters.items()
                   if p.kind is not inspect.Parameter.VAR_KEYWORD and n != "epochs"}
    for key in params:
        if key in options:
            option = options[key]
            how = f"use its own option ({option}; see --help)" if option else "this command does not set it"
            fail(f"-p {key} is a setting of this command, not of the model; {how}.", ExitCode.USAGE)


def _param_args(params: dict[str, Any]) -> list[str]:
    """``params`` as ``earmark train`` options (``-p KEY=VALUE``, the value as ``_parse_params`` reads it)."""
    out = []
    for key, value in params.items():
        text = value if isinstance(value, str) else json.dumps(value)
        if isinstance(value, str):
            try:
                json.loads(value)
                text = json.dumps(value)  # a string that would otherwise be read as a number, bool…
            except json.JSONDecodeError:
                pass
        out += ["-p", f"{key}={text}"]
    return out


def _synthetic_voices(df: Any, n: int, seed: int, text_map: str | None) -> Any:
    """Render the dataset's labels in ``n`` espeak-ng voices (cached) and load them as a table."""
    import hashlib
    import os

    from earmark.sources import load_dataset
    from earmark.synth import parse_text_map, synthesize

    words = sorted(df["label"].dropna().astype(str).unique())
    mapping = parse_text_map(text_map) or None
    if mapping and not set(mapping) & set(words):
        err_console.print("[yellow]warning:[/] " + escape(
            f"--text-map applies to none of the labels: it names {', '.join(list(mapping)[:10])}; the labels are "
            f"{', '.join(words[:10])}"), highlight=False)
    rate = int(df["sample_rate"].median()) if "sample_rate" in df.columns else 16000
    key = hashlib.sha256(json.dumps([words, n, seed, rate, mapping], sort_keys=True).encode()).hexdigest()[:16]
    root = Path(os.environ.get("EARMARK_CACHE", Path.home() / ".cache" / "earmark")) / "synth" / key
    if not (root / "manifest.csv").exists():
        err_console.print(f"rendering {len(words)} words in {n} synthetic voices (espeak-ng, GPL) into {root} …")
        synthesize(words, voices=n, out=root, sample_rate=rate, seed=seed, text_map=mapping, overwrite=True)
    return load_dataset(root)


def _concat(tables: list[Any]) -> Any:
    if not tables:
        return None
    import pandas as pd

    return tables[0] if len(tables) == 1 else pd.concat(tables, ignore_index=True)


def _preset_of(manifest: dict[str, Any]) -> Any:
    from earmark.features import Preset

    return Preset.from_dict(manifest["features"]["settings"])


def train_command(
    source: str = typer.Argument(..., help=_SOURCE_HELP),
    out: Path = typer.Option(..., "--out", "-o", help="Directory (or .earmark file) of the model bundle to write."),
    model: str | None = typer.Option(None, "--model", "-m", help="Model name (earmark models list). Default: cnn, or a regressor for a numeric --target."),
    features: str | None = typer.Option(None, "--features", "-f", help="Feature preset (earmark features list), settings after a colon: 'logmel:n_mels=128,n_fft=1024'. Default: the model's."),
    duration: float | None = typer.Option(None, "--duration", min=0.01, max=600.0, help="Seconds each clip is padded/cropped to (fixed-length presets). Default: the one --features names ('logmel:duration=2'), else from the data (95th percentile of clip durations, rounded up to 0.5 s, 1-10 s)."),
    target: str | None = typer.Option(None, "--target", help="Column to learn (default: label). A numeric column trains a regressor."),
    label: str | None = typer.Option(None, "--label", "--label-column", help="Manifest column of the labels."),
    group: str | None = typer.Option(None, "--group", "--group-column", help="Column of groups kept apart by the validation split (speaker…)."),
    pattern: str | None = typer.Option(None, "--pattern", help="File-name pattern giving labels (and groups) to a folder of files, e.g. '{label}_{group}_{index}'."),
    epochs: int | None = typer.Option(None, "--epochs", min=1, help="Maximum epochs (neural models)."),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
    val_fraction: float = typer.Option(0.15, "--val-fraction", min=0.0, max=0.95, help="Share of the data held out (by group) for validation."),
    refit: bool | None = typer.Option(None, "--refit/--no-refit", help="After validating, retrain on all the data for the full epoch budget (default: neural models when a class has fewer than 6 groups)."),
    parallel_refit: bool | None = typer.Option(None, "--parallel-refit/--no-parallel-refit", help="Train that refit at the same time as the validated run, in a second process with half the threads (default: on the CPU when the refit is long enough to pay for it)."),
    extra_train: str | None = typer.Option(None, "--extra-train", help="Extra training-only source (e.g. synthetic voices)."),
    extra_weight: float = typer.Option(1.0, "--extra-weight", help="Loss weight (> 0) of the extra training rows (--extra-train, --synthetic-voices)."),
    synthetic_voices: int = typer.Option(0, "--synthetic-voices", min=0, help="Add every label spoken by N espeak-ng voices to training only (needs the synth extra: pip install earmark\\[synth]; GPL)."),
    text_map: str | None = typer.Option(None, "--text-map", help="Label→text for --synthetic-voices, e.g. 'dog=woof,7=seven'."),
    init_from: str | None = typer.Option(None, "--init-from", help="Start from pretrained weights: bundle:PATH, torchvision:mobilenet_v2, hf:MODEL_OR_DIR, file:PATH."),
    freeze_epochs: int = typer.Option(0, "--freeze-epochs", min=0, help="With --init-from: epochs with the pretrained body frozen."),
    body_lr_scale: float = typer.Option(1.0, "--body-lr-scale", min=0.0, help="With --init-from: learning rate of the body relative to the head."),
    head_only: bool = typer.Option(False, "--head-only", help="With --init-from: train the new head only."),
    workers: int | None = typer.Option(None, "--workers", "-j", min=1, help="Feature-extraction processes (default: all cores)."),
    param: list[str] = typer.Option([], "--param", "-p", help="Model parameter KEY=VALUE (JSON value), repeatable, e.g. -p arch=reference."),
    cache: Path | None = typer.Option(None, "--cache", help="Feature store directory."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing bundle at --out."),
    as_json: bool = typer.Option(False, "--json", help="Print the validation metrics and config as JSON."),
) -> None:
    """Train a model on all of SOURCE (validation carved from it by group) and write a bundle."""
    from earmark.bundle import MANIFEST, save_model
    from earmark.errors import EarmarkError, ParameterError
    from earmark.serving.monitor import build_reference
    from earmark.training import train

    params = _parse_params(param)
    _check_param_keys(params)
    if "epochs" in params:  # `models show` and `tune` spell it -p epochs=N too
        value = params["epochs"]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            fail(f"-p epochs takes a whole number of epochs, at least 1; got {value!r}.", ExitCode.USAGE)
        if epochs is not None and params["epochs"] != epochs:
            fail(f"--epochs {epochs} and -p epochs={params['epochs']} disagree; give one of them.", ExitCode.USAGE)
        epochs = params.pop("epochs")
    if out.exists() and not overwrite:
        fail(f"{out} exists; pass --overwrite or choose another --out.", ExitCode.USAGE)
    if out.is_dir() and any(out.iterdir()) and not (out / MANIFEST).is_file():
        # refused now, not after training (save_model never replaces a folder that is not a bundle)
        fail(f"{out} is a non-empty folder that is not a model bundle (a dataset?); choose another --out.",
             ExitCode.USAGE)
    if out.is_file() and not out.is_dir():
        from earmark.bundle import _is_packed_bundle

        if not _is_packed_bundle(out):
            fail(f"{out} is a file that is not a model bundle; choose another --out.", ExitCode.USAGE)
    check_writable_folder(out.parent, "--out")  # refused now, not after training
    _check_extra_options(extra_train, synthetic_voices, text_map, extra_weight)
    if init_from is None and (freeze_epochs or head_only or body_lr_scale != 1.0):
        fail("--freeze-epochs, --body-lr-scale and --head-only need --init-from.", ExitCode.USAGE)
    try:
        all_models(model)
        features = register_features(features)
        df = _load(source, label, group, pattern)
        extras = [_load(extra_train, _extra_label(extra_train, label), None)] if extra_train else []
        extra_sources = [f"--extra-train {extra_train}: {len(extras[0])} clips"] if extra_train else []
        if synthetic_voices:
            if target not in (None, "label"):
                raise ParameterError(
                    f"--synthetic-voices speaks the dataset's labels, so it trains the label; it cannot go "
                    f"with --target {target}. Drop one of them."
                )
            synth = _synthetic_voices(df, synthetic_voices, seed, text_map)
            extras.append(synth)
            extra_sources.append(f"--synthetic-voices {synthetic_voices} (espeak-ng, seed {seed}"
                                 + (f", text map {text_map!r}" if text_map else "") + f"): {len(synth)} clips")
        extra = _concat(extras)
        if init_from is not None:
            import earmark.transfer  # noqa: F401  (registers 'finetune')
            from earmark.models import get_spec

            if model is not None and (get_spec(model).kind != "torch" or get_spec(model).task != "classification"):
                raise ParameterError(
                    f"--init-from fine-tunes a neural classifier; --model {model} is "
                    f"{'a regressor' if get_spec(model).task == 'regression' else 'not a neural network'}. "
                    "Drop one of them.")
            import pandas as pd

            column = target or "label"
            if column in df.columns and column != "label" and pd.api.types.is_numeric_dtype(df[column]):
                raise ParameterError(
                    f"--init-from fine-tunes a classifier, and --target {column} is numeric (a regression). "
                    "Train a regressor without --init-from, or give a column of labels.")

            params.update(init_from=init_from, freeze_epochs=freeze_epochs,
                          body_lr_scale=body_lr_scale, head_only=head_only)
            if model == "finetune":  # the fine-tuning model itself: as if no --model was given
                model = None
            if model is not None:
                from earmark.models import get_model

                kind = init_from.partition(":")[0]
                chosen = get_model(model).get_params()
                needs = {"hf": "hf", "torchvision": "mobilenet_v2"}.get(kind)
                if needs is not None and chosen.get("network") != needs:
                    raise ParameterError(
                        f"--init-from {init_from} fine-tunes its own network ({needs}); --model {model} is another. "
                        "Drop --model (or start from a bundle or file of that model).")
                params.setdefault("network", chosen.get("network"))
                if kind == "file":  # the model's whole network (arch and options too): the weights must fit it
                    params.setdefault("arch", chosen.get("arch"))
                    params.setdefault("net_options", chosen.get("net_options"))
                    if features is None:  # and the features that network reads (cnn1d: waveforms)
                        features = get_spec(model).preset
            if features is None and init_from.startswith("bundle:"):
                from earmark.bundle import read_manifest

                features = _preset_of(read_manifest(init_from.split(":", 1)[1]))
            model = "finetune"
        with earmark_warnings():
            trained = train(
                df, model=model, features=features, duration=duration, target=target,
                group="group" if group else None, epochs=epochs, seed=seed, val_fraction=val_fraction,
                refit=refit, parallel=parallel_refit, extra_train=extra, extra_weight=extra_weight, cache=cache, workers=workers,
                progress=err_console.is_terminal, **params,
            )
        if extra_sources and "extra_train" in trained.data:
            trained.data["extra_train"]["sources"] = extra_sources
        # drift reference (earmark monitor): the descriptors of what it trained on, and its answers
        sample = df.sample(min(len(df), 2000), random_state=seed) if len(df) > 2000 else df
        reference = build_reference(trained, sample, workers=workers)
        path = save_model(trained, out, overwrite=overwrite, reference=reference)
    except ParameterError as exc:  # a bad model name, --param, column…: a usage error
        fail(str(exc), ExitCode.USAGE)
    except EarmarkError as exc:
        fail(str(exc))
    except OSError as exc:  # the disk filled up, a folder became unwritable…
        fail(f"Cannot write the model bundle {out}: {exc.strerror or exc}. Choose a writable --out.")
    skipped = trained.data.get("skipped", [])
    for s in skipped:
        err_console.print(f"[yellow]skipped[/] {escape(str(s['path']))}: {escape(str(s['reason']))}", highlight=False)
    if as_json:
        write_json({"bundle": str(path), "metrics": trained.metrics, "config": trained.config}, None)
    else:
        cfg = trained.config
        table = Table(title=f"{cfg['model']} on {trained.preset.name} → {path}")
        table.add_column("metric")
        table.add_column("validation", justify="right")
        for k, v in trained.metrics.items():
            table.add_row(k, f"{v:.4f}" if isinstance(v, float) else str(v))
        table.add_row("train clips", str(trained.data["n_train"]))
        if "extra_train" in trained.data:
            table.add_row("+ extra training clips", str(trained.data["extra_train"]["n"]))
        table.add_row("validation clips", str(trained.data["n_val"]))
        if cfg.get("epochs_run"):
            table.add_row("epochs (best)", f"{cfg['epochs_run']} ({cfg['best_epoch']})")
        table.add_row("seconds", f"{cfg['train_seconds']:.0f}")
        Console().print(table)
    if skipped:
        raise typer.Exit(int(ExitCode.PARTIAL))


def tune_command(
    source: str = typer.Argument(..., help=_SOURCE_HELP),
    model: str = typer.Option(..., "--model", "-m", help="Model name (earmark models list)."),
    trials: int = typer.Option(20, "--trials", "-n", min=1, help="Number of trials (grid points, random draws or Optuna trials)."),
    features: str | None = typer.Option(None, "--features", "-f", help="Feature preset, settings after a colon: 'logmel:n_mels=128'. Default: the model's."),
    target: str | None = typer.Option(None, "--target", help="Column to learn (default: label)."),
    label: str | None = typer.Option(None, "--label", "--label-column", help="Manifest column of the labels."),
    group: str | None = typer.Option(None, "--group", "--group-column", help="Column of groups kept together in the folds."),
    pattern: str | None = typer.Option(None, "--pattern", help="File-name pattern giving labels (and groups) to a folder of files, e.g. '{label}_{group}_{index}'."),
    folds: int = typer.Option(3, "--folds", min=2, help="Cross-validation folds (group-aware)."),
    epochs: int | None = typer.Option(None, "--epochs", min=1, help="Epochs per trial (neural models)."),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
    cache: Path | None = typer.Option(None, "--cache", help="Feature store directory."),
    json_out: str | None = typer.Option(None, "--json", help="Write all trials as JSON to this file ('-' for stdout)."),
) -> None:
    """Search hyper-parameters with group-aware cross-validation (grid/random search or Optuna).

    The parameters are printed as ``earmark train --param`` takes them.
    """
    from earmark.errors import EarmarkError, ParameterError
    from earmark.training import tune

    try:
        all_models(model)
        features = register_features(features)
        with earmark_warnings():
            df = _load(source, label, group, pattern)
            result = tune(df, model=model, trials=trials, features=features, target=target,
                          group="group" if group else None, folds=folds, epochs=epochs, seed=seed, cache=cache)
    except ParameterError as exc:
        fail(str(exc), ExitCode.USAGE)
    except EarmarkError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        kept = ("the feature store keeps the features, so a new search starts faster" if cache else
                "with --cache DIR the features would be kept for the next search")
        err_console.print(f"interrupted: the search stopped and no result was kept ({kept}); use fewer --trials "
                          "for a shorter one.", highlight=False)
        raise typer.Exit(130) from None
    if json_out is not None:
        write_json(result.to_dict(), json_out)
        if json_out == "-":
            report_skipped(result.skipped, label="skipped", of="the search")
            if result.skipped:
                raise typer.Exit(int(ExitCode.PARTIAL))
            return
    # a negated error (scikit-learn's 'higher is better' form) is shown as the error itself
    sign = -1.0 if result.metric.startswith("neg_") else 1.0
    metric = result.metric.removeprefix("neg_").replace("_", " ") + (" (lower is better)" if sign < 0 else "")
    table = Table(title=f"tune {model}: {result.method} search, {result.cv}")
    table.add_column(f"mean cv {metric}", justify="right")
    table.add_column("params")
    for t in sorted(result.trials, key=lambda t: -t["score"] if t["score"] is not None else float("inf"))[:10]:
        table.add_row(t.get("state", "failed") if t["score"] is None else f"{sign * t['score']:.4f}",
                      json.dumps(t["params"], default=str))
    out = Console()
    out.print(table)
    out.print(f"best: mean cv {metric} {sign * result.best_score:.4f} ({result.cv}) with "
              f"{json.dumps(result.best_params, default=str)}", markup=False, highlight=False)
    options = {"--features": features, "--target": target, "--label": label, "--group": group, "--pattern": pattern,
               "--seed": str(seed) if seed else None}  # tune seeds the estimators as train does
    command = ["earmark", "train", source, "--model", model,
               *(x for k, v in options.items() if v for x in (k, v)), *_param_args(result.best_params), "--out", "MODEL"]
    out.print(f"train it: {shlex.join(command)}", markup=False, highlight=False, soft_wrap=True)
    report_skipped(result.skipped, label="skipped", of="the search")
    if result.skipped:
        raise typer.Exit(int(ExitCode.PARTIAL))
