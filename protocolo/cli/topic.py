"""``protocolo topic create``: create the ledger topic with the documented settings.

A first publish must never auto-create the topic with the broker's defaults (finite
retention, one partition): this creates it with the configured partition count
(``PROTOCOLO_PARTITIONS``), ``cleanup.policy=delete`` with infinite retention,
``unclean.leader.election.enable=false``, replication min(3, brokers) and
``min.insync.replicas=2`` where there are three replicas. ``dev up`` runs it too. An
existing topic is then judged like the projector judges it (consumers/topic_settings.py):
settings that let the broker delete records are refused (exit 2) unless
``--accept-unsafe-topic``.
"""

from __future__ import annotations

import argparse
import sys

from kafka.errors import KafkaError

from protocolo.cli import CommandError
from protocolo.core.config import ConfigError, Settings
from protocolo.core.topic_settings import ACCEPT_FLAG, UnsafeTopic, admin_client, check_topic
from protocolo.producers.ledger_topic import LedgerTopicError, ensure_ledger_topic
from protocolo.runtime import Runtime


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("topic", help="create the ledger topic with the documented settings",
                       description=__doc__.splitlines()[0] if __doc__ else None)
    actions = p.add_subparsers(dest="topic_command", metavar="ACTION", required=True)
    create = actions.add_parser(
        "create", help="create the ledger topic (no-op when it exists)",
        description="Create PROTOCOLO_TOPIC with PROTOCOLO_PARTITIONS partitions, infinite retention "
        "and the replication the cluster allows; an existing topic is left as it is and its "
        "partition count is printed.")
    create.add_argument(ACCEPT_FLAG, dest="accept_unsafe_topic", action="store_true",
                        help="an existing topic whose settings let the broker delete records is "
                        "reported as a warning, not refused")
    create.set_defaults(func=run_create)


def run_create(args: argparse.Namespace) -> int:
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        raise CommandError(str(exc)) from None
    if settings.kafka_bootstrap:
        bootstrap = settings.kafka_bootstrap
    else:
        bootstrap = Runtime.start(settings, need_kafka=False).kafka_bootstrap
    try:
        partitions = ensure_ledger_topic(bootstrap, settings.topic, settings.partitions)
    except (LedgerTopicError, KafkaError) as exc:
        raise CommandError(f"could not create {settings.topic!r} on {bootstrap}: {exc}") from None
    # A topic that existed may have been made with other settings: judge what the broker applies.
    admin = admin_client(bootstrap)
    try:  # with the flag, check_topic logs each unsafe setting at WARNING
        check_topic(admin, settings.topic, accept_unsafe=args.accept_unsafe_topic)
    except UnsafeTopic as exc:
        raise CommandError(str(exc)) from None
    except KafkaError as exc:
        raise CommandError(f"could not read the settings of {settings.topic!r} on {bootstrap}: {exc}") from None
    finally:
        admin.close()
    note = "" if partitions == settings.partitions else (
        f" (it existed already; PROTOCOLO_PARTITIONS={settings.partitions} does not change it)")
    print(f"{settings.topic}: {partitions} partitions on {bootstrap}{note}", file=sys.stderr)
    return 0
