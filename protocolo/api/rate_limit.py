"""Rate limits: an in-process token bucket per (purpose, client address).

In-process on purpose: one ``protocolo serve`` process holds the buckets, so N replicas
allow N times the rate; a deployment behind several replicas sets the limit per replica
or puts the limit in its proxy. Enough to stop password guessing and a customer script
hammering the request channel, which is what it is for (docs/api.md).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Rate:
    burst: int          # requests allowed at once
    per_minute: float   # refill


class TokenBuckets:
    def __init__(self, rate: Rate, max_keys: int = 100_000) -> None:
        self.rate = rate
        self._max_keys = max_keys
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, last refill)
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """Take one token; return 0 when allowed, else the seconds to wait."""
        now = time.monotonic()
        per_second = self.rate.per_minute / 60
        with self._lock:
            tokens, last = self._buckets.get(key, (float(self.rate.burst), now))
            tokens = min(float(self.rate.burst), tokens + (now - last) * per_second)
            if tokens >= 1:
                if len(self._buckets) >= self._max_keys and key not in self._buckets:
                    self._buckets.clear()  # bounded memory; a flood resets, never grows
                self._buckets[key] = (tokens - 1, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1 - tokens) / per_second
