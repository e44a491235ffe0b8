"""A ledger made once per test module, a fresh copy of its database per test, and
`protocolo verify` run on a copy in-process as a user would: the setup the verify,
verifiable-index and customer-bundle tests share.

Each module fills its ledger with its own events (its facts are its oracle); what is here
only makes the empty ledger (its own database on the session's PostgreSQL, its own topic on
the session's Kafka), copies the filled database (``CREATE DATABASE ... TEMPLATE``) for a
test to tamper with, and runs the command with nothing but that ledger's settings in the
environment, so no key or pin leaks in from the developer's shell.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from protocolo.cli import main as cli_main
from protocolo.core.config import Settings
from protocolo.producers.ledger_topic import ensure_ledger_topic

try:
    import backends
except ImportError:  # tests/ turned into a package
    from tests import backends

#: What `protocolo verify` must not inherit from the shell running the tests.
_KEY_VARIABLES = ("PROTOCOLO_INDEX_KEY", "PROTOCOLO_MASTER_KEY", "PROTOCOLO_DEV_KEYS",
                  "PROTOCOLO_LOG_VKEYS", "PROTOCOLO_SIGNING_KEY")


def _drop(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@contextmanager
def ledger_database(admin_url: str, prefix: str) -> Iterator[str]:
    """A new, empty database ``<prefix>_<random>`` (its name), dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield name
    finally:
        _drop(admin_url, name)


@contextmanager
def database_copy(admin_url: str, template: str, prefix: str) -> Iterator[str]:
    """The URL of a fresh copy of ``template`` for one test to tamper with, dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
            sql.Identifier(name), sql.Identifier(template)))
    try:
        yield backends.with_database(admin_url, name)
    finally:
        _drop(admin_url, name)


def ledger_settings(backend: Any, database: str, prefix: str, home: Path, partitions: int) -> Settings:
    """The settings of a new ledger in ``database``: a new topic ``t-<prefix>-<random>`` of
    ``partitions`` partitions (created here), its own consumer group, dev keys allowed."""
    topic = f"t-{prefix}-{uuid.uuid4().hex[:8]}"
    ensure_ledger_topic(backend.kafka_bootstrap, topic, partitions)
    return Settings(home=home, kafka_bootstrap=backend.kafka_bootstrap,
                    database_url=backends.with_database(backend.database_url, database), topic=topic,
                    partitions=partitions, group_id=f"{prefix}-{uuid.uuid4().hex[:8]}", dev_keys=True)


@dataclass
class Run:
    """What `protocolo verify` answered: exit status, stdout, stderr."""

    code: int
    out: str
    err: str

    @property
    def report(self) -> dict[str, Any]:
        return json.loads(self.out)

    def findings(self, kind: str | None = None) -> list[dict[str, Any]]:
        return [f for f in self.report["findings"] if kind is None or f["kind"] == kind]

    def first(self, partition: int) -> dict[str, Any] | None:
        summary = next(p for p in self.report["partitions"] if p["partition"] == partition)
        return summary["first_difference"]


def run_verify(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *, home: Path,
               database_url: str, bootstrap: str, topic: str, partitions: int, argv: Sequence[str],
               env: dict[str, str] | None = None) -> Run:
    """``protocolo verify *argv`` in-process against ``database_url``, with only this
    ledger's settings (and ``env``) in the environment."""
    for var, value in (("PROTOCOLO_HOME", str(home)), ("PROTOCOLO_DATABASE_URL", database_url),
                       ("PROTOCOLO_KAFKA_BOOTSTRAP", bootstrap), ("PROTOCOLO_TOPIC", topic),
                       ("PROTOCOLO_PARTITIONS", str(partitions))):
        monkeypatch.setenv(var, value)
    for var in _KEY_VARIABLES:
        monkeypatch.delenv(var, raising=False)
    for var, value in (env or {}).items():
        monkeypatch.setenv(var, value)
    capsys.readouterr()
    code = cli_main(["verify", *argv])
    captured = capsys.readouterr()
    return Run(code, captured.out, captured.err)


def execute(url: str, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Run one SQL statement on its own connection, as a database administrator would."""
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description else []
