"""Service metrics in the Prometheus text exposition format (no client library needed).

Example
-------
>>> m = ServiceMetrics()
>>> m.observe_request("/predict", 200, 0.004)
>>> m.observe_prediction("7")
>>> 'earmark_predictions_total{label="7"} 1' in m.render()
True
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections import defaultdict

__all__ = ["LATENCY_BUCKETS", "ServiceMetrics"]

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

    def render(self) -> str:
        """The exposition text served at ``GET /metrics``."""
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
