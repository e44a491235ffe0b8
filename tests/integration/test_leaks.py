"""Constructors that fail give back what they took: connections and threads.

Connections are counted from PostgreSQL's side (``pg_stat_activity`` for the test database,
less the counting connection itself); threads with ``threading.enumerate``.
"""

from __future__ import annotations

import socket
import threading
import time

import psycopg
import pytest
from kafka.errors import KafkaTimeoutError

from protocolo.consumers.projector import Projector, ProjectorOptions
from protocolo.projections.schema import connect


def connections_to(database_url: str) -> int:
    """Backends connected to the test database, other than the one asking.

    A backend whose client has closed the connection ends on its own a moment later; the
    count waits for backends in that state (a closed client socket), up to a bound, so that
    only connections still open on the client side are counted."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        for _ in range(200):
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND pid <> pg_backend_pid()"
            ).fetchone()
            assert row is not None
            if row[0] == 0:
                return 0
            time.sleep(0.01)
    return int(row[0])


def closed_port() -> int:
    """A local TCP port nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_projector_whose_consumer_cannot_start_leaves_no_connection_or_thread(database_url: str) -> None:
    connect(database_url).close()  # schema in place: only the projector's own connections count
    threads_before = set(threading.enumerate())
    assert connections_to(database_url) == 0
    with pytest.raises(KafkaTimeoutError, match="Unable to bootstrap") as raised:
        Projector(f"127.0.0.1:{closed_port()}", database_url, topic="leak-test", group_id="leak-test",
                  options=ProjectorOptions(kafka={"bootstrap_timeout_ms": 1000}))
    # ``raised`` keeps the traceback, and with it every local of the failed constructor, alive:
    # whatever is still open now was not closed by the constructor itself.
    assert raised.value is not None
    assert connections_to(database_url) == 0, "the failed constructor left connections open"
    # kafka-python 3.0.12's KafkaConsumer starts its IO thread (kafka-io-<client id>) before it
    # bootstraps and leaves it running when bootstrapping fails; the constructor raised, so no
    # caller can close it. That one is the library's; every other thread is ours.
    leftover = [t.name for t in set(threading.enumerate()) - threads_before
                if t.is_alive() and not t.name.startswith("kafka-io-")]
    assert leftover == [], f"the failed constructor left threads running: {leftover}"


def test_connect_closes_its_connection_when_a_migration_fails(database_url: str) -> None:
    # A database that already holds a table of the same name as one the migrations create.
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE journal (something_else text)")
    with pytest.raises(psycopg.errors.DuplicateTable) as raised:
        connect(database_url)
    assert raised.value is not None
    assert connections_to(database_url) == 0, "connect left its connection open"
