"""The embedded local stack: a Kafka broker and PostgreSQL under ``settings.home``.

One module per job: :mod:`.state` (files, ``stack.json``, the lock), :mod:`.processes`
(detached processes, ports), :mod:`.broker` (what brokers share), the brokers
:mod:`.apache_kafka` (the default: Apache Kafka 4 in KRaft mode, log on disk, when Java
17+ is present; its jars from :mod:`.kafka_jars`) and :mod:`.tansu` (the fallback, log in memory only), and
:mod:`.postgres` (the database). This module is the public API the CLI, the
runtime and the tests use: ``up``, ``down``, ``status``, ``resolve``, and the pieces.

Both services are started detached so that they outlive the command that started them.
``up`` is idempotent; ``down`` stops both.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg

from protocolo.core.config import Settings
from protocolo.devstack import apache_kafka, kafka_jars, postgres, tansu
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
    "BROKERS",
    "ENV_BROKER",
    "DevStackError",
    "Endpoints",
    "down",
    "ledger_database",
    "ledger_url",
    "chosen_broker",
    "running_broker",
    "probe_kafka",
    "probe_postgres",
    "resolve",
    "start_kafka",
    "start_postgres",
    "status",
    "up",
]

#: How long tansu and PostgreSQL may take to answer after being started (Apache Kafka:
#: ``apache_kafka.START_TIMEOUT_S``).
START_TIMEOUT_S = BROKER_START_TIMEOUT_S
#: Chooses the embedded broker when set: ``kafka`` or ``tansu``.
ENV_BROKER = "PROTOCOLO_BROKER"
BROKERS = (apache_kafka.NAME, tansu.NAME)
_LABEL = {apache_kafka.NAME: "Apache Kafka", tansu.NAME: "tansu"}


@dataclass
class Endpoints:
    """Where clients reach Kafka and PostgreSQL."""

    kafka_bootstrap: str
    database_url: str


def up(
    settings: Settings, log: Log = print, *, timeout: float | None = None,
    broker: str | None = None,
) -> Endpoints:
    """Start whatever part of the stack is not running, wait until both answer.

    The returned database is the ledger database (see :func:`ledger_url`), not the
    server's admin database.

    Raises :class:`DevStackError`, quoting the tail of the service's log, when a service
    does not answer within ``timeout`` seconds (default: each service's own bound).
    ``broker`` chooses the broker, see :func:`start_kafka`.
    """
    kafka = start_kafka(settings, log, timeout=timeout, broker=broker)
    admin_url = start_postgres(settings, log, timeout=timeout or postgres.START_TIMEOUT_S)
    return Endpoints(kafka_bootstrap=kafka, database_url=ledger_database(settings, admin_url))


def resolve(settings: Settings, log: Log = print, *, broker: str | None = None) -> Endpoints:
    """Endpoints to use: configured URLs win, each independently; the rest come from ``up``.

    When both are embedded, the database is the ledger database of :func:`ledger_url`.
    """
    if not settings.kafka_bootstrap and not settings.database_url:
        return up(settings, log, broker=broker)
    kafka = settings.kafka_bootstrap or start_kafka(settings, log, broker=broker)
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

    Apache Kafka keeps its log on disk, so it has one stable ledger database, ``ledger``.
    tansu starts empty after every restart, so each tansu incarnation gets a ledger
    database of its own, ``ledger_<start time in ms>``, instead of one whose stored offsets
    point past an empty log. Earlier ledgers stay in their databases, untouched.
    """
    entry = service_state(StackPaths(settings.home), "kafka")
    if entry.get("broker") == apache_kafka.NAME:
        name = "ledger"
    else:
        started = entry.get("started_at")
        if started is None:
            return None
        name = f"ledger_{int(started * 1000)}"
    return urlunsplit(urlsplit(admin_url)._replace(path=f"/{name}"))


def chosen_broker(explicit: str | None = None) -> str | None:
    """The broker asked for: ``explicit``, else ``$PROTOCOLO_BROKER``, else None (automatic)."""
    choice = explicit if explicit is not None else os.environ.get(ENV_BROKER, "").strip()
    if not choice:
        return None
    if choice not in BROKERS:
        source = "--broker" if explicit is not None else ENV_BROKER
        raise DevStackError(f"{source}: must be one of {', '.join(BROKERS)}, not {choice!r}")
    return choice


def running_broker(settings: Settings) -> tuple[str, int] | None:
    """Which embedded broker runs in this home, and its pid."""
    paths = StackPaths(settings.home)
    return _running(paths, service_state(paths, "kafka"))


def _running(paths: StackPaths, entry: dict[str, Any]) -> tuple[str, int] | None:
    if entry.get("broker") == apache_kafka.NAME:
        pid = apache_kafka.running_pid(entry, paths)
        return (apache_kafka.NAME, pid) if pid is not None else None
    pid = tansu.running_pid(entry)  # also a stack.json written before brokers were named
    return (tansu.NAME, pid) if pid is not None else None


def start_kafka(
    settings: Settings, log: Log = print, *, timeout: float | None = None,
    broker: str | None = None,
) -> str:
    """Ensure the embedded broker runs and answers; return its bootstrap address.

    ``broker`` (or ``$PROTOCOLO_BROKER``) is ``kafka`` or ``tansu``; unset, a broker that
    already runs is kept, else Apache Kafka is started when Java 17+ is available, and
    tansu otherwise, saying once that its log is in memory only. ``timeout`` defaults to
    the broker's own start-up bound.
    """
    choice = chosen_broker(broker)
    paths = StackPaths(settings.home)
    with locked(paths):
        entry = service_state(paths, "kafka")
        running = _running(paths, entry)
        if running is not None:
            name, pid = running
            if choice is not None and choice != name:
                raise DevStackError(
                    f"kafka: {_LABEL[name]} already runs in {paths.home}; run `protocolo dev down` "
                    f"first to switch to {_LABEL[choice]}"
                )
            address = bootstrap(entry["port"])
            if name == apache_kafka.NAME:
                log_file, bound = apache_kafka.log_path(paths), apache_kafka.START_TIMEOUT_S
            else:
                log_file, bound = tansu.log_path(paths), BROKER_START_TIMEOUT_S
            wait_for_broker(_LABEL[name], address, pid, log_file, timeout or bound)
            log(f"kafka: already running at {address} ({_LABEL[name]}, pid {pid})")
            return address
        fallback = choice is None
        if choice is None:
            reason = apache_kafka.unavailable_reason(paths)
            if reason is not None:
                log(f"kafka: Apache Kafka cannot run here: {reason}.")
                log(f"kafka: FALLING BACK to tansu, which keeps its log IN MEMORY ONLY: "
                    f"`protocolo dev down` or a restart loses every record. Install Java "
                    f"{kafka_jars.MIN_JAVA}+ and Maven for a durable broker.")
                choice = tansu.NAME
            else:
                choice, fallback = apache_kafka.NAME, False
        if choice == apache_kafka.NAME:
            reason = apache_kafka.unavailable_reason(paths)
            if reason is not None:
                raise DevStackError(f"kafka: Apache Kafka cannot run here: {reason}")
            return apache_kafka.start(paths, entry, log, timeout or apache_kafka.START_TIMEOUT_S)
        if not fallback:
            log(f"kafka: NOTE {MEMORY_ONLY_NOTE}")
        return tansu.start(paths, entry, log, timeout or BROKER_START_TIMEOUT_S)


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
    running = _running(paths, service_state(paths, "kafka"))
    if running is None:
        log("kafka: not running")
    elif running[0] == apache_kafka.NAME:
        log(f"kafka: {apache_kafka.stop(running[1], paths)}")
    else:
        log(f"kafka: {tansu.stop(running[1])}")
    if paths.stack_file.exists():
        update_state(paths, "kafka", pid=None)  # keep the port, to reuse it next time


def status(settings: Settings) -> dict[str, Any]:
    """Whether each service runs, with its pid and URL (``None`` when not running)."""
    paths = StackPaths(settings.home)
    kafka = service_state(paths, "kafka")
    running = _running(paths, kafka)
    kafka_pid = running[1] if running is not None else None
    broker = running[0] if running is not None else kafka.get("broker")
    if broker == apache_kafka.NAME:
        kafka_log, note = apache_kafka.log_path(paths), apache_kafka.description()
    else:
        kafka_log, note = tansu.log_path(paths), tansu.DESCRIPTION
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
            "broker": broker,
            "label": _LABEL.get(broker or ""),
            "log": str(kafka_log),
            "note": note,
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
