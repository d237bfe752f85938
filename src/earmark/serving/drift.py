"""Drift statistics: is what a deployed model hears still like what it was trained on?

Compares a sample of *current* per-clip feature summaries and predicted probabilities with the
*reference* statistics saved in the model bundle (training clips' summaries and probabilities):

- per feature, the population-stability index (PSI, on the reference's decile bins) and a
  two-sample Kolmogorov–Smirnov test;
- the distribution of predicted classes (chi-square goodness of fit against the reference);
- the top-class confidence (one-sided Mann–Whitney U test: is it lower now?).

All p-values are adjusted together with Benjamini–Hochberg (false-discovery rate ``alpha``). A test
only counts as drift when it is both significant *and* large (PSI, share of features or confidence
drop above a threshold): with hundreds of clips every test is significant for tiny, harmless
differences such as a new speaker's voice.

Example
-------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> ref = {"features": rng.normal(size=(500, 4)), "proba": rng.dirichlet([5, 1], size=500)}
>>> detect_drift(ref, rng.normal(size=(200, 4)) + 3.0).drift
True
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from earmark.errors import ParameterError

__all__ = [
    "DRIFT_FEATURES",
    "DriftReport",
    "DriftTest",
    "benjamini_hochberg",
    "detect_drift",
    "drift_summary",
    "psi",
]

#: Default thresholds of :func:`detect_drift`, also shown in reports.
#: Calibrated on FSDD (see tests/test_monitor.py): a new human speaker moves single descriptors
#: above PSI 2 in at most two of the seven descriptors (one speaker's microphone differs), synthetic
#: speech moves three or more above 2.2, added noise moves most of them far above.
DEFAULT_ALPHA = 0.01
DEFAULT_PSI = 2.0
DEFAULT_FEATURE_SHARE = 0.4
DEFAULT_CONFIDENCE_DROP = 0.25
DEFAULT_PREDICTION_PSI = 2.0
_EPS = 1e-4


@dataclass(frozen=True)
class DriftTest:
    """One test of a drift report.

    Attributes
    ----------
    name : str
        ``feature_3`` (or the feature's name), ``prediction`` or ``confidence``.
    kind : str
        ``feature``, ``prediction`` or ``confidence``.
    test : str
        The statistical test (``ks``, ``chi2``, ``mannwhitney``).
    statistic : float
        The test statistic.
    p_value : float
        Raw p-value.
    p_adjusted : float
        Benjamini–Hochberg adjusted p-value (over every test of the report).
    effect : float
        Size of the change: PSI for features and predictions, mean confidence drop for confidence.
    significant : bool
        ``p_adjusted < alpha``.
    drift : bool
        Significant and ``effect`` above its threshold.
    reference_mean, current_mean : float
        Means of the tested quantity (for features and confidence; NaN for predictions).
    """

    name: str
    kind: str
    test: str
    statistic: float
    p_value: float
    p_adjusted: float
    effect: float
    significant: bool
    drift: bool
    reference_mean: float = math.nan
    current_mean: float = math.nan


@dataclass(frozen=True)
class DriftReport:
    """Outcome of :func:`detect_drift`.

    Attributes
    ----------
    drift : bool
        Whether drift was found (feature drift, prediction shift or confidence drop).
    n : int
        Number of current clips compared.
    n_reference : int
        Number of reference clips.
    tests : tuple of DriftTest
        Every test, features first, then ``prediction`` and ``confidence`` when available.
    feature_drift_share : float
        Share of features whose test says drift.
    reasons : tuple of str
        One line per reason for ``drift`` (empty when there is none).
    thresholds : dict
        The thresholds used.
    prediction_counts, reference_prediction_share : dict
        Predicted-class counts now and class shares in the reference.
    skipped : list of dict
        ``{"path", "reason"}`` of every current clip that could not be compared (unreadable);
        filled by :func:`earmark.serving.monitor.monitor`.
    """

    drift: bool
    n: int
    n_reference: int
    tests: tuple[DriftTest, ...]
    feature_drift_share: float
    reasons: tuple[str, ...]
    thresholds: dict[str, float]
    prediction_counts: dict[str, int] = field(default_factory=dict)
    reference_prediction_share: dict[str, float] = field(default_factory=dict)
    skipped: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (NaN becomes ``None``).

        Example
        -------
        >>> import numpy as np
        >>> r = detect_drift({"features": np.zeros((50, 1)) + np.arange(50)[:, None]},
        ...                  np.arange(50.0)[:, None])
        >>> sorted(r.to_dict())[:3]
        ['drift', 'feature_drift_share', 'n']
        """
        out = asdict(self)
        out["tests"] = [{k: _json_float(v) for k, v in t.items()} for t in out["tests"]]
        out["feature_drift_share"] = _json_float(self.feature_drift_share)
        out["reasons"] = list(self.reasons)
        return out

    def test(self, name: str) -> DriftTest:
        """The test called ``name``.

        Example
        -------
        >>> import numpy as np
        >>> r = detect_drift({"features": np.arange(40.0)[:, None]}, np.arange(40.0)[:, None])
        >>> r.test("feature_0").drift
        False
        """
        for t in self.tests:
            if t.name == name:
                return t
        raise KeyError(f"No test named {name!r}; tests are {[t.name for t in self.tests]}")


def _json_float(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


#: Names of the values of :func:`drift_summary`, in order.
DRIFT_FEATURES = (
    "log_flatness_median",
    "log_flatness_loud",
    "spectral_flux",
    "mfcc_delta",
    "mfcc_std",
    "high_band_ratio_loud",
    "centroid_loud",
)
_FB_CACHE: dict[tuple[int, int], np.ndarray] = {}


def drift_summary(y: np.ndarray, sr: int) -> np.ndarray:
    """Seven descriptors of *how* a clip sounds (recording conditions, naturalness), for drift.

    They are chosen to move little between human speakers of the same recording setup and a
    lot under added noise (flatness, high-band energy, centroid) or synthetic speech (spectral
    flux, MFCC dynamics), unlike speaker-dependent features such as MFCC means. Frames of
    about 32 ms every 10 ms; "loud" frames are within 30 dB of the clip's loudest.

    Parameters
    ----------
    y : np.ndarray, shape ``(samples,)``
        Mono audio.
    sr : int
        Its sample rate.

    Returns
    -------
    np.ndarray, shape ``(7,)``, float32
        In the order of :data:`DRIFT_FEATURES`.

    Example
    -------
    >>> import numpy as np
    >>> drift_summary(np.random.default_rng(0).normal(size=8000).astype("float32"), 8000).shape
    (7,)
    """
    from scipy.fft import dct

    y = np.asarray(y, dtype=np.float32).ravel()
    n_fft = 1 << max(6, int(round(np.log2(sr * 0.032))))
    hop = max(1, int(round(sr * 0.010)))
    if y.shape[0] < n_fft:
        y = np.pad(y, (0, n_fft - y.shape[0]))
    frames = 1 + (y.shape[0] - n_fft) // hop
    idx = np.arange(n_fft)[None, :] + hop * np.arange(frames)[:, None]
    spec = np.abs(np.fft.rfft(y[idx] * np.hanning(n_fft).astype(np.float32), axis=1)) ** 2 + 1e-10
    logs = np.log(spec)
    energy = spec.sum(axis=1)
    edb = 10 * np.log10(energy)
    loud = edb > edb.max() - 30.0
    flat = logs.mean(axis=1) - np.log(spec.mean(axis=1))
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sr)
    centroid = (spec * freqs).sum(axis=1) / energy / (sr / 2)
    high = spec[:, freqs > sr * 0.3125].sum(axis=1) / energy
    key = (sr, n_fft)
    if key not in _FB_CACHE:
        import librosa

        _FB_CACHE[key] = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=40, fmin=0.0, fmax=sr / 2).astype(np.float64)
    mel_db = 10 * np.log10(spec @ _FB_CACHE[key].T + 1e-10)
    mf = dct(mel_db, type=2, norm="ortho", axis=1)[:, 1:13]
    flux = np.abs(np.diff(logs, axis=0)).mean() if frames > 1 else 0.0
    dmf = np.abs(np.diff(mf, axis=0)).mean() if frames > 1 else 0.0
    return np.array(
        [np.median(flat), flat[loud].mean(), flux, dmf, mf.std(axis=0).mean(), high[loud].mean(), centroid[loud].mean()],
        dtype=np.float32,
    )


