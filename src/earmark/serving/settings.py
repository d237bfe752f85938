"""Settings of the prediction service: one frozen object, fed from environment variables or flags.

Every field can be set through an environment variable ``EARMARK_SERVE_<FIELD>`` (upper case),
e.g. ``EARMARK_SERVE_MAX_SECONDS=30``; ``earmark serve`` maps its flags onto the same fields.

Example
-------
>>> s = ServeSettings.from_env({"EARMARK_SERVE_MAX_SECONDS": "30"})
>>> s.max_seconds
30.0
>>> s.replace(max_bytes=1024).max_bytes
1024
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from earmark.errors import ParameterError

__all__ = ["ENV_PREFIX", "ServeSettings"]

ENV_PREFIX = "EARMARK_SERVE_"


@dataclass(frozen=True)
class ServeSettings:
    """How the service treats requests.

    Attributes
    ----------
    max_bytes : int
        Largest accepted upload, in bytes (413 above it).
    max_seconds : float
        Longest accepted audio, in seconds (413 above it).
    max_batch : int
        Most files in one ``POST /predict/batch``.
    top_k : int
        Classes listed in ``top`` of each answer (all classes are always in ``probabilities``).
    reject_below : float or None
        Answer ``unknown`` when the top probability is below this.
    log_path : str or None
        SQLite file recording each request's feature summary, prediction and confidence (opt-in,
        for ``earmark monitor``); ``None`` records nothing.
    spectrogram : bool
        Whether ``/predict?spectrogram=true`` may return a log-mel image for the web page.
    decode_timeout : float
        Give up decoding one upload after this many seconds.
    micro_batch : int
        Most concurrent ``POST /predict`` requests whose clips go through the model together (one
        feature and one network call for all of them). A batch never waits for a timer: it takes what
        queued while the previous one ran, so an idle service answers one clip at once; ``1`` turns
        batching off.
    inline_bytes : int
        A micro-batch of WAV/FLAC/Ogg uploads totalling at most this many bytes is computed on the
        event loop's own thread (a 1 s clip costs about 1 ms; saves the thread hand-off and the GIL
        contention, about a fifth of the CPU per request); larger batches and other formats go to
        the thread pool, so that a long upload never holds the other connections up. 0 always uses
        the thread pool.
    runtime : {"auto", "onnx", "estimator"}
        What runs the model (:class:`~earmark.serving.Predictor`): ``auto`` runs torch networks in
        ONNX Runtime (checked against PyTorch at startup; much cheaper per request) and other
        models as they are.
    threads : int or None
        Threads of the numerical libraries (BLAS, OpenMP, PyTorch) in the serving process. The service
        already runs requests in parallel, so more than 1 mostly adds contention; ``earmark serve``
        uses 1 unless set. ``None`` leaves the process's settings alone (the default of
        :func:`~earmark.serving.create_app`, which may run inside another program).
    switch_interval : float or None
        The serving process's GIL switch interval in seconds (:func:`sys.setswitchinterval`).
        Python's 5 ms default lets a batch computing in a worker thread keep the event loop
        waiting that long; ``earmark serve`` uses 0.0005 unless set. ``None`` leaves it alone.
    explain_max_regions : int
        Most regions (time windows × bands) one ``POST /explain`` may silence; each costs a feature
        extraction and prediction of the whole clip, so the work of a request is bounded (0 turns
        ``/explain`` off). Explanations run one at a time.
    """

    max_bytes: int = 20 * 1024 * 1024
    max_seconds: float = 60.0
    max_batch: int = 64
    top_k: int = 5
    reject_below: float | None = None
    log_path: str | None = None
    spectrogram: bool = True
    decode_timeout: float = 20.0
    micro_batch: int = 32
    inline_bytes: int = 1_000_000
    runtime: str = "auto"
    threads: int | None = None
    switch_interval: float | None = None
    metrics_dir: str | None = None
    explain_max_regions: int = 400

    def __post_init__(self) -> None:
        if not (isinstance(self.max_bytes, int) and self.max_bytes > 0):
            raise ParameterError(f"The 'max_bytes' setting must be a positive int. Got {self.max_bytes!r} instead.")
        if not self.max_seconds > 0:
            raise ParameterError(f"The 'max_seconds' setting must be positive. Got {self.max_seconds!r} instead.")
        if not (isinstance(self.max_batch, int) and self.max_batch >= 1):
            raise ParameterError(f"The 'max_batch' setting must be an int >= 1. Got {self.max_batch!r} instead.")
        if not (isinstance(self.top_k, int) and self.top_k >= 1):
            raise ParameterError(f"The 'top_k' setting must be an int >= 1. Got {self.top_k!r} instead.")
        if self.reject_below is not None and not 0 <= self.reject_below <= 1:
            raise ParameterError(
                f"The 'reject_below' setting must be a probability in [0, 1] or None. Got {self.reject_below!r} instead."
            )
        if not self.decode_timeout > 0:
            raise ParameterError(f"The 'decode_timeout' setting must be positive. Got {self.decode_timeout!r} instead.")
        if not (isinstance(self.micro_batch, int) and self.micro_batch >= 1):
            raise ParameterError(f"The 'micro_batch' setting must be an int >= 1. Got {self.micro_batch!r} instead.")
        if not (isinstance(self.inline_bytes, int) and self.inline_bytes >= 0):
            raise ParameterError(f"The 'inline_bytes' setting must be an int >= 0. Got {self.inline_bytes!r} instead.")
        if self.runtime not in ("auto", "onnx", "estimator"):
            raise ParameterError(
                f"The 'runtime' setting must be 'auto', 'onnx' or 'estimator'. Got {self.runtime!r} instead."
            )
        if self.threads is not None and not (isinstance(self.threads, int) and self.threads >= 1):
            raise ParameterError(f"The 'threads' setting must be an int >= 1 or None. Got {self.threads!r} instead.")
        if not (isinstance(self.explain_max_regions, int) and self.explain_max_regions >= 0):
            raise ParameterError(f"The 'explain_max_regions' setting must be an int >= 0. "
                                 f"Got {self.explain_max_regions!r} instead.")
        if self.switch_interval is not None and not 0 < self.switch_interval <= 1:
            raise ParameterError(
                f"The 'switch_interval' setting must be in (0, 1] seconds or None. Got {self.switch_interval!r} instead."
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> ServeSettings:
        """Build settings from ``EARMARK_SERVE_*`` variables, then apply explicit ``overrides``
        (flags win over the environment; ``None`` overrides are ignored).

        Example
        -------
        >>> ServeSettings.from_env({}, top_k=3).top_k
        3
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = env.get(ENV_PREFIX + f.name.upper())
            if raw is None or raw == "":
                continue
            values[f.name] = _parse(f.name, str(f.type), raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        unknown = set(values) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ParameterError(f"Unknown serve settings {sorted(unknown)}; known: {[f.name for f in dataclasses.fields(cls)]}.")
        return cls(**values)

    def replace(self, **changes: Any) -> ServeSettings:
        """A copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The settings as a JSON-ready dict."""
        return dataclasses.asdict(self)


def _parse(name: str, type_name: str, raw: str) -> Any:
    var = ENV_PREFIX + name.upper()
    try:
        if "None" in type_name and raw.lower() == "none":
            return None
        if type_name.startswith("int"):
            return int(raw)
        if type_name.startswith("float"):
            return float(raw)
        if type_name.startswith("bool"):
            low = raw.lower()
            if low not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                raise ValueError(raw)
            return low in ("1", "true", "yes", "on")
        return None if raw.lower() == "none" else raw
    except ValueError:
        raise ParameterError(f"Environment variable {var}={raw!r} is not a valid {type_name}; fix or unset it.") from None
