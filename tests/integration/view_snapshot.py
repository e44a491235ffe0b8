"""A comparable picture of everything the projector writes, for "same result" assertions.

``snapshot(database_url)`` returns, for each view table, the journal, the quarantine and
``projector_offsets``, every row as a tuple, all rows sorted, without wall-clock columns
(``projected_at``, ``updated_at``, ``quarantined_at`` and any other column defaulting to
the current time): two databases projected from the same topic, in whatever batches, by
whatever number of projectors, killed or not, must give equal snapshots.
"""

from __future__ import annotations

import contextlib
import os
import random
import sys
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from protocolo.consumers.projector import Projector, ProjectorOptions, ProjectorStats
from protocolo.core.config import Settings
from protocolo.producers.protocol_issuer import ProtocolIssuer
from protocolo.producers.publisher import Receipt
from protocolo.producers.simulator import CallCentreDay, SimulatedDay, chunks
from protocolo.runtime import Runtime

try:
    import backends  # tests/ is on sys.path (pytest's "prepend" import mode)
except ImportError:  # tests/ turned into a package
    from tests import backends

#: The tables the views own (projections/views/__init__.py VIEW_TABLES).
VIEW_TABLES = (
    "interactions", "customer_index", "legal_holds", "recordings", "recording_deletions",
    "retrieval_requests", "erasures", "access_log", "approvals",
)
#: Journal columns compared, in order: where the record was, what it was, its Merkle leaf.
JOURNAL_COLUMNS = (
    "topic", "kafka_partition", "kafka_offset", "event_id", "is_duplicate", "leaf_index",
    "leaf_hash", "payload", "record_key", "record_value", "fingerprint", "event_type",
    "schema_version", "entity_key", "protocol_number", "occurred_at", "kafka_timestamp", "headers",
)
OFFSET_COLUMNS = ("topic", "kafka_partition", "next_offset", "next_leaf_index", "tree_size", "compact_range")
#: Columns that say when a row was written, not what it says.
WALL_CLOCK_COLUMNS = frozenset({"projected_at", "updated_at", "quarantined_at"})
SNAPSHOT_TABLES = (*VIEW_TABLES, "journal", "quarantine", "projector_offsets", "merkle_nodes")


def _columns(conn: psycopg.Connection, table: str) -> list[str]:
    rows = conn.execute(
        "SELECT column_name, coalesce(column_default, '') FROM information_schema.columns"
        " WHERE table_schema = current_schema() AND table_name = %s ORDER BY ordinal_position",
        (table,),
    ).fetchall()
    if not rows:
        raise AssertionError(f"table {table!r} does not exist")
    clock_defaults = ("now()", "current_timestamp", "clock_timestamp()", "statement_timestamp()")
    return [
        name for name, default in rows
        if name not in WALL_CLOCK_COLUMNS and not any(d in default.lower() for d in clock_defaults)
    ]


def _rows(conn: psycopg.Connection, table: str, columns: list[str] | tuple[str, ...]) -> list[tuple]:
    cols = sql.SQL(", ").join(sql.Identifier(c) for c in columns)
    order = sql.SQL(", ").join(sql.Literal(i + 1) for i in range(len(columns)))
    query = sql.SQL("SELECT {} FROM {} ORDER BY {}").format(cols, sql.Identifier(table), order)
    return [tuple(r) for r in conn.execute(query).fetchall()]


def snapshot(database_url: str) -> dict[str, list[tuple]]:
    """Every projected row of the database at ``database_url``, table by table, sorted."""
    with psycopg.connect(database_url) as conn:
        out: dict[str, list[tuple]] = {}
        for table in VIEW_TABLES:
            out[table] = _rows(conn, table, _columns(conn, table))
        out["journal"] = _rows(conn, "journal", JOURNAL_COLUMNS)
        out["quarantine"] = _rows(conn, "quarantine", _columns(conn, "quarantine"))
        out["projector_offsets"] = _rows(conn, "projector_offsets", OFFSET_COLUMNS)
        # the Merkle trees: exactly-once like the views
        out["merkle_nodes"] = _rows(conn, "merkle_nodes", _columns(conn, "merkle_nodes"))
        return out


