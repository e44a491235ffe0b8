"""What the API's routes reach: connection pools, the publisher, the sealer, the limits."""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import psycopg

from protocolo.core.config import Settings
from protocolo.core.personal_data import PersonalDataSealer
from protocolo.producers.publisher import LedgerPublisher

from .document_jobs import DocumentJobs
from .metrics import Metrics
from .rate_limit import Rate, TokenBuckets

if TYPE_CHECKING:
    from .projector_supervisor import ProjectorHealth


class ConnectionPool:
    """A small pool of autocommit connections (one per worker thread at most)."""

    def __init__(self, url: str, size: int = 8) -> None:
        self.url = url
        self._idle: queue.LifoQueue[psycopg.Connection[Any]] = queue.LifoQueue(maxsize=size)
        self._slots = threading.BoundedSemaphore(size)

    @contextlib.contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        if not self._slots.acquire(timeout=30):
            raise psycopg.OperationalError("no database connection free within 30 s")
        try:
            try:
                conn = self._idle.get_nowait()
                if conn.closed or conn.broken:
                    conn = psycopg.connect(self.url, autocommit=True, connect_timeout=5)
            except queue.Empty:
                conn = psycopg.connect(self.url, autocommit=True, connect_timeout=5)
            try:
                yield conn
            except BaseException:
                conn.close()  # a half-done transaction or a broken link: never reuse
                raise
            if conn.closed or conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                conn.close()
            else:
                self._idle.put_nowait(conn)
        finally:
            self._slots.release()

    def close(self) -> None:
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return


#: Login: 10 attempts at once, then 6 a minute per client address.
LOGIN_RATE = Rate(burst=10, per_minute=6)
#: The customer channel: 20 requests at once, then 30 a minute per customer.
CUSTOMER_RATE = Rate(burst=20, per_minute=30)


@dataclass
class ApiServices:
    settings: Settings
    kafka_bootstrap: str
    ledger: ConnectionPool
    registry: ConnectionPool
    publisher: LedgerPublisher
    sealer: PersonalDataSealer
    projection_timeout_s: float = 15.0
    secure_cookies: bool = True
    metrics: Metrics = field(default_factory=Metrics)
    login_limit: TokenBuckets = field(default_factory=lambda: TokenBuckets(LOGIN_RATE))
    customer_limit: TokenBuckets = field(default_factory=lambda: TokenBuckets(CUSTOMER_RATE))
    #: The in-process projector's health for /readyz (None: it runs elsewhere).
    projector_health: Callable[[], ProjectorHealth] | None = None
    #: exports and reports ordered from the console (the maker is set by ``protocolo serve``)
    documents: DocumentJobs = field(default_factory=DocumentJobs)

    @property
    def topic(self) -> str:
        return self.settings.topic

    #: stopped first on close (background work on these services: the decision outbox sweep)
    stoppers: list[Callable[[], None]] = field(default_factory=list)

    def close(self) -> None:
        for stop in self.stoppers:
            stop()
        self.publisher.close()
        self.ledger.close()
        self.registry.close()
