"""The ledger topic's settings that could lose evidence: what they must be, read and judged.

The topic is the system of record: the journal, the views and the Merkle trees are all
made from it, and an auditor may ask for any record again. So it is created (see
``protocolo.producers.ledger_topic``) with :data:`LEDGER_TOPIC_CONFIGS`, and the projector (at start)
and ``protocolo topic create`` read the settings the broker actually applies to it and
refuse a topic on which the broker may delete records by itself:

* a finite ``retention.ms`` or ``retention.bytes`` (old segments are deleted);
* a ``cleanup.policy`` holding ``compact`` (only the last record of each key is kept);
* ``unclean.leader.election.enable=true`` (a replica that missed acknowledged writes may
  become leader, and those writes are gone).

A setting the broker does not report is judged by Apache Kafka's default for it (tansu 0.6
reports the ones set at creation; measured). An operator who knows better (a copy kept
elsewhere, a test topic) can accept such a topic with ``--accept-unsafe-topic``; that is
logged at WARNING on every start.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType
from kafka.errors import UnknownTopicOrPartitionError

log = logging.getLogger(__name__)

#: What the ledger topic is created with: delete (never compact), never by age or size,
#: and no leader that missed acknowledged writes.
LEDGER_TOPIC_CONFIGS: dict[str, str] = {
    "cleanup.policy": "delete",
    "retention.ms": "-1",
    "retention.bytes": "-1",
    "unclean.leader.election.enable": "false",
}
#: Apache Kafka's defaults for the settings judged, used when a broker does not report one.
KAFKA_DEFAULTS: dict[str, str] = {
    "cleanup.policy": "delete",
    "retention.ms": "604800000",  # log.retention.hours=168
    "retention.bytes": "-1",
    "unclean.leader.election.enable": "false",
}
#: The flag that accepts an unsafe topic, named in every refusal.
ACCEPT_FLAG = "--accept-unsafe-topic"


@dataclass(frozen=True)
class UnsafeSetting:
    """One topic setting that lets the broker lose evidence."""

    name: str
    value: str
    why: str

    def __str__(self) -> str:
        return f"{self.name}={self.value} ({self.why})"


class TopicSettingsError(RuntimeError):
    """The ledger topic's settings are unsafe for evidence, or cannot be read."""


class UnsafeTopic(TopicSettingsError):
    """The ledger topic's settings let the broker delete records; the message names them."""

    def __init__(self, topic: str, unsafe: list[UnsafeSetting]) -> None:
        self.topic, self.unsafe = topic, unsafe
        super().__init__(
            f"topic {topic!r} could lose evidence: {'; '.join(str(u) for u in unsafe)}. The ledger "
            "topic must keep every record: set cleanup.policy=delete, retention.ms=-1, "
            "retention.bytes=-1, unclean.leader.election.enable=false (kafka-configs.sh --alter "
            f"--entity-type topics --entity-name {topic} --add-config ...), or run with "
            f"{ACCEPT_FLAG} to proceed anyway (logged)"
        )


class TopicSettingsUnreadable(TopicSettingsError):
    """The broker did not say what the topic's settings are."""


def judge(configs: Mapping[str, str | None]) -> list[UnsafeSetting]:
    """The settings among ``configs`` (name -> value as DescribeConfigs reports it) that let
    the broker delete records; an absent or null one is taken at Apache Kafka's default."""

    def value(name: str) -> str:
        found = configs.get(name)
        return KAFKA_DEFAULTS[name] if found is None else found.strip()

    unsafe: list[UnsafeSetting] = []
    for name, what in (("retention.ms", "records older than that are deleted"),
                       ("retention.bytes", "a partition's oldest records beyond that size are deleted")):
        text = value(name)
        try:
            finite = int(text) >= 0
        except ValueError:
            finite = True  # not a number the broker would accept as "forever"
        if finite:
            unsafe.append(UnsafeSetting(name, text, what))
    policy = value("cleanup.policy")
    if "compact" in {p.strip().lower() for p in policy.split(",")}:
        unsafe.append(UnsafeSetting("cleanup.policy", policy,
                                    "compaction keeps only the last record of each key"))
    unclean = value("unclean.leader.election.enable")
    if unclean.lower() != "false":
        unsafe.append(UnsafeSetting("unclean.leader.election.enable", unclean,
                                    "a replica that missed acknowledged writes may become leader"))
    return unsafe


def read_topic_settings(admin: KafkaAdminClient, topic: str) -> dict[str, str | None]:
    """The judged settings of ``topic`` as the broker applies them (name -> value)."""
    (meta,) = admin.describe_topics([topic])
    if meta.get("error_code", 0) == UnknownTopicOrPartitionError.errno:
        raise TopicSettingsUnreadable(
            f"topic {topic!r} does not exist on the broker; create it with `protocolo topic create`")
    described: dict[str, Any] = admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, topic)], config_filter="all")
    entries: dict[str, Any] = described.get("topic", {}).get(topic, {})
    return {name: entries[name].get("value") for name in KAFKA_DEFAULTS if name in entries}


def admin_client(bootstrap: str | list[str], kafka: Mapping[str, Any] | None = None,
                 timeout_ms: int = 30_000) -> KafkaAdminClient:
    """An admin client with those of ``kafka``'s settings (security, ...) an admin client takes."""
    extra = {k: v for k, v in (kafka or {}).items() if k in KafkaAdminClient.DEFAULT_CONFIG}
    extra.setdefault("bootstrap_timeout_ms", timeout_ms)
    extra.setdefault("request_timeout_ms", timeout_ms)
    return KafkaAdminClient(bootstrap_servers=bootstrap, client_id="protocolo-topic-check", **extra)


def check_topic(admin: KafkaAdminClient, topic: str, *, accept_unsafe: bool = False) -> list[UnsafeSetting]:
    """Refuse (:class:`UnsafeTopic`) a topic whose settings could lose evidence, unless
    ``accept_unsafe``: then log each such setting at WARNING. Returns what was found unsafe."""
    unsafe = judge(read_topic_settings(admin, topic))
    if unsafe and not accept_unsafe:
        raise UnsafeTopic(topic, unsafe)
    for setting in unsafe:
        log.warning("UNSAFE LEDGER TOPIC accepted (%s): %s %s; the broker may delete evidence",
                    ACCEPT_FLAG, topic, setting)
    return unsafe
