"""Synthetic voices: a language, a voice variant and prosody settings, drawn reproducibly from a seed."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields

import numpy as np

from earmark.errors import ParameterError
from earmark.synth._engine import languages, voice_variants

__all__ = ["ENGLISH_LANGUAGES", "Voice", "VoiceDesign", "design_voices", "list_voices"]

#: espeak-ng's English accents (British, American, New York, Scottish, Received Pronunciation,
#: Lancaster, West Midlands, Caribbean).
ENGLISH_LANGUAGES = (
    "en", "en-us", "en-us-nyc", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029",
)


@dataclass(frozen=True)
class Voice:
    """One synthetic speaker: what espeak-ng is told before it speaks.

    Attributes
    ----------
    id : str
        Unique name, used as the ``group`` of its clips (``'s0-v0003'``: seed 0, voice 3).
    language : str
        espeak-ng language (accent), e.g. ``'en-gb-scotland'``.
    variant : str
        espeak-ng voice variant (``'m3'``, ``'f2'``, ``'klatt4'``, ``'whisperf'`` …) or ``''``.
    rate : int
        Words per minute.
    pitch, pitch_range : int
        espeak-ng's 0–99 scales.
    word_gap : int
        Pause between words in 10 ms units.

    Example
    -------
    >>> Voice(id="v1", language="en-us", variant="m3").name
    'en-us+m3'
    """

    id: str
    language: str
    variant: str = ""
    rate: int = 175
    pitch: int = 50
    pitch_range: int = 50
    word_gap: int = 0

    @property
    def name(self) -> str:
        """The espeak-ng voice name, ``language+variant``."""
        return f"{self.language}+{self.variant}" if self.variant else self.language

    def to_dict(self) -> dict[str, object]:
        """Plain dictionary, the inverse of :meth:`from_dict`."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Voice:
        """Build from :meth:`to_dict`'s output; unknown keys are an error."""
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ParameterError(f"Voice.from_dict got unknown keys {sorted(unknown)}; expected {[f.name for f in fields(cls)]}.")
        return cls(**data)  # type: ignore[arg-type]


@dataclass(frozen=True)
class VoiceDesign:
    """Ranges voices are drawn from (inclusive integer ranges as ``(low, high)``).

    Attributes
    ----------
    languages : tuple of str
        espeak-ng languages to draw from (default: its English accents).
    variants : tuple of str or None
        Voice variants to draw from; ``None`` means every variant plus the plain language voice.
    rate, pitch, pitch_range, word_gap : tuple of int
        Ranges of the prosody settings of :class:`Voice`.

    Example
    -------
    >>> VoiceDesign.from_json(VoiceDesign(rate=(140, 180)).to_json()).rate
    (140, 180)
    """

    languages: tuple[str, ...] = ENGLISH_LANGUAGES
    variants: tuple[str, ...] | None = None
    rate: tuple[int, int] = (120, 220)
    pitch: tuple[int, int] = (20, 80)
    pitch_range: tuple[int, int] = (20, 80)
    word_gap: tuple[int, int] = (0, 3)

    def __post_init__(self) -> None:
        if not self.languages:
            raise ParameterError("The 'languages' parameter of VoiceDesign must name at least one language, e.g. ('en-us',).")
        for name, lo, hi in (("rate", 80, 450), ("pitch", 0, 99), ("pitch_range", 0, 99), ("word_gap", 0, 100)):
            value = getattr(self, name)
            if len(value) != 2 or not lo <= value[0] <= value[1] <= hi:
                raise ParameterError(
                    f"The '{name}' parameter of VoiceDesign must be a (low, high) pair within [{lo}, {hi}]. "
                    f"Got {value!r} instead."
                )

    def to_dict(self) -> dict[str, object]:
        """JSON-ready dictionary (tuples become lists)."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> VoiceDesign:
        """Inverse of :meth:`to_dict`."""
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ParameterError(f"VoiceDesign.from_dict got unknown keys {sorted(unknown)}.")
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items()})  # type: ignore[arg-type]

    def to_json(self) -> str:
        """JSON text, the inverse of :meth:`from_json`."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> VoiceDesign:
        """Inverse of :meth:`to_json`."""
        return cls.from_dict(json.loads(text))


def list_voices(*, languages: Sequence[str] = ENGLISH_LANGUAGES) -> list[str]:
    """Every espeak-ng voice name earmark can draw for these languages: each language alone and
    combined with each voice variant (``'en-us'``, ``'en-us+m3'``, …).

    Parameters
    ----------
    languages : sequence of str
        espeak-ng languages (see :func:`earmark.synth.languages` for all of them).

    Returns
    -------
    list of str

    Example
    -------
    >>> names = list_voices(languages=["en-us"])  # doctest: +SKIP
    >>> names[:2]  # doctest: +SKIP
    ['en-us', 'en-us+Alex']
    """
    _check_languages(languages)
    return [name for lang in languages for name in (lang, *(f"{lang}+{v}" for v in voice_variants()))]


def _check_languages(langs: Sequence[str]) -> None:
    known = set(languages())
    bad = [lang for lang in langs if lang.lower() not in known]
    if bad:
        raise ParameterError(
            f"espeak-ng does not know the language(s) {bad}; use identifiers such as 'en-us' or "
            "'en-gb-scotland' (earmark.synth.languages() lists them all)."
        )


def design_voices(n: int, *, seed: int = 0, design: VoiceDesign | None = None) -> list[Voice]:
    """Draw ``n`` distinct synthetic voices, reproducibly.

    Every (language, variant) pair is used once before any repeats (in a seeded order), and each
    voice gets its own rate, pitch, pitch range and word gap. Voice ``i`` depends only on ``seed``,
    ``i`` and ``design``: asking for more voices keeps the first ones unchanged.

    Parameters
    ----------
    n : int
        Number of voices, at least 1.
    seed : int
        Seed of the draw; it is also part of each voice id (``'s{seed}-v{i:04d}'``).
    design : VoiceDesign, optional
        Ranges to draw from (default: :class:`VoiceDesign`'s).

    Returns
    -------
    list of Voice

    Example
    -------
    >>> voices = design_voices(3, seed=1)  # doctest: +SKIP
    >>> [v.id for v in voices]  # doctest: +SKIP
    ['s1-v0000', 's1-v0001', 's1-v0002']
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ParameterError(f"The 'voices' parameter must be an int >= 1 (or a list of Voice). Got {n!r} instead.")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ParameterError(f"The 'seed' parameter of design_voices must be an int >= 0. Got {seed!r} instead.")
    design = design or VoiceDesign()
    _check_languages(design.languages)
    variants: tuple[str, ...] = ("", *voice_variants()) if design.variants is None else design.variants
    unknown = [v for v in variants if v and v not in voice_variants()]
    if unknown:
        raise ParameterError(
            f"Unknown espeak-ng voice variant(s) {unknown}; earmark.synth.voice_variants() lists them."
        )
    pairs = [(lang, var) for lang in design.languages for var in variants]
    order = np.random.default_rng([seed, 0x5EED]).permutation(len(pairs))
    voices = []
    for i in range(int(n)):
        language, variant = pairs[order[i % len(pairs)]]
        rng = np.random.default_rng([seed, i, 1])
        draw = {k: int(rng.integers(lo, hi + 1)) for k, (lo, hi) in (
            ("rate", design.rate), ("pitch", design.pitch), ("pitch_range", design.pitch_range), ("word_gap", design.word_gap),
        )}
        voices.append(Voice(id=f"s{seed}-v{i:04d}", language=language, variant=variant, **draw))
    return voices
