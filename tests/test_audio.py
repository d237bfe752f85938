"""Decoding: every format and sample type, resampling, mix-down, and per-file errors."""

from __future__ import annotations

import csv
import io
import os
import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from earmark import AudioDecodeError, EarmarkError, load_audio
from earmark.audio import audio_info, content_hash, is_audio_file, resample, to_mono
from earmark.errors import AudioRangeWarning, ParameterError


def _bad_audio_rows():
    from conftest import SHARED

    manifest = SHARED / "bad-audio" / "manifest.csv"
    if not manifest.exists():
        return []
    with open(manifest, encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def digit(shared: Path) -> tuple[np.ndarray, int, Path]:
    path = shared / "fsdd" / "recordings" / "7_jackson_32.wav"
    y, sr = sf.read(path, dtype="float32")
    return y, sr, path


@pytest.mark.parametrize("row", _bad_audio_rows(), ids=lambda r: r["case"])
def test_bad_audio_manifest(shared: Path, row: dict[str, str]) -> None:
    path = shared / "bad-audio" / row["file"]
    if row["expected"] == "ok":
        y, sr = load_audio(path)
        assert y.dtype == np.float32 and y.ndim == 1 and y.size > 0 and sr > 0
        assert np.isfinite(y).all() and np.abs(y).max() <= 1.0
    else:
        assert row["expected"] == "error"
        with pytest.raises(AudioDecodeError) as info:
            load_audio(path)
        assert row["file"] in str(info.value) and info.value.reason


def test_bad_audio_manifest_is_complete(shared: Path) -> None:
    rows = _bad_audio_rows()
    assert len(rows) == 17 and {r["expected"] for r in rows} == {"ok", "error"}


def test_truncated_wav_keeps_the_frames_present(shared: Path) -> None:
    y, sr = load_audio(shared / "bad-audio" / "truncated_data.wav")
    assert y.size == 14790 // 2  # 16-bit mono: the bytes present, not the header's claim
    assert sr == 16000


def test_multichannel_mixdown_and_keep(shared: Path) -> None:
    path = shared / "bad-audio" / "six_channels_48k.wav"
    multi, sr = load_audio(path, mono=False)
    assert multi.shape[0] == 6 and sr == 48000
    mono, _ = load_audio(path)
    np.testing.assert_allclose(mono, multi.mean(axis=0), atol=1e-6)


@pytest.mark.parametrize(
    ("subtype", "tol"),
    [("PCM_U8", 1 / 64), ("PCM_16", 1e-4), ("PCM_24", 1e-4), ("PCM_32", 1e-4), ("FLOAT", 1e-6), ("DOUBLE", 1e-6)],
)
def test_wav_bit_depths(tmp_path: Path, digit, subtype: str, tol: float) -> None:
    y, sr, _ = digit
    path = tmp_path / f"clip_{subtype}.wav"
    sf.write(path, y, sr, subtype=subtype)
    out, out_sr = load_audio(path)
    assert out_sr == sr and out.dtype == np.float32
    np.testing.assert_allclose(out, y, atol=tol)


@pytest.mark.parametrize(
    ("fmt", "subtype", "ext"),
    [("FLAC", "PCM_16", "flac"), ("OGG", "VORBIS", "ogg"), ("OGG", "OPUS", "opus"), ("MP3", "MPEG_LAYER_III", "mp3")],
)
def test_compressed_formats(tmp_path: Path, digit, fmt: str, subtype: str, ext: str) -> None:
    y, sr, _ = digit
    y16 = resample(y, orig_sr=sr, target_sr=16000)  # opus and mp3 encoders want common rates
    path = tmp_path / f"clip.{ext}"
    sf.write(path, y16, 16000, format=fmt, subtype=subtype)
    out, out_sr = load_audio(path, sr=16000)
    assert out_sr == 16000 and out.size > 0.8 * y16.size
    n = min(out.size, y16.size)
    # lossy codecs delay and colour the signal: compare energy envelopes, not samples
    env = lambda a: np.convolve(np.abs(a[:n]), np.ones(400) / 400, mode="same")  # noqa: E731
    shift = int(np.argmax(np.correlate(env(out), env(y16), mode="full"))) - (n - 1)
    a, b = env(out), env(y16)
    a, b = (a[shift:], b[: n - shift]) if shift >= 0 else (a[: n + shift], b[-shift:])
    assert np.corrcoef(a, b)[0, 1] > 0.9


def _write_m4a(path: Path, y: np.ndarray, sr: int) -> None:
    import av

    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("aac", rate=sr)
        stream.layout = "mono"
        frame_size = 1024
        pcm = (np.clip(y, -1, 1) * 32767).astype(np.int16)
        for start in range(0, pcm.size, frame_size):
            chunk = pcm[start : start + frame_size][None, :]
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="s16", layout="mono")
            frame.sample_rate = sr
            frame.pts = start
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


