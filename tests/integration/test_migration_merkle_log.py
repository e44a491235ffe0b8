"""Migration 0003 on a ledger journalled before it: quarantined records get their leaves
(index and hash, computed in SQL with the v1 layout), journal leaves are renumbered over
both tables, and the projector then builds the trees of what was already there."""

from __future__ import annotations

import hashlib
import struct
from importlib import resources

import psycopg

from protocolo.core.database import migrate
from protocolo.projections.schema import LEDGER_MIGRATIONS

TOPIC = "old.ledger"


def spec_leaf(partition: int, offset: int, key: bytes | None, value: bytes) -> bytes:
    t = TOPIC.encode()
    body = struct.pack(">H", len(t)) + t + struct.pack(">IQ", partition, offset)
    body += struct.pack(">i", -1) if key is None else struct.pack(">i", len(key)) + key
    body += struct.pack(">I", len(value)) + value
    return hashlib.sha256(b"\x00" + body).digest()


def _apply_before_0003(conn: psycopg.Connection) -> None:
    folder = resources.files("protocolo.projections").joinpath("migrations")
    with conn.transaction():
        conn.execute("CREATE TABLE schema_migrations (name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())")
        for name in ("0001_ledger.sql", "0002_policy_versions.sql"):
            conn.execute(folder.joinpath(name).read_text(encoding="utf-8").encode())
            conn.execute("INSERT INTO schema_migrations (name) VALUES (%s)", (name,))


def test_an_old_ledger_gets_a_leaf_for_every_offset(database_url: str) -> None:
    # partition 0: offsets 0..5, offsets 1 and 4 quarantined (one a tombstone, one keyless)
    journalled = {0: b"a", 2: b"c", 3: b"d", 5: b"f"}
    quarantined = {1: (b"k1", None), 4: (None, b"garbage")}
    with psycopg.connect(database_url, autocommit=True) as conn:
        _apply_before_0003(conn)
        for leaf, (offset, value) in enumerate(journalled.items()):  # old numbering: journal only
            conn.execute(
                "INSERT INTO journal (topic, kafka_partition, kafka_offset, record_key, record_value,"
                " fingerprint, event_type, schema_version, event_id, entity_key, occurred_at, payload,"
                " is_duplicate, leaf_index, leaf_hash) VALUES (%s, 0, %s, %s, %s, '\\x00', 'NoteAdded', 1,"
                " gen_random_uuid(), 'k', now(), '{}', false, %s, %s)",
                (TOPIC, offset, b"k", value, leaf, spec_leaf(0, offset, b"k", value)))
        for offset, (key, value) in quarantined.items():
            conn.execute("INSERT INTO quarantine (topic, kafka_partition, kafka_offset, record_key,"
                         " record_value, error) VALUES (%s, 0, %s, %s, %s, 'old')", (TOPIC, offset, key, value))
        conn.execute("INSERT INTO projector_offsets (topic, kafka_partition, next_offset, next_leaf_index)"
                     " VALUES (%s, 0, 6, 4)", (TOPIC,))
        assert migrate(conn, LEDGER_MIGRATIONS)[0] == "0003_merkle_log.sql"
        leaves = {o: (int(i), bytes(h)) for o, i, h in conn.execute(
            "SELECT kafka_offset, leaf_index, leaf_hash FROM journal WHERE topic = %(t)s UNION ALL"
            " SELECT kafka_offset, leaf_index, leaf_hash FROM quarantine WHERE topic = %(t)s",
            {"t": TOPIC}).fetchall()}
        offsets = conn.execute("SELECT next_offset, next_leaf_index, tree_size FROM projector_offsets").fetchone()
    expected = {o: spec_leaf(0, o, b"k", v) for o, v in journalled.items()}
    expected |= {o: spec_leaf(0, o, k, v or b"") for o, (k, v) in quarantined.items()}
    assert leaves == {o: (o, expected[o]) for o in range(6)}, "every offset a leaf, in offset order, v1 hashes"
    assert offsets == (6, 6, 0), "the tree is still to be built (the projector does it at start)"
