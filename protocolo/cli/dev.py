"""``protocolo dev up|down|status``: the embedded local stack (a broker + PostgreSQL).

``dev up`` writes progress to stderr and only comments and ``export`` lines to stdout, so
``eval "$(protocolo dev up)"`` configures the current shell.
"""

from __future__ import annotations

import argparse
import shlex
import sys

import psycopg
from kafka.errors import KafkaError

from protocolo import devstack
from protocolo.cli import CommandError
from protocolo.core.config import (
    ENV_DATABASE_URL,
    ENV_DEV_KEYS,
    ENV_KAFKA_BOOTSTRAP,
    ENV_REGISTRY_URL,
    ConfigError,
    Settings,
)
from protocolo.producers.ledger_topic import LedgerTopicError, ensure_ledger_topic
from protocolo.runtime import (
    EMBEDDED_REGISTRY_DATABASE,
    LedgerUnreachable,
    embedded_ledgers,
    ensure_database,
)

#: ``dev status`` exit status when a service is not running (LSB: "program is not running").
EXIT_NOT_RUNNING = 3


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "dev",
        help="start, stop or inspect the embedded local stack",
        description=(
            "The embedded local stack under $PROTOCOLO_HOME (default ~/.protocolo): Apache "
            "Kafka 4 in KRaft mode with its log on disk when Java 17+ is present (jars fetched "
            "once with Maven), otherwise the tansu broker from a wheel, whose log is in memory "
            "only; and a PostgreSQL server from a wheel."
        ),
    )
    sub = parser.add_subparsers(dest="dev_command", metavar="ACTION", required=True)
    up = sub.add_parser(
        "up",
        help="start what is not running and print the URLs",
        description=(
            "Start the broker and PostgreSQL if they are not running, wait until both answer, "
            "and print export lines for PROTOCOLO_KAFKA_BOOTSTRAP, PROTOCOLO_DATABASE_URL, "
            "PROTOCOLO_REGISTRY_URL (the stack's one registry) and PROTOCOLO_DEV_KEYS=1 (the "
            "shell stays the dev stack: its dev keys apply)."
        ),
    )
    up.add_argument(
        "--broker", choices=devstack.BROKERS, default=None,
        help=f"which broker to run (default: ${devstack.ENV_BROKER}, else kafka when Java 17+ "
        "is present, else tansu)",
    )
    up.set_defaults(func=_up)
    down = sub.add_parser(
        "down",
        help="stop both services (data kept, except tansu's in-memory topics)",
        description="Stop the broker and PostgreSQL. Apache Kafka and PostgreSQL keep their "
        f"data on disk; {devstack.MEMORY_ONLY_NOTE}.",
    )
    down.set_defaults(func=_down)
    status = sub.add_parser(
        "status",
        help="show whether each service runs",
        description=f"Show each service's state, pid and URL. Exit status 0 when both run, "
        f"{EXIT_NOT_RUNNING} otherwise.",
    )
    status.set_defaults(func=_status)


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except ConfigError as exc:
        raise CommandError(str(exc)) from None


def _progress(message: str) -> None:
    print(message, file=sys.stderr)


def _up(args: argparse.Namespace) -> int:
    settings = _settings()
    try:
        endpoints = devstack.up(settings, log=_progress, broker=args.broker)
        # the ledger topic with its documented settings, before any publish could auto-create it
        partitions = ensure_ledger_topic(endpoints.kafka_bootstrap, settings.topic, settings.partitions)
    except (devstack.DevStackError, LedgerTopicError, KafkaError) as exc:
        raise CommandError(str(exc)) from None
    _progress(f"ledger topic {settings.topic}: {partitions} partitions, infinite retention")
    try:
        # the one registry of this stack, whatever the shell: the one the embedded default uses
        registry_url = ensure_database(endpoints.database_url, EMBEDDED_REGISTRY_DATABASE)
    except psycopg.Error as exc:
        raise CommandError(f"postgres: cannot create the registry database: {exc}") from None
    kafka = devstack.status(settings)["kafka"]
    print(f"# kafka:    {endpoints.kafka_bootstrap} ({kafka['note']})")
    print(f"# postgres: {endpoints.database_url}")
    print(f"# registry: {registry_url}")
    print(f"export {ENV_KAFKA_BOOTSTRAP}={shlex.quote(endpoints.kafka_bootstrap)}")
    print(f"export {ENV_DATABASE_URL}={shlex.quote(endpoints.database_url)}")
    print(f"export {ENV_REGISTRY_URL}={shlex.quote(registry_url)}")
    # This shell is still the dev stack: its dev keys apply to every command (README, "Keys").
    print(f"export {ENV_DEV_KEYS}=1")
    for name, configured, embedded in (
        (ENV_KAFKA_BOOTSTRAP, settings.kafka_bootstrap, endpoints.kafka_bootstrap),
        (ENV_DATABASE_URL, settings.database_url, endpoints.database_url),
        (ENV_REGISTRY_URL, settings.registry_url, registry_url),
    ):
        if configured and configured != embedded:
            # the value is not echoed: a database URL may hold a password
            _progress(f"note: {name} is set in this shell; commands use it, not this stack")
    return 0


def _down(args: argparse.Namespace) -> int:
    try:
        devstack.down(_settings(), log=_progress)
    except devstack.DevStackError as exc:
        raise CommandError(str(exc)) from None
    return 0


def _status(args: argparse.Namespace) -> int:
    report = devstack.status(_settings())
    print(f"home: {report['home']}")
    for name in ("kafka", "postgres"):
        service = report[name]
        if service["running"]:
            print(f"{name:<9} running  pid {service['pid']:<8} {service['url']}")
        else:
            print(f"{name:<9} stopped")
        if name == "kafka" and service["label"] is not None:
            print(f"{'':<9} broker: {service['note']}")
        print(f"{'':<9} log: {service['log']}")
    if report["postgres"]["running"]:
        _print_ledgers(_settings())
    running = report["kafka"]["running"] and report["postgres"]["running"]
    return 0 if running else EXIT_NOT_RUNNING


def _print_ledgers(settings: Settings) -> None:
    """Every ledger database on the embedded server: history searches them all, and a
    hand-set PROTOCOLO_DATABASE_URL can name any of them."""
    try:
        ledgers, _ = embedded_ledgers(settings)
    except LedgerUnreachable as exc:
        print(f"ledgers:  none ({exc})")
        return
    for i, ledger in enumerate(ledgers):
        label = "ledgers:" if i == 0 else ""
        print(f"{label:<9} {ledger.name}{'  (current: the running broker projects into it)' if ledger.current else ''}")
