"""The HTTP service: TestClient, a real uvicorn process on loopback, and the web page in Chromium."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import time
import urllib.request
import wave

import numpy as np
import pytest

from _serving_model import BAD, FSDD, fsdd_model, require_training
from earmark.serving import ServeSettings, create_app

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient

CLIP = FSDD / "recordings" / "7_jackson_40.wav"
CLIP_3 = FSDD / "recordings" / "3_theo_12.wav"


def _wav(seconds: float, sr: int = 8000) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes((np.sin(np.arange(int(seconds * sr)) * 0.1) * 8000).astype("<i2").tobytes())
    return buf.getvalue()


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    log = tmp_path_factory.mktemp("log") / "requests.sqlite"
    app = create_app(fsdd_model(), ServeSettings(max_seconds=3.0, max_bytes=200_000, log_path=str(log)))
    with TestClient(app) as c:
        c.log_path = log
        yield c


def test_predict_raw_and_multipart_agree_and_are_right(client):
    data = CLIP.read_bytes()
    raw = client.post("/predict", content=data, headers={"content-type": "application/octet-stream"})
    multi = client.post("/predict", files={"file": ("clip.wav", data, "audio/wav")})
    assert raw.status_code == multi.status_code == 200
    a, b = raw.json(), multi.json()
    assert a["label"] == b["label"] == "7"
    assert set(a["probabilities"]) == {str(d) for d in range(10)}
    assert abs(sum(a["probabilities"].values()) - 1) < 1e-5
    assert a["probabilities"] == pytest.approx(b["probabilities"])
    assert a["top"][0]["label"] == "7" and a["confidence"] == pytest.approx(a["top"][0]["probability"])


def test_explain_names_the_regions_the_answer_rests_on(client):
    from earmark.evaluation import explain

    r = client.post("/explain?window=0.05", files={"file": ("seven.wav", CLIP.read_bytes(), "audio/wav")})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["explained"] == out["predicted"] == "7" and out["source"] == "seven.wav"
    assert len(out["importance"]) == 8 and len(out["importance"][0]) == len(out["times"]) - 1
    assert out["times"][1] == pytest.approx(0.05) and len(out["top_regions"]) == 5
    # the same map as the library's, from the same model and clip
    local = explain(fsdd_model(), CLIP, window=0.05)
    assert np.asarray(out["importance"]) == pytest.approx(local.importance, abs=1e-4)
    other = client.post("/explain?target=3&bands=4", content=CLIP.read_bytes()).json()
    assert other["explained"] == "3" and len(other["importance"]) == 4
    unknown = client.post("/explain?target=eleven", content=CLIP.read_bytes())
    assert unknown.status_code == 400 and "eleven" in unknown.json()["detail"]
    assert client.post("/explain?window=0", content=CLIP.read_bytes()).status_code == 422
    bad = client.post("/explain", content=b"this is plain text, not audio at all")
    assert bad.status_code == 422 and bad.json()["error"] == "audio_decode_error"
    assert client.post("/explain", content=_wav(6.0)).status_code == 413  # the service's max_seconds holds
    # the work of one request is bounded: 2.5 s in 10 ms windows × 64 bands is 16,000 full predictions
    big = client.post("/explain?window=0.01&bands=64", content=_wav(2.5))
    assert big.status_code == 400 and "more than the 400 allowed" in big.json()["detail"]
    # without ?window= a long clip gets windows wide enough to fit the limit (the web page's "Why?")
    fit = client.post("/explain?bands=64", content=_wav(2.5))
    assert fit.status_code == 200, fit.text
    importance = fit.json()["importance"]
    assert len(importance) == 64 and len(importance[0]) > 1 and 64 * len(importance[0]) <= 400
    assert 'endpoint="/explain"' in client.get("/metrics").text


def test_explain_can_be_turned_off():
    app = create_app(fsdd_model(), ServeSettings(explain_max_regions=0))
    with TestClient(app) as c:
        off = c.post("/explain", content=CLIP.read_bytes())
        assert off.status_code == 404 and off.json()["error"] == "disabled"
        assert c.post("/predict", content=CLIP.read_bytes()).json()["label"] == "7"  # predictions unaffected
    with TestClient(create_app(fsdd_model(), ServeSettings(max_seconds=40.0, max_bytes=2_000_000))) as c:
        zeros = c.post("/predict", content=(CLIP.parents[2] / "bad-audio" / "all_zeros.wav").read_bytes()).json()
        assert zeros["silent"] is True and zeros["label"]  # answered, and flagged as a guess about nothing
        assert "silent" not in c.post("/predict", content=CLIP.read_bytes()).json()
        long = c.post("/explain", content=_wav(31.0))  # within what /predict takes, beyond what explain does
        body = long.json()
        assert long.status_code == 413 and body["error"] == "too_long" and "up to 30 s" in body["detail"]
        assert "earmark" not in body["detail"]  # the service's words, not the command line's


def test_a_stopped_service_gives_back_the_process_thread_settings():
    import sys

    import torch
    from threadpoolctl import threadpool_info

    def state():
        return torch.get_num_threads(), sys.getswitchinterval(), {p["filepath"]: p["num_threads"] for p in threadpool_info()}

    before = state()
    with TestClient(create_app(fsdd_model(), ServeSettings(threads=1, switch_interval=0.0005))) as c:
        assert c.post("/predict", content=CLIP.read_bytes()).json()["label"] == "7"
        assert sys.getswitchinterval() == pytest.approx(0.0005)  # (thread counts are the serving thread's)
    after = state()  # (the model may load more libraries: compare those loaded before)
    assert after[:2] == before[:2] and {k: after[2][k] for k in before[2]} == before[2]


def test_top_k_and_spectrogram(client):
    out = client.post("/predict?top_k=3&spectrogram=true", content=CLIP_3.read_bytes()).json()
    assert len(out["top"]) == 3 and out["label"] == "3"
    spec = out["spectrogram"]
    assert spec["mels"] == 64 and spec["frames"] > 5 and len(spec["data"]) > 100
    for url in ("/predict?top_k=0", "/predict/batch?top_k=0"):  # raw body (fast path) and multipart alike
        assert client.post(url, content=CLIP_3.read_bytes()).status_code == 422
        assert client.post(url, files={"file": ("x.wav", CLIP_3.read_bytes())}).status_code == 422


def test_direct_predict_path_answers_as_the_fastapi_route(client):
    """Raw-body POST /predict skips FastAPI; what it answers must not tell the two apart."""
    data = CLIP_3.read_bytes()
    fast = client.post("/predict?top_k=2", content=data)
    routed = client.post("/predict?top_k=2&spectrogram=true", content=data)  # through FastAPI
    assert fast.status_code == routed.status_code == 200
    assert fast.headers["content-type"] == "application/json"
    a, b = fast.json(), routed.json()
    b.pop("spectrogram")
    assert a == b and len(a["top"]) == 2
    default_k = client.post("/predict?spectrogram=false", content=data).json()  # the setting's top_k (5)
    assert len(default_k["top"]) == 5 and default_k["probabilities"] == a["probabilities"]
    bad_k = client.post("/predict?top_k=abc", content=data)  # FastAPI's validation, in the service's error shape
    body = bad_k.json()
    assert bad_k.status_code == 422 and body["error"] == "invalid_request" and body["detail"].startswith("top_k:")
    assert body["errors"][0]["loc"] == ["query", "top_k"]
    zero = client.post("/predict/batch?top_k=0", files={"file": ("x.wav", data)}).json()
    assert zero["error"] == "invalid_request" and "top_k" in zero["detail"]
    empty = client.post("/predict", content=b"")
    assert empty.status_code == 400 and empty.json() == {"error": "empty", "detail": empty.json()["detail"]}


@pytest.mark.parametrize(
    ("body", "status", "kind"),
    [
        (b"", 400, "empty"),
        (b"this is plain text, not audio at all", 422, "audio_decode_error"),
        (b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk", 422, "audio_decode_error"),
    ],
)
def test_bad_uploads_get_4xx_json_naming_the_problem(client, body, status, kind):
    r = client.post("/predict", content=body)
    assert r.status_code == status
    assert r.json()["error"] == kind and r.json()["detail"]


def test_limits_too_long_and_too_large(client):
    r = client.post("/predict", content=_wav(5.0))  # 80 kB, 5 s > max_seconds 3
    assert r.status_code == 413 and r.json()["error"] == "too_long"
    assert "max_seconds" in r.json()["detail"]
    r = client.post("/predict", content=_wav(14.0))  # 224 kB > max_bytes 200 kB
    assert r.status_code == 413 and r.json()["error"] == "too_large"
    # still serving
    assert client.post("/predict", content=CLIP.read_bytes()).json()["label"] == "7"


def test_bad_audio_corpus_never_breaks_the_service(client):
    import pandas as pd

    manifest = pd.read_csv(BAD / "manifest.csv")
    for row in manifest.itertuples():
        data = (BAD / row.file).read_bytes()
        r = client.post("/predict", content=data)
        if row.expected == "error":
            assert 400 <= r.status_code < 500, (row.file, r.status_code)
        else:  # ok files decode; some are above this service's limits
            assert r.status_code in (200, 413), (row.file, r.status_code, r.text)
    assert client.get("/health").json()["status"] == "ok"


def test_batch_reports_each_file(client):
    files = [("files", ("a.wav", CLIP.read_bytes())), ("files", ("b.txt", b"not audio")),
             ("files", ("c.wav", CLIP_3.read_bytes()))]
    out = client.post("/predict/batch", files=files).json()
    assert out["n"] == 3 and out["failed"] == 1
    assert [r.get("label") for r in out["results"]] == ["7", None, "3"]
    assert out["results"][1]["error"] == "audio_decode_error"


def test_health_model_docs_and_metrics(client):
    assert client.get("/health").json()["classes"] == 10
    info = client.get("/model").json()
    assert info["labels"] == [str(d) for d in range(10)] and info["sample_rate"] == 8000
    assert info["features"]["settings"]["sample_rate"] == 8000
    assert client.get("/openapi.json").json()["paths"]["/predict"]["post"]
    assert client.get("/docs").status_code == 200
    page = client.get("/")
    assert page.status_code == 200 and 'id="file"' in page.text
    text = client.get("/metrics").text
    assert 'earmark_requests_total{endpoint="/predict",status="200"}' in text
    assert 'earmark_predictions_total{label="7"}' in text
    assert 'earmark_request_duration_seconds_bucket{endpoint="/predict",le="+Inf"}' in text
    assert 'earmark_errors_total{endpoint="/predict",kind="audio_decode_error"}' in text


def test_request_log_records_predictions(client):
    from earmark.serving import RequestLog

    before = len(RequestLog(client.log_path))
    client.post("/predict", content=CLIP.read_bytes())
    with RequestLog(client.log_path) as log:
        rows = log.read()
    assert len(rows["label"]) == before + 1 and rows["label"][-1] == "7"
    assert rows["features"].shape[1] == 7 and rows["proba"].shape[1] == 10


# ----------------------------------------------------------------------------- real server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module", autouse=True)
def _server_process(request, tmp_path_factory):
    """`earmark serve` on a saved bundle, in its own process, on a free loopback port.

    Started as the module begins, without waiting: its start-up (a fresh Python importing
    earmark, ~10 s) overlaps the in-process tests above; :func:`server` waits for it.
    """
    wanted = any("server" in item.fixturenames for item in request.session.items
                 if getattr(item, "module", None) is request.module)
    try:
        from earmark.training import TrainedModel  # noqa: F401
    except ImportError:
        wanted = False
    if not wanted:
        yield None
        return
    from earmark.bundle import save_model

    bundle = save_model(fsdd_model(), tmp_path_factory.mktemp("bundle") / "digits.earmark")
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "earmark.cli.main", "serve", str(bundle), "--port", str(port), "--max-seconds", "5",
         "--micro-batch", "8", "--threads", "1", "--runtime", "auto", "--workers", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    workers: set[int] = set()
    yield proc, f"http://127.0.0.1:{port}", workers
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
    time.sleep(0.5)
    for pid in workers:  # the workers stop with the server
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


@pytest.fixture(scope="module")
def server(_server_process):
    """The URL of the started `earmark serve`, once it answers /health."""
    require_training()
    proc, url, _ = _server_process
    import httpx

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"server exited: {proc.stdout.read().decode(errors='replace')}")
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("server did not start within 60 s")
    return url


def test_uvicorn_process_answers_over_loopback(server):
    import httpx

    with httpx.Client(base_url=server, timeout=10) as c:
        assert c.post("/predict", content=CLIP.read_bytes()).json()["label"] == "7"
        assert c.post("/predict", files={"file": ("x.wav", CLIP_3.read_bytes())}).json()["label"] == "3"
        r = c.post("/predict", content=b"GIF89a not audio")
        assert r.status_code == 422 and r.json()["error"] == "audio_decode_error"
        assert c.post("/predict", content=_wav(6.0)).status_code == 413
        assert c.get("/health").json()["status"] == "ok"
        assert "earmark_requests_total" in c.get("/metrics").text
        settings = c.get("/model").json()["settings"]
        assert settings["micro_batch"] == 8 and settings["threads"] == 1 and settings["runtime"] == "auto"


def test_workers_share_the_port(server, _server_process):
    import httpx

    for _ in range(24):  # new connections: the kernel hands each to one worker's socket
        with httpx.Client(base_url=server, timeout=10) as c:
            _server_process[2].add(c.get("/health").json()["worker"])
            assert c.post("/predict", content=CLIP.read_bytes()).json()["label"] == "7"
    assert len(_server_process[2]) == 2
    # /metrics answers the sum over both workers, whichever of them a scrape reaches
    time.sleep(1.5)  # each worker writes its counters about once a second
    seen, counts = set(), []
    for _ in range(12):
        with httpx.Client(base_url=server, timeout=10) as c:
            seen.add(c.get("/health").json()["worker"])
            line = next(x for x in c.get("/metrics").text.splitlines()
                        if x.startswith('earmark_predictions_total{label="7"}'))
            counts.append(int(line.split()[-1]))
    assert len(seen) == 2 and len(set(counts)) == 1 and counts[0] >= 24, counts


def test_a_port_in_use_is_one_clear_error(tmp_path):
    from typer.testing import CliRunner

    from earmark.bundle import save_model
    from earmark.cli.main import app

    require_training()
    bundle = save_model(fsdd_model(), tmp_path / "m.earmark")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(app, ["serve", str(bundle), "--port", str(port), "--workers", "2"])
    assert result.exit_code != 0
    assert f"127.0.0.1:{port}" in result.output and "in use" in result.output
    with socket.socket() as shared:  # even a listener that would share the port (SO_REUSEPORT)
        shared.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        shared.bind(("127.0.0.1", 0))
        shared.listen()
        port = shared.getsockname()[1]
        result = CliRunner().invoke(app, ["serve", str(bundle), "--port", str(port), "--workers", "2"])
    assert result.exit_code != 0 and "already listens" in result.output


def test_serve_help_lists_the_speed_options():
    from typer.testing import CliRunner

    from earmark.cli.main import app

    out = CliRunner().invoke(app, ["serve", "--help"], env={"COLUMNS": "200"}).output
    for flag in ("--runtime", "--micro-batch", "--inline-bytes", "--threads", "--http", "--loop", "--workers",
                 "--explain-max-regions"):
        assert flag in out


def test_web_page_upload_shows_the_right_label(server):
    from _chromium import chromium_path, open_page

    if chromium_path() is None:
        pytest.skip("chromium is not installed")
    with open_page(server + "/") as page:
        doc = page.send("DOM.getDocument")["root"]["nodeId"]
        node = page.send("DOM.querySelector", nodeId=doc, selector="#file")["nodeId"]
        page.send("DOM.setFileInputFiles", nodeId=node, files=[str(CLIP_3)])
        deadline = time.monotonic() + 20
        label = ""
        while time.monotonic() < deadline and not label:
            label = page.evaluate("document.getElementById('label').textContent")
            time.sleep(0.1)
        assert label == "3"
        # the file input has a name, and the answer is in the live status a screen reader reads out
        assert page.evaluate("document.getElementById('file').labels[0].textContent") == "Choose an audio file"
        assert ": 3, " in page.evaluate("document.getElementById('status').textContent")
        assert page.evaluate("document.querySelectorAll('#bars .bar').length") == 5
        assert page.evaluate("document.getElementById('spectrogram').width") > 5
        page.evaluate("document.getElementById('why').click()")  # "Why?": the occlusion map of the clip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not page.evaluate("document.querySelectorAll('#why-top li').length"):
            time.sleep(0.1)
        assert page.evaluate("document.querySelectorAll('#why-top li').length") == 3
        assert page.evaluate("document.getElementById('why-class').textContent") == "3"
        assert page.evaluate("document.getElementById('why-map').height") == 8
        assert page.console_errors() == []


def test_api_docs_render_offline_from_the_service_itself(server):
    """/docs is Swagger UI served by the service (no CDN: this machine has no network), listing
    the endpoints from openapi.json; its URLs are relative, like the web page's."""
    from _chromium import chromium_path, open_page

    page_html = urllib.request.urlopen(server + "/docs", timeout=10).read().decode()
    assert "cdn." not in page_html and "docs-assets/swagger-ui-bundle.js" in page_html
    assert "'openapi.json'" in page_html or '"openapi.json"' in page_html
    redoc = urllib.request.urlopen(server + "/redoc", timeout=10).read().decode()
    assert "docs-assets/redoc.standalone.js" in redoc and "cdn." not in redoc and "fonts.googleapis" not in redoc
    js = urllib.request.urlopen(server + "/docs-assets/swagger-ui-bundle.js", timeout=10)
    assert js.status == 200 and len(js.read()) > 100_000
    if chromium_path() is None:
        pytest.skip("chromium is not installed")
    with open_page(server + "/docs") as page:
        deadline = time.monotonic() + 20
        ops: list[str] = []
        while time.monotonic() < deadline and len(ops) < 3:
            ops = page.evaluate("[...document.querySelectorAll('.opblock-summary-path')].map(e => e.textContent)") or []
            time.sleep(0.1)
        assert {"/predict", "/predict/batch", "/explain"} <= {o.replace("\u200b", "") for o in ops}
        assert page.console_errors() == []


