"""The HTTP prediction service: a FastAPI app factory.

The model is loaded once, in the app's lifespan; prediction runs in the thread pool; domain
errors become 4xx JSON answers that name the problem, and the server keeps serving.

Speed (settings ``runtime``, ``micro_batch``, ``inline_bytes``, ``threads``): torch networks run in ONNX Runtime
(checked against PyTorch at startup); concurrent ``/predict`` requests are decoded and run through
the features and the network together, in batches that take what queued while the previous one
ran (no timer, so an idle service answers at once); a batch of small WAV/FLAC/Ogg uploads is
computed on the event loop's own thread (``inline_bytes``), larger ones in the thread pool;
``earmark serve`` runs the numerical libraries on one thread per process, since requests already
run in parallel, and hands the GIL over every 0.5 ms (Python's default is 5 ms) so that a batch
computing in the thread pool does not hold the event loop up. ``earmark serve --workers N`` runs N
processes, each with its own listening socket (:mod:`earmark.serving.workers`).
The hottest request, ``POST /predict`` with the clip as raw body, is answered on plain ASGI (same
limits, errors, metrics and JSON as the FastAPI route, without its routing, validation and
middleware layers), and uvicorn runs on httptools and uvloop when they are installed (they are
dependencies).

Endpoints: ``POST /predict`` (multipart field ``file`` or the raw bytes as body), ``POST
/predict/batch`` (multipart fields ``files``), ``GET /health``, ``GET /model``, ``GET /metrics``
(Prometheus), ``GET /`` (web page), ``GET /docs`` (OpenAPI).

Example
-------
>>> from fastapi.testclient import TestClient
>>> app = create_app("models/digits")  # doctest: +SKIP
>>> with TestClient(app) as client:  # doctest: +SKIP
...     client.post("/predict", content=open("7_jackson_32.wav", "rb").read()).json()["label"]
'7'
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import sqlite3
import sys
import time
from collections import deque
from collections.abc import Callable
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any
from urllib.parse import parse_qsl

import numpy as np
from fastapi import FastAPI, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from earmark.errors import AudioDecodeError, BundleError, EarmarkError, ParameterError
from earmark.serving.metrics import ServiceMetrics
from earmark.serving.predictor import Prediction, Predictor, UploadRejected
from earmark.serving.settings import ServeSettings

__all__ = ["create_app"]

_ROUTES = {"/predict", "/predict/batch", "/explain", "/health", "/model", "/metrics", "/", "/docs", "/redoc", "/openapi.json"}
_SPEC_MELS = 64
#: OpenAPI request body of the one-clip endpoints: multipart field ``file``, or the raw bytes.
_ONE_UPLOAD = {"requestBody": {"content": {
    "multipart/form-data": {"schema": {"type": "object", "properties": {
        "file": {"type": "string", "format": "binary"}}, "required": ["file"]}},
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
}}}


#: Seconds the service stops writing to its request log after a write failed (the log was locked):
#: rows are dropped (and counted) rather than each answer waiting for the lock.
LOG_PAUSE_S = 5.0

#: Status recorded in /metrics for a request whose client went away before its answer (nginx's
#: "client closed request"); never sent, as there is nobody to send it to.
CLIENT_CLOSED = 499


class _MetricsMiddleware:
    """Pure ASGI middleware timing every HTTP request (cheaper than BaseHTTPMiddleware)."""

    def __init__(self, app: Any, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = {"code": 500}

        async def _send(message: dict) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, _send)
        except ClientDisconnect:  # the client left mid-upload: not a server error, no traceback
            status["code"] = CLIENT_CLOSED
        finally:
            path = scope.get("path", "")
            endpoint = path if path in _ROUTES else "other"
            self.metrics.observe_request(endpoint, status["code"], time.perf_counter() - start)


class _MicroBatcher:
    """Runs the clips of concurrent requests through the model together, one batch at a time.

    A batch takes whatever queued while the previous one ran (at most ``size`` items) and never
    waits for a timer: an idle service answers one clip at once, a busy one amortises the feature
    and network calls over many. ``run`` maps a list of items to a list of results or exceptions,
    each handed back to the request that queued the item. A batch for which ``inline(items)`` is
    true runs on the event loop's own thread (no hand-off to a worker thread and no contention for
    the GIL with the loop: about a fifth less CPU per short clip); the others run in the thread pool.
    """

    def __init__(self, run: Callable[[list[Any]], list[Any]], size: int,
                 inline: Callable[[list[Any]], bool] | None = None) -> None:
        self._run = run
        self._size = size
        self._inline = inline
        self._queue: deque[tuple[Any, asyncio.Future]] = deque()
        self._task: asyncio.Task | None = None

    async def submit(self, item: Any) -> Any:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._queue.append((item, future))
        if self._task is None:
            self._task = loop.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        batch: list[tuple[Any, asyncio.Future]] = []
        try:
            while self._queue:
                batch = [self._queue.popleft() for _ in range(min(self._size, len(self._queue)))]
                try:
                    items = [item for item, _ in batch]
                    if self._inline is not None and self._inline(items):
                        # one turn of the loop first: requests read meanwhile join this batch
                        await asyncio.sleep(0)
                        more = [self._queue.popleft() for _ in range(min(self._size - len(batch), len(self._queue)))]
                        if more and self._inline(items + [item for item, _ in more]):
                            batch += more
                            items += [item for item, _ in more]
                        else:
                            self._queue.extendleft(reversed(more))
                        results = self._run(items)
                    else:
                        results = await run_in_threadpool(self._run, items)
                except Exception as exc:  # handed to every request of the batch
                    results = [exc] * len(batch)
                for (_, future), result in zip(batch, results, strict=True):
                    if future.done():  # the client went away
                        continue
                    if isinstance(result, BaseException):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
                batch = []
        finally:
            self._task = None
            for _, future in [*batch, *self._queue]:  # only on shutdown (cancelled mid-batch)
                future.cancel()
            self._queue.clear()


def _limit_threads(n: int) -> Callable[[], None]:
    """Use ``n`` threads in BLAS, OpenMP and PyTorch (the service parallelises over requests);
    returns what puts the process's own settings back (when the service stops)."""
    from threadpoolctl import threadpool_limits

    limiter = threadpool_limits(limits=n)
    torch = sys.modules.get("torch")
    before = torch.get_num_threads() if torch is not None else None
    if torch is not None:
        torch.set_num_threads(n)

    def restore() -> None:
        limiter.restore_original_limits()
        if torch is not None and before is not None:
            torch.set_num_threads(before)

    return restore


