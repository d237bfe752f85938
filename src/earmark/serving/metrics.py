"""Service metrics in the Prometheus text exposition format (no client library needed).

With several server processes (``earmark serve --workers N``) each process counts its own
requests; :class:`SharedMetrics` has every process write its counters to a common folder, about
once a second, and ``GET /metrics`` answers the sum over all of them, whichever process a scrape
reaches: the counters only ever grow.

Example
-------
>>> m = ServiceMetrics()
>>> m.observe_request("/predict", 200, 0.004)
>>> m.observe_prediction("7")
>>> 'earmark_predictions_total{label="7"} 1' in m.render()
True
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from bisect import bisect_left
from collections import defaultdict
from pathlib import Path
from typing import Any

__all__ = ["LATENCY_BUCKETS", "ServiceMetrics", "SharedMetrics"]

#: Upper bounds (seconds) of the latency histogram's buckets.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class ServiceMetrics:
    """Thread-safe counters and a latency histogram for one service process.

    Example
    -------
    >>> m = ServiceMetrics()
    >>> m.observe_error("/predict", "audio_decode_error")
    >>> "earmark_errors_total" in m.render()
    True
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, int], int] = defaultdict(int)
        self._errors: dict[tuple[str, str], int] = defaultdict(int)
        self._predictions: dict[str, int] = defaultdict(int)
        self._buckets: dict[str, list[int]] = {}
        self._sum: dict[str, float] = defaultdict(float)
        self._count: dict[str, int] = defaultdict(int)

    def observe_request(self, endpoint: str, status: int, seconds: float) -> None:
        """Count one finished request and its latency."""
        i = bisect_left(LATENCY_BUCKETS, seconds)
        with self._lock:
            self._requests[endpoint, int(status)] += 1
            b = self._buckets.setdefault(endpoint, [0] * (len(LATENCY_BUCKETS) + 1))
            b[i] += 1
            self._sum[endpoint] += seconds
            self._count[endpoint] += 1

    def observe_error(self, endpoint: str, kind: str) -> None:
        """Count one refused or failed request by the kind of its error."""
        with self._lock:
            self._errors[endpoint, kind] += 1

    def observe_prediction(self, label: str) -> None:
        """Count one answered prediction by its top label."""
        with self._lock:
            self._predictions[str(label)] += 1

    def snapshot(self) -> dict[str, Any]:
        """The counters as a JSON-ready dict (see :meth:`render`'s ``others``).

        Example
        -------
        >>> m = ServiceMetrics()
        >>> m.observe_prediction("7")
        >>> m.snapshot()["predictions"]
        {'7': 1}
        """
        with self._lock:
            return {
                "requests": [[ep, st, v] for (ep, st), v in self._requests.items()],
                "errors": [[ep, kind, v] for (ep, kind), v in self._errors.items()],
                "predictions": dict(self._predictions),
                "buckets": {ep: list(b) for ep, b in self._buckets.items()},
                "sum": dict(self._sum),
                "count": dict(self._count),
            }

    def render(self, others: list[dict[str, Any]] | tuple = ()) -> str:
        """The exposition text served at ``GET /metrics``: these counters plus those of ``others``
        (:meth:`snapshot` of other processes of the same service).

        Example
        -------
        >>> a, b = ServiceMetrics(), ServiceMetrics()
        >>> a.observe_prediction("7"); b.observe_prediction("7")
        >>> 'earmark_predictions_total{label="7"} 2' in a.render([b.snapshot()])
        True
        """
        if others:
            total = ServiceMetrics()
            for snap in [self.snapshot(), *others]:
                total._add(snap)
            return total.render()
        with self._lock:
            lines = [
                "# HELP earmark_requests_total HTTP requests handled, by endpoint and status code.",
                "# TYPE earmark_requests_total counter",
            ]
            for (ep, status), v in sorted(self._requests.items()):
                lines.append(f'earmark_requests_total{{endpoint="{_escape(ep)}",status="{status}"}} {v}')
            lines += [
                "# HELP earmark_request_duration_seconds Time to answer a request.",
                "# TYPE earmark_request_duration_seconds histogram",
            ]
            for ep, counts in sorted(self._buckets.items()):
                cum = 0
                e = _escape(ep)
                for le, c in zip(LATENCY_BUCKETS, counts, strict=False):
                    cum += c
                    lines.append(f'earmark_request_duration_seconds_bucket{{endpoint="{e}",le="{le:g}"}} {cum}')
                cum += counts[-1]
                lines.append(f'earmark_request_duration_seconds_bucket{{endpoint="{e}",le="+Inf"}} {cum}')
                lines.append(f'earmark_request_duration_seconds_sum{{endpoint="{e}"}} {self._sum[ep]:.6f}')
                lines.append(f'earmark_request_duration_seconds_count{{endpoint="{e}"}} {self._count[ep]}')
            lines += [
                "# HELP earmark_errors_total Refused or failed requests, by endpoint and error kind.",
                "# TYPE earmark_errors_total counter",
            ]
            for (ep, kind), v in sorted(self._errors.items()):
                lines.append(f'earmark_errors_total{{endpoint="{_escape(ep)}",kind="{_escape(kind)}"}} {v}')
            lines += [
                "# HELP earmark_predictions_total Answered predictions, by top label.",
                "# TYPE earmark_predictions_total counter",
            ]
            for label, v in sorted(self._predictions.items()):
                lines.append(f'earmark_predictions_total{{label="{_escape(label)}"}} {v}')
        return "\n".join(lines) + "\n"

    def _add(self, snap: dict[str, Any]) -> None:
        with self._lock:
            for ep, st, v in snap.get("requests", []):
                self._requests[ep, int(st)] += int(v)
            for ep, kind, v in snap.get("errors", []):
                self._errors[ep, kind] += int(v)
            for label, v in snap.get("predictions", {}).items():
                self._predictions[label] += int(v)
            for ep, counts in snap.get("buckets", {}).items():
                b = self._buckets.setdefault(ep, [0] * (len(LATENCY_BUCKETS) + 1))
                for i, c in enumerate(counts[: len(b)]):
                    b[i] += int(c)
            for ep, v in snap.get("sum", {}).items():
                self._sum[ep] += float(v)
            for ep, v in snap.get("count", {}).items():
                self._count[ep] += int(v)


