"""The (key, leaf index) pairs the rows give, sorted by key hash on disk.

The verifier builds a partition's first map state in key-hash order
(:mod:`protocolo.attestation.map_stream`) from what the *rows* give, so it cannot let
PostgreSQL sort the stored entries for it; and it runs in a read-only snapshot, so it
cannot sort in a temporary table there either. A temporary SQLite file (standard library)
does the external sort: memory is SQLite's page cache, whatever the number of pairs.
"""

from __future__ import annotations

import itertools
import sqlite3
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import TracebackType

from protocolo.evidence.vindex import MapKey

CACHE_KIB = 65536
"""SQLite's page cache (64 MiB): beyond it the sort spills to its temporary file."""


class SortedPairs:
    """Add pairs in any order; read them back per key, in increasing key-hash order."""

    def __init__(self) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="protocolo-index-")
        self._db = sqlite3.connect(Path(self._dir.name) / "pairs.sqlite")
        for pragma in ("journal_mode = OFF", "synchronous = OFF", "temp_store = FILE",
                       f"cache_size = -{CACHE_KIB}"):
            self._db.execute(f"PRAGMA {pragma}")
        self._db.execute("CREATE TABLE pairs (key_hash BLOB, leaf INTEGER, kind TEXT, value TEXT)")
        self.count = 0

    def __enter__(self) -> SortedPairs:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._db.close()
        self._dir.cleanup()

    def add(self, pairs: Iterable[tuple[MapKey, int]]) -> None:
        rows = [(key.hash, leaf, key.kind, key.value) for key, leaf in pairs]
        self._db.executemany("INSERT INTO pairs VALUES (?, ?, ?, ?)", rows)
        self.count += len(rows)

    def by_key(self) -> Iterator[tuple[bytes, MapKey, list[int]]]:
        """(key hash, key, its leaf indexes in increasing order), keys in key-hash order."""
        rows = self._db.execute("SELECT key_hash, leaf, kind, value FROM pairs"
                                " ORDER BY key_hash, leaf")
        for khash, group in itertools.groupby(rows, key=lambda row: row[0]):
            members = list(group)
            yield bytes(khash), MapKey(members[0][2], members[0][3]), [row[1] for row in members]