def test_malformed_multipart_gets_the_service_error_shape(client):
    """Starlette's own multipart errors came back as a bare {"detail"} without 'error'."""
    data = CLIP.read_bytes()
    two = client.post("/predict", files=[("file", ("a.wav", data, "audio/wav")), ("file", ("b.wav", data, "audio/wav"))])
    assert two.status_code == 400
    body = two.json()
    assert body["error"] == "bad_multipart" and "send one field 'file'" in body["detail"]
    broken = client.post("/predict", content=b"not multipart at all",
                         headers={"content-type": "multipart/form-data; boundary=xyz"})
    assert broken.status_code == 400 and broken.json()["error"] == "bad_multipart"


def test_an_explain_that_is_too_fine_names_the_upload(client):
    res = client.post("/explain?window=0.012&bands=64", files={"file": ("3_george_5.wav", CLIP.read_bytes(), "audio/wav")})
    assert res.status_code == 400
    detail = res.json()["detail"]
    assert detail.startswith("3_george_5.wav: Explaining the clip") and "array" not in detail


def test_a_json_body_is_refused_as_not_audio(client):
    res = client.post("/predict", json={})
    assert res.status_code == 415 and res.json()["error"] == "unsupported_media_type"
    assert "multipart field 'file'" in res.json()["detail"]


