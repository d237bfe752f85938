"""Decode any common audio file into float32 samples, or fail with a clear per-file error.

libsndfile (through ``soundfile``) is tried first: it is the fastest reader of WAV, FLAC, Ogg,
Opus and MP3. Whatever it cannot read goes to FFmpeg (through PyAV) automatically. Before either
decoder sees a file, its first bytes are checked against the signatures of known audio
containers, so bytes that are not audio (text, images, …) never reach native code, and decoding
is bounded in size (``max_bytes``) and, for the FFmpeg path, in time (``timeout``).
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO, Union

import numpy as np

from earmark.errors import AudioDecodeError, AudioRangeWarning, ParameterError

AudioSource = Union[str, "os.PathLike[str]", bytes, BinaryIO]

#: File extensions earmark treats as audio when it scans folders (lower case, with the dot).
AUDIO_EXTENSIONS = frozenset(
    {
        ".wav", ".wave", ".w64", ".rf64", ".bwf", ".flac", ".ogg", ".oga", ".opus", ".mp3",
        ".m4a", ".mp4", ".aac", ".aif", ".aiff", ".aifc", ".caf", ".au", ".snd", ".wma",
        ".webm", ".mka", ".amr", ".wv", ".ape",
    }
)

#: Default upper bound on the size of one input file (2 GiB).
DEFAULT_MAX_BYTES = 2 * 1024**3
#: Default upper bound on the wall-clock time of one FFmpeg decode, in seconds.
DEFAULT_TIMEOUT = 120.0
#: WAV files up to this size are read whole and, when plain 16-bit PCM, parsed without libsndfile.
_FAST_WAV_BYTES = 64 * 1024**2
#: Above this peak, float audio is scaled back into [-1, 1] with an AudioRangeWarning.
_RANGE_LIMIT = 1.0


@dataclass(frozen=True)
class AudioInfo:
    """What a file's header says about its audio.

    Attributes
    ----------
    path : str
    sample_rate : int
    channels : int
    frames : int
        Number of sample frames (per channel); an estimate for some compressed formats.
    duration : float
        ``frames / sample_rate`` in seconds.
    format : str
        Container as detected from the file's first bytes (``wav``, ``flac``, ``ogg``, ``mp3``…).
    """

    path: str
    sample_rate: int
    channels: int
    frames: int
    duration: float
    format: str


def is_audio_file(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` has an audio file extension (case-insensitive).

    Example
    -------
    >>> is_audio_file("UPPERCASE.WAV"), is_audio_file("notes.txt")
    (True, False)
    """
    return os.path.splitext(os.fspath(path))[1].lower() in AUDIO_EXTENSIONS


def _sniff(head: bytes) -> str | None:
    """Name the container of a file from its first bytes, or ``None`` when it is not audio."""
    if len(head) >= 12 and head[:4] in (b"RIFF", b"RIFX", b"RF64", b"BW64"):
        return "wav" if head[8:12] in (b"WAVE", b"AVI ") else None
    if head[:4] == b"riff":  # Sony Wave64 GUID starts with 'riff'
        return "w64"
    if head[:4] == b"fLaC":
        return "flac"
    if head[:4] == b"OggS":
        return "ogg"
    if head[:3] == b"ID3":
        return "mp3"
    if len(head) >= 8 and head[4:8] == b"ftyp":
        return "mp4"
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return "aiff"
    if head[:4] == b"caff":
        return "caf"
    if head[:4] == b".snd":
        return "au"
    if head[:4] == b"\x1aE\xdf\xa3":
        return "matroska"
    if head[:5] == b"#!AMR":
        return "amr"
    if head[:4] in (b"wvpk", b"MAC ", b"TTA1"):
        return "lossless"
    if head[:4] == b"0&\xb2u":
        return "asf"
    if len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0:
        # MPEG audio frame sync (mp3) or ADTS (aac): 11 set bits.
        return "aac" if (head[1] & 0x06) == 0 and (head[1] & 0xF0) == 0xF0 else "mp3"
    return None


def _name(source: AudioSource) -> str:
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return "<bytes>"
    return str(getattr(source, "name", "<stream>"))


