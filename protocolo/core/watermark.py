"""How far the projection stands behind the ledger topic (the projection watermark).

Readers and jobs that decide from the views (``history``, the retention sweeper,
``erase``) must know whether the views are complete: the topic may hold records the
projector has not applied yet. The log end is taken from the high watermark that fetch
responses carry, which is right on Apache Kafka and on the tansu fallback alike (tansu's
ListOffsets answers wrongly when the last record batch held several records).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import psycopg
from kafka import KafkaConsumer, TopicPartition

__all__ = ["ProjectionBehind", "ProjectionLag", "log_end_offsets", "projected_offsets",
           "projection_lag", "wait_until_applied", "wait_until_projected"]


class ProjectionBehind(RuntimeError):
    """The projection did not reach the wanted log position in time."""

    def __init__(self, message: str, lag: ProjectionLag) -> None:
        super().__init__(message)
        self.lag = lag


@dataclass(frozen=True)
class ProjectionLag:
    """Per partition: the topic's log end and the next offset the projection will apply."""

    log_end: Mapping[int, int]
    projected: Mapping[int, int]

    @property
    def behind(self) -> dict[int, int]:
        """Partitions with records not projected yet -> how many offsets behind."""
        return {p: end - self.projected.get(p, 0) for p, end in sorted(self.log_end.items())
                if end > self.projected.get(p, 0)}

    @property
    def total(self) -> int:
        return sum(self.behind.values())

    def describe(self) -> str:
        behind = self.behind
        if not behind:
            return "the projection is up to date with the topic"
        parts = ", ".join(f"partition {p}: {n}" for p, n in behind.items())
        return f"{self.total} record(s) on the topic are not projected yet ({parts})"


def log_end_offsets(bootstrap: str, topic: str, timeout_s: float = 10.0) -> dict[int, int]:
    """partition -> log end offset (high watermark) of every partition of ``topic``.

    Raises ``LookupError`` when the topic does not exist, ``TimeoutError`` (or kafka's
    ``KafkaTimeoutError`` when no broker answers at all) within about ``timeout_s``.
    """
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
        auto_offset_reset="latest", request_timeout_ms=max(int(timeout_s * 1000), 1000) + 1000,
        # else the client's own 30 s default decides how long a broker that is down delays us
        bootstrap_timeout_ms=max(int(timeout_s * 1000), 1000),
        fetch_max_wait_ms=100, max_poll_records=1,
    )
    try:
        deadline = time.monotonic() + timeout_s
        partitions = consumer.partitions_for_topic(topic)
        while not partitions and time.monotonic() < deadline:
            time.sleep(0.2)
            partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            raise LookupError(f"topic {topic!r} does not exist on {bootstrap}")
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        consumer.seek_to_end(*tps)
        while True:
            consumer.poll(timeout_ms=200, max_records=1)
            marks = {tp.partition: consumer.highwater(tp) for tp in tps}
            if all(m is not None for m in marks.values()):
                return {p: int(m) for p, m in marks.items() if m is not None}
            if time.monotonic() > deadline:
                raise TimeoutError(f"{bootstrap} did not report the log end of {topic!r} "
                                   f"within {timeout_s:.0f} s")
    finally:
        consumer.close(autocommit=False)


def projected_offsets(conn: psycopg.Connection[Any], topic: str) -> dict[int, int]:
    """partition -> next offset the projection will apply (what is stored in PostgreSQL)."""
    rows = conn.execute(
        "SELECT kafka_partition, next_offset FROM projector_offsets WHERE topic = %s", (topic,)
    ).fetchall()
    if not conn.autocommit:
        conn.rollback()
    return {int(p): int(o) for p, o in rows}


def projection_lag(conn: psycopg.Connection[Any], bootstrap: str, topic: str,
                   timeout_s: float = 10.0) -> ProjectionLag:
    log_end = log_end_offsets(bootstrap, topic, timeout_s)
    return ProjectionLag(log_end, projected_offsets(conn, topic))


def wait_until_projected(
    conn: psycopg.Connection[Any], bootstrap: str, topic: str, *, timeout_s: float,
    poll_s: float = 0.25, progress: Callable[[ProjectionLag], None] | None = None,
) -> ProjectionLag:
    """Wait until the projection has applied everything that was on the topic when this
    was called (later records do not move the goal). Raises :class:`ProjectionBehind`
    after ``timeout_s``."""
    goal = log_end_offsets(bootstrap, topic)
    deadline = time.monotonic() + timeout_s
    while True:
        lag = ProjectionLag(goal, projected_offsets(conn, topic))
        if not lag.behind:
            return lag
        if progress is not None:
            progress(lag)
        if time.monotonic() >= deadline:
            raise ProjectionBehind(
                f"{lag.describe()}; waited {timeout_s:.0f} s for the projector. Run "
                "`protocolo project` (or check that it is running) and try again", lag)
        time.sleep(poll_s)


def wait_until_applied(
    conn: psycopg.Connection[Any], topic: str, positions: Mapping[int, int], *, timeout_s: float,
    poll_s: float = 0.02,
) -> None:
    """Wait until the projection has applied the records at ``positions`` (partition ->
    offset, e.g. from publish receipts): read-your-writes for one writer, without asking
    the broker for the log end. Raises :class:`ProjectionBehind` after ``timeout_s``."""
    goal = {p: o + 1 for p, o in positions.items()}
    deadline = time.monotonic() + timeout_s
    while True:
        lag = ProjectionLag(goal, projected_offsets(conn, topic))
        if not lag.behind:
            return
        if time.monotonic() >= deadline:
            raise ProjectionBehind(
                f"{lag.describe()}; the event was published but not projected within "
                f"{timeout_s:.0f} s: is the projector running?", lag)
        time.sleep(poll_s)
        poll_s = min(poll_s * 1.5, 0.25)
