"""Running the API: the services wired from a Runtime, the projector beside it, uvicorn."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator
from typing import Any

import uvicorn
from fastapi import FastAPI

from protocolo.producers.publisher import PublishFailed
from protocolo.runtime import Runtime

from .decisions import complete_pending, start_sweeper
from .identities import migrate_identities
from .projector_supervisor import ProjectorSupervisor
from .services import ApiServices, ConnectionPool

log = logging.getLogger(__name__)


def build_services(rt: Runtime, *, secure_cookies: bool = True, pool_size: int = 16,
                   sweep_every_s: float = 5.0) -> ApiServices:
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
        log.warning("pending decision events not published yet (the sweep retries): %s", exc)
    start_sweeper(services, sweep_every_s)
    return services


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


#: Addresses (or CIDRs, comma-separated) of the reverse proxies whose X-Forwarded-For and
#: X-Forwarded-Proto are believed. None by default: the socket's peer is the client.
ENV_TRUSTED_PROXIES = "PROTOCOLO_TRUSTED_PROXIES"


def proxy_options(trusted_proxies: str | None = None) -> dict[str, Any]:
    """uvicorn's proxy-headers settings: on only for the configured trusted proxies."""
    trusted = (os.environ.get(ENV_TRUSTED_PROXIES, "") if trusted_proxies is None else trusted_proxies).strip()
    return {"proxy_headers": bool(trusted), "forwarded_allow_ips": trusted or None}


def server(app: FastAPI, host: str, port: int, *, log_level: str = "warning",
           trusted_proxies: str | None = None) -> ThreadedServer:
    """``app`` as assembled by the composition root (``protocolo.app_assembly.create_app``).
    ``trusted_proxies``: see ENV_TRUSTED_PROXIES (read from the environment when None).
    uvicorn would otherwise trust X-Forwarded-For from 127.0.0.1, so any local client could
    choose its address (the login limit's key, AccessRecorded.source_address)."""
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level,
                            access_log=False, lifespan="off", **proxy_options(trusted_proxies))
    return ThreadedServer(config)
