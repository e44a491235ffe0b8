"""Running the API: the services wired from a Runtime, the projector beside it, uvicorn."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import uvicorn
from fastapi import FastAPI

from protocolo.consumers.projector import Projector
from protocolo.producers.publisher import PublishFailed
from protocolo.runtime import Runtime

from .decisions import complete_pending
from .identities import migrate_identities
from .services import ApiServices, ConnectionPool

log = logging.getLogger(__name__)


def build_services(rt: Runtime, *, secure_cookies: bool = True, pool_size: int = 16) -> ApiServices:
    registry = ConnectionPool(rt.registry_url, size=8)
    with registry.connection() as conn:
        migrate_identities(conn)
    services = ApiServices(settings=rt.settings, kafka_bootstrap=rt.kafka_bootstrap,
                           ledger=ConnectionPool(rt.database_url, size=pool_size), registry=registry,
                           publisher=rt.publisher("protocolo-api"), sealer=rt.sealer(),
                           secure_cookies=secure_cookies)
    try:  # decisions a broker failure (or a crash) left half-published: finish them first
        sent = complete_pending(services)
        if sent:
            log.warning("published %d pending decision event(s) left by an interrupted publication", sent)
    except PublishFailed as exc:
        log.warning("pending decision events not published yet (the next decision retries): %s", exc)
    return services


@dataclass
class ProjectorThread:
    """The projector in a thread of the serving process (``serve --no-projector`` when one
    runs elsewhere): writes wait until projected, so something must project."""

    projector: Projector
    thread: threading.Thread

    @classmethod
    def start(cls, rt: Runtime) -> ProjectorThread:
        projector = rt.projector(batch_size=500)
        thread = threading.Thread(target=projector.run, name="projector", daemon=True)
        thread.start()
        return cls(projector, thread)

    def stop(self) -> None:
        self.projector.stop()
        self.thread.join(timeout=30)
        self.projector.close()


class ThreadedServer(uvicorn.Server):
    """uvicorn in a background thread (tests, bench): ``with server.running(): ...``
    (uvicorn leaves signal handling alone outside the main thread)."""

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        thread = threading.Thread(target=self.run, name="uvicorn", daemon=True)
        thread.start()
        try:
            while not self.started:
                if not thread.is_alive():
                    raise RuntimeError("the API server did not start (is the port free?)")
                thread.join(0.05)
            yield
        finally:
            self.should_exit = True
            thread.join(timeout=30)


def server(app: FastAPI, host: str, port: int, *, log_level: str = "warning") -> ThreadedServer:
    """``app`` as assembled by the composition root (``protocolo.app_assembly.create_app``)."""
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level,
                            access_log=False, lifespan="off")
    return ThreadedServer(config)