def _error(status: int, kind: str, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": kind, "detail": message, **extra})


def _error_answer(exc: BaseException) -> tuple[int, str, str] | None:
    """``(status, kind, detail)`` of the JSON answer to a domain error; ``None`` for any other exception."""
    if isinstance(exc, UploadRejected):
        return exc.status, exc.kind, str(exc)
    if isinstance(exc, AudioDecodeError):
        return 422, "audio_decode_error", f"the upload is not decodable audio: {exc.reason}"
    if isinstance(exc, ParameterError):
        return 400, "bad_request", str(exc)
    if isinstance(exc, BundleError):
        return 500, "bundle_error", str(exc)
    if isinstance(exc, EarmarkError):
        return 400, type(exc).__name__, str(exc)
    return None


def _json(content: Any) -> bytes:
    """JSON bytes as Starlette's JSONResponse renders them."""
    return json.dumps(content, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")).encode("utf-8")


_FALSE = frozenset({"0", "false", "f", "no", "n", "off"})
_JSON_HEADERS = [(b"content-type", b"application/json")]


class _Service(FastAPI):
    """FastAPI whose hottest request, ``POST /predict`` with the raw clip as body, skips the framework.

    The request is answered by a plain ASGI function (``fast``, set by :func:`create_app`) with the
    same limits, errors, metrics and JSON as the FastAPI route, without routing, parameter parsing,
    response validation and six middleware layers (a third of the CPU time of a request). Anything
    else (multipart uploads, ``?spectrogram=true``, odd query strings, other endpoints) goes
    through FastAPI as before.
    """

    fast: Callable[[dict, Any, Any], Any] | None = None

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if (self.fast is not None and scope["type"] == "http" and scope["path"] == "/predict"
                and scope["method"] == "POST" and await self.fast(scope, receive, send)):
            return
        await super().__call__(scope, receive, send)


def _fast_query(query: bytes) -> tuple[bool, int | None]:
    """``(handled, top_k)``: whether the fast path can take this query string, and its ``top_k``."""
    if not query:
        return True, None
    top_k = None
    for key, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        if key == "top_k":
            if not value.isdigit() or not value.isascii() or int(value) < 1:
                return False, None  # let FastAPI answer its validation error
            top_k = int(value)
        elif key == "spectrogram" and value.lower() not in _FALSE:
            return False, None
    return True, top_k


def create_app(model_or_path: Any, settings: ServeSettings | None = None) -> FastAPI:
    """Build the prediction service for a model.

    Parameters
    ----------
    model_or_path : TrainedModel, Predictor, str or path-like
        The model, or a bundle directory / ``.earmark`` file (loaded and verified at startup).
    settings : ServeSettings, optional
        Limits and options; default :meth:`ServeSettings.from_env` (``EARMARK_SERVE_*`` variables).

    Returns
    -------
    FastAPI

    Example
    -------
    >>> app = create_app("digits.earmark", ServeSettings(max_seconds=10))  # doctest: +SKIP
    >>> # uvicorn.run(app, host="127.0.0.1", port=8000)
    """
    settings = settings or ServeSettings.from_env()
    metrics = ServiceMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        predictor = await run_in_threadpool(Predictor.load, model_or_path, reject_below=settings.reject_below,
                                            runtime=settings.runtime, threads=settings.threads or 1)
        if predictor.reject_below is None and settings.reject_below is not None:
            predictor.reject_below = settings.reject_below
        log = None
        if settings.log_path:
            from earmark.serving.requestlog import RequestLog

            log = RequestLog(settings.log_path, model=predictor.identity())
        app.state.predictor = predictor
        app.state.log = log
        app.state.batcher = _MicroBatcher(_predict_many, settings.micro_batch, inline=_inline)
        shared = None
        if settings.metrics_dir:
            from earmark.serving.metrics import SharedMetrics

            shared = SharedMetrics(metrics, settings.metrics_dir)
            shared.start()
        app.state.shared_metrics = shared
        # the service's thread and switch settings are the process's: put them back when it stops,
        # so that a notebook or test that served a model in-process trains at full speed afterwards
        restore_threads = _limit_threads(settings.threads) if settings.threads is not None else None
        switch_before = sys.getswitchinterval()
        if settings.switch_interval is not None:
            sys.setswitchinterval(settings.switch_interval)
        try:
            yield
        finally:
            if shared is not None:
                shared.stop()
            if log is not None:
                log.close()
            if restore_threads is not None:
                restore_threads()
            sys.setswitchinterval(switch_before)

    app = _Service(
        title="earmark",
        summary="Audio classification service",
        description="Upload a clip, get its class probabilities (or a regressor's number). Web page at `/`.",
        version=_version(),
        lifespan=lifespan,
        docs_url=None,  # FastAPI's pages load Swagger UI from a CDN: blank offline; served locally below
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.shared_metrics = None
    app.add_middleware(_MetricsMiddleware, metrics=metrics)

    # ------------------------------------------------------------------ error handlers

    async def _domain_error(request: Request, exc: Exception) -> JSONResponse:
        status, kind, detail = _error_answer(exc)  # type: ignore[misc]
        metrics.observe_error(request.url.path, kind)
        return _error(status, kind, detail)

    for exc_class in (UploadRejected, AudioDecodeError, ParameterError, BundleError, EarmarkError):
        app.add_exception_handler(exc_class, _domain_error)

    async def _invalid_request(request: Request, exc: Exception) -> JSONResponse:
        # one error shape for every answer: {"error", "detail": text}; FastAPI's list stays in "errors"
        from fastapi.encoders import jsonable_encoder

        errors = exc.errors() if hasattr(exc, "errors") else []
        parts = [f"{'.'.join(str(x) for x in e.get('loc', ())[1:]) or 'request'}: {e.get('msg', '')}" for e in errors]
        metrics.observe_error(request.url.path, "invalid_request")
        return _error(422, "invalid_request", "; ".join(parts) or str(exc), errors=jsonable_encoder(errors))

    from fastapi.exceptions import RequestValidationError

    app.add_exception_handler(RequestValidationError, _invalid_request)

    from starlette.exceptions import HTTPException as StarletteHTTPException

    async def _http_error(request: Request, exc: Exception) -> JSONResponse:
        # 404, 405…: the same {"error", "detail"} shape as every other answer
        code = int(getattr(exc, "status_code", 500))
        kinds = {404: "not_found", 405: "method_not_allowed"}
        detail = str(getattr(exc, "detail", "") or "")
        if code == 404:
            detail = f"no such path {request.url.path}; see /docs for the service's endpoints"
        elif code == 405:
            detail = f"{request.method} is not allowed on {request.url.path}; see /docs"
        response = _error(code, kinds.get(code, "http_error"), detail)
        for name, value in (getattr(exc, "headers", None) or {}).items():  # e.g. Allow on a 405
            response.headers[name] = value
        return response

    app.add_exception_handler(StarletteHTTPException, _http_error)

    # ------------------------------------------------------------------ helpers

    def _decode(data: bytes) -> np.ndarray:
        return app.state.predictor.decode(data, max_bytes=settings.max_bytes, max_seconds=settings.max_seconds,
                                          timeout=settings.decode_timeout)

    log_failures: list[int] = []  # request-log rows that could not be written
    log_paused = [0.0]  # monotonic time until which rows are dropped without waiting (after a failure)

    def _record(pred: Prediction, source: str | None) -> None:
        if pred.value is None:
            metrics.observe_prediction(pred.label)
        else:  # a regressor: one series (its values are not labels)
            metrics.observe_prediction(app.state.predictor.target)
        log = app.state.log
        if log is not None:
            out = [pred.value] if pred.value is not None else list(pred.probabilities.values())
            if time.monotonic() < log_paused[0]:  # a write failed just now: no clip waits for the lock again
                metrics.observe_error("request_log", "write_failed")
                return
            try:
                log.append(features=pred.features, proba=np.array(out), label=pred.label, source=source)
            except sqlite3.Error as exc:  # the answer still goes out; the lost row is counted and said once
                log_paused[0] = time.monotonic() + LOG_PAUSE_S
                metrics.observe_error("request_log", "write_failed")
                if not log_failures:
                    logging.getLogger("earmark.serving").warning(
                        "request log %s: a row could not be written (%s); answers still go out, rows are dropped "
                        "for %g s after each failure, and lost rows are counted in /metrics "
                        "(earmark_errors_total{endpoint=\"request_log\"})", log.path, exc, LOG_PAUSE_S)
                log_failures.append(1)

    def _predict_clips(clips: list[np.ndarray], sources: list[str | None]) -> list[Prediction | Exception]:
        predictor: Predictor = app.state.predictor
        summaries = app.state.log is not None
        try:
            preds: list[Prediction | Exception] = list(predictor.predict_arrays(clips, summaries=summaries))
        except Exception:
            if len(clips) == 1:
                raise
            preds = []  # find the clip that failed: the others still get their answer
            for y in clips:
                try:
                    preds.append(predictor.predict_arrays([y], summaries=summaries)[0])
                except Exception as exc:
                    preds.append(exc)
        for pred, source in zip(preds, sources, strict=True):
            if isinstance(pred, Prediction):
                _record(pred, source)
        return preds

    def _predict_many(items: list[tuple[bytes, str | None]]) -> list[Prediction | Exception]:
        """Decode each upload (each with its own error), then predict the decoded clips together."""
        out: list[Prediction | Exception | None] = [None] * len(items)
        clips, where = [], []
        decoded = app.state.predictor.decode_many([data for data, _ in items], max_bytes=settings.max_bytes,
                                                  max_seconds=settings.max_seconds, timeout=settings.decode_timeout)
        for i, y in enumerate(decoded):
            if isinstance(y, Exception):
                out[i] = y
            else:
                clips.append(y)
                where.append(i)
        if clips:
            for i, pred in zip(where, _predict_clips(clips, [items[i][1] for i in where]), strict=True):
                out[i] = pred
        return out  # type: ignore[return-value]

    def _inline(items: list[tuple[bytes, str | None]]) -> bool:
        """Small uploads in formats libsndfile reads (never FFmpeg, whose decoding may take up to
        ``decode_timeout``) are cheap enough to compute on the event loop's thread."""
        total = 0
        for data, _ in items:
            head = bytes(data[:12])
            if not (head[:4] in (b"fLaC", b"OggS") or (head[:4] == b"RIFF" and head[8:12] == b"WAVE")):
                return False
            total += len(data)
        return total <= settings.inline_bytes

    def _predict_one(data: bytes, *, spectrogram: bool, source: str | None) -> tuple[Prediction, Any]:
        predictor: Predictor = app.state.predictor
        y = _decode(data)
        pred = _predict_clips([y], [source])[0]
        if isinstance(pred, Exception):
            raise pred
        spec = _spectrogram(y, predictor.sample_rate) if spectrogram and settings.spectrogram else None
        return pred, spec

    def _answer(pred: Prediction, spec: Any, k: int | None) -> dict[str, Any]:
        out = pred.to_dict(k=k or settings.top_k)
        if spec is not None:
            out["spectrogram"] = spec
        return out

    async def _form(request: Request, *, max_files: int, max_fields: int, hint: str, limit: int) -> Any:
        """The multipart form, or the service's own 400 (Starlette answered a bare {"detail"}).

        The body is counted as it arrives and refused (413) once it passes ``limit`` bytes: a
        chunked upload has no Content-Length to check first, and the form would otherwise be
        read whole before any size check."""
        from starlette.exceptions import HTTPException as StarletteHTTPException

        seen = 0
        receive = request.receive

        async def counted() -> Any:
            nonlocal seen
            message = await receive()
            if message.get("type") == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise UploadRejected(
                        f"request body is above the limit of {limit:,} bytes (setting max_bytes / --max-bytes / "
                        "EARMARK_SERVE_MAX_BYTES, times max_batch for /predict/batch)", kind="too_large", status=413)
            return message

        try:
            return await Request(request.scope, receive=counted).form(max_files=max_files, max_fields=max_fields)
        except StarletteHTTPException as exc:
            raise UploadRejected(f"{exc.detail}; {hint}", kind="bad_multipart", status=400) from None
        except Exception as exc:  # python-multipart's parse errors (a body that is not multipart)
            if type(exc).__name__ != "MultiPartException":
                raise
            raise UploadRejected(f"{exc}; {hint}", kind="bad_multipart", status=400) from None

    async def _upload(request: Request) -> tuple[bytes, str | None]:
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > settings.max_bytes + 64 * 1024:
            raise _too_large_header(int(length))
        ctype = request.headers.get("content-type", "")
        if ctype.lower().startswith("multipart/form-data"):  # media types are case-insensitive
            form = await _form(request, max_files=1, max_fields=16, limit=settings.max_bytes + 64 * 1024,
                               hint="send one field 'file' holding the clip (for several, POST /predict/batch)")
            item = form.get("file")
            if item is None or isinstance(item, str):
                raise UploadRejected("multipart body has no file field 'file'; send the audio as field 'file'",
                                     kind="no_file", status=400)
            data = await item.read()
            await form.close()
            return data, item.filename
        # (not form-urlencoded: that is what `curl --data-binary @clip.wav` sends audio as)
        if ctype.split(";")[0].strip().lower() == "application/json" or ctype.lower().startswith("text/"):
            raise UploadRejected(f"a {ctype.split(';')[0]} body is not audio; send the clip as multipart field 'file' "
                                 "or as the raw body (audio/*, application/octet-stream)", kind="unsupported_media_type",
                                 status=415)
        return await _read_limited(request), None

    async def _read_limited(request: Request) -> bytes:
        chunks = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > settings.max_bytes:
                raise _too_large_stream()
            chunks.append(chunk)
        return b"".join(chunks)

    def _too_large_header(length: int) -> UploadRejected:
        return UploadRejected(
            f"request body is {length:,} bytes, above the limit of {settings.max_bytes:,} "
            "(setting max_bytes / --max-bytes / EARMARK_SERVE_MAX_BYTES)",
            kind="too_large", status=413,
        )

    def _too_large_stream() -> UploadRejected:
        return UploadRejected(
            f"request body is above the limit of {settings.max_bytes:,} bytes "
            "(setting max_bytes / --max-bytes / EARMARK_SERVE_MAX_BYTES)",
            kind="too_large", status=413,
        )

    async def fast_predict(scope: dict, receive: Any, send: Any) -> bool:
        """``POST /predict`` with a raw body, straight on ASGI; ``False`` leaves the request to FastAPI."""
        length: int | None = None
        for name, value in scope["headers"]:
            if name == b"content-type":
                low = value.lower()
                if low.startswith((b"multipart/form-data", b"application/json", b"text/")):
                    return False  # FastAPI's route: multipart, or the 415 for a body that is not audio
            elif name == b"content-length" and value.isdigit():
                length = int(value)
        handled, top_k = _fast_query(scope["query_string"])
        if not handled:
            return False
        start = time.perf_counter()
        status = 500
        try:
            try:
                if length is not None and length > settings.max_bytes + 64 * 1024:
                    raise _too_large_header(length)
                chunks, size = [], 0
                while True:
                    message = await receive()
                    if message["type"] != "http.request":  # the client went away
                        status = CLIENT_CLOSED
                        return True
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > settings.max_bytes:
                        raise _too_large_stream()
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        break
                result = await app.state.batcher.submit((chunks[0] if len(chunks) == 1 else b"".join(chunks), None))
                if isinstance(result, Exception):
                    raise result
                status, body = 200, _json(_answer(result, None, top_k))
            except Exception as exc:
                answer = _error_answer(exc)
                if answer is None:
                    await send({"type": "http.response.start", "status": 500,
                                "headers": [(b"content-type", b"text/plain; charset=utf-8")]})
                    await send({"type": "http.response.body", "body": b"Internal Server Error"})
                    raise
                status, kind, detail = answer
                metrics.observe_error("/predict", kind)
                body = _json({"error": kind, "detail": detail})
            await send({"type": "http.response.start", "status": status,
                        "headers": [*_JSON_HEADERS, (b"content-length", b"%d" % len(body))]})
            await send({"type": "http.response.body", "body": body})
        finally:
            metrics.observe_request("/predict", status, time.perf_counter() - start)
        return True

    app.fast = fast_predict

    # ------------------------------------------------------------------ endpoints

    @app.post(
        "/predict",
        summary="Classify one clip",
        description="Send an audio file as multipart field `file`, or its raw bytes as the body. "
        "Answers the top `label`, its `confidence`, `rejected` (below the service's confidence "
        "threshold: `label` is `unknown`), the `probabilities` of every class and the `top` "
        "classes; a regression model answers its `prediction` instead. `?spectrogram=true` adds a "
        "log-mel image (for the web page).",
        openapi_extra=_ONE_UPLOAD,
    )
    async def predict(request: Request, top_k: int | None = Query(None, ge=1), spectrogram: bool = False
                      ) -> dict[str, Any]:
        data, name = await _upload(request)
        if spectrogram and settings.spectrogram:
            pred, spec = await run_in_threadpool(_predict_one, data, spectrogram=True, source=name)
            return _answer(pred, spec, top_k)
        result = await app.state.batcher.submit((data, name))
        if isinstance(result, Exception):
            raise result
        return _answer(result, None, top_k)

    @app.post(
        "/predict/batch",
        summary="Classify several clips",
        description="Multipart fields `files` (repeated). Each file gets its answer or its error; "
        "one bad file does not fail the others.",
        openapi_extra={"requestBody": {"content": {"multipart/form-data": {"schema": {
            "type": "object", "properties": {"files": {"type": "array", "items": {"type": "string", "format": "binary"}}},
            "required": ["files"]}}}}},
    )
    async def predict_batch(request: Request, top_k: int | None = Query(None, ge=1)) -> dict[str, Any]:
        length = request.headers.get("content-length")
        limit = settings.max_bytes * settings.max_batch
        if length is not None and length.isdigit() and int(length) > limit:
            raise UploadRejected(f"request body is {int(length):,} bytes, above max_bytes × max_batch = {limit:,}",
                                 kind="too_large", status=413)
        if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
            raise UploadRejected("send the clips as multipart/form-data fields named 'files'", kind="no_file", status=400)
        form = await _form(request, max_files=settings.max_batch, max_fields=settings.max_batch + 16,
                           limit=(settings.max_bytes + 64 * 1024) * settings.max_batch,
                           hint=f"send at most {settings.max_batch} fields 'files' per request (max_batch)")
        items = [f for f in form.getlist("files") if not isinstance(f, str)]
        if not items:
            raise UploadRejected("multipart body has no 'files' fields; send one field 'files' per clip",
                                 kind="no_file", status=400)
        uploads = [(f.filename, await f.read()) for f in items]
        await form.close()

        def work() -> list[dict[str, Any]]:
            results = []
            for (name, _), pred in zip(uploads, _predict_many([(data, name) for name, data in uploads]), strict=True):
                if isinstance(pred, UploadRejected):
                    metrics.observe_error("/predict/batch", pred.kind)
                    results.append({"file": name, "error": pred.kind, "detail": str(pred)})
                elif isinstance(pred, AudioDecodeError):
                    metrics.observe_error("/predict/batch", "audio_decode_error")
                    results.append({"file": name, "error": "audio_decode_error", "detail": pred.reason})
                elif isinstance(pred, Exception):
                    raise pred
                else:
                    results.append({"file": name, **_answer(pred, None, top_k)})
            return results

        results = await run_in_threadpool(work)
        return {"results": results, "n": len(results), "failed": sum("error" in r for r in results)}

    explaining = asyncio.Semaphore(1)

    @app.post(
        "/explain",
        summary="Explain one clip's answer",
        description="Send an audio file as for `/predict`. Each region of the clip (a time `window` "
        "in seconds × one of `bands` mel-spaced frequency bands) is silenced in turn and the clip "
        "scored again: `importance[band][window]` is how much the probability of `explained` (the "
        "predicted class, or `?target=`) falls, or how far a regressor's value moves; `top_regions` "
        "lists the largest. Costs one prediction per region: at most `explain_max_regions` regions "
        "(400 by default) per request, one explanation at a time.",
        openapi_extra=_ONE_UPLOAD,
    )
    async def explain_clip(request: Request, target: str | None = None,
                           window: float | None = Query(
                               None, ge=0.005, le=5.0,
                               description="Seconds per region. Default 0.1 s, widened for long clips so "
                               "that they fit within the service's explain_max_regions."),
                           bands: int = Query(8, ge=1, le=64)) -> dict[str, Any]:
        from earmark.evaluation import explain
        from earmark.evaluation._explain import MAX_SECONDS

        if not settings.explain_max_regions:
            raise UploadRejected("this service does not explain (explain_max_regions is 0)", kind="disabled",
                                 status=404)
        data, name = await _upload(request)
        predictor: Predictor = app.state.predictor
        if target is not None and not predictor.classes:
            raise ParameterError("?target= names a class; this model is a regressor (drop target)")
        if target is not None and target not in predictor.classes:
            raise ParameterError(f"unknown target class {target!r}; the model's classes are {predictor.classes}")

        def work() -> dict[str, Any]:
            y = _decode(data)
            if len(y) > MAX_SECONDS * predictor.sample_rate:
                raise UploadRejected(f"/explain takes clips of up to {MAX_SECONDS:g} s; this one is "
                                     f"{len(y) / predictor.sample_rate:.1f} s. Send the part of the recording to explain.",
                                     kind="too_long", status=413)
            width = window
            if width is None:  # 0.1 s, or as wide as a long clip needs to fit the region limit
                per_band = max(1, settings.explain_max_regions // bands)
                width = max(0.1, math.ceil(len(y) / predictor.sample_rate / per_band * 1000) / 1000)
            try:
                exp = explain(predictor.model, y, sr=predictor.sample_rate, target=target, window=width, bands=bands,
                              max_regions=settings.explain_max_regions)
            except ParameterError as exc:  # named by the upload's file name, not 'the clip'
                raise ParameterError(f"{name or 'upload'}: {exc}") from None
            out = exp.to_dict()
            out["source"] = name or "upload"
            out["duration"] = round(exp.duration, 4)
            return out

        async with explaining:  # one explanation at a time: predictions go on beside it
            return await run_in_threadpool(work)

    @app.get("/health", summary="Liveness and readiness")
    def health() -> dict[str, Any]:
        predictor: Predictor = app.state.predictor
        return {"status": "ok", "classes": len(predictor.classes), "version": _version(), "worker": os.getpid()}

    @app.get("/model", summary="The served model: classes, feature and model config, metrics")
    def model_info() -> dict[str, Any]:
        predictor: Predictor = app.state.predictor
        return _model_info(predictor, settings)

    @app.get("/metrics", summary="Prometheus metrics (summed over the service's processes)",
             response_class=PlainTextResponse)
    def prometheus() -> PlainTextResponse:
        shared = app.state.shared_metrics
        text = shared.render() if shared is not None else metrics.render()
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4; charset=utf-8")

    # ------------------------------------------------------------------ API docs (no network needed)

    from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
    from fastapi.staticfiles import StaticFiles

    # Swagger UI's and ReDoc's files, as the fastapi-offline package keeps them up to date
    app.mount("/docs-assets", StaticFiles(directory=str(resources.files("fastapi_offline") / "static")),
              name="docs-assets")

    # relative URLs, as the web page's: the docs work behind a path prefix too
    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="openapi.json", title="earmark · API",
                                   swagger_js_url="docs-assets/swagger-ui-bundle.js",
                                   swagger_css_url="docs-assets/swagger-ui.css",
                                   swagger_favicon_url="docs-assets/favicon.png")

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url="openapi.json", title="earmark · API",
                              redoc_js_url="docs-assets/redoc.standalone.js",
                              redoc_favicon_url="docs-assets/favicon.png", with_google_fonts=False)

    @app.get("/", summary="Web page: upload or record a clip", response_class=HTMLResponse, include_in_schema=False)
    def page() -> HTMLResponse:
        return HTMLResponse(_page())

    return app


def _version() -> str:
    from earmark import __version__

    return __version__


_PAGE: str | None = None


def _page() -> str:
    global _PAGE
    if _PAGE is None:
        _PAGE = resources.files("earmark.serving").joinpath("static/index.html").read_text(encoding="utf-8")
    return _PAGE


def _model_info(predictor: Predictor, settings: ServeSettings) -> dict[str, Any]:
    from earmark.bundle import _jsonable

    m = predictor.manifest
    model = predictor.model
    if m is not None:
        info = {k: m.get(k) for k in ("task", "target", "classes", "features", "model", "config", "metrics",
                                      "data", "earmark_version", "libraries", "format_version", "created")}
        info["model"] = {k: v for k, v in (m.get("model") or {}).items() if k != "estimator"} | {
            "estimator": {k: v for k, v in (m["model"].get("estimator") or {}).items() if k not in ("history",)}
        }
    else:
        info = {
            "task": getattr(model, "task", None),
            "target": getattr(model, "target", None),
            "classes": predictor.classes,
            "features": {"settings": _jsonable(predictor.preset.to_dict())},
            "model": {"type": type(model.estimator).__name__},
            "config": {"settings": _jsonable(getattr(model, "config", None))},
            "metrics": _jsonable(getattr(model, "metrics", None)),
            "data": _jsonable(getattr(model, "data", None)),
        }
    info["labels"] = predictor.classes
    info["sample_rate"] = predictor.sample_rate
    info["runtime"] = predictor.runtime
    info["settings"] = settings.to_dict()
    return info


_MEL_CACHE: dict[tuple[int, int], np.ndarray] = {}


def _spectrogram(y: np.ndarray, sr: int) -> dict[str, Any]:
    """A small log-mel image for the web page: uint8 rows (frames × mels), base64."""
    import base64

    n_fft = 1 << max(8, int(np.ceil(np.log2(sr * 0.032))))
    hop = n_fft // 4
    key = (sr, n_fft)
    if key not in _MEL_CACHE:
        import librosa

        _MEL_CACHE[key] = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=_SPEC_MELS, fmin=0.0, fmax=sr / 2,
                                              htk=False, norm="slaney").astype(np.float32)
    if y.shape[0] < n_fft:
        y = np.pad(y, (0, n_fft - y.shape[0]))
    frames = 1 + (y.shape[0] - n_fft) // hop
    idx = np.arange(n_fft)[None, :] + hop * np.arange(frames)[:, None]
    win = np.hanning(n_fft).astype(np.float32)
    power = np.abs(np.fft.rfft(y[idx] * win, axis=1)) ** 2
    mel = power @ _MEL_CACHE[key].T
    db = 10 * np.log10(np.maximum(mel, 1e-10))
    top = float(db.max())
    db = np.clip(db, top - 80.0, top)
    img = np.round((db - (top - 80.0)) / 80.0 * 255).astype(np.uint8)
    return {"frames": int(frames), "mels": _SPEC_MELS, "hop_seconds": hop / sr, "db_range": [top - 80.0, top],
            "data": base64.b64encode(img.tobytes()).decode("ascii")}


def app_from_env() -> FastAPI:
    """App for ``EARMARK_SERVE_MODEL`` with settings from ``EARMARK_SERVE_*`` (uvicorn factory mode).

    Example
    -------
    >>> # EARMARK_SERVE_MODEL=digits.earmark uvicorn --factory earmark.serving.app:app_from_env
    """
    import os

    from earmark.serving.settings import ENV_PREFIX

    model = os.environ.get(ENV_PREFIX + "MODEL")
    if not model:
        raise ParameterError(f"Set {ENV_PREFIX}MODEL to the model bundle to serve.")
    env = {k: v for k, v in os.environ.items() if k != ENV_PREFIX + "MODEL"}
    settings = ServeSettings.from_env(env)
    # a process that only serves: parallel over requests, not inside them; the event loop never waits long
    defaults = {"threads": 1, "switch_interval": 0.0005}
    settings = settings.replace(**{k: v for k, v in defaults.items() if ENV_PREFIX + k.upper() not in env})
    return create_app(model, settings)