def _open_checked(source: AudioSource, max_bytes: int) -> tuple[BinaryIO, str, str]:
    """Open ``source`` for reading after checking it is a readable, bounded, audio-looking file.

    Returns the open binary stream (positioned at 0), its display name and detected container.
    """
    name = _name(source)
    offset = 0  # where a passed stream stood: its audio starts there
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if not data:
            raise AudioDecodeError(name, "empty input (0 bytes)")
        if len(data) > max_bytes:
            raise AudioDecodeError(
                name, f"input is {len(data):,} bytes, above max_bytes={max_bytes:,}; raise max_bytes"
            )
        stream: BinaryIO = io.BytesIO(data)
    elif isinstance(source, (str, os.PathLike)):
        try:
            st = os.stat(name)  # follows links: a broken or looping link fails here
        except FileNotFoundError:
            if os.path.islink(name):
                raise AudioDecodeError(name, "broken symbolic link (its target does not exist)") from None
            raise AudioDecodeError(name, "no such file; check the path") from None
        except OSError as exc:  # ELOOP, ENAMETOOLONG, EACCES on a parent…
            raise AudioDecodeError(name, f"cannot be opened: {exc.strerror or exc}") from None
        if stat.S_ISDIR(st.st_mode):
            raise AudioDecodeError(name, "is a directory, not an audio file")
        if not stat.S_ISREG(st.st_mode):
            raise AudioDecodeError(name, "is not a regular file (device, socket or pipe)")
        if st.st_size == 0:
            raise AudioDecodeError(name, "empty file (0 bytes)")
        if st.st_size > max_bytes:
            raise AudioDecodeError(
                name, f"file is {st.st_size:,} bytes, above max_bytes={max_bytes:,}; raise max_bytes"
            )
        try:
            stream = open(name, "rb")  # noqa: SIM115 - returned to the caller, closed there
        except PermissionError:
            raise AudioDecodeError(name, "permission denied; check the file's read permission") from None
        except OSError as exc:
            raise AudioDecodeError(name, f"cannot be opened: {exc.strerror or exc}") from None
    else:
        if not callable(getattr(source, "read", None)):
            raise TypeError(
                f"Expected an audio file's path, its bytes or a binary file object, got "
                f"{type(source).__name__}; for a table or a list of files use earmark.extract or "
                "earmark.load_dataset."
            )
        stream = source
        try:
            if stream.seekable() and stream.tell() != 0:
                offset = stream.tell()
                # a stream part-way through (its start already read, e.g. a header): the audio is
                # what follows, so decode that, with every later seek relative to it
                rest = stream.read(max_bytes + 1)
                if len(rest) > max_bytes:
                    raise AudioDecodeError(
                        name, f"input is more than {max_bytes:,} bytes, above max_bytes={max_bytes:,}; raise max_bytes")
                stream = io.BytesIO(rest)
        except (OSError, AttributeError):
            pass
    try:
        head = stream.read(16)
        stream.seek(0)
    except OSError as exc:
        stream.close()
        raise AudioDecodeError(name, f"cannot be read: {exc.strerror or exc}") from None
    fmt = _sniff(head)
    if fmt is None:
        stream.close()
        shown = head[:8]
        kind = "text" if shown and all(32 <= b < 127 or b in (9, 10, 13) for b in shown) else "data"
        where = (f" from byte {offset:,}, where the stream stood when it was passed (seek(0) first to read it "
                 "whole)") if offset else ""
        raise AudioDecodeError(
            name, f"not a recognised audio format (starts with {kind} {shown!r}{where}); is it really audio?"
        )
    return stream, name, fmt


