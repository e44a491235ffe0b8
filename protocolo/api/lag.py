"""The projection lag, probed from Kafka at most every few seconds (a probe opens a
consumer: too slow for every request) and shared by timelines, /readyz and /metrics.

One caller refreshes a stale value while the others keep answering with the previous one:
no request waits behind a probe except the very first.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import psycopg
from kafka.errors import KafkaError

from protocolo.core.watermark import ProjectionLag, projection_lag

from .services import ApiServices

log = logging.getLogger(__name__)

CACHE_S = 2.0
_lock = threading.Lock()
_cache: dict[int, tuple[float, ProjectionLag | None, str | None]] = {}
_refreshing: set[int] = set()


#: Why the lag could not be measured, as answers may say it (the exception itself goes to
#: the server log only: its text can name hosts, databases or users).
KAFKA_UNREACHABLE = "Kafka unreachable"
POSTGRESQL_UNREACHABLE = "PostgreSQL unreachable"
NOT_MEASURED = "lag not measured (see the server log)"


def _probe(svc: ApiServices) -> tuple[ProjectionLag | None, str | None]:
    try:
        with svc.ledger.connection() as conn:
            return projection_lag(conn, svc.kafka_bootstrap, svc.topic, timeout_s=3), None
    except KafkaError as exc:
        log.warning("projection lag: Kafka: %s", exc)
        return None, KAFKA_UNREACHABLE
    except psycopg.Error as exc:
        log.warning("projection lag: PostgreSQL: %s", exc)
        return None, POSTGRESQL_UNREACHABLE
    except Exception:  # noqa: BLE001 - reported as "not measured", logged in full
        log.exception("projection lag")
        return None, NOT_MEASURED


def current_lag(svc: ApiServices) -> tuple[ProjectionLag | None, str | None]:
    """The lag, or None and why it could not be measured."""
    key = id(svc)
    with _lock:
        hit = _cache.get(key)
        fresh = hit is not None and time.monotonic() - hit[0] < CACHE_S
        if fresh or (hit is not None and key in _refreshing):
            assert hit is not None
            return hit[1], hit[2]
        _refreshing.add(key)
    try:
        lag, error = _probe(svc)
        with _lock:
            _cache[key] = (time.monotonic(), lag, error)
        return lag, error
    finally:
        with _lock:
            _refreshing.discard(key)


def lag_summary(svc: ApiServices) -> dict[str, Any]:
    lag, error = current_lag(svc)
    if lag is None:
        return {"measured": False, "error": error}
    return {"measured": True, "records_behind": lag.total,
            "behind_by_partition": {str(p): n for p, n in lag.behind.items()}}
