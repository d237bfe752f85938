"""A thin ctypes binding to the espeak-ng C library shipped by the ``espeakng-loader`` wheel.

espeak-ng is GPL-3.0-or-later software by Jonathan Duddington, Reece H. Dunn and contributors. It is
loaded at run time from the optional ``espeakng-loader`` package (``pip install earmark[synth]``);
earmark itself does not contain or link it.

The library keeps its synthesiser state in C globals (pitch phase, resonator memories …) that
``espeak_Terminate`` does not reset, so two renderings of the same word in one process differ by a
few samples. To make every clip a pure function of its inputs, :func:`render_speech` loads a fresh
instance of the library for each clip and unloads it afterwards (about 5 ms a clip). The C library
is not thread-safe: calls are serialised by a lock, and parallel rendering needs worker processes.
"""

from __future__ import annotations

import contextlib
import ctypes
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from earmark.errors import EarmarkError, ParameterError

__all__ = [
    "ESPEAK_LICENSE",
    "SynthUnavailableError",
    "espeak_paths",
    "espeak_version",
    "languages",
    "render_speech",
    "voice_variants",
]

#: Licence of the speech engine behind :mod:`earmark.synth`.
ESPEAK_LICENSE = "espeak-ng is GPL-3.0-or-later (https://github.com/espeak-ng/espeak-ng)"

# espeak_AUDIO_OUTPUT, espeak_PARAMETER, flags and option values from speak_lib.h.
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_PARAM = {"rate": 1, "volume": 2, "pitch": 3, "range": 4, "wordgap": 7}
_EE_OK = 0

_LOCK = threading.Lock()
_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


class SynthUnavailableError(EarmarkError, ImportError):
    """The optional speech engine (``espeakng-loader``) is missing or cannot be loaded."""


@dataclass(frozen=True)
class _Paths:
    library: str
    data: str


@lru_cache(maxsize=1)
def espeak_paths() -> _Paths:
    """Locate the espeak-ng shared library and its data folder inside ``espeakng-loader``.

    Returns
    -------
    paths
        ``paths.library`` (the shared library) and ``paths.data`` (``espeak-ng-data``).

    Raises
    ------
    SynthUnavailableError
        When ``espeakng-loader`` is not installed or is incomplete.

    Example
    -------
    >>> espeak_paths().data.endswith("espeak-ng-data")  # doctest: +SKIP
    True
    """
    try:
        import espeakng_loader
    except ImportError:
        raise SynthUnavailableError(
            "earmark.synth needs the espeak-ng speech engine from the optional 'espeakng-loader' "
            "package; install it with `pip install earmark[synth]` (espeak-ng is GPL-3.0-or-later)."
        ) from None
    try:
        library = str(espeakng_loader.get_library_path())
        data = str(espeakng_loader.get_data_path())
    except Exception as exc:  # the loader raises RuntimeError for a missing data folder
        raise SynthUnavailableError(
            f"espeakng-loader is installed but incomplete ({exc}); reinstall it with "
            "`pip install --force-reinstall espeakng-loader`."
        ) from None
    if not Path(library).is_file():
        raise SynthUnavailableError(
            f"espeakng-loader does not ship a library for this platform ({library} is missing); "
            "reinstall it with `pip install --force-reinstall espeakng-loader`."
        )
    return _Paths(library=library, data=data)


def _load() -> ctypes.CDLL:
    paths = espeak_paths()
    try:
        lib = ctypes.CDLL(paths.library)
    except OSError as exc:
        raise SynthUnavailableError(f"{paths.library}: cannot load the espeak-ng library ({exc})") from None
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_Initialize.restype = ctypes.c_int
    lib.espeak_SetSynthCallback.argtypes = [_CALLBACK]
    lib.espeak_SetSynthCallback.restype = None
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetVoiceByName.restype = ctypes.c_int
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_SetParameter.restype = ctypes.c_int
    lib.espeak_Synth.argtypes = [
        ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
        ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
    ]
    lib.espeak_Synth.restype = ctypes.c_int
    lib.espeak_Synchronize.restype = ctypes.c_int
    lib.espeak_Terminate.restype = ctypes.c_int
    lib.espeak_Info.argtypes = [ctypes.c_void_p]
    lib.espeak_Info.restype = ctypes.c_char_p
    lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
    return lib


def _unload(lib: ctypes.CDLL) -> None:
    import _ctypes

    _ctypes.dlclose(lib._handle)


def _with_fresh_library(fn: Callable[[ctypes.CDLL], object]) -> object:
    with _LOCK:
        lib = _load()
        try:
            return fn(lib)
        finally:
            _unload(lib)


@lru_cache(maxsize=1)
def espeak_version() -> str:
    """Version string of the loaded espeak-ng library, e.g. ``'1.52.0'``.

    Example
    -------
    >>> espeak_version()  # doctest: +SKIP
    '1.52.0'
    """
    return str(_with_fresh_library(lambda lib: lib.espeak_Info(None).decode()))


@lru_cache(maxsize=1)
def languages() -> tuple[str, ...]:
    """Language identifiers espeak-ng can speak (``'en-us'``, ``'en-gb-scotland'``, ``'de'`` …), sorted.

    Example
    -------
    >>> "en-gb-scotland" in languages()  # doctest: +SKIP
    True
    """
    folder = Path(espeak_paths().data) / "lang"
    if not folder.is_dir():
        raise SynthUnavailableError(f"{folder}: espeak-ng's language folder is missing; reinstall espeakng-loader")
    return tuple(sorted({p.name.lower() for p in folder.rglob("*") if p.is_file()}))


