"""Rate limits: an in-process token bucket per (purpose, client address).

In-process on purpose: one ``protocolo serve`` process holds the buckets, so N replicas
allow N times the rate; a deployment behind several replicas sets the limit per replica
or puts the limit in its proxy. Enough to stop password guessing and a customer script
hammering the request channel, which is what it is for (docs/api.md).

Memory is bounded without forgetting offenders: the buckets are kept in least-recently
used order; at the bound, the least recently used bucket is dropped only if it has
refilled (dropping it changes nothing); otherwise every bucket still holds an offender's
debt, and a key not seen before shares one overflow bucket with the other newcomers. A
flood of fresh addresses is then limited as one, and resets nobody.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

OVERFLOW = "\x00overflow"


@dataclass(frozen=True)
class Rate:
    burst: int          # requests allowed at once
    per_minute: float   # refill


class TokenBuckets:
    def __init__(self, rate: Rate, max_keys: int = 100_000) -> None:
        self.rate = rate
        self._max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, last refill)
        self._lock = threading.Lock()

    def _refilled(self, tokens: float, last: float, now: float) -> float:
        return min(float(self.rate.burst), tokens + (now - last) * self.rate.per_minute / 60)

    def _slot(self, key: str, now: float) -> str:
        """The key to charge: ``key``, or the overflow bucket when the table is full of debts."""
        if key in self._buckets or len(self._buckets) < self._max_keys:
            return key
        oldest, (tokens, last) = next(iter(self._buckets.items()))
        if self._refilled(tokens, last, now) >= self.rate.burst:
            del self._buckets[oldest]
            return key
        return OVERFLOW

    def take(self, key: str) -> float:
        """Take one token; return 0 when allowed, else the seconds to wait."""
        now = time.monotonic()
        with self._lock:
            key = self._slot(key, now)
            tokens, last = self._buckets.get(key, (float(self.rate.burst), now))
            tokens = self._refilled(tokens, last, now)
            allowed = tokens >= 1
            self._buckets[key] = (tokens - 1 if allowed else tokens, now)
            self._buckets.move_to_end(key)
            return 0.0 if allowed else (1 - tokens) / (self.rate.per_minute / 60)

    def __len__(self) -> int:
        return len(self._buckets)
