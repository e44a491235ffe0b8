"""Which checkpoints bound an export's period, per partition.

The period ``[T1, T2]`` is read off the signed checkpoints: it starts at the newest
checkpoint signed at or before T1 (or the empty tree when there is none) and ends at the
first one signed at or after T2. When no checkpoint was signed at or after T2 yet, one is
signed on the spot (the checkpointer's own rules: it refuses a ledger that differs from its
tree); an unchanged tree's newest checkpoint is anchored again, so even an empty period ends
with a fresh statement ("nothing happened"), timestamped when a TSA is configured.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from protocolo.attestation.anchoring import Anchorer, anchor_checkpoints
from protocolo.attestation.checkpointer import (
    StoredCheckpoint,
    checkpoint_partition,
    stored_checkpoints,
    tree_heads,
)
from protocolo.attestation.log_key import LogKey


@dataclass(frozen=True)
class PartitionPeriod:
    partition: int
    start: StoredCheckpoint | None  # None: the empty tree (nothing signed before T1)
    end: StoredCheckpoint

    @property
    def begin(self) -> int:
        return 0 if self.start is None else self.start.size

    @property
    def finish(self) -> int:
        return self.end.size


def period_checkpoints(conn: psycopg.Connection[Any], key: LogKey, topic: str, deployment: str,
                       start: datetime, end: datetime, anchorers: Sequence[Anchorer],
                       partitions: Sequence[int] | None = None) -> list[PartitionPeriod]:
    """The bounding checkpoints of every partition with a tree (signing what is missing)."""
    found: list[PartitionPeriod] = []
    fresh: list[StoredCheckpoint] = []
    for partition, _ in tree_heads(conn, topic, partitions):
        stored = stored_checkpoints(conn, topic, partition)
        before = [c for c in stored if c.signed_at <= start]
        after = [c for c in stored if c.signed_at >= end]
        closing = after[0] if after else None
        if closing is None:
            closing = checkpoint_partition(conn, key, topic, deployment, partition, force=True)
            assert closing is not None  # force always returns one
            fresh.append(closing)
        opening = before[-1] if before else None
        if opening is not None and opening.size > closing.size:
            opening = None  # cannot happen with a consistent log; be safe, start from empty
        found.append(PartitionPeriod(partition, opening, closing))
    if fresh and anchorers:
        anchor_checkpoints(conn, fresh, anchorers)
    return found
