"""When a partition is due for a checkpoint or an anchor, and the checkpointer's loop.

A partition is due for a checkpoint when its tree grew since its newest checkpoint and
either it grew by at least ``every_leaves`` leaves, or ``every_seconds`` have passed since
that checkpoint was signed, or it has no checkpoint yet.

Its newest checkpoint is due for an anchor when ``anchor_every_seconds`` have passed since
it was signed or last anchored, whichever is later (EVIDENCE.md §7: an unchanged tree
still gets a fresh RFC 3161 token and cosignature every period, the equivalent of
CloudTrail's empty digest file; this also retries anchors that failed).

Times are PostgreSQL's ``now()``, the clock ``signed_at`` and ``recorded_at`` were written
with, so no two machines' clocks are compared.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from kafka.errors import KafkaError

from protocolo.attestation.checkpointer import (
    CheckpointPublisher,
    StoredCheckpoint,
    checkpoint_partitions,
    latest_checkpoint,
    publish_pending,
)
from protocolo.attestation.log_key import LogKey

__all__ = ["Cadence", "anchor_due", "due_partitions", "run_checkpointer"]


@dataclass(frozen=True)
class Cadence:
    every_leaves: int
    every_seconds: float
    anchor_every_seconds: float = 3600.0


def due_partitions(
    conn: psycopg.Connection[Any], topic: str, cadence: Cadence,
    partitions: Sequence[int] | None = None,
) -> list[int]:
    """The partitions (of ``partitions``, or all) due for a checkpoint now."""
    return [int(p) for (p,) in conn.execute(
        "SELECT o.kafka_partition FROM projector_offsets o"
        " LEFT JOIN LATERAL (SELECT tree_size, signed_at FROM checkpoints c"
        "   WHERE c.topic = o.topic AND c.kafka_partition = o.kafka_partition"
        "   ORDER BY tree_size DESC LIMIT 1) last ON true"
        " WHERE o.topic = %(t)s AND (%(p)s::integer[] IS NULL OR o.kafka_partition = ANY(%(p)s))"
        "   AND o.tree_size > coalesce(last.tree_size, 0)"
        "   AND (last.tree_size IS NULL OR o.tree_size - last.tree_size >= %(n)s"
        "        OR now() - last.signed_at >= make_interval(secs => %(s)s))"
        " ORDER BY o.kafka_partition",
        {"t": topic, "p": None if partitions is None else list(partitions),
         "n": cadence.every_leaves, "s": cadence.every_seconds})]


def anchor_due(
    conn: psycopg.Connection[Any], topic: str, cadence: Cadence,
    partitions: Sequence[int] | None = None,
) -> list[StoredCheckpoint]:
    """The newest checkpoint of each partition (of ``partitions``, or all) due for an anchor."""
    due = [int(p) for (p,) in conn.execute(
        "SELECT c.kafka_partition FROM checkpoints c"
        " WHERE c.topic = %(t)s AND (%(p)s::integer[] IS NULL OR c.kafka_partition = ANY(%(p)s))"
        "   AND c.tree_size = (SELECT max(tree_size) FROM checkpoints n"
        "                       WHERE n.topic = c.topic AND n.kafka_partition = c.kafka_partition)"
        "   AND now() - greatest(c.signed_at, (SELECT max(recorded_at) FROM checkpoint_anchors a"
        "        WHERE a.topic = c.topic AND a.kafka_partition = c.kafka_partition"
        "          AND a.tree_size = c.tree_size)) >= make_interval(secs => %(s)s)"
        " ORDER BY c.kafka_partition",
        {"t": topic, "p": None if partitions is None else list(partitions),
         "s": cadence.anchor_every_seconds})]
    return [c for c in (latest_checkpoint(conn, topic, p) for p in due) if c is not None]


def run_checkpointer(
    conn: psycopg.Connection[Any],
    key: LogKey,
    topic: str,
    deployment: str,
    cadence: Cadence,
    *,
    stop: threading.Event,
    partitions: Sequence[int] | None = None,
    publish: CheckpointPublisher | None = None,
    after: Callable[[list[StoredCheckpoint]], None] = lambda made: None,
    anchor: Callable[[list[StoredCheckpoint]], None] | None = None,
    on_publish_error: Callable[[Exception], None] | None = None,
    poll_seconds: float = 1.0,
) -> int:
    """Sign due partitions until ``stop`` is set; return how many checkpoints were signed.

    ``after`` gets each round's new checkpoints (progress). ``anchor`` (if given) gets them
    too, and also each round the checkpoints due for a periodic anchor. A Kafka error while
    publishing goes to ``on_publish_error`` (if given; else it is raised) and the loop goes
    on: unpublished checkpoints are sent next round. A refusal
    (:class:`~protocolo.attestation.checkpointer.CheckpointRefused`) ends the loop by
    propagating: a checkpointer that cannot vouch for the tree must stop, loudly.
    """
    signed = 0
    while not stop.is_set():
        due = due_partitions(conn, topic, cadence, partitions)
        made = checkpoint_partitions(conn, key, topic, deployment, partitions=due)
        if publish is not None:
            # also what an earlier round could not publish; a broker outage is reported and
            # retried next round: the checkpoints are already committed in PostgreSQL
            try:
                published = {(c.partition, c.size): c
                             for c in publish_pending(conn, topic, publish)}
            except KafkaError as exc:
                if on_publish_error is None:
                    raise
                on_publish_error(exc)
            else:
                made = [published.get((c.partition, c.size), c) for c in made]
        signed += len(made)
        if made:
            after(made)
        if anchor is not None:
            fresh = {c.partition for c in made}
            again = [c for c in anchor_due(conn, topic, cadence, partitions)
                     if c.partition not in fresh]
            if made or again:
                anchor(made + again)
        stop.wait(min(poll_seconds, cadence.every_seconds))
    return signed