def _read_ffmpeg(
    stream: BinaryIO, name: str, max_frames: int | None, max_seconds_total: float, timeout: float
) -> tuple[np.ndarray, int]:
    import av

    deadline = time.monotonic() + timeout
    try:
        container = av.open(stream, mode="r", metadata_errors="ignore")
    except (av.FFmpegError, ValueError, OSError) as exc:
        raise AudioDecodeError(name, f"FFmpeg cannot open it ({_why(exc)})") from None
    with container:
        audio = [s for s in container.streams if s.type == "audio"]
        if not audio:
            raise AudioDecodeError(name, "contains no audio stream")
        st = audio[0]
        chunks: list[np.ndarray] = []
        n = 0
        rate = 0
        limit = max_frames
        try:
            for frame in container.decode(st):
                if time.monotonic() > deadline:
                    raise AudioDecodeError(name, f"decoding took longer than {timeout:g} s; giving up")
                rate = frame.sample_rate
                arr = frame.to_ndarray()
                fmt = frame.format
                if not fmt.is_planar:
                    arr = arr.reshape(-1, len(frame.layout.channels)).T
                arr = _to_float(arr)
                chunks.append(arr)
                n += arr.shape[1]
                if limit is None:
                    limit = int(max_seconds_total * rate)
                if n >= limit:
                    if max_frames is None:
                        raise AudioDecodeError(
                            name, f"longer than {max_seconds_total:g} s; pass max_seconds to read a part"
                        )
                    break
        except av.FFmpegError as exc:
            if not chunks:
                raise AudioDecodeError(name, f"FFmpeg cannot decode it ({_why(exc)}); the file is damaged or not audio") from None
            # a damaged tail: keep the frames that decoded, as libsndfile does
    if not chunks:
        raise AudioDecodeError(name, "decodes to zero samples")
    y = np.concatenate(chunks, axis=1)
    if max_frames is not None:
        y = y[:, :max_frames]
    return y, int(rate)


def _why(exc: BaseException) -> str:
    """The readable part of an FFmpeg/OS error (without errno numbers)."""
    return str(getattr(exc, "strerror", None) or exc)


def _to_float(arr: np.ndarray) -> np.ndarray:
    """Integer PCM → float32 in [-1, 1]; float passes through as float32."""
    if arr.dtype.kind == "f":
        return arr.astype(np.float32, copy=False)
    if arr.dtype == np.uint8:
        return (arr.astype(np.float32) - 128.0) / 128.0
    info = np.iinfo(arr.dtype)
    return arr.astype(np.float32) / float(-info.min)


