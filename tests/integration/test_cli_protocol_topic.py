"""Outside producers get protocol numbers and a correctly made topic from the CLI."""

from __future__ import annotations

import json
import uuid

from helpers_flow import Cli, start_runtime
from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType

from protocolo.core.protocol_number import normalise_protocol_number
from protocolo.producers.protocol_issuer import ProtocolIssuer


def test_reserved_numbers_are_valid_unique_and_never_issued_again(settings, monkeypatch, capsys):
    cli = Cli(settings, monkeypatch, capsys)
    first = cli("protocol", "reserve", "--count", "5", "--json")
    assert first.code == 0, first.err
    numbers = first.json()["protocol_numbers"]
    assert len(numbers) == len(set(numbers)) == 5
    for n in numbers:  # each passes the check-digit rule an outside caller relies on
        assert normalise_protocol_number(n) == n
    assert [s.replace(" ", "") for s in first.json()["spoken"]] == numbers
    plain = cli("protocol", "reserve", "--count", "3")
    assert plain.code == 0
    again = plain.out.split()
    rt = start_runtime(settings)
    with ProtocolIssuer(rt.registry_url) as issuer:
        issued = [issuer.issue() for _ in range(3)]
    assert not set(numbers) & set(again) and not set(numbers + again) & set(issued)
    bad = cli("protocol", "reserve", "--count", "0")
    assert bad.code == 2 and "out of range" in bad.err


def test_topic_create_makes_the_documented_topic(settings, monkeypatch, capsys):
    topic = f"t-create-{uuid.uuid4().hex[:8]}"
    cli = Cli(settings, monkeypatch, capsys)
    monkeypatch.setenv("PROTOCOLO_TOPIC", topic)
    monkeypatch.setenv("PROTOCOLO_PARTITIONS", "3")
    made = cli("topic", "create")
    assert made.code == 0, made.err
    assert f"{topic}: 3 partitions" in made.err
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    try:
        (described,) = admin.describe_topics([topic])
        assert len(described["partitions"]) == 3
        configs = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)],
                                         config_filter="all")
        assert configs["topic"][topic]["retention.ms"]["value"] == "-1", configs
    finally:
        admin.close()
    monkeypatch.setenv("PROTOCOLO_PARTITIONS", "5")
    again = cli("topic", "create")
    assert again.code == 0 and "3 partitions" in again.err and "does not change it" in again.err
    assert json.dumps(again.err)  # printable, one line each
