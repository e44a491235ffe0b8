"""What the API tests share: the running API's handle, its seed contacts and users.

(A module of its own, not ``conftest``: several test folders have a ``conftest.py``, and
``from conftest import ...`` would find whichever was imported first.)
"""

from __future__ import annotations

import hashlib
import socket
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
import psycopg

from protocolo.api import identities
from protocolo.api.roles import Role
from protocolo.api.services import ApiServices
from protocolo.core.watermark import log_end_offsets, wait_until_projected
from protocolo.producers.protocol_issuer import ProtocolIssuer
from protocolo.producers.publisher import Event
from protocolo.runtime import Runtime

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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def seed(api: RunningApi) -> None:
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


REGULATOR_NAME = "anatel"  # the "regulator" user's regulator


def users(api: RunningApi) -> None:
    index = api.runtime.sealer().index
    with psycopg.connect(api.runtime.registry_url, autocommit=True) as conn:
        for role in Role:
            subject = index.cpf(CPF_A) if role is Role.CUSTOMER else None
            identities.add_user(conn, role.value, role, password=f"pw-{role.value}", subject_ref=subject,
                                regulator=REGULATOR_NAME if role is Role.REGULATOR else None)
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


