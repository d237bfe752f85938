"""Render a vocabulary in many synthetic voices and write it as a dataset (WAV files + manifest.csv)."""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import zlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

from earmark.audio import resample
from earmark.errors import ParameterError
from earmark.synth._engine import ESPEAK_LICENSE, espeak_version, render_speech
from earmark.synth._post import PostProcessing, postprocess
from earmark.synth._voices import Voice, VoiceDesign, design_voices

__all__ = ["MANIFEST_COLUMNS", "parse_text_map", "synthesize"]

#: Columns of the manifest written by :func:`synthesize`, in order.
MANIFEST_COLUMNS = (
    "path", "label", "group", "text", "voice", "language", "variant", "rate", "pitch", "pitch_range",
    "word_gap", "peak_dbfs", "rt60", "snr_db", "duration", "sample_rate", "engine",
)

#: Progress callback: called with (clips done, clips in total) after each clip.
ProgressCallback = Callable[[int, int], None]

_UNSAFE = re.compile(r"[^\w.-]+")


def _slug(label: str) -> str:
    """A folder name for ``label``: itself when safe; else its safe characters, at most 80 bytes
    (file systems allow 255), and a checksum that keeps distinct labels in distinct folders."""
    slug = _UNSAFE.sub("_", label).strip("._") or "word"
    if len(slug.encode()) > 80:
        slug = slug.encode()[:80].decode("utf-8", "ignore")
    if slug != label:
        slug = f"{slug}-{zlib.crc32(label.encode()):08x}"
    return slug


def parse_text_map(spec: str | Mapping[str, str] | None) -> dict[str, str]:
    """Read a label→text map written as ``'7=seven,8=eight'`` (or pass a mapping through).

    Parameters
    ----------
    spec : str or mapping or None
        Comma-separated ``label=text`` pairs; whitespace around items is ignored.

    Returns
    -------
    dict

    Raises
    ------
    ParameterError
        For an item without ``=`` or with an empty label or text.

    Example
    -------
    >>> parse_text_map("7=seven, on=switch on")
    {'7': 'seven', 'on': 'switch on'}
    """
    if spec is None:
        return {}
    if isinstance(spec, Mapping):
        return {str(k): str(v) for k, v in spec.items()}
    out: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        label, sep, text = (s.strip() for s in item.partition("="))
        if not sep or not label or not text:
            raise ParameterError(
                f"The text map item {item!r} must read LABEL=TEXT (e.g. '7=seven'); got it in {spec!r}."
            )
        out[label] = text
    return out


def _made_by_synth(root: Path) -> bool:
    """Whether ``root`` is the output of an earlier :func:`synthesize` (so its clips may be replaced)."""
    if not (root / "synth.json").is_file():
        return False
    try:
        engines = set(pd.read_csv(root / "manifest.csv", usecols=["engine"])["engine"].astype(str))
    except (ValueError, KeyError, OSError, pd.errors.ParserError):
        return False
    return engines <= {"espeak-ng"}


def _listed_clips(root: Path) -> list[Path]:
    """The clips an earlier run's manifest in ``root`` lists (only files inside ``root``)."""
    manifest = root / "manifest.csv"
    if not manifest.is_file():
        return []
    try:
        listed = pd.read_csv(manifest)["path"].astype(str)
    except (ValueError, KeyError, OSError, pd.errors.ParserError):
        return []
    inside = []
    base = root.resolve()
    for rel in listed:
        path = (root / rel).resolve()
        if path.is_relative_to(base) and path.suffix.lower() == ".wav" and path.is_file():
            inside.append(path)
    return inside


