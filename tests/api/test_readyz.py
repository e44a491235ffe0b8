"""/readyz and the supervised projector of ``protocolo serve``.

The projector runs beside the API: when its thread dies, the API must say so (503, which
dependency, no exception text) and a new projector must take over, with backoff, so that
records published meanwhile are projected once it comes back. The fault is real: the test
installs a hook that makes the running projector's poll raise (as a broken dependency
would), with a message that must never reach an answer.
"""

from __future__ import annotations

import dataclasses
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import psycopg
import pytest

from protocolo.api.server import ProjectorThread, build_services, server
from protocolo.api.services import ApiServices, ConnectionPool
from protocolo.app_assembly import create_app
from protocolo.consumers.projector import Projector
from protocolo.core.watermark import wait_until_projected
from protocolo.producers.protocol_issuer import ProtocolIssuer
from protocolo.producers.publisher import Event
from protocolo.runtime import Runtime

SECRET = "hunter2 at db-internal.example:5432 for 123.456.789-09"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclasses.dataclass
class Served:
    url: str
    rt: Runtime
    services: ApiServices


@pytest.fixture
def served(settings) -> Iterator[Callable[[ApiServices], Any]]:  # type: ignore[no-untyped-def]
    """Start uvicorn over the given services; stop it afterwards."""
    stack: list[Any] = []

    def start(services: ApiServices) -> str:
        port = free_port()
        running = server(create_app(services), "127.0.0.1", port).running()
        running.__enter__()
        stack.append(running)
        return f"http://127.0.0.1:{port}"

    yield start
    for running in reversed(stack):
        running.__exit__(None, None, None)


def publish_note(rt: Runtime, text: str) -> None:
    with ProtocolIssuer(rt.registry_url) as issuer:
        protocol = issuer.issue()
    with rt.publisher("readyz-test") as publisher:
        publisher.publish_many([Event("NoteAdded", {"agent_id": "ag-1", "agent_name": "Ana", "text": text},
                                      protocol_number=protocol)])


def wait_for(condition: Callable[[], bool], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


@pytest.mark.timeout(240)
def test_a_dead_projector_makes_readyz_fail_and_is_restarted(settings, served, monkeypatch) -> None:
    rt = Runtime.start(settings)
    services = build_services(rt, pool_size=4)
    failing = threading.Event()
    real_step = Projector.step

    def step(self: Projector) -> int:  # the test's fault: the running projector's poll raises
        if failing.is_set():
            raise RuntimeError(SECRET)
        return real_step(self)

    monkeypatch.setattr(Projector, "step", step)
    projector = ProjectorThread.start(rt, backoff_s=0.2)
    services.projector_health = projector.health
    try:
        url = served(services)
        wait_for(lambda: httpx.get(f"{url}/readyz").status_code == 200)

        failing.set()
        wait_for(lambda: httpx.get(f"{url}/readyz").status_code == 503)
        answer = httpx.get(f"{url}/readyz")
        body = answer.json()
        assert body["ready"] is False
        assert body["checks"]["projector"]["ok"] is False
        assert "projector failed" in body["checks"]["projector"]["reason"]
        assert body["checks"]["postgresql"]["ok"] and body["checks"]["kafka"]["ok"]
        assert "hunter2" not in answer.text and "123.456" not in answer.text and "RuntimeError" not in answer.text
        publish_note(rt, "published while the projector is down")
        wait_for(lambda: projector.health().restarts >= 2)  # it keeps trying, with backoff

        failing.clear()  # the fault goes away: a restarted projector catches up
        with psycopg.connect(rt.database_url, autocommit=True) as conn:
            wait_until_projected(conn, rt.kafka_bootstrap, settings.topic, timeout_s=60)
        wait_for(lambda: httpx.get(f"{url}/readyz").status_code == 200)
        assert httpx.get(f"{url}/readyz").json()["checks"]["projector"]["ok"] is True
    finally:
        projector.stop()
        services.close()


def test_readyz_names_the_dependency_that_is_down_without_exception_text(settings, served) -> None:
    rt = Runtime.start(settings)
    services = build_services(rt, pool_size=2)
    try:
        with socket.socket() as closed:  # a port nothing listens on
            closed.bind(("127.0.0.1", 0))
            dead = f"127.0.0.1:{closed.getsockname()[1]}"
        no_kafka = dataclasses.replace(services, kafka_bootstrap=dead)
        missing_db = psycopg.conninfo.make_conninfo(rt.database_url, dbname="no_such_ledger_db_7731")
        no_postgres = dataclasses.replace(services, ledger=ConnectionPool(missing_db, size=1))
        for svc, down, up in ((no_kafka, "kafka", "postgresql"), (no_postgres, "postgresql", "kafka")):
            url = served(svc)
            answer = httpx.get(f"{url}/readyz", timeout=30)
            assert answer.status_code == 503
            checks = answer.json()["checks"]
            assert checks[down] == {"ok": False, "reason": f"{'Kafka' if down == 'kafka' else 'PostgreSQL'} unreachable"}
            assert checks[up]["ok"] is True or down == "postgresql"  # no lag without the database
            for leak in ("Error", "no_such_ledger_db", dead, "Traceback", "errno"):
                assert leak not in answer.text, leak
    finally:
        services.close()
