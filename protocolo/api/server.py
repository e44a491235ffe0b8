"""Running the API: the services wired from a Runtime, the projector beside it, uvicorn."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import uvicorn

from protocolo.runtime import Runtime

from .app import create_app
from .identities import migrate_identities
from .projector_supervisor import ProjectorSupervisor
from .services import ApiServices, ConnectionPool


def build_services(rt: Runtime, *, secure_cookies: bool = True, pool_size: int = 16) -> ApiServices:
    registry = ConnectionPool(rt.registry_url, size=4)
    with registry.connection() as conn:
        migrate_identities(conn)
    return ApiServices(settings=rt.settings, kafka_bootstrap=rt.kafka_bootstrap,
                       ledger=ConnectionPool(rt.database_url, size=pool_size), registry=registry,
                       publisher=rt.publisher("protocolo-api"), sealer=rt.sealer(),
                       secure_cookies=secure_cookies)


class ProjectorThread:
    """The projector in the serving process (``serve --no-projector`` when one runs
    elsewhere): writes wait until projected, so something must project. Supervised: a
    projector that dies is restarted with backoff, and ``/readyz`` says so."""

    @staticmethod
    def start(rt: Runtime, *, backoff_s: float = 1.0) -> ProjectorSupervisor:
        return ProjectorSupervisor(lambda: rt.projector(batch_size=500), backoff_s=backoff_s).start()


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


def server(services: ApiServices, host: str, port: int, *, log_level: str = "warning") -> ThreadedServer:
    config = uvicorn.Config(create_app(services), host=host, port=port, log_level=log_level,
                            access_log=False, lifespan="off")
    return ThreadedServer(config)