def synthesize(
    words: Sequence[str],
    *,
    voices: int | Sequence[Voice],
    out: str | Path,
    sample_rate: int = 8000,
    seed: int = 0,
    text_map: Mapping[str, str] | str | None = None,
    progress: ProgressCallback | None = None,
    design: VoiceDesign | None = None,
    post: PostProcessing | None = None,
    overwrite: bool = False,
) -> pd.DataFrame:
    """Speak every word in every voice with espeak-ng and write a dataset to ``out``.

    Each clip is rendered, resampled to ``sample_rate``, post-processed like a recording
    (optional room reverberation, silence trimming, random padding and level, optional background
    noise; see :class:`PostProcessing`) and written as 16-bit PCM WAV to
    ``out/<label>/<voice id>.wav``. ``out/manifest.csv`` lists the clips with ``group`` = voice id,
    so ``earmark.sources.load_dataset(out)`` reads the folder and never splits a voice across
    folds; ``out/synth.json`` records the settings and voices.

    The same arguments give byte-identical files: every random choice of clip ``(voice, word)``
    comes from a generator seeded by ``(seed, voice, word)``, and espeak-ng is reloaded for each
    clip so no state leaks from one clip to the next.

    espeak-ng is GPL-3.0-or-later; it comes from the optional ``espeakng-loader`` package
    (``pip install earmark[synth]``). The audio it produces is yours to use.

    Parameters
    ----------
    words : sequence of str
        Labels to render; each is spoken as ``text_map.get(label, label)``.
    voices : int or sequence of Voice
        Number of voices to draw with :func:`design_voices` (from ``seed`` and ``design``), or
        the voices themselves.
    out : str or Path
        Output folder (created).
    sample_rate : int
        Sample rate of the written files in Hz.
    seed : int
        Seed of the voice draw and of the post-processing.
    text_map : mapping or str, optional
        Label → text to speak, or ``'7=seven,8=eight'``; entries for other labels are ignored.
    progress : callable, optional
        Called as ``progress(done, total)`` after each clip.
    design : VoiceDesign, optional
        Ranges voices are drawn from when ``voices`` is an int.
    post : PostProcessing, optional
        Post-processing settings (default :class:`PostProcessing`).
    overwrite : bool
        Allow writing into a folder that already holds a ``manifest.csv``.

    Returns
    -------
    pandas.DataFrame
        The manifest, one row per clip, columns :data:`MANIFEST_COLUMNS` with ``path`` absolute.

    Raises
    ------
    ParameterError
        For empty ``words``, duplicate labels, a bad sample rate, or an existing dataset in ``out``
        without ``overwrite``.
    SynthUnavailableError
        When ``espeakng-loader`` is not installed.

    Example
    -------
    >>> df = synthesize(["yes", "no"], voices=3, out="synth-out")  # doctest: +SKIP
    >>> df[["label", "group"]].shape  # doctest: +SKIP
    (6, 2)
    """
    labels = [str(w) for w in words]
    if not labels:
        raise ParameterError("The 'words' parameter of synthesize is empty; pass at least one word to speak.")
    blank = [i for i, w in enumerate(labels, start=1) if not w.strip()]
    if blank:
        raise ParameterError(f"Word {blank[0]} of {len(labels)} given to synthesize is empty; give words with letters to speak.")
    duplicates = sorted({w for w in labels if labels.count(w) > 1})
    if duplicates:
        raise ParameterError(f"The 'words' parameter of synthesize repeats {duplicates}; give each label once.")
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)) or not 4000 <= sample_rate <= 192000:
        raise ParameterError(f"The 'sample_rate' parameter of synthesize must be an int in [4000, 192000]. Got {sample_rate!r} instead.")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ParameterError(f"The 'seed' parameter of synthesize must be an int >= 0. Got {seed!r} instead.")
    mapping = parse_text_map(text_map)
    mapping = {k: v for k, v in mapping.items() if k in labels}  # a shared map may cover more labels
    drawn_voices = isinstance(voices, (int, np.integer)) and not isinstance(voices, bool)
    if drawn_voices:
        voice_list = design_voices(int(voices), seed=seed, design=design)
    else:
        voice_list = list(voices)  # type: ignore[arg-type]
        if not voice_list or not all(isinstance(v, Voice) for v in voice_list):
            raise ParameterError("The 'voices' parameter of synthesize must be an int >= 1 or a non-empty list of Voice.")
        ids = [v.id for v in voice_list]
        if len(set(ids)) != len(ids):
            raise ParameterError("The 'voices' given to synthesize have duplicate ids; give each Voice a unique id.")
    post = post or PostProcessing()
    root = Path(out)
    if (root / "manifest.csv").exists() and not overwrite:
        raise ParameterError(f"{root / 'manifest.csv'} exists already; choose another --out folder or pass overwrite=True (--overwrite).")
    if (root / "manifest.csv").exists() and not _made_by_synth(root):
        raise ParameterError(
            f"{root} holds a dataset that earmark synth did not make (no synth.json beside its manifest.csv, or "
            "other engines in it); refusing to write into it, as replacing it would delete its files. Choose an "
            "empty --out folder.")
    created = [d for d in (root, *root.parents) if not d.exists()]
    old_clips = _listed_clips(root) if overwrite else []
    root.mkdir(parents=True, exist_ok=True)
    # clips are rendered into a hidden staging folder and moved into place only when all are made:
    # a failed run leaves an earlier dataset in the folder as it was
    staging = Path(tempfile.mkdtemp(prefix=".synth-", dir=root))

    rows: list[dict] = []
    written: list[Path] = []
    total = len(voice_list) * len(labels)
    try:
        for vi, voice in enumerate(voice_list):
            for label in labels:
                text = mapping.get(label, label)
                clip_seed = [seed, vi, zlib.crc32(label.encode("utf-8"))]
                raw, engine_sr = render_speech(
                    text, voice=voice.name, rate=voice.rate, pitch=voice.pitch, pitch_range=voice.pitch_range,
                    word_gap=voice.word_gap, seed=zlib.crc32(json.dumps(clip_seed).encode()),
                )
                if raw.size == 0 or not np.any(raw):
                    raise ParameterError(f"espeak-ng produced no sound for {text!r} (label {label!r}) with voice {voice.name!r}; check the word or the text map.")
                y = resample(raw.astype(np.float32) / 32768.0, orig_sr=engine_sr, target_sr=int(sample_rate))
                y, drawn = postprocess(y, sr=int(sample_rate), config=post, rng=np.random.default_rng(clip_seed))
                rel = Path(_slug(label)) / f"{voice.id}.wav"
                (staging / rel.parent).mkdir(exist_ok=True)
                sf.write(staging / rel, y, int(sample_rate), subtype="PCM_16", format="WAV")
                written.append(rel)
                rows.append({
                    "path": rel.as_posix(), "label": label, "group": voice.id, "text": text, "voice": voice.name,
                    "language": voice.language, "variant": voice.variant, "rate": voice.rate, "pitch": voice.pitch,
                    "pitch_range": voice.pitch_range, "word_gap": voice.word_gap,
                    **{k: round(v, 3) for k, v in drawn.items()},
                    "duration": round(y.size / sample_rate, 4), "sample_rate": int(sample_rate), "engine": "espeak-ng",
                })
                if progress is not None:
                    progress(len(rows), total)
    except BaseException:
        # nothing half-made stays behind: this run's clips go, and the folders it made if now empty
        shutil.rmtree(staging, ignore_errors=True)
        for d in sorted(created, key=lambda d: len(d.parts), reverse=True):
            if d.is_dir() and not any(d.iterdir()):
                d.rmdir()
        raise
    for rel in written:
        (root / rel.parent).mkdir(exist_ok=True)
        os.replace(staging / rel, root / rel)
    shutil.rmtree(staging, ignore_errors=True)
    written = [root / rel for rel in written]
    keep = {p.resolve() for p in written}
    for path in old_clips:  # clips of the dataset this run replaces that it did not write again
        if path.resolve() not in keep:
            path.unlink(missing_ok=True)
            if path.parent != root.resolve() and path.parent.is_dir() and not any(path.parent.iterdir()):
                path.parent.rmdir()

    manifest = pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS))
    manifest.to_csv(root / "manifest.csv", index=False)
    info = {
        "generator": "earmark.synth", "engine": f"espeak-ng {espeak_version()}", "license": ESPEAK_LICENSE,
        "seed": seed, "sample_rate": int(sample_rate), "words": labels, "text_map": mapping,
        "design": (design or VoiceDesign()).to_dict() if drawn_voices else None, "post": post.to_dict(),
        "voices": [v.to_dict() for v in voice_list],
    }
    (root / "synth.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    manifest["path"] = [str((root / p).resolve()) for p in manifest["path"]]
    return manifest
