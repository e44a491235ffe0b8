"""A running API for the module: uvicorn in a thread on 127.0.0.1, the projector in
another, real Kafka and PostgreSQL (the session's backend), a fresh ledger database and
topic, a few contacts, and one user per role with an API token.

``api`` (module): :class:`RunningApi`. Tokens: ``api.tokens[<role or name>]``; also
``expired``, ``revoked`` and ``other-customer`` (a customer who owns nothing asked for).
"""

from __future__ import annotations

import hashlib
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from psycopg import sql

from protocolo.api import identities
from protocolo.api.roles import Role
from protocolo.api.server import ProjectorThread, build_services, server
from protocolo.api.services import ApiServices
from protocolo.core.config import Settings
from protocolo.core.watermark import log_end_offsets, wait_until_projected
from protocolo.devstack import Endpoints
from protocolo.ledger_topic import ensure_ledger_topic
from protocolo.producers.protocol_issuer import ProtocolIssuer
from protocolo.producers.publisher import Event
from protocolo.runtime import Runtime

try:
    import backends
except ImportError:  # tests/ turned into a package
    from tests import backends

CPF_A = "111.444.777-35"
CPF_B = "123.456.789-09"


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class RunningApi:
    base_url: str
    runtime: Runtime
    services: ApiServices
    database_url: str
    topic: str
    tokens: dict[str, str] = field(default_factory=dict)
    protocols: dict[str, str] = field(default_factory=dict)   # label -> protocol number
    recordings: dict[str, str] = field(default_factory=dict)  # label -> recording id

    def client(self, who: str | None = None, **kwargs: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.tokens[who]}"} if who else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=60, **kwargs)

    def log_end(self) -> dict[int, int]:
        """The topic's log end: publishing nothing leaves it where it was."""
        return log_end_offsets(self.runtime.kafka_bootstrap, self.topic)

    def settle(self) -> None:
        """Wait until everything on the topic is projected (e.g. audit events)."""
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            wait_until_projected(conn, self.runtime.kafka_bootstrap, self.topic, timeout_s=60)

    def query(self, text: str, *args: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            return conn.execute(text.encode(), args).fetchall()  # type: ignore[arg-type]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _seed(api: RunningApi) -> None:
    """Three contacts: two of customer A (one recorded), one of customer B."""
    rt = api.runtime
    issuer = ProtocolIssuer(rt.registry_url)
    numbers = [issuer.issue() for _ in range(3)]
    events: list[Event] = []
    for label, number, cpf, recorded in (("a1", numbers[0], CPF_A, True), ("a2", numbers[1], CPF_A, False),
                                         ("b1", numbers[2], CPF_B, True)):
        api.protocols[label] = number
        events.append(Event("ContactOpened", {
            "channel": "PHONE", "direction": "INBOUND", "service_type": "MOBILE",
            "customer": {"cpf": cpf, "customer_code": f"C-{label}", "name": f"Cliente {label}"},
            "agent_id": "agent-007", "subject": "cobrança não reconhecida", "recorded": recorded,
            "language": "pt-BR"}, protocol_number=number))
        events.append(Event("ContactClosed", {"outcome": "RESOLVED", "summary": "ok"}, protocol_number=number))
        if recorded:
            rec = f"rec-{label}-{uuid.uuid4().hex[:6]}"
            api.recordings[label] = rec
            events.append(Event("RecordingCaptured", {
                "recording_id": rec, "media_uri": f"s3://recordings/{rec}.opus", "sha256": sha256(rec),
                "duration_ms": 60_000, "retention_profile": "br-anatel-rgc", "retention_days": 180},
                protocol_number=number))
    publisher = rt.publisher("test-seed")
    try:
        publisher.publish_many(events)
    finally:
        publisher.close()


def _users(api: RunningApi) -> None:
    index = api.runtime.sealer().index
    with psycopg.connect(api.runtime.registry_url, autocommit=True) as conn:
        for role in Role:
            subject = index.cpf(CPF_A) if role is Role.CUSTOMER else None
            identities.add_user(conn, role.value, role, password=f"pw-{role.value}", subject_ref=subject)
            api.tokens[role.value] = identities.issue(conn, role.value, "token", timedelta(days=1)).credential
        identities.add_user(conn, "customer-b", Role.CUSTOMER, password="pw-b", subject_ref=index.cpf(CPF_B))
        api.tokens["other-customer"] = identities.issue(conn, "customer-b", "token", timedelta(days=1)).credential
        # a second approver, so that two-person approval can succeed
        identities.add_user(conn, "compliance-2", Role.COMPLIANCE, password="pw-c2")
        api.tokens["compliance-2"] = identities.issue(conn, "compliance-2", "token", timedelta(days=1)).credential
        api.tokens["expired"] = identities.issue(conn, "compliance", "token", timedelta(seconds=-1)).credential
        revoked = identities.issue(conn, "compliance", "token", timedelta(days=1))
        identities.revoke(conn, revoked.credential_id)
        api.tokens["revoked"] = revoked.credential


@pytest.fixture(scope="module")
def api(backend: Endpoints, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApi]:
    name = f"t_api_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(backend.database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    database_url = backends.with_database(backend.database_url, name)
    topic = f"t-api-{uuid.uuid4().hex[:10]}"
    ensure_ledger_topic(backend.kafka_bootstrap, topic, 4)
    settings = Settings(home=Path(tmp_path_factory.mktemp("api-home")), kafka_bootstrap=backend.kafka_bootstrap,
                        database_url=database_url, topic=topic, partitions=4,
                        group_id=f"protocolo-projector-{uuid.uuid4().hex[:8]}", dev_keys=True)
    rt = Runtime.start(settings)
    services = build_services(rt, pool_size=8)
    services.projection_timeout_s = 60
    projector = ProjectorThread.start(rt)
    port = _free_port()
    running = server(services, "127.0.0.1", port)
    try:
        with running.running():
            api = RunningApi(f"http://127.0.0.1:{port}", rt, services, database_url, topic)
            _users(api)
            _seed(api)
            api.settle()
            yield api
    finally:
        projector.stop()
        services.close()
        with psycopg.connect(backend.database_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