@lru_cache(maxsize=1)
def voice_variants() -> tuple[str, ...]:
    """Names of espeak-ng's voice variants (files of ``espeak-ng-data/voices/!v``), sorted.

    Names with spaces are left out: they cannot be written as ``language+variant``.

    Example
    -------
    >>> "m3" in voice_variants()  # doctest: +SKIP
    True
    """
    folder = Path(espeak_paths().data) / "voices" / "!v"
    if not folder.is_dir():
        raise SynthUnavailableError(f"{folder}: espeak-ng's voice variants folder is missing; reinstall espeakng-loader")
    return tuple(sorted(p.name for p in folder.iterdir() if p.is_file() and " " not in p.name))


def render_speech(
    text: str,
    *,
    voice: str,
    rate: int = 175,
    pitch: int = 50,
    pitch_range: int = 50,
    word_gap: int = 0,
    seed: int = 0,
) -> tuple[np.ndarray, int]:
    """Speak ``text`` with espeak-ng and return the raw samples, identical for identical inputs.

    Parameters
    ----------
    text : str
        What to say (UTF-8; digits and abbreviations are read out by espeak-ng's rules).
    voice : str
        espeak-ng voice name, ``language`` or ``language+variant`` (``'en-us+m3'``).
    rate : int
        Speaking rate in words per minute, 80–450.
    pitch, pitch_range : int
        Base pitch and pitch range on espeak-ng's 0–99 scale.
    word_gap : int
        Extra pause between words, in units of 10 ms.
    seed : int
        Seed of espeak-ng's internal random generator (breath and noise sources).

    Returns
    -------
    samples : numpy.ndarray
        ``(samples,)`` int16 at the engine's rate (22,050 Hz).
    sample_rate : int

    Raises
    ------
    ParameterError
        For an unknown voice or a parameter out of range.
    SynthUnavailableError
        When espeak-ng cannot be loaded.

    Example
    -------
    >>> y, sr = render_speech("seven", voice="en-us+m3")  # doctest: +SKIP
    >>> sr, y.dtype  # doctest: +SKIP
    (22050, dtype('int16'))
    """
    if not text or not text.strip():
        raise ParameterError(f"The 'text' parameter of render_speech must be a non-empty string. Got {text!r} instead.")
    for name, value, lo, hi in (
        ("rate", rate, 80, 450), ("pitch", pitch, 0, 99), ("pitch_range", pitch_range, 0, 99),
        ("word_gap", word_gap, 0, 100),
    ):
        if not isinstance(value, (int, np.integer)) or not lo <= value <= hi:
            raise ParameterError(
                f"The '{name}' parameter of render_speech must be an int in [{lo}, {hi}]. Got {value!r} instead."
            )
    language, _, variant = voice.partition("+")
    if variant and variant not in voice_variants():
        raise ParameterError(
            f"The voice {voice!r} names an unknown espeak-ng variant {variant!r}; "
            "pick one of earmark.synth.voice_variants()."
        )
    encoded = text.encode("utf-8")

    def run(lib: ctypes.CDLL) -> tuple[np.ndarray, int]:
        sr = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, espeak_paths().data.encode(), _INITIALIZE_DONT_EXIT)
        if sr <= 0:
            raise SynthUnavailableError(f"{espeak_paths().data}: espeak-ng failed to initialise from this data folder")
        chunks: list[np.ndarray] = []

        def collect(wav, n, _events) -> int:
            if wav and n > 0:
                chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
            return 0

        callback = _CALLBACK(collect)  # kept alive until the library is unloaded
        try:
            lib.espeak_SetSynthCallback(callback)
            if lib.espeak_SetVoiceByName(voice.encode()) != _EE_OK:
                raise ParameterError(
                    f"espeak-ng has no voice {language!r} (from {voice!r}); pick a language of "
                    "earmark.synth.languages() such as 'en-us'."
                )
            for key, value in (("rate", rate), ("pitch", pitch), ("range", pitch_range), ("wordgap", word_gap)):
                lib.espeak_SetParameter(_PARAM[key], int(value), 0)
            _libc_srand(seed)
            lib.espeak_ng_SetRandSeed(int(seed) & 0x7FFFFFFF)
            status = lib.espeak_Synth(encoded, len(encoded) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
            if status != _EE_OK:
                raise EarmarkError(f"espeak-ng failed to speak {text!r} with voice {voice!r} (status {status})")
            lib.espeak_Synchronize()
        finally:
            lib.espeak_Terminate()
        samples = np.concatenate(chunks) if chunks else np.zeros(0, np.int16)
        return samples, int(sr)

    return _with_fresh_library(run)  # type: ignore[return-value]


def _libc_srand(seed: int) -> None:
    # Some espeak-ng builds draw noise from libc's rand(); seed it too so clips do not depend on history.
    with contextlib.suppress(OSError, AttributeError):  # platforms without a global libc
        ctypes.CDLL(None).srand(ctypes.c_uint(int(seed) & 0xFFFFFFFF))
