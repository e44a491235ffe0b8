"""A ledger topic whose settings let the broker delete records is refused, on the real broker.

The topic is made by hand with ``KafkaAdminClient`` as an operator (or a broker's defaults)
might have made it; ``protocolo project`` and ``protocolo topic create`` run as real
subprocesses and must exit 2 naming the setting and its value, change nothing, and run
with a warning when given ``--accept-unsafe-topic``.
"""

from __future__ import annotations

import dataclasses
import subprocess
import uuid

import psycopg
import pytest
from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from view_snapshot import PROTOCOLO, cli_env, log_ends, publish_day, stored_offsets

from protocolo.core.config import Settings
from protocolo.core.topic_settings import (
    LEDGER_TOPIC_CONFIGS,
    admin_client,
    judge,
    read_topic_settings,
)
from protocolo.producers.ledger_topic import ensure_ledger_topic

UNSAFE = [
    pytest.param({"retention.ms": "86400000"}, "retention.ms=86400000", id="retention-1-day"),
    pytest.param({"cleanup.policy": "compact"}, "cleanup.policy=compact", id="compaction"),
]


def make_topic(bootstrap: str, configs: dict[str, str]) -> str:
    name = f"t-unsafe-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(name, 2, 1, topic_configs=configs)])
    finally:
        admin.close()
    assert ensure_ledger_topic(bootstrap, name, 2) == 2  # waits for leaders; leaves it as it is
    return name


def protocolo(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PROTOCOLO, *args], env=cli_env(settings), capture_output=True, text=True,
                          timeout=180, stdin=subprocess.DEVNULL)


def journal_rows(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        exists = conn.execute("SELECT to_regclass('journal') IS NOT NULL").fetchone()
        if not exists or not exists[0]:
            return 0
        return int(conn.execute("SELECT count(*) FROM journal").fetchone()[0])


@pytest.mark.parametrize(("configs", "named"), UNSAFE)
def test_project_refuses_an_unsafe_topic_and_runs_with_the_flag(settings, configs, named):
    topic = make_topic(settings.kafka_bootstrap, configs)
    settings = dataclasses.replace(settings, topic=topic, partitions=2)
    _, receipts = publish_day(settings, contacts=5, seed=7)

    refused = protocolo(settings, "project", "--quiet", "--until-caught-up")
    assert refused.returncode == 2, refused.stderr
    assert named in refused.stderr and topic in refused.stderr, refused.stderr
    assert "--accept-unsafe-topic" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert journal_rows(settings.database_url) == 0  # refused before projecting anything

    accepted = protocolo(settings, "project", "--quiet", "--until-caught-up", "--accept-unsafe-topic")
    assert accepted.returncode == 0, accepted.stderr
    assert "WARNING" in accepted.stderr and named in accepted.stderr, accepted.stderr
    ends = log_ends(receipts)
    assert stored_offsets(settings.database_url) == {p: (end, end) for p, end in ends.items()}


@pytest.mark.parametrize(("configs", "named"), UNSAFE)
def test_topic_create_refuses_an_existing_unsafe_topic(settings, configs, named):
    topic = make_topic(settings.kafka_bootstrap, configs)
    settings = dataclasses.replace(settings, topic=topic, partitions=2)
    refused = protocolo(settings, "topic", "create")
    assert refused.returncode == 2, refused.stderr
    assert named in refused.stderr and "Traceback" not in refused.stderr, refused.stderr
    accepted = protocolo(settings, "topic", "create", "--accept-unsafe-topic")
    assert accepted.returncode == 0, accepted.stderr
    assert named in accepted.stderr and f"{topic}: 2 partitions" in accepted.stderr, accepted.stderr


@pytest.mark.tansu_lane
def test_a_created_ledger_topic_has_every_setting_and_is_accepted(backend, settings):
    # The fixture's topic came from ensure_ledger_topic: the broker must apply each setting
    # we asked for (not merely accept the request), on Apache Kafka and on tansu alike.
    admin = admin_client(backend.kafka_bootstrap)
    try:
        found = read_topic_settings(admin, settings.topic)
    finally:
        admin.close()
    assert found == LEDGER_TOPIC_CONFIGS, found
    assert judge(found) == []
    made = protocolo(settings, "topic", "create")
    assert made.returncode == 0 and "WARNING" not in made.stderr, made.stderr
