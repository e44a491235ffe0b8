"""Wiring shared by the commands: settings -> endpoints -> publisher, projector, sealer.

One place decides where Kafka and PostgreSQL are (configured URLs, else the embedded
stack), makes sure the ledger topic and the schema exist, and builds the pieces with the
deployment's keys.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg

from protocolo import devstack
from protocolo.config import Settings
from protocolo.deployment_keys import DeploymentKeys, load_keys
from protocolo.ledger_topic import ensure_ledger_topic
from protocolo.personal_data import BlindIndex, KeyVault, PersonalDataSealer
from protocolo.projections.migrations import connect
from protocolo.projections.policy import override_from_env

Log = Callable[[str], None]


@dataclass
class Runtime:
    settings: Settings
    kafka_bootstrap: str
    database_url: str
    keys: DeploymentKeys
    _sealer: PersonalDataSealer | None = field(default=None, repr=False)

    @classmethod
    def start(cls, settings: Settings | None = None, log: Log = print, need_kafka: bool = True) -> Runtime:
        settings = settings or Settings.from_env()
        if need_kafka:
            endpoints = devstack.resolve(settings, log)
            kafka, database = endpoints.kafka_bootstrap, endpoints.database_url
            ensure_ledger_topic(kafka, settings.topic, settings.partitions)
        else:
            kafka = settings.kafka_bootstrap or ""
            database = settings.database_url or devstack.start_postgres(settings, log)
        connect(database).close()  # bring the schema up to date once
        return cls(settings, kafka, database, load_keys(settings.home))

    def connect(self, **kwargs: object) -> psycopg.Connection:
        return psycopg.connect(self.database_url, **kwargs)

    def sealer(self) -> PersonalDataSealer:
        if self._sealer is None:
            self._sealer = PersonalDataSealer(
                BlindIndex(self.keys.index_key), KeyVault(self.database_url, self.keys.master_key)
            )
        return self._sealer

    def publisher(self, producer_name: str):  # -> LedgerPublisher
        from protocolo.producers.publisher import LedgerPublisher

        return LedgerPublisher(self.kafka_bootstrap, producer_name=producer_name,
                               topic=self.settings.topic, sealer=self.sealer())

    def projector(self, batch_size: int = 2000, progress=None):  # -> Projector
        from protocolo.consumers.projector import Projector, ProjectorOptions

        return Projector(
            self.kafka_bootstrap, self.database_url, topic=self.settings.topic,
            group_id=self.settings.group_id, progress=progress,
            options=ProjectorOptions(batch_size=batch_size, policy_override=override_from_env()),
        )
