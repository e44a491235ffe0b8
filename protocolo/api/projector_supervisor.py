"""The projector inside ``protocolo serve``, supervised.

The API's writes wait until they are projected, so a serving process whose projector died
answers every write with a timeout while ``/readyz`` says all is well. Here the projector
runs in a thread that is watched: when :meth:`Projector.run` raises (a broker or database
that went away, a ledger the projector refuses to extend), the error is logged with its
traceback for the operator, the projector is closed and a new one is started after a
backoff (1 s, doubling up to a minute; back to 1 s once a projector ran for a minute).
:meth:`ProjectorSupervisor.health` says whether one is projecting now, for ``/readyz``,
with a reason from a fixed list: exception text never leaves the server log.

The shape is Erlang/OTP's one-for-one supervisor with restart intensity replaced by an
exponential backoff (as Kubernetes' CrashLoopBackOff): the API stays up and says why it
is not ready instead of exiting, because it still serves reads.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import psycopg
from kafka.errors import KafkaError

from protocolo.consumers.projector import Projector, ProjectorError
from protocolo.core.database import MigrationEdited

log = logging.getLogger(__name__)

#: What /readyz may say about a projector that is not running (nothing else is shown).
REASONS = {
    "starting": "the projector is starting",
    "kafka": "the projector cannot reach Kafka; restarting with backoff",
    "postgresql": "the projector cannot reach PostgreSQL; restarting with backoff",
    "ledger": "the projector stopped on the ledger's state and needs an operator (see the server log)",
    "failed": "the projector failed (see the server log); restarting with backoff",
    "stopped": "the projector was stopped",
}


def failure_kind(exc: BaseException) -> str:
    """Which :data:`REASONS` entry an exception of the projector falls under."""
    if isinstance(exc, KafkaError):
        return "kafka"
    if isinstance(exc, psycopg.OperationalError):
        return "postgresql"
    if isinstance(exc, (ProjectorError, MigrationEdited)):
        return "ledger"
    return "failed"


@dataclass(frozen=True)
class ProjectorHealth:
    running: bool
    restarts: int
    reason: str | None  # one of REASONS' values, None while running

    def as_check(self) -> dict[str, object]:
        check: dict[str, object] = {"ok": self.running, "restarts": self.restarts}
        if self.reason is not None:
            check["reason"] = self.reason
        return check


class ProjectorSupervisor:
    """Runs ``make()``'s projector until :meth:`stop`, restarting it after each failure."""

    def __init__(self, make: Callable[[], Projector], *, backoff_s: float = 1.0,
                 max_backoff_s: float = 60.0, healthy_after_s: float = 60.0) -> None:
        self._make = make
        self._backoff_s, self._max_backoff_s, self._healthy_after_s = backoff_s, max_backoff_s, healthy_after_s
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._current: Projector | None = None
        self._running = False
        self._kind = "starting"
        self.restarts = 0
        self._thread = threading.Thread(target=self._supervise, name="projector-supervisor", daemon=True)

    def start(self) -> ProjectorSupervisor:
        self._thread.start()
        return self

    def health(self) -> ProjectorHealth:
        with self._lock:
            alive = self._thread.is_alive()
            if self._running and alive:
                return ProjectorHealth(True, self.restarts, None)
            return ProjectorHealth(False, self.restarts, REASONS[self._kind if alive else "stopped"])

    def stop(self, timeout_s: float = 30.0) -> None:
        self._stop.set()
        with self._lock:
            current = self._current
        if current is not None:
            current.stop()
        self._thread.join(timeout=timeout_s)

    def _supervise(self) -> None:
        delay = self._backoff_s
        while not self._stop.is_set():
            started = time.monotonic()
            kind = self._run_once()
            if kind is None:
                return  # stopped on request
            ran_s = time.monotonic() - started
            delay = self._backoff_s if ran_s >= self._healthy_after_s else delay
            with self._lock:
                self._running, self._kind = False, kind
            log.warning("projector: %s; next start in %.1f s", REASONS[kind], delay)
            if self._stop.wait(delay):
                return
            with self._lock:
                self.restarts += 1
            delay = min(delay * 2, self._max_backoff_s)

    def _run_once(self) -> str | None:
        """One projector's life: None when it was stopped on request, else the failure kind."""
        try:
            projector = self._make()
        except Exception as exc:  # noqa: BLE001 - logged in full, reported by kind
            log.error("projector: could not start", exc_info=exc)
            return failure_kind(exc)
        with self._lock:
            self._current, self._running = projector, True
        try:
            if self._stop.is_set():
                return None
            projector.run()
            return None if self._stop.is_set() else "failed"
        except Exception as exc:  # noqa: BLE001 - logged in full, reported by kind
            log.error("projector: stopped by an error", exc_info=exc)
            return failure_kind(exc)
        finally:
            with self._lock:
                self._current, self._running = None, False
            try:
                projector.close()
            except Exception:  # noqa: BLE001 - closing a broken projector must not stop supervision
                log.warning("projector: closing it failed", exc_info=True)
