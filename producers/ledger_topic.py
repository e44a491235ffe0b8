"""Creating the ledger topic: the system of record, so replicated and never expiring."""

from __future__ import annotations

import contextlib
import time
from typing import Any

import kafka.errors as Errors
from kafka import KafkaAdminClient
from kafka.errors import TopicAlreadyExistsError, UnknownTopicOrPartitionError

from protocolo.core.topic_settings import LEDGER_TOPIC_CONFIGS

#: How long to wait for the broker to answer and for every partition to have a leader.
DEFAULT_TIMEOUT_S = 30.0

# A new topic gets LEDGER_TOPIC_CONFIGS: infinite retention, deletion (never compaction), no
# unclean leader election; consumers/topic_settings.py judges an existing topic by the same
# rules. Measured: tansu 0.6 accepts these (and min.insync.replicas) on CreateTopics.


class LedgerTopicError(RuntimeError):
    """The ledger topic could not be created or did not become usable in time."""


def ensure_ledger_topic(
    bootstrap: str, topic: str, partitions: int, *, timeout: float = DEFAULT_TIMEOUT_S
) -> int:
    """Create ``topic`` if it is missing; return its partition count once all have leaders.

    A new topic gets ``partitions`` partitions, replication factor min(3, live brokers),
    ``cleanup.policy=delete`` with infinite retention, ``unclean.leader.election.enable=false``, and ``min.insync.replicas=2`` when it has 3 replicas (so an
    ``acks=all`` write survives the loss of any one broker). An existing topic is left as
    it is and its actual partition count is returned, which may differ from ``partitions``.
    Creating concurrently from several processes is safe.
    """
    if partitions < 1:
        raise ValueError(f"partitions must be at least 1, got {partitions}")
    deadline = time.monotonic() + timeout
    timeout_ms = int(timeout * 1000)
    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap,
        client_id="protocolo-ledger-topic",
        bootstrap_timeout_ms=timeout_ms,
        request_timeout_ms=min(timeout_ms, 30_000),
    )
    try:
        if _describe(admin, topic) is None:
            brokers = _live_brokers(admin)
            replication = min(3, brokers)
            configs = dict(LEDGER_TOPIC_CONFIGS)
            if replication >= 3:
                configs["min.insync.replicas"] = "2"
            # TopicAlreadyExists: another process created it between our look and our create
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(
                    {
                        topic: {
                            "num_partitions": partitions,
                            "replication_factor": replication,
                            "configs": configs,
                        }
                    },
                    timeout_ms=min(timeout_ms, 30_000),
                )
        return _wait_until_led(admin, topic, deadline)
    finally:
        admin.close()


def _describe(admin: KafkaAdminClient, topic: str) -> dict[str, Any] | None:
    """The topic's metadata, or ``None`` if the broker does not know it.

    The admin client's metadata requests never auto-create topics.
    """
    (meta,) = admin.describe_topics([topic])
    if meta.get("error_code", 0) == UnknownTopicOrPartitionError.errno:
        return None
    return dict(meta)


def _live_brokers(admin: KafkaAdminClient) -> int:
    brokers = admin.describe_cluster()["brokers"]
    return max(1, sum(1 for b in brokers if not b.get("is_fenced", False)))


def _wait_until_led(admin: KafkaAdminClient, topic: str, deadline: float) -> int:
    """Wait until metadata shows every partition without error and with a leader."""
    problem = "not yet described"
    while True:
        meta = _describe(admin, topic)
        if meta is None:
            problem = "unknown to the broker"
        elif meta.get("error_code", 0):
            error = Errors.for_code(meta["error_code"])
            problem = error.__name__
            if not error.retriable:  # e.g. TopicAuthorizationFailedError: waiting won't help
                raise LedgerTopicError(f"topic {topic!r}: {problem}")
        else:
            parts = meta.get("partitions") or []
            pending = [
                p["partition_index"]
                for p in parts
                if p.get("error_code", 0) or p.get("leader_id", -1) < 0
            ]
            if parts and not pending:
                return len(parts)
            problem = f"partitions without a leader: {pending}" if parts else "no partitions"
        if time.monotonic() >= deadline:
            raise LedgerTopicError(f"topic {topic!r} not ready in time: {problem}")
        time.sleep(0.1)
