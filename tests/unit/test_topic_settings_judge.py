"""Which ledger-topic settings let the broker lose evidence (consumers/topic_settings.judge)."""

from __future__ import annotations

import pytest

from protocolo.core.topic_settings import (
    LEDGER_TOPIC_CONFIGS,
    UnsafeSetting,
    UnsafeTopic,
    judge,
)


def names(found: list[UnsafeSetting]) -> list[str]:
    return [u.name for u in found]


def test_the_settings_a_ledger_topic_is_created_with_are_safe():
    assert judge(LEDGER_TOPIC_CONFIGS) == []


@pytest.mark.parametrize(("name", "value"), [
    ("retention.ms", "86400000"),
    ("retention.ms", "0"),
    ("retention.bytes", "1073741824"),
    ("cleanup.policy", "compact"),
    ("cleanup.policy", "delete,compact"),
    ("cleanup.policy", "Compact"),
    ("unclean.leader.election.enable", "true"),
])
def test_one_unsafe_setting_is_named_with_its_value(name, value):
    found = judge({**LEDGER_TOPIC_CONFIGS, name: value})
    assert [(u.name, u.value) for u in found] == [(name, value)]
    assert f"{name}={value}" in str(UnsafeTopic("ledger", found))
    assert "--accept-unsafe-topic" in str(UnsafeTopic("ledger", found))


def test_a_setting_the_broker_does_not_report_is_taken_at_apache_kafkas_default():
    # Apache Kafka's default retention is 7 days: a topic made with broker defaults is unsafe.
    assert [(u.name, u.value) for u in judge({})] == [("retention.ms", "604800000")]
    assert judge({"retention.ms": "-1"}) == []


def test_every_unsafe_setting_is_named_at_once():
    found = judge({"retention.ms": "1", "retention.bytes": "2", "cleanup.policy": "compact",
                   "unclean.leader.election.enable": "true"})
    assert sorted(names(found)) == sorted(LEDGER_TOPIC_CONFIGS)


def test_a_retention_that_is_not_a_number_is_not_taken_for_forever():
    assert names(judge({**LEDGER_TOPIC_CONFIGS, "retention.ms": "forever"})) == ["retention.ms"]