def test_m4a_goes_through_ffmpeg(tmp_path: Path, digit) -> None:
    y, sr, _ = digit
    y16 = resample(y, orig_sr=sr, target_sr=16000)
    path = tmp_path / "clip.m4a"
    _write_m4a(path, y16, 16000)
    with pytest.raises(sf.LibsndfileError):
        sf.info(path)  # libsndfile cannot: the fallback must take it
    out, out_sr = load_audio(path)
    assert out_sr == 16000 and abs(out.size - y16.size) < 4096
    assert 0.3 < np.sqrt(np.mean(out**2)) / np.sqrt(np.mean(y16**2)) < 3.0
    info = audio_info(path)
    assert info.sample_rate == 16000 and info.format == "mp4" and 0.5 < info.duration / (y16.size / 16000) < 1.5


def test_resampling_with_soxr(digit) -> None:
    y, sr, path = digit
    out, out_sr = load_audio(path, sr=22050)
    assert out_sr == 22050
    assert abs(out.size - round(y.size * 22050 / sr)) <= 1
    # a 440 Hz tone keeps its frequency through resampling
    t = np.arange(8000) / 8000.0
    tone = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    up = resample(tone, orig_sr=8000, target_sr=16000)
    spec = np.abs(np.fft.rfft(up))
    assert abs(np.argmax(spec) * 16000 / up.size - 440) < 2


def test_max_seconds_limits_length(shared: Path) -> None:
    y, sr = load_audio(shared / "bad-audio" / "silence_10min.flac", max_seconds=2.0)
    assert y.size == 2 * sr


def test_float_far_out_of_range_is_scaled_with_warning(tmp_path: Path) -> None:
    path = tmp_path / "loud.wav"
    sf.write(path, np.array([0.0, 40.0, -20.0, 10.0], dtype=np.float32), 8000, subtype="FLOAT")
    with pytest.warns(AudioRangeWarning, match="loud.wav"):
        y, _ = load_audio(path)
    assert np.abs(y).max() == pytest.approx(1.0)
    np.testing.assert_allclose(y, [0.0, 1.0, -0.5, 0.25])


def test_in_range_audio_gives_no_warning(digit) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_audio(digit[2])


@pytest.mark.parametrize("case", ["missing", "directory", "broken_link", "looping_link", "not_audio"])
def test_unreadable_paths_name_the_file(tmp_path: Path, case: str) -> None:
    target = tmp_path / f"{case}.wav"
    if case == "directory":
        target.mkdir()
    elif case == "broken_link":
        target.symlink_to(tmp_path / "nowhere.wav")
    elif case == "looping_link":
        other = tmp_path / "other.wav"
        target.symlink_to(other)
        other.symlink_to(target)
    elif case == "not_audio":
        target.write_bytes(os.urandom(4096))
    with pytest.raises(AudioDecodeError) as info:
        load_audio(target)
    assert str(target) in str(info.value)
    assert isinstance(info.value, ValueError) and isinstance(info.value, EarmarkError)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_no_permission(tmp_path: Path, digit) -> None:
    path = tmp_path / "locked.wav"
    path.write_bytes(digit[2].read_bytes())
    path.chmod(0)
    with pytest.raises(AudioDecodeError, match="permission"):
        load_audio(path)


def test_garbage_after_a_valid_header_is_an_error_not_a_crash(tmp_path: Path, digit) -> None:
    data = digit[2].read_bytes()
    path = tmp_path / "garbled.flac"
    path.write_bytes(b"fLaC" + os.urandom(len(data)))
    with pytest.raises(AudioDecodeError, match="garbled.flac"):
        load_audio(path)


def test_size_limit(digit) -> None:
    with pytest.raises(AudioDecodeError, match="max_bytes"):
        load_audio(digit[2], max_bytes=100)


def test_bytes_and_file_objects(digit) -> None:
    y, sr, path = digit
    data = path.read_bytes()
    from_bytes, sr1 = load_audio(data)
    from_file, sr2 = load_audio(io.BytesIO(data))
    np.testing.assert_allclose(from_bytes, y, atol=1e-6)
    np.testing.assert_allclose(from_file, y, atol=1e-6)
    assert sr1 == sr2 == sr
    with pytest.raises(AudioDecodeError, match="empty"):
        load_audio(b"")


def test_parameters_are_validated(digit) -> None:
    with pytest.raises(ParameterError, match="'sr'"):
        load_audio(digit[2], sr=0)
    with pytest.raises(ParameterError, match="max_seconds"):
        load_audio(digit[2], max_seconds=-1)


def test_error_pickles_for_process_pools() -> None:
    err = pickle.loads(pickle.dumps(AudioDecodeError("a.wav", "broken")))
    assert err.path == "a.wav" and err.reason == "broken" and str(err) == "a.wav: broken"


