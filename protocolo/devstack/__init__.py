"""The embedded local stack: a Kafka broker and PostgreSQL under ``settings.home``.

One module per job: :mod:`.state` (files, ``stack.json``, the lock), :mod:`.processes`
(detached processes, ports), :mod:`.broker` (what brokers share), :mod:`.tansu` (the
broker), :mod:`.postgres` (the database). This module is the public API the CLI, the
runtime and the tests use: ``up``, ``down``, ``status``, ``resolve``, and the pieces.

Both services are started detached so that they outlive the command that started them.
``up`` is idempotent; ``down`` stops both.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg

from protocolo.config import Settings
from protocolo.devstack import postgres, tansu
from protocolo.devstack.broker import (
    BROKER_START_TIMEOUT_S,
    bootstrap,
    probe_kafka,
    wait_for_broker,
)
from protocolo.devstack.postgres import probe_postgres
from protocolo.devstack.state import (
    DevStackError,
    Log,
    StackPaths,
    locked,
    service_state,
    update_state,
)
from protocolo.devstack.tansu import MEMORY_ONLY_NOTE

__all__ = [
    "MEMORY_ONLY_NOTE",
    "START_TIMEOUT_S",
    "DevStackError",
    "Endpoints",
    "down",
    "ledger_database",
    "ledger_url",
    "probe_kafka",
    "probe_postgres",
    "resolve",
    "start_kafka",
    "start_postgres",
    "status",
    "up",
]

#: How long a service may take to answer after being started.
START_TIMEOUT_S = BROKER_START_TIMEOUT_S


@dataclass
class Endpoints:
    """Where clients reach Kafka and PostgreSQL."""

    kafka_bootstrap: str
    database_url: str


def up(settings: Settings, log: Log = print, *, timeout: float = START_TIMEOUT_S) -> Endpoints:
    """Start whatever part of the stack is not running, wait until both answer.

    The returned database is the ledger database (see :func:`ledger_url`), not the
    server's admin database.

    Raises :class:`DevStackError`, quoting the tail of the service's log, when a service
    does not answer within ``timeout`` seconds.
    """
    kafka = start_kafka(settings, log, timeout=timeout)
    admin_url = start_postgres(settings, log, timeout=timeout)
    return Endpoints(kafka_bootstrap=kafka, database_url=ledger_database(settings, admin_url))


def resolve(settings: Settings, log: Log = print) -> Endpoints:
    """Endpoints to use: configured URLs win, each independently; the rest come from ``up``.

    When both are embedded, the database is the ledger database of :func:`ledger_url`.
    """
    if not settings.kafka_bootstrap and not settings.database_url:
        return up(settings, log)
    kafka = settings.kafka_bootstrap or start_kafka(settings, log)
    database = settings.database_url or start_postgres(settings, log)
    return Endpoints(kafka_bootstrap=kafka, database_url=database)


def ledger_database(settings: Settings, admin_url: str) -> str:
    """URL of the embedded stack's ledger database, created if missing."""
    from psycopg import sql

    url = ledger_url(settings, admin_url)
    if url is None:
        raise DevStackError("the embedded broker's start time is not recorded in stack.json; run `protocolo dev up`")
    name = urlsplit(url).path.lstrip("/")
    with psycopg.connect(admin_url, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
            with contextlib.suppress(psycopg.errors.DuplicateDatabase):  # another process won the race
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return url


def ledger_url(settings: Settings, admin_url: str) -> str | None:
    """The ledger database URL for the recorded broker (None if no broker was recorded).

    tansu starts empty after every restart, so each tansu incarnation gets a ledger
    database of its own, ``ledger_<start time in ms>``, instead of one whose stored offsets
    point past an empty log. Earlier ledgers stay in their databases, untouched.
    """
    started = service_state(StackPaths(settings.home), "kafka").get("started_at")
    if started is None:
        return None
    return urlunsplit(urlsplit(admin_url)._replace(path=f"/ledger_{int(started * 1000)}"))


def start_kafka(settings: Settings, log: Log = print, *, timeout: float = START_TIMEOUT_S) -> str:
    """Ensure the embedded broker runs and answers; return its bootstrap address."""
    paths = StackPaths(settings.home)
    with locked(paths):
        entry = service_state(paths, "kafka")
        pid = tansu.running_pid(entry)
        if pid is not None:
            address = bootstrap(entry["port"])
            wait_for_broker(tansu.NAME, address, pid, tansu.log_path(paths), timeout)
            log(f"kafka: already running at {address} (pid {pid})")
            return address
        return tansu.start(paths, entry, log, timeout)


def start_postgres(
    settings: Settings, log: Log = print, *, timeout: float = postgres.START_TIMEOUT_S
) -> str:
    """Ensure the embedded PostgreSQL runs and answers; return its URL (admin database)."""
    paths = StackPaths(settings.home)
    with locked(paths):
        return postgres.ensure_running(paths, log, timeout)


def down(settings: Settings, log: Log = print) -> None:
    """Stop both services (the broker: SIGTERM, then SIGKILL; PostgreSQL: ``pg_ctl stop``)."""
    paths = StackPaths(settings.home)
    if not paths.home.exists():
        log(f"nothing to stop: {paths.home} does not exist")
        return
    with locked(paths):
        _stop_kafka(paths, log)
        postgres.stop(paths, log)


def _stop_kafka(paths: StackPaths, log: Log) -> None:
    pid = tansu.running_pid(service_state(paths, "kafka"))
    if pid is None:
        log("kafka: not running")
    else:
        log(f"kafka: {tansu.stop(pid)}")
    if paths.stack_file.exists():
        update_state(paths, "kafka", pid=None)  # keep the port, to reuse it next time


def status(settings: Settings) -> dict[str, Any]:
    """Whether each service runs, with its pid and URL (``None`` when not running)."""
    paths = StackPaths(settings.home)
    kafka = service_state(paths, "kafka")
    kafka_pid = tansu.running_pid(kafka)
    pg_info = postgres.postmaster_info(paths.pgdata) if paths.home.exists() else None
    admin_url = postgres.server_url(pg_info) if pg_info is not None else None
    # The URL commands use: the running broker's ledger database (see resolve()).
    url = admin_url
    if admin_url is not None and kafka_pid is not None:
        url = ledger_url(settings, admin_url) or admin_url
    return {
        "home": str(paths.home),
        "kafka": {
            "running": kafka_pid is not None,
            "pid": kafka_pid,
            "url": bootstrap(kafka["port"]) if kafka_pid is not None else None,
            "log": str(tansu.log_path(paths)),
            "note": MEMORY_ONLY_NOTE,
        },
        "postgres": {
            "running": pg_info is not None,
            "pid": pg_info.pid if pg_info is not None else None,
            "url": url,
            "admin_url": admin_url,
            "log": str(paths.pg_log),
            "data": str(paths.pgdata),
        },
    }
