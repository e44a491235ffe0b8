"""When a partition is due for a checkpoint, and the checkpointer's loop.

A partition is due when its tree grew since its newest checkpoint and either it grew by at
least ``every_leaves`` leaves, or ``every_seconds`` have passed since that checkpoint was
signed, or it has no checkpoint yet. The time is PostgreSQL's ``now()``, the clock
``signed_at`` was written with, so no two machines' clocks are compared.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from protocolo.attestation.checkpointer import (
    CheckpointPublisher,
    StoredCheckpoint,
    checkpoint_partitions,
)
from protocolo.attestation.log_key import LogKey

__all__ = ["Cadence", "due_partitions", "run_checkpointer"]


@dataclass(frozen=True)
class Cadence:
    every_leaves: int
    every_seconds: float


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
    poll_seconds: float = 1.0,
) -> int:
    """Sign due partitions until ``stop`` is set; return how many checkpoints were signed.

    ``after`` gets each round's new checkpoints (anchoring, progress). A refusal
    (:class:`~protocolo.attestation.checkpointer.CheckpointRefused`) ends the loop by
    propagating: a checkpointer that cannot vouch for the tree must stop, loudly.
    """
    signed = 0
    while not stop.is_set():
        due = due_partitions(conn, topic, cadence, partitions)
        # with nothing due this still publishes what an earlier round could not
        made = checkpoint_partitions(conn, key, topic, deployment, partitions=due,
                                     publish=publish)
        signed += len(made)
        if made:
            after(made)
        stop.wait(min(poll_seconds, cadence.every_seconds))
    return signed
