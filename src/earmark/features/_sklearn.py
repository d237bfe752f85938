"""scikit-learn transformer over the feature presets (a pipeline's first step).

Example
-------
>>> from sklearn.pipeline import make_pipeline
>>> from sklearn.linear_model import LogisticRegression
>>> pipe = make_pipeline(FeatureTransformer(preset="mfcc-mean"), LogisticRegression())
>>> pipe.fit(paths, labels)  # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

from earmark.errors import AudioDecodeError, ParameterError
from earmark.features._presets import Preset, get_preset

__all__ = ["FeatureTransformer"]


class FeatureTransformer(TransformerMixin, BaseEstimator):
    """Turn audio (file paths, or float arrays at the preset's rate) into feature arrays.

    Parameters
    ----------
    preset : str, Preset or dict
        Preset name (see :func:`earmark.features.list_presets`), object or ``to_dict()`` record.
    cache : path or None
        Feature store folder shared with :func:`earmark.features.extract`.
    workers : int or None
        Processes used for lists of paths (``None``: all cores; 1: in-process).
    flatten : bool
        Ravel each clip's features to 1-D (to feed sequence presets to classical models).

    Attributes
    ----------
    preset_ : Preset
    n_features_out_ : int
        Length of a flattened output row.

    Raises
    ------
    AudioDecodeError
        In ``transform``, when an input file cannot be decoded: a transformer must return one row
        per input (use :func:`earmark.features.extract` to skip bad files instead).

    Example
    -------
    >>> import numpy as np
    >>> ft = FeatureTransformer(preset="mfcc-mean").fit([np.zeros(22050, np.float32)])
    >>> ft.transform([np.zeros(22050, np.float32)]).shape
    (1, 40)
    """

    def __init__(self, preset: str | Preset | dict[str, Any] = "mfcc-mean", *,
                 cache: str | os.PathLike[str] | None = None, workers: int | None = 1,
                 flatten: bool = False) -> None:
        self.preset = preset
        self.cache = cache
        self.workers = workers
        self.flatten = flatten

    def _resolve(self) -> Preset:
        p = self.preset
        if isinstance(p, Preset):
            return p
        if isinstance(p, dict):
            return Preset.from_dict(p)
        if isinstance(p, str):
            return get_preset(p)
        raise ParameterError(
            f"The 'preset' parameter of FeatureTransformer must be a preset name, Preset or dict. Got {p!r}."
        )

    def fit(self, X: Sequence[Any], y: Any = None) -> FeatureTransformer:
        """Resolve the preset (no state is learned from the data); returns ``self``."""
        self.preset_ = self._resolve()
        shape = self.preset_.output_shape
        self.n_features_out_ = int(np.prod(shape)) if shape is not None else None
        return self

    def transform(self, X: Sequence[Any]) -> np.ndarray:
        """Features of each item of ``X`` (paths, bytes or 1-D float arrays), stacked."""
        if not hasattr(self, "preset_"):
            self.fit(X)
        items = list(X)  # rows of a 2-D array, items of a list or pandas Series
        if all(isinstance(it, (str, os.PathLike)) for it in items) and items:
            from earmark.features._extract import extract

            fs = extract(items, self.preset_, cache=self.cache, workers=self.workers)
            if fs.errors:
                e = fs.errors[0]
                raise AudioDecodeError(e["path"], e["reason"] + f" ({len(fs.errors)} file(s) failed)")
            out = fs.X
        else:
            clips = []
            for i, it in enumerate(items):
                if isinstance(it, (str, os.PathLike, bytes)):
                    from earmark.audio import load_audio

                    clips.append(load_audio(it, sr=self.preset_.sample_rate)[0])
                else:
                    a = np.asarray(it, dtype=np.float32)
                    if a.ndim != 1:
                        raise ParameterError(f"Item {i} of X must be a path or a 1-D array. Got shape {a.shape}.")
                    clips.append(a)
            out = self.preset_.transform_batch(clips)
        if isinstance(out, list):
            raise ParameterError(
                f"Preset {self.preset_.name!r} yields a variable number of frames; give it a fixed "
                "'duration' (get_preset(name, duration=1.0))."
            )
        arr = np.asarray(out, dtype=np.float32)
        return arr.reshape(len(arr), -1) if self.flatten else arr

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Names of the output columns (pooled presets; ``f0…`` otherwise)."""
        p = self.preset_ if hasattr(self, "preset_") else self._resolve()
        names = p.feature_names
        if names is None:
            shape = p.output_shape
            if shape is None:
                raise ParameterError(f"Preset {p.name!r} has no fixed output size, hence no feature names.")
            names = [f"{p.name}_{i}" for i in range(int(np.prod(shape)))]
        return np.asarray(names, dtype=object)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.requires_fit = False
        return tags