def float_samples(y: Any) -> np.ndarray:
    """Samples as float32 in [-1, 1]: integer PCM (int8/16/32, uint8) is scaled by its full range,
    as decoders do; floats are passed through.

    Example
    -------
    >>> float_samples(np.array([16384, -32768], np.int16)).tolist()
    [0.5, -1.0]
    """
    a = np.asarray(y)
    if a.dtype.kind == "u":
        half = float(np.iinfo(a.dtype).max // 2 + 1)
        return ((a.astype(np.float64) - half) / half).astype(np.float32)
    if a.dtype.kind == "i":
        return (a.astype(np.float64) / -float(np.iinfo(a.dtype).min)).astype(np.float32)
    return a.astype(np.float32, copy=False)


def to_mono(y: np.ndarray, *, channels_first: bool | None = True) -> np.ndarray:
    """Average channels: ``(channels, samples)`` → ``(samples,)``; 1-D input is returned as is.

    ``channels_first=None`` takes arrays in either layout, as users hand them over: the shorter
    axis holds the channels (``soundfile.read`` gives ``(samples, channels)``, ``load_audio``
    with ``mono=False`` and librosa give ``(channels, samples)``).

    Example
    -------
    >>> import numpy as np
    >>> to_mono(np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)).tolist()
    [0.5, 0.5]
    >>> to_mono(np.ones((8000, 2), np.float32), channels_first=None).shape
    (8000,)
    """
    if y.ndim == 1:
        return y
    if y.ndim != 2:
        raise ParameterError(f"An audio array is 1-D (samples) or 2-D (channels and samples); got shape {y.shape}.")
    axis = 0
    if channels_first is False or (channels_first is None and y.shape[1] < y.shape[0]):
        axis = 1
    if y.shape[axis] == 1:
        return np.take(y, 0, axis=axis)
    return y.mean(axis=axis, dtype=np.float32)


def resample(y: np.ndarray, *, orig_sr: int, target_sr: int, quality: str = "HQ") -> np.ndarray:
    """Resample with soxr along the last axis (``(..., samples)``), returning float32.

    The output has ``ceil(n * target_sr / orig_sr)`` samples, as with ``librosa.load``.

    Example
    -------
    >>> import numpy as np
    >>> resample(np.zeros(8000, np.float32), orig_sr=8000, target_sr=16000).shape
    (16000,)
    """
    if orig_sr <= 0 or target_sr <= 0:
        raise ParameterError(f"Sample rates must be positive. Got orig_sr={orig_sr}, target_sr={target_sr}.")
    if orig_sr == target_sr:
        return np.ascontiguousarray(y, dtype=np.float32)
    import soxr

    n_out = int(np.ceil(y.shape[-1] * target_sr / orig_sr))  # librosa's length convention
    if y.ndim == 1:
        out = soxr.resample(y, orig_sr, target_sr, quality=quality).astype(np.float32, copy=False)
    else:
        flat = y.reshape(-1, y.shape[-1]).T  # soxr wants (frames, channels)
        out = soxr.resample(np.ascontiguousarray(flat), orig_sr, target_sr, quality=quality).T
        out = out.reshape(*y.shape[:-1], -1)
    if out.shape[-1] < n_out:
        out = np.concatenate([out, np.zeros((*out.shape[:-1], n_out - out.shape[-1]), out.dtype)], axis=-1)
    return np.ascontiguousarray(out[..., :n_out], dtype=np.float32)


def read_pcm16_wav(data: bytes | bytearray | memoryview, max_seconds: float | None = None
                   ) -> tuple[np.ndarray, int] | None:
    """The samples :func:`load_audio` decodes from a plain 16-bit PCM WAV held in memory, parsed
    with numpy (a fraction of libsndfile's per-file cost); ``None`` for anything else.

    Only the simplest layout is taken: ``RIFF``/``WAVE``, a ``fmt`` chunk of format 1 (PCM), 16
    bits, 1 to 8 channels, and a ``data`` chunk held whole. Returns ``(channels, frames)`` float32
    (``int16 / 32768``, as libsndfile's normalised float read) and the rate.

    Example
    -------
    >>> import io, wave
    >>> buf = io.BytesIO()
    >>> with wave.open(buf, "wb") as w:
    ...     w.setnchannels(1); w.setsampwidth(2); w.setframerate(8000); w.writeframes(b"\\x00\\x40" * 4)
    >>> y, sr = read_pcm16_wav(buf.getvalue())
    >>> y.tolist(), sr
    ([[0.5, 0.5, 0.5, 0.5]], 8000)
    """
    n = len(data)
    if n < 44 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None
    pos = 12
    fmt: tuple[int, int] | None = None
    while pos + 8 <= n:
        cid = bytes(data[pos:pos + 4])
        size = int.from_bytes(data[pos + 4:pos + 8], "little")
        body = pos + 8
        if cid == b"fmt ":
            if size < 16 or body + size > n or fmt is not None:
                return None
            tag = int.from_bytes(data[body:body + 2], "little")
            channels = int.from_bytes(data[body + 2:body + 4], "little")
            rate = int.from_bytes(data[body + 4:body + 8], "little")
            align = int.from_bytes(data[body + 12:body + 14], "little")
            bits = int.from_bytes(data[body + 14:body + 16], "little")
            if tag != 1 or bits != 16 or not 1 <= channels <= 8 or align != 2 * channels or rate <= 0:
                return None
            fmt = (channels, rate)
        elif cid == b"data":
            if fmt is None or size == 0 or body + size > n or size % (2 * fmt[0]):
                return None
            channels, rate = fmt
            frames = size // (2 * channels)
            if max_seconds is not None:
                frames = min(frames, max(1, int(round(max_seconds * rate))))  # at least one sample, as FFmpeg's path
            if frames == 0:
                return None
            pcm = np.frombuffer(data, dtype="<i2", count=frames * channels, offset=body)
            y = pcm.astype(np.float32) * np.float32(1 / 32768)
            y = y[None, :] if channels == 1 else np.ascontiguousarray(y.reshape(frames, channels).T)
            return y, rate
        pos = body + size + (size & 1)
    return None


def resample_many(clips: list[np.ndarray], *, orig_sr: int, target_sr: int, quality: str = "HQ",
                  group: int = 32) -> list[np.ndarray]:
    """:func:`resample` of many mono clips, sample for sample the same, in fewer soxr calls.

    Clips of similar length are zero-padded to a common length and resampled together as the
    channels of one signal (soxr filters each channel on its own; the padding only adds samples
    after each clip's end, which are cut off again). Each output has ``ceil(n * target_sr /
    orig_sr)`` samples, zeros after the ``int(n * ratio + 0.5)`` that soxr itself returns, as
    with one :func:`resample` call per clip.

    Example
    -------
    >>> import numpy as np
    >>> [len(z) for z in resample_many([np.ones(800, np.float32), np.ones(80, np.float32)],
    ...                                orig_sr=8000, target_sr=16000)]
    [1600, 160]
    """
    if orig_sr <= 0 or target_sr <= 0:
        raise ParameterError(f"Sample rates must be positive. Got orig_sr={orig_sr}, target_sr={target_sr}.")
    clips = [np.asarray(c, dtype=np.float32) for c in clips]
    if orig_sr == target_sr:
        return [np.ascontiguousarray(c) for c in clips]
    import soxr

    ratio = float(target_sr) / orig_sr
    out: list[np.ndarray] = [np.empty(0, np.float32)] * len(clips)
    order = np.argsort([len(c) for c in clips], kind="stable")
    for g in range(0, len(order), group):
        idx = order[g:g + group]
        if len(idx) == 1:
            i = int(idx[0])
            out[i] = resample(clips[i], orig_sr=orig_sr, target_sr=target_sr, quality=quality)
            continue
        n_max = max(len(clips[i]) for i in idx)
        buf = np.zeros((n_max, len(idx)), dtype=np.float32)  # (frames, channels) for soxr
        for c, i in enumerate(idx):
            buf[: len(clips[i]), c] = clips[i]
        res = soxr.resample(buf, orig_sr, target_sr, quality=quality)
        for c, i in enumerate(idx):
            n = len(clips[i])
            n_soxr = int(n * ratio + 0.5)  # what soxr returns for this clip alone
            n_out = int(np.ceil(n * float(target_sr) / orig_sr))
            z = np.zeros(n_out, dtype=np.float32)
            k = min(n_soxr, n_out, res.shape[0])
            z[:k] = res[:k, c]
            out[int(i)] = z
    return out


def _decode(
    source: AudioSource,
    *,
    max_seconds: float | None,
    max_bytes: int,
    timeout: float,
) -> tuple[np.ndarray, int, str]:
    """Decode to ``(channels, samples)`` float32 at the native rate; validates the samples."""
    if max_seconds is not None and not max_seconds > 0:
        raise ParameterError(f"The 'max_seconds' parameter must be a positive number or None. Got {max_seconds!r} instead.")
    stream, name, fmt = _open_checked(source, max_bytes)
    try:
        y = None
        sr = 0
        if fmt == "wav":  # plain 16-bit PCM: parsed here, the same samples as libsndfile gives
            if isinstance(source, (bytes, bytearray, memoryview)):
                fast = read_pcm16_wav(source, max_seconds)
            elif isinstance(source, (str, os.PathLike)) and os.fstat(stream.fileno()).st_size <= _FAST_WAV_BYTES:
                fast = read_pcm16_wav(stream.read(), max_seconds)
                stream.seek(0)
            else:
                fast = None
            if fast is not None:
                return fast[0], fast[1], name
        if fmt not in ("mp4", "aac", "matroska", "asf", "amr", "lossless"):
            try:
                import soundfile as sf

                # libsndfile reads a path natively, much faster than through Python callbacks
                with sf.SoundFile(_native(source, stream)) as f:
                    sr = int(f.samplerate)
                    max_frames = None if max_seconds is None else max(1, int(round(max_seconds * sr)))
                    y = f.read(frames=-1 if max_frames is None else max_frames,
                               dtype="float32", always_2d=True).T
            except Exception:  # libsndfile could not read it: FFmpeg gets its turn
                y = None
                stream.seek(0)
        if y is None:
            y, sr = _read_ffmpeg(
                stream,
                name,
                None if max_seconds is None else max(1, int(round(max_seconds * _probe_rate(stream)))),
                max_seconds_total=24 * 3600.0,
                timeout=timeout,
            )
    finally:
        if isinstance(source, (str, os.PathLike, bytes, bytearray, memoryview)):
            stream.close()
    if y.shape[1] == 0:
        raise AudioDecodeError(name, "decodes to zero samples (no audio frames)")
    if sr <= 0:
        raise AudioDecodeError(name, f"invalid sample rate {sr}")
    if not np.isfinite(y).all():
        bad = int((~np.isfinite(y)).sum())
        raise AudioDecodeError(name, f"holds {bad} non-finite samples (NaN or Inf); the file is corrupt")
    peak = float(np.abs(y).max())
    if peak > _RANGE_LIMIT:
        warnings.warn(
            f"{name}: float samples reach {peak:.3g}, outside [-1, 1]; scaled down by {peak:.3g}",
            AudioRangeWarning,
            stacklevel=3,
        )
        y = y / np.float32(peak)
    return np.ascontiguousarray(y, dtype=np.float32), sr, name


def _native(source: AudioSource, stream: BinaryIO) -> str | BinaryIO:
    """What to hand libsndfile: the path itself when we have one, else the open stream."""
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    return stream


def _probe_rate(stream: BinaryIO) -> int:
    """Sample rate of the first audio stream, for turning max_seconds into frames (FFmpeg path)."""
    import av

    pos = stream.tell()
    try:
        with av.open(stream, mode="r", metadata_errors="ignore") as c:
            for s in c.streams:
                if s.type == "audio" and s.codec_context.sample_rate:
                    return int(s.codec_context.sample_rate)
    except Exception:
        pass
    finally:
        stream.seek(pos)
    return 48000


def load_audio(
    path: AudioSource,
    sr: int | None = None,
    mono: bool = True,
    max_seconds: float | None = None,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    timeout: float = DEFAULT_TIMEOUT,
) -> tuple[np.ndarray, int]:
    """Decode an audio file into float32 samples in [-1, 1].

    Parameters
    ----------
    path : str, path-like, bytes or binary file object
        The audio: a file of any common format (WAV of any bit depth, FLAC, Ogg/Vorbis, Opus,
        MP3, M4A/AAC, AIFF…) or its bytes.
    sr : int or None
        Resample to this rate (soxr, high quality). ``None`` keeps the file's rate.
    mono : bool
        Mix all channels down to one.
    max_seconds : float or None
        Read at most this many seconds from the start (``None``: all of it).
    max_bytes : int
        Refuse inputs larger than this many bytes.
    timeout : float
        Give up an FFmpeg decode after this many seconds.

    Returns
    -------
    samples : np.ndarray, float32
        ``(samples,)`` when ``mono``, else ``(channels, samples)``.
    sample_rate : int

    Raises
    ------
    AudioDecodeError
        The file is missing, unreadable, not audio, empty, undecodable or holds NaN/Inf samples;
        the message names the file and the reason.

    Example
    -------
    >>> y, sr = load_audio("../shared/data/fsdd/recordings/7_jackson_32.wav", sr=16000)  # doctest: +SKIP
    >>> y.dtype, sr  # doctest: +SKIP
    (dtype('float32'), 16000)
    """
    if sr is not None and (not isinstance(sr, (int, np.integer)) or sr <= 0):
        raise ParameterError(f"The 'sr' parameter of load_audio must be a positive int or None. Got {sr!r} instead.")
    y, native, _ = _decode(path, max_seconds=max_seconds, max_bytes=max_bytes, timeout=timeout)
    if mono:
        y = to_mono(y)
    if sr is not None and sr != native:
        y = resample(y, orig_sr=native, target_sr=int(sr))
        native = int(sr)
    return y, native


def audio_info(path: str | os.PathLike[str], *, max_bytes: int = DEFAULT_MAX_BYTES) -> AudioInfo:
    """Read a file's header (rate, channels, length) without decoding all of it.

    Raises :class:`AudioDecodeError` for the same files :func:`load_audio` refuses up front
    (missing, not audio, empty); a file whose header reads may still fail to decode.

    Example
    -------
    >>> audio_info("../shared/data/fsdd/recordings/7_jackson_32.wav").sample_rate  # doctest: +SKIP
    8000
    """
    stream, name, fmt = _open_checked(path, max_bytes)
    try:
        if fmt not in ("mp4", "aac", "matroska", "asf", "amr", "lossless"):
            try:
                import soundfile as sf

                with sf.SoundFile(_native(path, stream)) as f:
                    frames = int(f.frames)
                    return AudioInfo(name, int(f.samplerate), int(f.channels), frames,
                                     frames / float(f.samplerate), fmt)
            except Exception:
                stream.seek(0)
        import av

        try:
            with av.open(stream, mode="r", metadata_errors="ignore") as c:
                audio = [s for s in c.streams if s.type == "audio"]
                if not audio:
                    raise AudioDecodeError(name, "contains no audio stream")
                s = audio[0]
                rate = int(s.codec_context.sample_rate or 0)
                if rate <= 0:
                    raise AudioDecodeError(name, "audio stream has no sample rate")
                if s.duration is not None and s.time_base is not None:
                    seconds = float(s.duration * s.time_base)
                elif c.duration is not None:
                    seconds = c.duration / 1_000_000
                else:
                    seconds = 0.0
                return AudioInfo(name, rate, int(s.codec_context.channels or 1),
                                 int(round(seconds * rate)), seconds, fmt)
        except av.FFmpegError as exc:
            raise AudioDecodeError(name, f"FFmpeg cannot open it ({_why(exc)})") from None
    finally:
        stream.close()


def content_hash(path: AudioSource) -> str:
    """Hash of the decoded samples (all channels, native rate): equal audio gives equal hashes
    whatever the container, name or metadata.

    Example
    -------
    >>> content_hash("../shared/data/fsdd/recordings/7_jackson_32.wav")[:8]  # doctest: +SKIP
    'ee41f16f'
    """
    y, sr, _ = _decode(path, max_seconds=None, max_bytes=DEFAULT_MAX_BYTES, timeout=DEFAULT_TIMEOUT)
    return hash_samples(y, sr)


def file_digests(paths: Sequence[str | os.PathLike[str]]) -> np.ndarray:
    """A 64-bit digest of each file's bytes (``0`` where it cannot be read): a cheap fingerprint
    for "is this the very file?" checks (a model's training files against its test files).

    Example
    -------
    >>> file_digests(["../shared/data/fsdd/recordings/7_jackson_32.wav"]).dtype  # doctest: +SKIP
    dtype('uint64')
    """
    out = np.zeros(len(paths), dtype=np.uint64)
    for i, path in enumerate(paths):
        h = hashlib.blake2b(digest_size=8)
        try:
            with open(path, "rb") as f:
                for block in iter(lambda f=f: f.read(1 << 20), b""):
                    h.update(block)
        except OSError:
            continue
        out[i] = max(1, int.from_bytes(h.digest(), "little"))
    return out


def hash_samples(y: np.ndarray, sr: int) -> str:
    """Hash an array of samples with its rate (helper of :func:`content_hash`)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{sr}:{y.shape}".encode())
    h.update(np.ascontiguousarray(y, dtype=np.float32).tobytes())
    return h.hexdigest()


#: Peak level below which a clip counts as digital silence: under half the smallest step of 16-bit audio.
SILENCE_PEAK = 0.5 / 32768


def is_silent(y: np.ndarray) -> bool:
    """Whether a clip holds no sound at all (every sample below :data:`SILENCE_PEAK`).

    Example
    -------
    >>> is_silent(np.zeros(8000, np.float32)), is_silent(np.full(10, 0.01, np.float32))
    (True, False)
    """
    return y.size == 0 or float(np.max(np.abs(y))) < SILENCE_PEAK
