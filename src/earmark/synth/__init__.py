"""Synthetic speakers: render any vocabulary in many espeak-ng voices, as a dataset.

Each word is spoken by N distinct synthetic voices (accent, voice variant, rate, pitch, pitch range
and word gap drawn from a seed), post-processed like a recording and written as WAV files with a
``manifest.csv`` whose ``group`` column names the voice. Mixed into training only, such voices teach
a model the word rather than the speaker.

Licence: the speech engine, espeak-ng, is GPL-3.0-or-later. It is an optional extra loaded at run
time from the ``espeakng-loader`` wheel (``pip install earmark[synth]``); earmark does not contain it.

Example
-------
>>> from earmark.synth import synthesize
>>> df = synthesize(["yes", "no"], voices=4, out="synthetic", seed=0)  # doctest: +SKIP
>>> df.groupby("label").size().tolist()  # doctest: +SKIP
[4, 4]
"""

from earmark.synth._engine import (
    ESPEAK_LICENSE,
    SynthUnavailableError,
    espeak_version,
    languages,
    render_speech,
    voice_variants,
)
from earmark.synth._post import (
    PostProcessing,
    add_noise,
    add_reverb,
    pad,
    postprocess,
    set_peak,
    trim_silence,
)
from earmark.synth._synthesize import MANIFEST_COLUMNS, parse_text_map, synthesize
from earmark.synth._voices import ENGLISH_LANGUAGES, Voice, VoiceDesign, design_voices, list_voices

__all__ = [
    "ENGLISH_LANGUAGES",
    "ESPEAK_LICENSE",
    "MANIFEST_COLUMNS",
    "PostProcessing",
    "SynthUnavailableError",
    "Voice",
    "VoiceDesign",
    "add_noise",
    "add_reverb",
    "design_voices",
    "espeak_version",
    "languages",
    "list_voices",
    "pad",
    "parse_text_map",
    "postprocess",
    "render_speech",
    "set_peak",
    "synthesize",
    "trim_silence",
    "voice_variants",
]
