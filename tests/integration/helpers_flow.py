"""Shared helpers of the integration tests (flow, CLI, views, personal data, publisher, issuer).

Everything here talks to the real broker and the real PostgreSQL of the ``backend``
fixture: a raw kafka-python consumer to read what really is on the topic, the projector
to fill the views, and the CLI's ``main`` run in-process with the test's settings in the
environment.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from kafka import KafkaConsumer, TopicPartition

from protocolo.cli import main as cli_main
from protocolo.consumers.projector import ProjectorStats
from protocolo.core.config import Settings
from protocolo.runtime import Runtime

CPF = "111.444.777-35"
CPF_DIGITS = "11144477735"
CPF_MASKED = "***.444.777-**"
OTHER_CPF = "123.456.789-09"


def quiet(message: str) -> None:
    pass


def start_runtime(settings: Settings) -> Runtime:
    return Runtime.start(settings, log=quiet)


def project(rt: Runtime) -> ProjectorStats:
    """Run the projector until every partition reaches its log end."""
    with rt.projector() as projector:
        return projector.run(until_caught_up=True, idle_timeout_s=60)


def now_s() -> datetime:
    """Now, in UTC, to the second (so that times survive Avro micros and PostgreSQL exactly)."""
    return datetime.now(UTC).replace(microsecond=0)


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def drain(bootstrap: str, topic: str, partitions: int = 4, timeout_s: float = 20.0) -> list[Any]:
    """Every record of ``topic``, read from the beginning with a raw consumer.

    Stops once each partition's high watermark (from fetch responses, which tansu reports
    right, unlike ``end_offsets``) is known and reached; fails if that takes too long.
    """
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        records: list[Any] = []
        deadline = time.monotonic() + timeout_s
        while True:
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(batch)
            highs = {tp: consumer.highwater(tp) for tp in tps}
            if all(h is not None and consumer.position(tp) >= h for tp, h in highs.items()):
                return sorted(records, key=lambda r: (r.partition, r.offset))
            if time.monotonic() > deadline:
                raise AssertionError(f"could not read {topic} to its end within {timeout_s}s: {highs}")
    finally:
        consumer.close()


@dataclass
class CliResult:
    code: int
    out: str
    err: str

    def json(self) -> dict[str, Any]:
        return json.loads(self.out)


class Cli:
    """``protocolo`` run in-process against the test's database, topic and keys."""

    def __init__(self, settings: Settings, monkeypatch: pytest.MonkeyPatch,
                 capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys
        monkeypatch.setenv("PROTOCOLO_HOME", str(settings.home))
        monkeypatch.setenv("PROTOCOLO_KAFKA_BOOTSTRAP", settings.kafka_bootstrap or "")
        monkeypatch.setenv("PROTOCOLO_DATABASE_URL", settings.database_url or "")
        monkeypatch.setenv("PROTOCOLO_TOPIC", settings.topic)
        monkeypatch.setenv("PROTOCOLO_PARTITIONS", str(settings.partitions))
        monkeypatch.setenv("PROTOCOLO_GROUP_ID", settings.group_id)
        monkeypatch.setenv("PROTOCOLO_DEV_KEYS", "1")
        for name in ("PROTOCOLO_POLICY", "PROTOCOLO_INDEX_KEY", "PROTOCOLO_MASTER_KEY"):
            monkeypatch.delenv(name, raising=False)

    def __call__(self, *argv: str) -> CliResult:
        self.capsys.readouterr()  # drop whatever came before
        code = cli_main(list(argv))
        captured = self.capsys.readouterr()
        return CliResult(code, captured.out, captured.err)


def contact_opened(customer: dict[str, str] | None = None, *, service_type: str = "MOBILE",
                   channel: str = "PHONE", recorded: bool = True,
                   subject: str = "charge not recognised") -> dict[str, Any]:
    return {
        "channel": channel, "direction": "INBOUND", "service_type": service_type,
        "customer": customer if customer is not None else {}, "agent_id": "agent-007",
        "subject": subject, "recorded": recorded,
    }


def recording_captured(recording_id: str, protocol: str, *, profile: str = "br-anatel-rgc",
                       days: int = 180) -> dict[str, Any]:
    return {
        "recording_id": recording_id, "media_uri": f"s3://recordings/{protocol}.opus",
        "sha256": sha256(f"audio {recording_id}"), "duration_ms": 183_000,
        "retention_profile": profile, "retention_days": days,
    }
