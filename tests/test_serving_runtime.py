"""What makes the service fast: micro-batching of concurrent requests, ONNX Runtime, thread settings."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from _serving_model import FSDD, fsdd_mlp, fsdd_model
from earmark.errors import ParameterError
from earmark.serving import Predictor, ServeSettings, create_app
from earmark.serving.app import _MicroBatcher

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient

CLIPS = ["7_jackson_40.wav", "3_theo_12.wav", "0_george_5.wav", "9_theo_3.wav"]


def test_batcher_groups_what_queued_and_answers_each_item():
    sizes = []
    gate = threading.Event()

    def run(items):
        gate.wait(5)  # the first batch runs while the others queue
        sizes.append(len(items))
        return [ValueError(f"bad {x}") if x == 5 else x * 10 for x in items]

    async def main():
        batcher = _MicroBatcher(run, size=4)
        tasks = [asyncio.ensure_future(batcher.submit(0))]
        await asyncio.sleep(0.05)  # an idle batcher runs the first item at once, alone …
        tasks += [asyncio.ensure_future(batcher.submit(i)) for i in range(1, 10)]
        await asyncio.sleep(0.05)  # … and the items queued meanwhile go in batches of at most 4
        gate.set()
        return await asyncio.gather(*tasks, return_exceptions=True)

    results = asyncio.run(main())
    assert [r for i, r in enumerate(results) if i != 5] == [i * 10 for i in range(10) if i != 5]
    assert isinstance(results[5], ValueError) and str(results[5]) == "bad 5"
    assert sizes == [1, 4, 4, 1]


def test_batcher_hands_a_failed_batch_to_every_request():
    def run(items):
        raise RuntimeError("model broke")

    async def main():
        batcher = _MicroBatcher(run, size=8)
        return await asyncio.gather(*(batcher.submit(i) for i in range(3)), return_exceptions=True)

    assert all(isinstance(r, RuntimeError) for r in asyncio.run(main()))


@pytest.mark.parametrize("micro_batch", [1, 32])
def test_concurrent_requests_each_get_their_own_answer(micro_batch):
    model = fsdd_model()
    alone = Predictor(model)  # one clip at a time, no service
    clips = [(FSDD / "recordings" / name).read_bytes() for name in CLIPS]
    expected = {body: alone.predict_bytes(body).probabilities for body in clips}
    assert len({max(p, key=p.get) for p in expected.values()}) == len(CLIPS)  # a mix-up would show
    bodies = clips * 6
    bodies.insert(7, b"not audio at all")
    bodies.insert(13, b"")
    app = create_app(model, ServeSettings(micro_batch=micro_batch))
    with TestClient(app) as client, ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda body: client.post("/predict", content=body), bodies))
    for body, r in zip(bodies, answers, strict=True):
        if body not in expected:
            assert r.status_code in (400, 422) and r.json()["error"] in ("empty", "audio_decode_error")
        else:
            assert r.status_code == 200
            assert r.json()["probabilities"] == pytest.approx(expected[body], abs=1e-6)


def test_thread_settings(monkeypatch, tmp_path):
    assert ServeSettings().threads is None and ServeSettings().micro_batch >= 1
    assert ServeSettings.from_env({"EARMARK_SERVE_THREADS": "2", "EARMARK_SERVE_MICRO_BATCH": "4"}).threads == 2
    assert ServeSettings.from_env({"EARMARK_SERVE_THREADS": "none"}).threads is None
    with pytest.raises(ParameterError, match="'micro_batch' setting must be an int >= 1"):
        ServeSettings(micro_batch=0)
    with pytest.raises(ParameterError, match="'threads' setting must be an int >= 1 or None"):
        ServeSettings(threads=0)
    from earmark.serving.app import app_from_env

    monkeypatch.setenv("EARMARK_SERVE_MODEL", str(tmp_path / "digits.earmark"))
    monkeypatch.delenv("EARMARK_SERVE_THREADS", raising=False)
    served = app_from_env().state.settings  # `earmark serve`: parallel over requests
    assert served.threads == 1 and served.switch_interval == 0.0005
    monkeypatch.setenv("EARMARK_SERVE_THREADS", "none")
    monkeypatch.setenv("EARMARK_SERVE_SWITCH_INTERVAL", "0.005")
    served = app_from_env().state.settings
    assert served.threads is None and served.switch_interval == 0.005
    with pytest.raises(ParameterError, match="'switch_interval' setting must be in"):
        ServeSettings(switch_interval=0)


def test_onnx_runtime_equals_the_estimator_and_serves():
    model, X = fsdd_mlp()
    p = Predictor(model, runtime="auto")
    assert p.runtime == "onnx"
    expected = model.estimator.predict_proba(X[:32])
    assert abs(p.proba(list(X[:32])) - expected).max() < 1e-4
    assert abs(p.proba(list(X[:1])) - expected[:1]).max() < 1e-4
    clip = (FSDD / "recordings" / CLIPS[0]).read_bytes()
    with TestClient(create_app(model)) as client:  # runtime "auto" by default
        assert client.get("/model").json()["runtime"] == "onnx"
        served = client.post("/predict", content=clip).json()["probabilities"]
    assert served == pytest.approx(Predictor(model).predict_bytes(clip).probabilities, abs=1e-4)


def test_runtime_choices():
    model = fsdd_model()  # scikit-learn: runs as it is
    assert Predictor(model, runtime="auto").runtime == "estimator"
    with pytest.raises(ParameterError, match="not a torch classifier"):
        Predictor(model, runtime="onnx")
    with pytest.raises(ParameterError, match="'runtime' parameter of Predictor must be one of"):
        Predictor(model, runtime="tensorrt")
    with pytest.raises(ParameterError, match="'runtime' setting must be"):
        ServeSettings(runtime="tensorrt")


def test_decode_many_equals_one_decode_per_upload_and_keeps_errors_in_place():
    import io

    import numpy as np
    import soundfile as sf

    from earmark.errors import AudioDecodeError
    from earmark.serving import UploadRejected

    p = Predictor(fsdd_model())

    def wav(name: str, rate: int) -> bytes:  # the clip's samples, declared at another rate
        buf = io.BytesIO()
        sf.write(buf, sf.read(FSDD / "recordings" / name, dtype="int16")[0], rate, format="WAV", subtype="PCM_16")
        return buf.getvalue()

    uploads = [wav(CLIPS[0], 16000), b"", b"definitely not audio", wav(CLIPS[1], 22050),
               (FSDD / "recordings" / CLIPS[2]).read_bytes(), wav(CLIPS[3], 16000), wav(CLIPS[2], 44100)]
    got = p.decode_many(uploads, max_bytes=10_000_000, max_seconds=30)
    assert isinstance(got[1], UploadRejected) and got[1].kind == "empty"
    assert isinstance(got[2], AudioDecodeError)
    for i in (0, 3, 4, 5, 6):  # resampled in groups by rate, or not at all: the same as one by one
        one = p.decode(uploads[i], max_bytes=10_000_000, max_seconds=30)
        assert got[i].dtype == np.float32 and np.array_equal(got[i], one), i
    assert len(got[0]) == int(np.ceil(len(sf.read(io.BytesIO(uploads[0]))[0]) * p.sample_rate / 16000))
    too_long = p.decode_many([uploads[0]], max_seconds=0.1)[0]
    assert isinstance(too_long, UploadRejected) and too_long.kind == "too_long"


def test_batcher_runs_small_batches_inline_and_large_ones_in_the_pool():
    threads = []

    def run(items):
        threads.append((threading.current_thread() is threading.main_thread(), len(items)))
        return [x * 2 for x in items]

    async def main():
        batcher = _MicroBatcher(run, size=8, inline=lambda items: sum(items) <= 10)
        small = await asyncio.gather(*(batcher.submit(i) for i in (1, 2, 3)))  # 6 <= 10: on the loop
        large = await asyncio.gather(*(batcher.submit(i) for i in (20, 30)))  # 50 > 10: thread pool
        return small, large

    assert asyncio.run(main()) == ([2, 4, 6], [40, 60])
    assert threads == [(True, 3), (False, 2)]


def test_inline_setting_is_validated_and_read_from_the_environment():
    assert ServeSettings.from_env({"EARMARK_SERVE_INLINE_BYTES": "0"}).inline_bytes == 0
    with pytest.raises(ParameterError, match="inline_bytes"):
        ServeSettings(inline_bytes=-1)


def test_only_small_wav_flac_ogg_batches_run_on_the_event_loop():
    import io

    import numpy as np
    import soundfile as sf

    model = fsdd_model()
    wav = (FSDD / "recordings" / CLIPS[0]).read_bytes()
    flac = io.BytesIO()
    sf.write(flac, np.zeros(800, np.float32), 8000, format="FLAC")
    on_loop = []
    with TestClient(create_app(model, ServeSettings(inline_bytes=3 * len(wav)))) as client:
        run = client.app.state.batcher._run

        def spy(items):
            on_loop.append("AnyIO worker" not in threading.current_thread().name)
            return run(items)

        inline = client.app.state.batcher._inline
        assert inline([(wav, None), (flac.getvalue(), None)])
        assert not inline([(wav, None)] * 4)  # more bytes than inline_bytes
        assert not inline([(b"RIFF\x00\x00\x00\x00WEBPVP8 ", None)])  # RIFF, but not WAVE
        assert not inline([(b"\x00\x00\x00\x20ftypM4A ", None)])  # m4a: FFmpeg decodes it
        client.app.state.batcher._run = spy
        assert client.post("/predict", content=wav).json()["label"] == "7"
        assert client.post("/predict", content=wav * 4).status_code in (200, 422)  # large: thread pool
    assert on_loop == [True, False]