def test_curl_data_binary_audio_is_still_read_as_audio(client):
    """`curl --data-binary @clip.wav` labels the body application/x-www-form-urlencoded."""
    res = client.post("/predict", content=CLIP.read_bytes(),
                      headers={"content-type": "application/x-www-form-urlencoded"})
    assert res.status_code == 200 and res.json()["label"] == "7"


def _multipart(parts: list[tuple[str, str, bytes]], boundary: str = "earmark-test") -> bytes:
    out = b""
    for field, name, data in parts:
        out += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{name}\"\r\n"
                "Content-Type: audio/wav\r\n\r\n").encode() + data + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


def test_chunked_multipart_uploads_are_counted_as_they_arrive(client):
    """Without a Content-Length the form used to be read whole (1 GB: 1 GB of memory) before any
    size check; now the body is counted while it streams and refused as soon as it passes the limit."""
    def body(field="file"):
        yield _multipart([(field, "big.wav", b"")])[:-len(b"\r\n--earmark-test--\r\n")]
        for _ in range(40):  # 2.6 MB, far above max_bytes 200 kB
            yield b"\0" * 65536
        yield b"\r\n--earmark-test--\r\n"

    r = client.post("/predict", content=body(), headers={"content-type": "multipart/form-data; boundary=earmark-test"})
    assert r.status_code == 413 and r.json()["error"] == "too_large"
    assert "request body is above the limit" in r.json()["detail"]  # stopped while reading, not after
    r = client.post("/predict/batch", content=body("files"),
                    headers={"content-type": "multipart/form-data; boundary=earmark-test"})
    # (the batch's limit is max_bytes x max_batch: this one file is refused by itself)
    assert r.status_code == 200 and r.json()["results"][0]["error"] == "too_large"
    # media types are case-insensitive
    upper = {"content-type": "Multipart/Form-Data; boundary=earmark-test"}
    r = client.post("/predict", content=_multipart([("file", "x.wav", CLIP.read_bytes())]), headers=upper)
    assert r.status_code == 200 and r.json()["label"] == "7"
    r = client.post("/predict/batch", content=_multipart([("files", "x.wav", CLIP.read_bytes())]), headers=upper)
    assert r.status_code == 200 and r.json()["results"][0]["label"] == "7"


