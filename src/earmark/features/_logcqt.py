"""The ``cqt`` preset: a log-magnitude constant-Q spectrogram on a musical (MIDI-aligned) grid.

Its bins are evenly spaced in pitch (``bins_per_octave`` per octave from ``fmin_midi``), so a
change of pitch is a shift along the frequency axis; the harmonic CNN (model ``hcnn-reg``) relies
on that to regress pitch-like targets. Computed with :func:`earmark.features.cqt` (librosa's
multirate algorithm, tuning fixed at 0 so the grid stays aligned with MIDI numbers).

Example
-------
>>> import numpy as np
>>> from earmark.features import get_preset
>>> get_preset("cqt").transform_batch([np.zeros(16000, np.float32)]).shape
(1, 288, 32)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from earmark.errors import ParameterError
from earmark.features import _spectral as sp
from earmark.features._presets import (
    _KINDS,
    Preset,
    _fix_length,
    _Kind,
    _target_samples,
    _zero_extend,
    register_preset,
)

__all__: list[str] = []


def _midi_to_hz(m: float) -> float:
    return 440.0 * 2.0 ** ((float(m) - 69.0) / 12.0)


def _n_frames(sr: int, p: Mapping[str, Any]) -> int:
    return 1 + int(_target_samples(sr, p)) // int(p["hop_length"])


def _cqt_batch(clips: Sequence[np.ndarray], sr: int, p: Mapping[str, Any]) -> np.ndarray:
    n_target = _target_samples(sr, p)
    assert n_target is not None
    clips = [_zero_extend(c, n_target) for c in _fix_length(clips, n_target, p["align"])]
    y = np.stack(clips).astype(np.float32, copy=False)
    C = np.abs(sp.cqt(y, sr=sr, hop_length=int(p["hop_length"]), fmin=_midi_to_hz(p["fmin_midi"]),
                      n_bins=int(p["n_bins"]), bins_per_octave=int(p["bins_per_octave"]), tuning=0.0))
    C = C[..., : _n_frames(sr, p)]
    db = 20.0 * np.log10(np.maximum(C, float(p["amin"])))
    if p["top_db"] is not None:
        peak = db.reshape(len(clips), -1).max(axis=1)
        db = np.maximum(db, (peak - float(p["top_db"]))[:, None, None])
    return np.ascontiguousarray(db, dtype=np.float32)


def _check_range(sr: int, p: Mapping[str, Any]) -> tuple[int, int]:
    top = _midi_to_hz(p["fmin_midi"]) * 2.0 ** ((int(p["n_bins"]) - 1) / int(p["bins_per_octave"]))
    if top >= sr / 2:
        raise ParameterError(f"The cqt preset's highest bin ({top:.0f} Hz) must lie below the Nyquist "
                         f"frequency ({sr / 2:.0f} Hz); lower n_bins or raise sample_rate")
    return int(p["n_bins"]), _n_frames(sr, p)


_KINDS["cqt"] = _Kind(
    name="cqt",
    defaults={"duration": 1.0, "align": "start", "hop_length": 512, "fmin_midi": 21.0,
              "bins_per_octave": 36, "n_bins": 288, "amin": 1e-5, "top_db": 80.0},
    batch=_cqt_batch,
    pooled=False,
    shape=_check_range,
    description="log-magnitude constant-Q spectrogram (dB), bins evenly spaced in pitch from MIDI "
    "fmin_midi (pitch-like targets, harmonic CNN input)",
)

register_preset(Preset("cqt", "cqt", 16000))