def psi(reference: np.ndarray, current: np.ndarray, *, bins: int = 10) -> float:
    """Population-stability index of ``current`` against ``reference`` (1-D samples).

    Bins are the reference's quantiles (ties merged); each bin's share is floored at 1e-4.
    Below 0.1 means no change, 0.1-0.25 a moderate one, above 0.25 a major one.

    Parameters
    ----------
    reference, current : np.ndarray, shape ``(n,)``
    bins : int
        Number of quantile bins.

    Example
    -------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> a = rng.normal(size=5000)
    >>> psi(a, rng.normal(size=5000)) < 0.02, psi(a, a + 2) > 1
    (True, True)
    """
    reference = np.asarray(reference, dtype=np.float64).ravel()
    current = np.asarray(current, dtype=np.float64).ravel()
    if reference.size == 0 or current.size == 0:
        raise ParameterError("psi needs at least one reference and one current value. Got an empty array.")
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1]))
    r = np.bincount(np.searchsorted(edges, reference, side="right"), minlength=edges.size + 1)
    c = np.bincount(np.searchsorted(edges, current, side="right"), minlength=edges.size + 1)
    return _psi_counts(r, c)


def _psi_counts(r: np.ndarray, c: np.ndarray) -> float:
    rs = np.maximum(r / max(r.sum(), 1), _EPS)
    cs = np.maximum(c / max(c.sum(), 1), _EPS)
    return float(np.sum((cs - rs) * np.log(cs / rs)))