def test_every_answer_has_the_error_shape_and_a_locked_log_loses_a_row_not_the_answer(client):
    import sqlite3

    r = client.get("/no/such/path")
    assert r.status_code == 404 and r.json()["error"] == "not_found" and "/docs" in r.json()["detail"]
    r = client.get("/predict")
    assert r.status_code == 405 and r.json()["error"] == "method_not_allowed" and "POST" in r.headers["allow"]
    holder = sqlite3.connect(str(client.log_path), isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")  # someone inspecting or pruning the log with the sqlite3 shell
        start = time.perf_counter()
        answers = [client.post("/predict", content=CLIP.read_bytes()) for _ in range(6)]
        waited = time.perf_counter() - start
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert all(r.status_code == 200 and r.json()["label"] == "7" for r in answers)
    assert waited < 2  # one short wait for the lock, then rows are dropped at once for a while (not 5 s each)
    assert 'earmark_errors_total{endpoint="request_log",kind="write_failed"}' in client.get("/metrics").text


def test_a_prediction_says_how_much_of_a_longer_clip_the_model_heard():
    from earmark.features import get_preset
    from earmark.serving import Predictor

    p = Predictor(fsdd_model())
    p.preset = get_preset("logmel")  # a model that hears 1 s clips
    proba = np.full(10, 0.1)
    assert p._make(proba, 2.5, None).to_dict()["heard_seconds"] == 1.0
    assert "heard_seconds" not in p._make(proba, 0.8, None).to_dict()
    assert "heard_seconds" not in p._make(proba, 2.5, None, whole=True).to_dict()  # windows heard it all


def test_a_client_that_leaves_mid_upload_is_not_a_server_error():
    import asyncio

    from starlette.requests import ClientDisconnect

    from earmark.serving.app import CLIENT_CLOSED, _MetricsMiddleware
    from earmark.serving.metrics import ServiceMetrics

    async def leaves(scope, receive, send):
        raise ClientDisconnect()

    metrics = ServiceMetrics()
    asyncio.run(_MetricsMiddleware(leaves, metrics)({"type": "http", "path": "/predict"}, None, None))
    text = metrics.render()
    assert f'status="{CLIENT_CLOSED}"' in text and 'status="500"' not in text


def test_onnx_sessions_get_the_threads_setting():
    from _serving_model import fsdd_mlp
    from earmark.serving import Predictor

    p = Predictor(fsdd_mlp()[0], runtime="onnx", threads=3)
    assert p.runtime == "onnx" and p._onnx._session.get_session_options().intra_op_num_threads == 3


def test_serve_refuses_what_its_workers_would_fail_on_at_once(tmp_path):
    """A log path that is a folder, --runtime onnx for a classical model, port 0: one error line
    before any worker starts (two workers that both failed used to exit 0 after two tracebacks)."""
    from typer.testing import CliRunner

    from earmark.bundle import save_model
    from earmark.cli.main import app

    bundle = save_model(fsdd_model(), tmp_path / "m.earmark")
    run = CliRunner()
    res = run.invoke(app, ["serve", str(bundle), "--port", str(_free_port()), "--workers", "2", "--log", str(tmp_path)])
    assert res.exit_code == 3 and "cannot be used as a request log" in " ".join(res.output.split())
    res = run.invoke(app, ["serve", str(bundle), "--port", str(_free_port()), "--runtime", "onnx"])
    assert res.exit_code == 2 and "--runtime onnx serves neural classifiers" in " ".join(res.output.split())
    assert run.invoke(app, ["serve", str(bundle), "--port", "0"]).exit_code == 2
    res = run.invoke(app, ["serve", str(bundle), "--port", str(_free_port()), "--log", str(bundle / "x.sqlite")])
    assert res.exit_code == 3 and "cannot be used as a request log" in " ".join(res.output.split())  # below a file


def test_workers_that_all_fail_to_start_are_an_error(tmp_path, monkeypatch):
    from earmark.serving.workers import reuse_port_supported, run_workers

    if not reuse_port_supported():
        pytest.skip("SO_REUSEPORT is not available here")
    monkeypatch.setenv("EARMARK_SERVE_MODEL", str(tmp_path / "missing.earmark"))
    with pytest.raises(RuntimeError, match="none of the 2 workers could start"):
        run_workers("earmark.serving.app:app_from_env", host="127.0.0.1", port=_free_port(), workers=2,
                    factory=True, log_level="critical", start_timeout=60)
