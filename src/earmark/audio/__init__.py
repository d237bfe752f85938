"""Audio decoding: the single boundary where bytes become float32 samples.

Example
-------
>>> from earmark.audio import load_audio
>>> y, sr = load_audio("../shared/data/fsdd/recordings/7_jackson_32.wav")  # doctest: +SKIP
"""

from earmark.audio._decode import (
    AUDIO_EXTENSIONS,
    SILENCE_PEAK,
    AudioInfo,
    audio_info,
    content_hash,
    file_digests,
    float_samples,
    is_audio_file,
    is_silent,
    load_audio,
    read_pcm16_wav,
    resample,
    resample_many,
    to_mono,
)

__all__ = [
    "AUDIO_EXTENSIONS",
    "SILENCE_PEAK",
    "AudioInfo",
    "audio_info",
    "content_hash",
    "file_digests",
    "float_samples",
    "is_audio_file",
    "is_silent",
    "load_audio",
    "read_pcm16_wav",
    "resample",
    "resample_many",
    "to_mono",
]
