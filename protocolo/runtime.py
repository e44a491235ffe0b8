"""Wiring shared by the commands: settings -> endpoints -> publisher, projector, sealer.

One place decides where Kafka and PostgreSQL are (configured URLs, else the embedded
stack), makes sure the ledger topic and the schema exist, and builds the pieces with the
deployment's keys.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg
from kafka.errors import KafkaError

from protocolo import devstack
from protocolo.config import Settings
from protocolo.consumers.projector import Projector, ProjectorOptions, ProjectorStats
from protocolo.deployment_keys import DeploymentKeys, KeyConfigError, load_keys
from protocolo.ledger_topic import LedgerTopicError, ensure_ledger_topic
from protocolo.personal_data import BlindIndex, KeyVault, PersonalDataSealer
from protocolo.policy import override_from_env
from protocolo.producers.publisher import LedgerPublisher
from protocolo.projections.migrations import connect

Log = Callable[[str], None]


def stack_log(message: str) -> None:
    """Progress of the embedded stack on stderr, without the "already running" chatter."""
    if "already running" not in message:
        print(f"  {message}", file=sys.stderr, flush=True)


class RuntimeUnavailable(RuntimeError):
    """Kafka or PostgreSQL could not be reached or prepared; the message says which."""


@dataclass
class Runtime:
    settings: Settings
    kafka_bootstrap: str
    database_url: str
    keys: DeploymentKeys
    _sealer: PersonalDataSealer | None = field(default=None, repr=False)

    @classmethod
    def start(cls, settings: Settings | None = None, log: Log = stack_log, need_kafka: bool = True) -> Runtime:
        """Resolve the endpoints, create the ledger topic and migrate the database.

        ``need_kafka=False`` (readers such as ``history``) skips the topic, and skips Kafka
        altogether when the database is configured; on the embedded stack the broker is still
        started, because which ledger database to read depends on the broker (one stable
        ``ledger`` for Apache Kafka, one per incarnation for tansu: see devstack.ledger_url).
        """
        settings = settings or Settings.from_env()
        try:
            if not need_kafka and settings.database_url:
                endpoints = devstack.Endpoints(settings.kafka_bootstrap or "", settings.database_url)
            else:
                endpoints = devstack.resolve(settings, log)
            if need_kafka:
                ensure_ledger_topic(endpoints.kafka_bootstrap, settings.topic, settings.partitions)
            connect(endpoints.database_url).close()  # bring the schema up to date once
        except (devstack.DevStackError, LedgerTopicError, KafkaError) as exc:
            raise RuntimeUnavailable(str(exc)) from exc
        except psycopg.OperationalError as exc:
            raise RuntimeUnavailable(f"PostgreSQL is unreachable: {exc}".strip()) from exc
        try:
            keys = load_keys(settings.home)
        except KeyConfigError as exc:
            raise RuntimeUnavailable(str(exc)) from exc
        return cls(settings, endpoints.kafka_bootstrap, endpoints.database_url, keys)

    def connect(self, **kwargs: object) -> psycopg.Connection:
        return psycopg.connect(self.database_url, **kwargs)

    def sealer(self) -> PersonalDataSealer:
        if self._sealer is None:
            self._sealer = PersonalDataSealer(
                BlindIndex(self.keys.index_key), KeyVault(self.database_url, self.keys.master_key)
            )
        return self._sealer

    def publisher(self, producer_name: str) -> LedgerPublisher:
        return LedgerPublisher(self.kafka_bootstrap, producer_name=producer_name,
                               topic=self.settings.topic, sealer=self.sealer())

    def projector(
        self, batch_size: int = 2000, progress: Callable[[ProjectorStats], None] | None = None
    ) -> Projector:
        return Projector(
            self.kafka_bootstrap, self.database_url, topic=self.settings.topic,
            group_id=self.settings.group_id, progress=progress,
            options=ProjectorOptions(batch_size=batch_size, policy_override=override_from_env()),
        )