def benjamini_hochberg(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Benjamini–Hochberg adjusted p-values (false-discovery-rate control); NaN stays NaN.

    Example
    -------
    >>> benjamini_hochberg([0.01, 0.04, 0.03, 0.5]).round(3).tolist()
    [0.04, 0.053, 0.053, 0.5]
    """
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    q = p[ok]
    m = q.size
    if m == 0:
        return out
    order = np.argsort(q)
    ranked = q[order] * m / np.arange(1, m + 1)
    ranked = np.minimum.accumulate(ranked[::-1])[::-1]
    adj = np.empty(m)
    adj[order] = np.minimum(ranked, 1.0)
    out[ok] = adj
    return out


def _check_2d(name: str, x: Any) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ParameterError(f"The '{name}' array must be 2-D (clips, features). Got shape {arr.shape} instead.")
    return arr


def detect_drift(
    reference: Mapping[str, Any],
    features: np.ndarray | None,
    proba: np.ndarray | None = None,
    *,
    classes: Sequence[str] | None = None,
    feature_names: Sequence[str] | None = None,
    alpha: float = DEFAULT_ALPHA,
    psi_threshold: float = DEFAULT_PSI,
    feature_share: float = DEFAULT_FEATURE_SHARE,
    confidence_drop: float = DEFAULT_CONFIDENCE_DROP,
    prediction_psi: float = DEFAULT_PREDICTION_PSI,
    min_samples: int = 20,
) -> DriftReport:
    """Compare current clips with a model's reference statistics.

    Parameters
    ----------
    reference : mapping
        ``features`` — ``(n_ref, d)`` per-clip summaries of the training clips; optionally
        ``proba`` — ``(n_ref, n_classes)`` the model's probabilities for them; optionally
        ``confidence_proba``, probabilities for clips the model did not train on, the bar of the
        confidence test (default: ``proba``).
    features : np.ndarray or None
        ``(n, d)`` the same summaries of the current clips (``None``: skip the feature tests).
    proba : np.ndarray or None
        ``(n, n_classes)`` current probabilities (``None``: skip prediction and confidence tests).
    classes : sequence of str, optional
        Class names, in the columns' order (for the report).
    feature_names : sequence of str, optional
        Names of the feature columns (default ``feature_0`` …).
    alpha : float
        False-discovery rate of the Benjamini–Hochberg procedure over all tests.
    psi_threshold : float
        A feature drifts when its KS test is significant and its PSI exceeds this.
    feature_share : float
        Features drift overall when at least this share of them drift.
    confidence_drop : float
        The confidence test drifts when the mean top-class probability fell by more than this
        (and the one-sided test is significant).
    prediction_psi : float
        The prediction test drifts when the PSI of the predicted-class shares exceeds this
        (and the chi-square test is significant).
    min_samples : int
        Fewer current clips than this raise :class:`~earmark.errors.ParameterError`.

    Returns
    -------
    DriftReport

    Example
    -------
    >>> import numpy as np
    >>> rng = np.random.default_rng(1)
    >>> ref = {"features": rng.normal(size=(400, 3))}
    >>> detect_drift(ref, rng.normal(size=(100, 3))).drift
    False
    """
    from scipy import stats

    for name, value in (("alpha", alpha), ("feature_share", feature_share)):
        if not 0 < value <= 1:
            raise ParameterError(f"The '{name}' parameter of detect_drift must be in (0, 1]. Got {value!r} instead.")
    if features is None and proba is None:
        raise ParameterError("detect_drift needs current 'features' or 'proba' (or both). Got neither.")

    rows: list[dict[str, Any]] = []
    n = 0
    n_ref = 0
    if features is not None:
        if "features" not in reference:
            raise ParameterError("The reference has no 'features' array; the bundle holds no reference statistics.")
        ref_x = _check_2d("reference features", reference["features"])
        cur_x = _check_2d("features", features)
        if ref_x.shape[1] != cur_x.shape[1]:
            raise ParameterError(
                f"Current features have {cur_x.shape[1]} columns but the reference has {ref_x.shape[1]}; "
                "were they computed with the same model?"
            )
        n, n_ref = cur_x.shape[0], ref_x.shape[0]
        names = list(feature_names) if feature_names is not None else [f"feature_{i}" for i in range(ref_x.shape[1])]
        for j, name in enumerate(names):
            a, b = ref_x[:, j], cur_x[:, j]
            if np.ptp(a) == 0 and np.ptp(b) == 0 and a[0] == b[0]:
                stat, p = 0.0, 1.0
            else:
                res = stats.ks_2samp(a, b)
                stat, p = float(res.statistic), float(res.pvalue)
            rows.append(dict(name=str(name), kind="feature", test="ks", statistic=stat, p_value=p,
                             effect=psi(a, b), reference_mean=float(a.mean()), current_mean=float(b.mean())))

    counts: dict[str, int] = {}
    ref_share: dict[str, float] = {}
    if proba is not None:
        cur_p = _check_2d("proba", proba)
        n = n or cur_p.shape[0]
        k = cur_p.shape[1]
        labels = [str(c) for c in classes] if classes is not None else [str(i) for i in range(k)]
        if len(labels) != k:
            raise ParameterError(f"'classes' has {len(labels)} names but 'proba' has {k} columns.")
        cur_pred = np.bincount(cur_p.argmax(axis=1), minlength=k)
        counts = {c: int(v) for c, v in zip(labels, cur_pred, strict=True)}
        ref_p = reference.get("proba")
        if ref_p is not None:
            ref_p = _check_2d("reference proba", ref_p)
            if ref_p.shape[1] != k:
                raise ParameterError(f"Current proba has {k} columns but the reference has {ref_p.shape[1]}.")
            n_ref = n_ref or ref_p.shape[0]
            ref_pred = np.bincount(ref_p.argmax(axis=1), minlength=k)
            ref_share = {c: float(v) for c, v in zip(labels, ref_pred / ref_pred.sum(), strict=True)}
            # two samples, two sets of counts: the reference's shares are estimates too (a
            # goodness-of-fit test against them as exact flagged a model's own training data)
            table = np.stack([ref_pred, cur_pred])
            table = table[:, table.sum(axis=0) > 0]
            if table.shape[1] >= 2 and (table.sum(axis=1) > 0).all():
                chi, p, _, _ = stats.chi2_contingency(table, correction=False)
                chi, p = float(chi), float(p)
            else:  # one class answered on both sides: nothing has moved
                chi, p = 0.0, 1.0
            rows.append(dict(name="prediction", kind="prediction", test="chi2", statistic=chi, p_value=p,
                             effect=_psi_counts(ref_pred, cur_pred)))
            conf_p = reference.get("confidence_proba")
            conf_p = ref_p if conf_p is None else _check_2d("reference confidence_proba", conf_p)
            ref_conf, cur_conf = conf_p.max(axis=1), cur_p.max(axis=1)
            res = stats.mannwhitneyu(cur_conf, ref_conf, alternative="less")
            rows.append(dict(name="confidence", kind="confidence", test="mannwhitney",
                             statistic=float(res.statistic), p_value=float(res.pvalue),
                             effect=float(ref_conf.mean() - cur_conf.mean()),
                             reference_mean=float(ref_conf.mean()), current_mean=float(cur_conf.mean())))
    if n < min_samples:
        raise ParameterError(
            f"Drift needs at least min_samples={min_samples} current clips to say anything. Got {n}; "
            "log more requests (or give more clips) before checking, or lower min_samples (--min-samples)."
        )

    adjusted = benjamini_hochberg([r["p_value"] for r in rows])
    limits = {"feature": psi_threshold, "prediction": prediction_psi, "confidence": confidence_drop}
    tests = []
    for r, q in zip(rows, adjusted, strict=True):
        significant = bool(q < alpha)
        tests.append(DriftTest(**r, p_adjusted=float(q), significant=significant,
                               drift=significant and r["effect"] > limits[r["kind"]]))
    feats = [t for t in tests if t.kind == "feature"]
    share = sum(t.drift for t in feats) / len(feats) if feats else 0.0
    reasons = []
    if feats and share >= feature_share:
        reasons.append(f"{sum(t.drift for t in feats)} of {len(feats)} features drifted "
                       f"(PSI > {psi_threshold:g} and adjusted KS p < {alpha:g})")
    for t in tests:
        if t.kind == "prediction" and t.drift:
            reasons.append(f"predicted-class distribution shifted (PSI {t.effect:.2f}, p {t.p_adjusted:.2g})")
        if t.kind == "confidence" and t.drift:
            reasons.append(f"mean confidence dropped from {t.reference_mean:.2f} to {t.current_mean:.2f}")
    return DriftReport(
        drift=bool(reasons),
        n=int(n),
        n_reference=int(n_ref),
        tests=tuple(tests),
        feature_drift_share=float(share),
        reasons=tuple(reasons),
        thresholds={"alpha": alpha, "psi": psi_threshold, "feature_share": feature_share,
                    "confidence_drop": confidence_drop, "prediction_psi": prediction_psi},
        prediction_counts=counts,
        reference_prediction_share=ref_share,
    )