def test_content_hash_ignores_container(tmp_path: Path, digit) -> None:
    y, sr, path = digit
    flac = tmp_path / "same.flac"
    sf.write(flac, y, sr, subtype="PCM_16")
    assert content_hash(flac) == content_hash(path)
    other = tmp_path / "other.wav"
    sf.write(other, y * 0.5, sr, subtype="PCM_16")
    assert content_hash(other) != content_hash(path)


def test_helpers() -> None:
    assert is_audio_file("A.WAV") and is_audio_file("x.opus") and not is_audio_file("x.csv")
    stereo = np.stack([np.ones(4, np.float32), -np.ones(4, np.float32)])
    np.testing.assert_array_equal(to_mono(stereo), np.zeros(4, np.float32))


def test_resampled_audio_equals_librosa_load(shared: Path) -> None:
    import librosa

    for path in sorted((shared / "fsdd" / "recordings").glob("3_*_7.wav")):
        ours, sr = load_audio(path, sr=22050)
        ref, _ = librosa.load(path, sr=22050)  # soxr_hq, like ours
        assert sr == 22050 and ours.shape == ref.shape
        np.testing.assert_allclose(ours, ref, atol=1e-6)


def test_pcm16_wav_fast_path_equals_libsndfile(shared: Path, tmp_path: Path) -> None:
    """Plain 16-bit PCM WAVs are parsed with numpy; the samples are libsndfile's, bit for bit."""
    from earmark.audio import read_pcm16_wav

    for path in sorted((shared / "fsdd" / "recordings").glob("*.wav"))[::50]:
        ref = sf.read(path, dtype="float32", always_2d=True)[0].T
        data = path.read_bytes()
        fast = read_pcm16_wav(data)
        assert fast is not None and fast[1] == 8000
        np.testing.assert_array_equal(fast[0], ref)
        np.testing.assert_array_equal(load_audio(path)[0], ref[0])
        np.testing.assert_array_equal(load_audio(data)[0], ref[0])
        np.testing.assert_array_equal(load_audio(path, max_seconds=0.1)[0], ref[0, :800])
    rng = np.random.default_rng(0)
    stereo = (rng.random((1001, 2)) * 2 - 1).astype(np.float32)
    for subtype, fast_path in (("PCM_16", True), ("PCM_24", False), ("FLOAT", False)):
        p = tmp_path / f"{subtype}.wav"
        sf.write(p, stereo, 16000, subtype=subtype)
        ref = sf.read(p, dtype="float32", always_2d=True)[0].T
        assert (read_pcm16_wav(p.read_bytes()) is not None) == fast_path
        np.testing.assert_array_equal(load_audio(p, mono=False)[0], ref)
        np.testing.assert_array_equal(load_audio(p)[0], to_mono(np.ascontiguousarray(ref)))
    # a data chunk longer than the file (truncated): left to libsndfile
    data = (tmp_path / "PCM_16.wav").read_bytes()
    assert read_pcm16_wav(data[:-10]) is None
    np.testing.assert_array_equal(load_audio(data[:-10], mono=False)[0],
                                  sf.read(io.BytesIO(data[:-10]), dtype="float32", always_2d=True)[0].T)


def test_resample_many_equals_one_by_one() -> None:
    from earmark.audio import resample_many

    rng = np.random.default_rng(1)
    clips = [rng.standard_normal(n).astype(np.float32) for n in (1, 2, 3, 17, 400, 401, 5000, 8000, 12345)]
    for orig, target in ((8000, 16000), (8000, 22050), (2, 1), (44100, 16000), (16000, 16000)):
        many = resample_many(clips, orig_sr=orig, target_sr=target, group=4)
        for c, z in zip(clips, many):
            np.testing.assert_array_equal(z, resample(c, orig_sr=orig, target_sr=target))


def test_a_stream_is_read_from_where_it_stands(shared: Path) -> None:
    """A stream whose start was already read (a container's own header) decodes what follows; a
    stream part-way into a file says where it was read from, not just 'not audio'."""
    note = shared / "instruments" / "fluidr3" / "piano" / "piano-p002-000.flac"
    data = note.read_bytes()
    whole, sr = load_audio(note)
    framed = io.BytesIO(b"MYHEADER" + data)
    framed.read(8)
    got, sr2 = load_audio(framed)
    assert sr2 == sr and np.array_equal(got, whole)
    with open(note, "rb") as f:
        f.read(100)
        with pytest.raises(AudioDecodeError, match="from byte 100, where the stream stood.*seek\\(0\\)"):
            load_audio(f)


def test_a_tiny_max_seconds_gives_one_sample_not_a_blame_on_the_file(shared: Path) -> None:
    clip = shared / "fsdd" / "recordings" / "0_george_0.wav"
    for source in (clip, clip.read_bytes()):
        y, sr = load_audio(source, max_seconds=1e-5)
        assert y.shape == (1,) and sr == 8000
    y, _ = load_audio(shared / "instruments" / "fluidr3" / "piano" / "piano-p002-000.flac", max_seconds=1e-6)
    assert y.shape == (1,)
