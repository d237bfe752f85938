"""Several server processes on one port, each with its own listening socket (``SO_REUSEPORT``).

uvicorn's own ``--workers`` shares one listening socket between processes, and whichever process
wakes first accepts: with a few keep-alive clients, one worker often ends up holding most of the
connections while the other idles. Here every worker binds its own socket to the same address with
``SO_REUSEPORT``, and the kernel hands each new connection to one of them by a hash of its
addresses, so connections spread over the workers. Where ``SO_REUSEPORT`` does not exist
(Windows), :func:`run_workers` falls back to uvicorn's shared socket.

Example
-------
>>> run_workers("earmark.serving.app:app_from_env", host="127.0.0.1", port=8000, workers=2,
...             factory=True)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import errno
import multiprocessing as mp
import os
import signal
import socket
import sys
from typing import Any

__all__ = ["reuse_port_supported", "run_workers"]


def reuse_port_supported() -> bool:
    """Whether this platform lets several sockets listen on one port (``SO_REUSEPORT``)."""
    return hasattr(socket, "SO_REUSEPORT") and sys.platform != "win32"


def _bind(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` with ``SO_REUSEPORT``, not yet listening (the event loop calls
    ``listen`` when it starts serving, after the app's startup: no connection waits on a worker
    that is still loading its model)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


class _StartTogether:
    """ASGI wrapper that holds the app's "startup complete" until every worker has loaded its app.

    uvicorn only starts listening once the app's startup is complete, so no worker accepts
    connections while another is still loading the model: a client that sees the service ready
    (``GET /health``) and then opens connections gets them spread over all the workers.
    """

    def __init__(self, app: Any, barrier: Any, timeout: float) -> None:
        self.app = app
        self.barrier = barrier
        self.timeout = timeout

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def _send(message: dict) -> None:
            if message["type"] == "lifespan.startup.complete":
                import asyncio
                import threading

                # a worker that failed to start breaks the barrier: the others serve anyway
                with contextlib.suppress(threading.BrokenBarrierError):
                    await asyncio.get_running_loop().run_in_executor(None, self.barrier.wait, self.timeout)
            await send(message)

        await self.app(scope, receive, _send)


def _refuse_if_listening(host: str, port: int) -> None:
    probe = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    try:
        with socket.create_connection((probe, port), timeout=0.5):
            pass
    except OSError:
        return  # nobody answers: free (or at least not served)
    raise OSError(f"[Errno {errno.EADDRINUSE}] Address already in use: something already listens on {host}:{port}")


def _die_with_parent() -> None:
    """On Linux, have the kernel stop this worker when the launching process dies (even by SIGKILL)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _worker(app: str, host: str, port: int, options: dict[str, Any], barrier: Any, timeout: float) -> None:
    import uvicorn

    _die_with_parent()
    from uvicorn.importer import import_from_string

    options = dict(options)
    target = import_from_string(app)
    if options.pop("factory", False):
        target = target()
    sock = _bind(host, port)
    config = uvicorn.Config(_StartTogether(target, barrier, timeout), host=host, port=port, **options)
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[sock])
    finally:
        barrier.abort()  # a worker that stops (or never started) releases the others
    if not server.started:  # its startup failed (uvicorn.run exits 3 for this; Server.run returns)
        sys.exit(3)


def run_workers(app: str, *, host: str, port: int, workers: int, start_timeout: float = 300.0,
                **options: Any) -> None:
    """Run ``workers`` uvicorn processes serving ``app`` on ``host:port``; returns when they stop.

    Parameters
    ----------
    app : str
        ``"module:attribute"`` of the ASGI app (or factory, with ``factory=True`` in ``options``).
    host, port : str, int
        Address to listen on (port 0 is not allowed: the workers must agree on one port).
    workers : int
        Number of processes. They start listening together, once each has loaded the app (or after
        ``start_timeout`` seconds, or as soon as one of them fails to start).
    start_timeout : float
        Longest wait, in seconds, for the slowest worker's startup.
    **options
        Passed to :class:`uvicorn.Config` (``factory``, ``log_level``, ``http``, ``loop``, …).

    Examples
    --------
    >>> run_workers("earmark.serving.app:app_from_env", host="127.0.0.1", port=8000, workers=2,
    ...             factory=True)  # doctest: +SKIP
    """
    import uvicorn

    if workers <= 1 or not reuse_port_supported():
        uvicorn.run(app, host=host, port=port, workers=workers, **options)
        return
    if port == 0:
        raise ValueError("Several workers need a fixed port (got port 0); pass --port.")
    # A port in use fails now, with one message. Binding alone is not enough: another process of
    # this user that also set SO_REUSEPORT (an earlier `earmark serve`) would silently share the port.
    _refuse_if_listening(host, port)
    _bind(host, port).close()
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(workers)
    procs = [ctx.Process(target=_worker, args=(app, host, port, options, barrier, start_timeout),
                         name=f"earmark-serve-{i}") for i in range(workers)]
    for p in procs:
        p.start()

    def _stop(signum: int, frame: Any) -> None:
        for p in procs:
            if p.is_alive() and p.pid is not None:
                os.kill(p.pid, signal.SIGTERM)

    previous = {s: signal.signal(s, _stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        for p in procs:
            p.join()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if all(p.exitcode == 3 for p in procs):
        raise RuntimeError(f"none of the {workers} workers could start the service (their errors are above)")
