"""Prometheus text exposition, written by hand (format 0.0.4): a few gauges and one
histogram do not earn a dependency."""

from __future__ import annotations

import bisect
import threading
from collections.abc import Mapping

#: Request latency buckets, seconds.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._latency: dict[tuple[str, str, int], list[int]] = {}  # (method, route, status) -> buckets
        self._sums: dict[tuple[str, str, int], float] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        with self._lock:
            counts = self._latency.setdefault(key, [0] * (len(BUCKETS) + 1))
            counts[bisect.bisect_left(BUCKETS, seconds)] += 1
            self._sums[key] = self._sums.get(key, 0.0) + seconds

    def render(self, lag: Mapping[int, int] | None, counts: Mapping[str, int] | None) -> str:
        out: list[str] = []
        if lag is not None:
            out += ["# HELP protocolo_projection_lag_records Records on the topic not projected yet.",
                    "# TYPE protocolo_projection_lag_records gauge"]
            out += [f'protocolo_projection_lag_records{{partition="{p}"}} {n}' for p, n in sorted(lag.items())]
        if counts is not None:
            for name, help_text in (("quarantined", "Records in quarantine (undecodable)."),
                                    ("open_requests", "Retrieval requests not fulfilled or rejected."),
                                    ("overdue_requests", "Open retrieval requests past their deadline.")):
                out += [f"# HELP protocolo_{name} {help_text}", f"# TYPE protocolo_{name} gauge",
                        f"protocolo_{name} {counts[name]}"]
        out += ["# HELP protocolo_http_request_duration_seconds API request latency.",
                "# TYPE protocolo_http_request_duration_seconds histogram"]
        with self._lock:
            items = sorted((k, list(v), self._sums[k]) for k, v in self._latency.items())
        for (method, route, status), buckets, total in items:
            labels = f'method="{method}",route="{route}",status="{status}"'
            running = 0
            for bound, n in zip((*BUCKETS, float("inf")), buckets, strict=True):
                running += n
                le = "+Inf" if bound == float("inf") else repr(bound)
                out.append(f'protocolo_http_request_duration_seconds_bucket{{{labels},le="{le}"}} {running}')
            out.append(f"protocolo_http_request_duration_seconds_sum{{{labels}}} {total}")
            out.append(f"protocolo_http_request_duration_seconds_count{{{labels}}} {running}")
        return "\n".join(out) + "\n"