class SharedMetrics:
    """The metrics of one process of a multi-process service, summed with its peers' at render time.

    Each process writes its :meth:`ServiceMetrics.snapshot` to ``folder/<pid>.json`` (atomically)
    every ``interval`` seconds and whenever it renders; :meth:`render` adds the latest files of the
    other processes to its own live counters. Files of stopped processes stay, so totals never go
    down. A scrape therefore sees the other workers' counts as they were up to ``interval`` ago.

    Example
    -------
    >>> import tempfile
    >>> shared = SharedMetrics(ServiceMetrics(), tempfile.mkdtemp())
    >>> shared.metrics.observe_prediction("7")
    >>> 'label="7"} 1' in shared.render()
    True
    """

    def __init__(self, metrics: ServiceMetrics, folder: str | os.PathLike[str], *, interval: float = 1.0) -> None:
        self.metrics = metrics
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.interval = float(interval)
        self._own = self.folder / f"{os.getpid()}.json"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def write(self) -> None:
        """Write this process's counters now."""
        tmp = self._own.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.metrics.snapshot()), encoding="utf-8")
        os.replace(tmp, self._own)

    def start(self) -> None:
        """Write the counters every ``interval`` seconds in a daemon thread, until :meth:`stop`."""
        def loop() -> None:
            while not self._stop.wait(self.interval):
                with contextlib.suppress(OSError):
                    self.write()

        self.write()
        self._thread = threading.Thread(target=loop, name="earmark-metrics-writer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the writer, after a last write."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with contextlib.suppress(OSError):
            self.write()

    def render(self) -> str:
        """The sum of this process's live counters and its peers' latest ones."""
        with contextlib.suppress(OSError):
            self.write()
        others = []
        for path in sorted(self.folder.glob("*.json")):
            if path == self._own:
                continue
            with contextlib.suppress(OSError, ValueError):
                others.append(json.loads(path.read_text(encoding="utf-8")))
        return self.metrics.render(others)
