"""A small headless-Chromium driver over the Chrome DevTools Protocol, shared by browser tests.

Usage::

    from _chromium import chromium_path, open_page

    with open_page("file:///tmp/report.html") as page:
        assert page.evaluate("document.images.length") > 0
        page.screenshot(tmp_path / "report.png")
        assert page.console_errors() == []

``open_page`` starts Debian's ``chromium`` (``/usr/bin/chromium``, or ``$CHROMIUM``) headless
with a throw-away profile and ``--remote-debugging-port=0``, reads the port Chromium picked
from ``DevToolsActivePort``, connects to the page target with ``websocket-client`` and loads
the URL, waiting for the ``load`` event. Console errors, uncaught exceptions and browser log
errors (failed requests, CSP violations) are collected from the moment the page opens.
Tests skip when ``chromium_path()`` is ``None``; CI installs the package.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["ChromiumPage", "chromium_path", "open_page"]

_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--no-first-run",
    "--no-default-browser-check",
    "--mute-audio",
    "--remote-debugging-port=0",
)


def chromium_path() -> str | None:
    """The Chromium binary to drive (``$CHROMIUM``, else ``chromium`` on PATH), or ``None``."""
    explicit = os.environ.get("CHROMIUM")
    if explicit and Path(explicit).exists():
        return explicit
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


class ChromiumPage:
    """One page of a running headless Chromium, driven over a DevTools websocket."""

    def __init__(self, ws: Any, timeout: float) -> None:
        self._ws = ws
        self._timeout = timeout
        self._next_id = 0
        self._errors: list[str] = []
        self._events: list[dict[str, Any]] = []

    # -- protocol -------------------------------------------------------------------------
    def send(self, method: str, **params: Any) -> dict[str, Any]:
        """Call a DevTools method and return its ``result`` (raises on a protocol error)."""
        self._next_id += 1
        call_id = self._next_id
        self._ws.send(json.dumps({"id": call_id, "method": method, "params": params}))
        deadline = time.monotonic() + self._timeout
        while time.monotonic() < deadline:
            message = json.loads(self._ws.recv())
            if message.get("id") == call_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self._on_event(message)
        raise TimeoutError(f"no answer to {method} within {self._timeout} s")

    def wait_for(self, event: str) -> dict[str, Any]:
        """Wait for a protocol event (e.g. ``Page.loadEventFired``) and return its params."""
        for i, seen in enumerate(self._events):
            if seen.get("method") == event:
                del self._events[i]
                return seen.get("params", {})
        deadline = time.monotonic() + self._timeout
        while time.monotonic() < deadline:
            message = json.loads(self._ws.recv())
            self._on_event(message)
            if message.get("method") == event:
                self._events.remove(message)
                return message.get("params", {})
        raise TimeoutError(f"no {event} within {self._timeout} s")

    def _on_event(self, message: dict[str, Any]) -> None:
        method = message.get("method")
        if method is None:
            return
        params = message.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in params["args"])
            self._errors.append(f"console.{params['type']}: {text}")
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            desc = details.get("exception", {}).get("description") or details.get("text")
            self._errors.append(f"exception: {desc}")
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            self._errors.append(f"{entry.get('source')}: {entry.get('text')} {entry.get('url', '')}")
        self._events.append(message)
        del self._events[:-200]  # keep memory bounded

    # -- what tests use -------------------------------------------------------------------
    def goto(self, url: str) -> None:
        """Load ``url`` and wait for its ``load`` event."""
        self.send("Page.navigate", url=url)
        self.wait_for("Page.loadEventFired")

    def evaluate(self, expression: str) -> Any:
        """Evaluate JavaScript in the page (promises awaited) and return the value as JSON."""
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True,
                           awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"JavaScript error: {result['exceptionDetails']}")
        return result.get("result", {}).get("value")

    def screenshot(self, path: str | Path, *, full_page: bool = True,
                   max_height: int = 12000) -> Path:
        """Save a PNG screenshot (the whole page up to ``max_height`` CSS pixels)."""
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            size = self.send("Page.getLayoutMetrics")["cssContentSize"]
            params["clip"] = {"x": 0, "y": 0, "width": size["width"],
                              "height": min(size["height"], max_height), "scale": 1}
            params["captureBeyondViewport"] = True
        data = self.send("Page.captureScreenshot", **params)["data"]
        path = Path(path)
        path.write_bytes(base64.b64decode(data))
        return path

    def console_errors(self) -> list[str]:
        """Errors seen so far: console.error, uncaught exceptions, failed loads, CSP blocks."""
        # drain what already arrived without blocking
        self._ws.settimeout(0.2)
        try:
            while True:
                self._on_event(json.loads(self._ws.recv()))
        except Exception:  # websocket timeout: nothing more queued
            pass
        finally:
            self._ws.settimeout(self._timeout)
        return list(self._errors)


def _devtools_port(profile: Path, proc: subprocess.Popen, timeout: float) -> int:
    marker = profile / "DevToolsActivePort"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"chromium exited early with code {proc.returncode}")
        if marker.exists():
            text = marker.read_text().split()
            if text:
                return int(text[0])
        time.sleep(0.1)
    raise TimeoutError(f"chromium did not open a DevTools port within {timeout} s")


@contextlib.contextmanager
def open_page(url: str, *, width: int = 1280, height: int = 900,
              timeout: float = 60.0) -> Iterator[ChromiumPage]:
    """Start headless Chromium, open ``url``, yield a :class:`ChromiumPage`, then clean up."""
    import websocket  # websocket-client

    binary = chromium_path()
    if binary is None:
        raise RuntimeError("chromium not found; install Debian's `chromium` or set $CHROMIUM")
    profile = Path(tempfile.mkdtemp(prefix="earmark-chromium-"))
    cmd = [binary, *_FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}",
           "about:blank"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ws = None
    try:
        port = _devtools_port(profile, proc, timeout)
        deadline = time.monotonic() + timeout
        target = None
        while target is None and time.monotonic() < deadline:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as r:
                pages = [t for t in json.load(r) if t.get("type") == "page"]
            target = pages[0] if pages else None
            if target is None:
                time.sleep(0.1)
        if target is None:
            raise TimeoutError("chromium opened no page target")
        ws = websocket.create_connection(target["webSocketDebuggerUrl"], timeout=timeout,
                                         suppress_origin=True)
        page = ChromiumPage(ws, timeout)
        for domain in ("Page", "Runtime", "Log"):
            page.send(f"{domain}.enable")
        page.goto(url)
        yield page
    finally:
        if ws is not None:
            with contextlib.suppress(Exception):
                ws.close()
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        shutil.rmtree(profile, ignore_errors=True)
