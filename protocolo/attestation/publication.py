"""The checkpoints topic: every signed tree head, on the immutable log next to the ledger.

One partition (a total order of all tree heads of the deployment), infinite retention and
the ledger topic's replication rules (:func:`protocolo.producers.ledger_topic.ensure_ledger_topic`).
Record key = the checkpoint's origin (UTF-8), value = the signed note bytes exactly as
stored in ``checkpoints.note``; no headers. Written with ``acks=all`` and idempotence, so an
acknowledged checkpoint survives the loss of a broker and a retry does not duplicate it.
"""

from __future__ import annotations

from types import TracebackType

from kafka import KafkaProducer

from protocolo.producers.ledger_topic import ensure_ledger_topic

__all__ = ["CHECKPOINT_TOPIC_PARTITIONS", "KafkaCheckpointPublisher", "ensure_checkpoint_topic"]

CHECKPOINT_TOPIC_PARTITIONS = 1


def ensure_checkpoint_topic(bootstrap: str, topic: str, *, timeout: float = 30.0) -> int:
    """Create the checkpoints topic if missing (one partition, infinite retention)."""
    return ensure_ledger_topic(bootstrap, topic, CHECKPOINT_TOPIC_PARTITIONS, timeout=timeout)


class KafkaCheckpointPublisher:
    """A :class:`~protocolo.attestation.checkpointer.CheckpointPublisher` on Kafka."""

    def __init__(self, bootstrap: str, topic: str, *, timeout: float = 30.0) -> None:
        ensure_checkpoint_topic(bootstrap, topic, timeout=timeout)
        self.topic = topic
        self._timeout = timeout
        self._producer = KafkaProducer(
            bootstrap_servers=bootstrap, client_id="protocolo-checkpointer", acks="all",
            enable_idempotence=True, linger_ms=0,
        )

    def publish(self, origin: str, note: bytes) -> int:
        future = self._producer.send(self.topic, key=origin.encode(), value=note)
        metadata = future.get(timeout=self._timeout)
        return int(metadata.offset)

    def close(self) -> None:
        self._producer.close(timeout=self._timeout)

    def __enter__(self) -> KafkaCheckpointPublisher:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
