"""Issues protocol numbers from one sequence shared by every process.

The sequence lives in PostgreSQL (``protocol_number_sequence``). A process reserves a
block of numbers with one ``UPDATE ... RETURNING`` (the row lock serialises
concurrent reservers) and then hands them out from memory, so issuing is not a round trip
per number. Numbers of a block a process never used are skipped, never reused: gaps are
allowed, duplicates are impossible.

The year prefix is the issuing year in São Paulo time; the sequence itself is global and
never resets (see ``protocolo.core.protocol_number`` for the format).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime
from zoneinfo import ZoneInfo

import psycopg

from protocolo.core.protocol_number import MAX_SEQUENCE, make_protocol_number
from protocolo.producers.registry import connect

BRAZIL = ZoneInfo("America/Sao_Paulo")


#: The most numbers one reservation may take (a day of a large call centre).
MAX_RESERVATION = 100_000


class SequenceExhausted(RuntimeError):
    pass


class ProtocolIssuer:
    def __init__(
        self,
        database_url: str,
        block_size: int = 100,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        if block_size < 1:
            raise ValueError("block_size must be at least 1")
        self._url = database_url
        self._block_size = block_size
        self._clock = clock or (lambda: datetime.now(BRAZIL))
        self._next = 0
        self._end = 0  # exclusive
        self._lock = threading.Lock()
        self._conn: psycopg.Connection | None = None

    def _reserve(self) -> None:
        if self._conn is None or self._conn.closed:
            self._conn = connect(self._url, autocommit=True)
        row = self._conn.execute(
            "UPDATE protocol_number_sequence SET next_value = next_value + %s RETURNING next_value",
            (self._block_size,),
        ).fetchone()
        assert row is not None
        end = row[0]
        if end - 1 > MAX_SEQUENCE:
            raise SequenceExhausted("the protocol-number sequence has run out of 10-digit values")
        self._next, self._end = end - self._block_size, end

    def issue(self) -> str:
        """A new, never-issued protocol number."""
        with self._lock:
            if self._next >= self._end:
                self._reserve()
            sequence = self._next
            self._next += 1
        return make_protocol_number(self._clock().astimezone(BRAZIL).year, sequence)

    def reserve(self, count: int) -> list[str]:
        """``count`` new numbers at once, for a service that hands them out itself (an IVR
        in another language): one round trip, never issued to anyone else."""
        if not 1 <= count <= MAX_RESERVATION:
            raise ValueError(f"count must be from 1 to {MAX_RESERVATION:,}, got {count}")
        with self._lock:
            if self._conn is None or self._conn.closed:
                self._conn = connect(self._url, autocommit=True)
            row = self._conn.execute(
                "UPDATE protocol_number_sequence SET next_value = next_value + %s RETURNING next_value",
                (count,),
            ).fetchone()
        assert row is not None
        end = int(row[0])
        if end - 1 > MAX_SEQUENCE:
            raise SequenceExhausted("the protocol-number sequence has run out of 10-digit values")
        year = self._clock().astimezone(BRAZIL).year
        return [make_protocol_number(year, n) for n in range(end - count, end)]

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()

    def __enter__(self) -> ProtocolIssuer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