def describe_difference(a: dict[str, list[tuple]], b: dict[str, list[tuple]], limit: int = 3) -> str:
    """A short text naming the tables whose rows differ and a few differing rows."""
    lines = []
    for table in SNAPSHOT_TABLES:
        ra, rb = a.get(table, []), b.get(table, [])
        if ra == rb:
            continue
        only_a = [r for r in ra if r not in rb][:limit]
        only_b = [r for r in rb if r not in ra][:limit]
        lines.append(f"{table}: {len(ra)} vs {len(rb)} rows; only in first {only_a}; only in second {only_b}")
    return "\n".join(lines) or "no difference"


# --------------------------------------------------------------------------- shared helpers
# (the fault-injection tests use them; they touch nothing outside the test's own database,
# topic and group)

#: PROTOCOLO_KAFKA_CLIENT: a command started by a test of the Kafka client lane must use the
#: client the lane names (test_kafka_client checks it), not the default.
ENV_PASSTHROUGH = (
    "PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "PYTHONPATH", "VIRTUAL_ENV", "PROTOCOLO_POLICY",
    "PROTOCOLO_KAFKA_CLIENT",
)


@contextlib.contextmanager
def scratch_database(admin_url: str, label: str) -> Iterator[str]:
    """A fresh empty database on the test server (like the ``database_url`` fixture), dropped after."""
    name = f"t_{label[:20]}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield backends.with_database(admin_url, name)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def publish_day(
    settings: Settings, contacts: int, seed: int, duplicates: int = 0,
) -> tuple[SimulatedDay, list[Receipt]]:
    """A simulated call-centre day published to ``settings.topic``; the receipts in order.

    ``duplicates``: that many of its events, chosen by ``seed``, are then sent again byte for
    byte (a producer retrying after an unconfirmed send), so the log holds duplicate event ids.
    """
    rt = Runtime.start(settings, log=lambda m: None)
    with ProtocolIssuer(rt.database_url) as issuer:
        day = CallCentreDay(issuer.issue, contacts=contacts, seed=seed).build()
    receipts: list[Receipt] = []
    with rt.publisher("fault-tests") as publisher:
        prepared = [publisher.prepare(e) for e in day.events]
        for chunk in chunks(prepared, 500):
            receipts += publisher.send_prepared(chunk)
        if duplicates:
            receipts += publisher.send_prepared(random.Random(seed).sample(prepared, duplicates))
    assert len(receipts) == len(day.events) + duplicates
    return day, receipts


def log_ends(receipts: Iterable[Any]) -> dict[int, int]:
    """partition -> high watermark, from the delivery receipts of everything put on a fresh topic."""
    ends: dict[int, int] = {}
    for r in receipts:
        ends[r.partition] = max(ends.get(r.partition, 0), r.offset + 1)
    return ends


def stored_offsets(database_url: str) -> dict[int, tuple[int, int]]:
    """partition -> (next_offset, next_leaf_index) from ``projector_offsets``."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT kafka_partition, next_offset, next_leaf_index FROM projector_offsets"
        ).fetchall()
    return {p: (o, leaf) for p, o, leaf in rows}


def project_in_process(
    bootstrap: str, database_url: str, topic: str, *, batch_size: int = 5000,
    group_id: str | None = None, idle_timeout_s: float = 60,
) -> ProjectorStats:
    """One in-process projector run until it has caught up (the reference run)."""
    options = ProjectorOptions(batch_size=batch_size)
    with Projector(bootstrap, database_url, topic=topic,
                   group_id=group_id or f"reference-{uuid.uuid4().hex[:8]}", options=options) as projector:
        return projector.run(until_caught_up=True, idle_timeout_s=idle_timeout_s)


def cli_env(settings: Settings, **overrides: str) -> dict[str, str]:
    """Environment for a ``protocolo`` subprocess pointed at the test's backend, topic and group."""
    env = {k: v for k, v in os.environ.items() if k in ENV_PASSTHROUGH}
    env.update({
        "PROTOCOLO_KAFKA_BOOTSTRAP": settings.kafka_bootstrap or "",
        "PROTOCOLO_DATABASE_URL": settings.database_url or "",
        "PROTOCOLO_TOPIC": settings.topic,
        "PROTOCOLO_PARTITIONS": str(settings.partitions),
        "PROTOCOLO_GROUP_ID": settings.group_id,
        "PROTOCOLO_HOME": str(settings.home),
        "PROTOCOLO_DEV_KEYS": "1",
        "PYTHONUNBUFFERED": "1",
    })
    env.update(overrides)
    return env


PROTOCOLO = str(Path(sys.executable).with_name("protocolo"))
