"""`protocolo verify`'s replay of the verifiable index attacked: tamperings of
``vindex_nodes``, ``vindex_entries`` and ``vindex_checkpoints`` a user relies on verify to
name, each once, without a traceback and without a cascade of findings that hides which
row was touched; and a clean ledger replayed with the smallest chunks.

The ledger is test_verifiable_index's (its module fixture, a fresh copy per test); the
expected map comes from the independent transcription of docs/evidence-format.md §11
(vindex_oracle) applied to the records a raw consumer read off the topic.
"""

# ruff: noqa: F811 (the fixtures ledger and copy_url are imported and taken as arguments)
from __future__ import annotations

from typing import Any

import psycopg
import pytest
from test_verifiable_index import (  # noqa: F401 (fixtures)
    DEPLOYMENT,
    SCHEMAS,
    Ledger,
    _grown_partition,
    _index_findings,
    _new_protocol,
    _undo_last_checkpoint,
    _verify,
    copy_url,
    ledger,
    oracle,
)

from protocolo.attestation.index_store import index_checkpoints

WHERE = "WHERE topic = %s AND kafka_partition = %s"


def _details(report: dict[str, Any]) -> list[str]:
    return sorted(f"{f.get('tree_size')}: {f['detail']}" for f in _index_findings(report))


def _run(ledger: Ledger, url: str, monkeypatch: Any, capsys: Any) -> tuple[int, list[str], list[dict[str, Any]]]:
    code, report = _verify(ledger, url, monkeypatch, capsys)
    return code, _details(report), _index_findings(report)


def test_the_smallest_chunks_replay_a_clean_ledger_clean(ledger: Ledger, copy_url: str,
                                                         monkeypatch, capsys) -> None:
    """Every stretch sorted on disk and applied one key at a time, the first map state's
    nodes compared one at a time: the same verdict as whole."""
    from protocolo.attestation import audit_index

    monkeypatch.setattr(audit_index, "SPILL_PAIRS", 1)
    monkeypatch.setattr(audit_index, "CHUNK_KEYS", 1)
    monkeypatch.setattr(audit_index, "PROBE_CHUNK", 1)
    code, details, _ = _run(ledger, copy_url, monkeypatch, capsys)
    assert code == 0 and not details, details


def test_a_stretch_signed_again_one_key_at_a_time_verifies(ledger: Ledger, copy_url: str,
                                                          monkeypatch, capsys) -> None:
    """The checkpointer signs the newest stretch again applying one key at a time, writing
    one entry per COPY: the map root the oracle gives, and verify finds it clean."""
    from protocolo.attestation import index_store
    from protocolo.attestation.checkpointer import checkpoint_partition

    monkeypatch.setattr(index_store, "UPDATE_KEYS", 1)
    monkeypatch.setattr(index_store, "ENTRY_BATCH", 1)
    partition, _, size, _ = _undo_last_checkpoint(ledger, copy_url)
    with psycopg.connect(copy_url, autocommit=True) as conn:
        made = checkpoint_partition(conn, ledger.key, ledger.topic, DEPLOYMENT, partition)
        assert made is not None and made.size == size
        cp = index_checkpoints(conn, ledger.topic, partition)[-1]
        assert cp.map_root == oracle.root(ledger.oracle_map(partition, size))
    code, details, _ = _run(ledger, copy_url, monkeypatch, capsys)
    assert code == 0 and not details, details


# -- vindex_entries ------------------------------------------------------------------------


def test_an_entry_of_another_kind_under_the_right_hash_is_named_once(
        ledger: Ledger, copy_url: str, monkeypatch, capsys) -> None:
    partition, first, _ = _grown_partition(ledger, copy_url)
    protocol = _new_protocol(ledger, partition, first)
    khash = oracle.key_hash("protocol", protocol)
    with psycopg.connect(copy_url, autocommit=True) as conn:
        changed = conn.execute(f"UPDATE vindex_entries SET kind = 'id' {WHERE} AND key_hash = %s"
                               " AND leaf_index = (SELECT min(leaf_index) FROM vindex_entries"
                               f" {WHERE} AND key_hash = %s)",
                               (ledger.topic, partition, khash, ledger.topic, partition, khash)).rowcount
    assert changed == 1
    code, details, found = _run(ledger, copy_url, monkeypatch, capsys)
    assert code == 1 and len(details) == 1, details
    assert f"key protocol:{protocol}" in details[0] and f"id:{protocol}" in details[0]


def test_an_entry_moved_to_another_key_is_named_for_both_keys(
        ledger: Ledger, copy_url: str, monkeypatch, capsys) -> None:
    """An entry of the first stretch given to a key no leaf has: the key losing it is named,
    the stray entry counted; the replay goes on to the newest index checkpoint."""
    partition, first, second = _grown_partition(ledger, copy_url)
    stray = "209900000000077"
    with psycopg.connect(copy_url, autocommit=True) as conn:
        row = conn.execute(f"SELECT key_hash, leaf_index, kind, key_value FROM vindex_entries {WHERE}"
                           " AND leaf_index < %s AND kind = 'protocol' ORDER BY leaf_index LIMIT 1",
                           (ledger.topic, partition, first)).fetchone()
        assert row is not None
        conn.execute(f"UPDATE vindex_entries SET key_hash = %s, key_value = %s {WHERE}"
                     " AND key_hash = %s AND leaf_index = %s",
                     (oracle.key_hash("protocol", stray), stray, ledger.topic, partition, row[0], row[1]))
    code, details, _ = _run(ledger, copy_url, monkeypatch, capsys)
    assert code == 1 and len(details) == 2, details
    assert any(f"key protocol:{row[3]}: stored with leaves" in d for d in details), details
    assert any(f"1 stored entries for leaves [0, {first})" in d for d in details), details
    assert not any("not checked" in d for d in details), details


def test_entries_of_a_partition_without_index_checkpoints_are_named(
        ledger: Ledger, copy_url: str, monkeypatch, capsys) -> None:
    """Every index checkpoint of a partition deleted, its entries and nodes left: the log's
    checkpoints they were signed with are named, in one finding (their stretches replayed
    and matching what is stored)."""
    partition, first, second = _grown_partition(ledger, copy_url)
    with psycopg.connect(copy_url, autocommit=True) as conn:
        deleted = conn.execute(f"DELETE FROM vindex_checkpoints {WHERE}", (ledger.topic, partition)).rowcount
    assert deleted == 2
    code, details, found = _run(ledger, copy_url, monkeypatch, capsys)
    assert code == 1 and [(f["partition"], f["tree_size"]) for f in found] == \
        [(partition, first)], details
    assert f"2 checkpoints of the log, sizes {first} to {second}, have no index checkpoint" \
        == found[0]["detail"], details


# -- vindex_nodes --------------------------------------------------------------------------


def _leaf_row(conn: psycopg.Connection[Any], ledger: Ledger, partition: int, size: int) -> tuple[Any, ...]:
    row = conn.execute(f"SELECT depth, prefix, hash, leaf_key, list_hash FROM vindex_nodes {WHERE}"
                       " AND map_size = %s AND leaf_key IS NOT NULL ORDER BY depth DESC, prefix"
                       " LIMIT 1", (ledger.topic, partition, size)).fetchone()
    assert row is not None
    return tuple(row)


def test_a_leaf_given_another_key_with_its_hash_kept_is_named_once(
        ledger: Ledger, copy_url: str, monkeypatch, capsys) -> None:
    """The leaf_key column of a leaf of the first map state changed, its hash left: the
    hash still fits its parent, the leaf is not its key's; named at that map size, and
    the next stretch builds on the rebuilt leaf."""
    partition, first, _ = _grown_partition(ledger, copy_url)
    with psycopg.connect(copy_url, autocommit=True) as conn:
        depth, prefix, *_ = _leaf_row(conn, ledger, partition, first)
        conn.execute(f"UPDATE vindex_nodes SET leaf_key = %s {WHERE} AND depth = %s AND prefix = %s"
                     " AND map_size = %s", (b"\x01" * 32, ledger.topic, partition, depth, prefix, first))
    code, details, found = _run(ledger, copy_url, monkeypatch, capsys)
    assert code == 1 and len(details) == 1, details
    assert found[0]["tree_size"] == first and "differs from the rebuilt map" in details[0]


def test_nodes_under_a_leaf_and_below_every_path_are_counted(
        ledger: Ledger, copy_url: str, monkeypatch, capsys) -> None:
    """A node slipped under a leaf of the newest map state and one at depth 255: rows no
    update writes, counted at their map size; nothing else."""
    partition, _, second = _grown_partition(ledger, copy_url)
    with psycopg.connect(copy_url, autocommit=True) as conn:
        depth, prefix, node_hash, *_ = _leaf_row(conn, ledger, partition, second)
        below = int.from_bytes(prefix, "big") * 2
        conn.execute("INSERT INTO vindex_nodes VALUES (%s, %s, %s, %s, %s, %s, NULL, NULL)",
                     (ledger.topic, partition, depth + 1, below.to_bytes((depth + 8) // 8, "big"),
                      second, node_hash))
        conn.execute("INSERT INTO vindex_nodes VALUES (%s, %s, 255, %s, %s, %s, NULL, NULL)",
                     (ledger.topic, partition, b"\x00" * 32, second, node_hash))
    code, details, _ = _run(ledger, copy_url, monkeypatch, capsys)
    assert code == 1 and details == [f"{second}: 2 stored map nodes at this map size that the "
                                     "rebuilt map does not write there"], details


def test_a_node_under_a_leaf_of_an_earlier_map_state_is_named(
        ledger: Ledger, copy_url: str, monkeypatch, capsys) -> None:
    """A node slipped under a leaf of the first map state whose position is still empty
    at the second: counted at the first map size, without a traceback."""
    partition, first, _ = _grown_partition(ledger, copy_url)
    with psycopg.connect(copy_url, autocommit=True) as conn:
        depth, prefix, node_hash, *_ = _leaf_row(conn, ledger, partition, first)
        below = int.from_bytes(prefix, "big") * 2 + 1
        conn.execute("INSERT INTO vindex_nodes VALUES (%s, %s, %s, %s, %s, %s, NULL, NULL)",
                     (ledger.topic, partition, depth + 1, below.to_bytes((depth + 8) // 8, "big"),
                      first, node_hash))
    code, details, _ = _run(ledger, copy_url, monkeypatch, capsys)
    assert code == 1 and len(details) == 1, details
    assert details[0].startswith(f"{first}: 1 stored map nodes"), details


def test_a_node_at_a_map_size_between_checkpoints_is_counted(
        ledger: Ledger, copy_url: str, monkeypatch, capsys) -> None:
    """A copy of a node of the first map state at a size between the two index
    checkpoints: the stored state in force at no index checkpoint changes, it is counted."""
    partition, first, second = _grown_partition(ledger, copy_url)
    assert second - first >= 2
    with psycopg.connect(copy_url, autocommit=True) as conn:
        depth, prefix, *_ = _leaf_row(conn, ledger, partition, first)
        conn.execute("INSERT INTO vindex_nodes SELECT topic, kafka_partition, depth, prefix, %s,"
                     f" hash, leaf_key, list_hash FROM vindex_nodes {WHERE} AND depth = %s AND"
                     " prefix = %s AND map_size = %s",
                     (first + 1, ledger.topic, partition, depth, prefix, first))
    code, details, _ = _run(ledger, copy_url, monkeypatch, capsys)
    assert code == 1 and details == [f"None: 1 stored map nodes at map size {first + 1}, which no "
                                     "index checkpoint has"], details


def test_an_older_version_copied_to_a_later_map_size_is_counted(
        ledger: Ledger, copy_url: str, monkeypatch, capsys) -> None:
    """Every node of the first map state the second did not rewrite, copied to the second
    map size (the same map, more rows): counted once at that size."""
    partition, first, second = _grown_partition(ledger, copy_url)
    with psycopg.connect(copy_url, autocommit=True) as conn:
        copied = conn.execute(
            "INSERT INTO vindex_nodes SELECT topic, kafka_partition, depth, prefix, %s, hash,"
            f" leaf_key, list_hash FROM vindex_nodes n {WHERE} AND map_size = %s AND NOT EXISTS"
            " (SELECT 1 FROM vindex_nodes m WHERE m.topic = n.topic AND m.kafka_partition ="
            " n.kafka_partition AND m.depth = n.depth AND m.prefix = n.prefix AND m.map_size = %s)",
            (second, ledger.topic, partition, first, second)).rowcount
    assert copied > 0
    code, details, _ = _run(ledger, copy_url, monkeypatch, capsys)
    assert code == 1 and details == [f"{second}: {copied} stored map nodes at this map size "
                                     "that the rebuilt map does not write there"], details


# -- vindex_checkpoints --------------------------------------------------------------------


def test_an_index_checkpoint_row_at_a_size_no_checkpoint_has_is_named_alone(
        ledger: Ledger, copy_url: str, monkeypatch, capsys) -> None:
    """A copy of the newest index checkpoint's row at a size between the two: its note does
    not say that size (index-forged); the nodes and entries stored at the real sizes still
    check, with no finding for each node the bogus size would split off."""
    partition, first, second = _grown_partition(ledger, copy_url)
    middle = (first + second) // 2
    with psycopg.connect(copy_url, autocommit=True) as conn:
        conn.execute("INSERT INTO vindex_checkpoints SELECT topic, kafka_partition, %s, root_hash,"
                     " map_root, origin, note, key_name, key_id, signed_at FROM vindex_checkpoints"
                     f" {WHERE} AND tree_size = %s", (middle, ledger.topic, partition, second))
    code, details, found = _run(ledger, copy_url, monkeypatch, capsys)
    assert code == 1 and len(found) == 1, details
    assert found[0]["kind"] == "index-forged" and found[0]["tree_size"] == middle


def test_the_first_index_checkpoint_deleted_is_named_alone(
        ledger: Ledger, copy_url: str, monkeypatch, capsys) -> None:
    """The first index checkpoint's row deleted (its nodes and entries kept): the log's
    checkpoint of that size has no index checkpoint; named once, not once per node."""
    partition, first, _ = _grown_partition(ledger, copy_url)
    with psycopg.connect(copy_url, autocommit=True) as conn:
        conn.execute(f"DELETE FROM vindex_checkpoints {WHERE} AND tree_size = %s",
                     (ledger.topic, partition, first))
    code, details, found = _run(ledger, copy_url, monkeypatch, capsys)
    assert code == 1 and len(found) == 1, details
    assert found[0]["tree_size"] == first and "no index checkpoint" in details[0], details


def test_the_newest_index_rolled_back_is_named(ledger: Ledger, copy_url: str,
                                               monkeypatch, capsys) -> None:
    """The newest index checkpoint deleted with every node and entry it added (an index
    quietly taken back to an older state): the log's newest checkpoint has no index
    checkpoint, and that is named."""
    partition, first, second = _grown_partition(ledger, copy_url)
    with psycopg.connect(copy_url, autocommit=True) as conn:
        conn.execute(f"DELETE FROM vindex_checkpoints {WHERE} AND tree_size = %s",
                     (ledger.topic, partition, second))
        conn.execute(f"DELETE FROM vindex_nodes {WHERE} AND map_size = %s", (ledger.topic, partition, second))
        conn.execute(f"DELETE FROM vindex_entries {WHERE} AND leaf_index >= %s", (ledger.topic, partition, first))
    code, details, found = _run(ledger, copy_url, monkeypatch, capsys)
    assert code == 1 and len(found) == 1, details
    assert found[0]["tree_size"] == second and "no index checkpoint" in details[0], details


def test_an_index_checkpoint_of_another_partition_is_named(
        ledger: Ledger, copy_url: str, monkeypatch, capsys) -> None:
    """A partition's newest index checkpoint replaced by another partition's (a note its
    origin's key did sign): not this partition's; no traceback."""
    partition, _, second = _grown_partition(ledger, copy_url)
    other = next(p for p in sorted(ledger.records) if p != partition)
    with psycopg.connect(copy_url, autocommit=True) as conn:
        theirs = index_checkpoints(conn, ledger.topic, other)[-1]
        conn.execute(f"UPDATE vindex_checkpoints SET root_hash = %s, map_root = %s, origin = %s,"
                     f" note = %s {WHERE} AND tree_size = %s",
                     (theirs.root, theirs.map_root, theirs.origin, theirs.note.decode(),
                      ledger.topic, partition, second))
    code, details, found = _run(ledger, copy_url, monkeypatch, capsys)
    assert code == 1 and found, details
    assert {f["partition"] for f in found} == {partition}, found
    assert any(f["kind"] == "index-forged" and f["tree_size"] == second for f in found), details


# -- what the checkpointer builds on -------------------------------------------------------


def _reused_key(ledger: Ledger, url: str, room: bool = False) -> tuple[int, int, int, bytes]:
    """A partition with two index checkpoints and a key with leaves in both stretches (and,
    with ``room``, not every leaf of the second): (partition, first size, second size, key
    hash)."""
    with psycopg.connect(url) as conn:
        for partition in sorted(ledger.records):
            sizes = [cp.size for cp in index_checkpoints(conn, ledger.topic, partition)]
            if len(sizes) != 2:
                continue
            lists = ledger.oracle_map(partition, sizes[1])
            for khash in sorted(lists):
                later = [i for i in lists[khash] if i >= sizes[0]]
                if lists[khash][0] < sizes[0] and later and \
                        (not room or len(later) < sizes[1] - sizes[0]):
                    return partition, sizes[0], sizes[1], khash
    raise AssertionError("no key has leaves in both stretches")


def _back_to_first(ledger: Ledger, url: str, partition: int, first: int, second: int) -> None:
    """Take ``partition`` back to before its second checkpoint (log and index)."""
    with psycopg.connect(url, autocommit=True) as conn:
        for table, column in (("checkpoint_anchors", "tree_size"), ("checkpoints", "tree_size"),
                              ("vindex_checkpoints", "tree_size"), ("vindex_nodes", "map_size")):
            conn.execute(f"DELETE FROM {table} {WHERE} AND {column} = %s", (ledger.topic, partition, second))
        conn.execute(f"DELETE FROM vindex_entries {WHERE} AND leaf_index >= %s", (ledger.topic, partition, first))


def _sign_next(ledger: Ledger, url: str, partition: int, first: int,
               indexed: bool = True) -> str:
    """The checkpointer asked for the next checkpoint of ``partition``: its refusal reason;
    nothing of the log or the index (if ``indexed``, else nothing of it at all) is signed
    past ``first``."""
    from protocolo.attestation.checkpointer import CheckpointRefused, checkpoint_partition

    with psycopg.connect(url, autocommit=True) as conn:
        with pytest.raises(CheckpointRefused) as refused:
            checkpoint_partition(conn, ledger.key, ledger.topic, DEPLOYMENT, partition)
        for table in ("checkpoints", "vindex_checkpoints"):
            (newest,) = conn.execute(f"SELECT max(tree_size) FROM {table} {WHERE}",
                                     (ledger.topic, partition)).fetchone()
            assert newest == (first if indexed or table == "checkpoints" else None), table
        (nodes,) = conn.execute(f"SELECT count(*) FROM vindex_nodes {WHERE} AND map_size > %s",
                                (ledger.topic, partition, first)).fetchone()
        assert nodes == 0
    return str(refused.value.reason)


def test_the_checkpointer_refuses_to_build_on_an_entry_deleted(ledger: Ledger, copy_url: str,
                                                               monkeypatch, capsys) -> None:
    """A key's first entry deleted before the next checkpoint, the key having leaves in the
    next stretch: building on the stored list would sign a map whose lookup proof leaves
    that record out and verifies. The checkpointer refuses; verify names the entry once."""
    partition, first, second, khash = _reused_key(ledger, copy_url)
    _back_to_first(ledger, copy_url, partition, first, second)
    with psycopg.connect(copy_url, autocommit=True) as conn:
        deleted = conn.execute(
            f"DELETE FROM vindex_entries {WHERE} AND key_hash = %s AND leaf_index = %s",
            (ledger.topic, partition, khash, ledger.oracle_map(partition, first)[khash][0])).rowcount
    assert deleted == 1
    assert _sign_next(ledger, copy_url, partition, first) == "index-entries-altered"
    code, details, found = _run(ledger, copy_url, monkeypatch, capsys)
    assert code == 1 and len(found) == 1 and found[0]["tree_size"] == first, details
    assert "stored with leaves" in details[0], details


def test_the_checkpointer_refuses_to_build_on_a_node_altered(ledger: Ledger, copy_url: str,
                                                             monkeypatch, capsys) -> None:
    """The leaf of a key of the next stretch altered in the stored first map state (its
    list hash and hash made consistent with each other): the checkpointer refuses to build
    on it; verify names the node once."""
    from protocolo.evidence.vindex import leaf_node_hash

    partition, first, second, khash = _reused_key(ledger, copy_url)
    _back_to_first(ledger, copy_url, partition, first, second)
    forged = b"\x0b" * 32
    with psycopg.connect(copy_url, autocommit=True) as conn:
        altered = conn.execute(
            f"UPDATE vindex_nodes SET list_hash = %s, hash = %s {WHERE} AND leaf_key = %s"
            " AND map_size = %s", (forged, leaf_node_hash(khash, forged), ledger.topic, partition,
                                   khash, first)).rowcount
    assert altered == 1
    assert _sign_next(ledger, copy_url, partition, first) == "index-nodes-altered"
    code, details, found = _run(ledger, copy_url, monkeypatch, capsys)
    assert code == 1 and len(found) == 1 and found[0]["tree_size"] == first, details
    assert "differs from the rebuilt map" in details[0], details


def test_an_index_checkpoint_of_the_empty_log_replays_clean(ledger: Ledger, copy_url: str,
                                                            monkeypatch, capsys) -> None:
    """An index checkpoint of size 0 (`protocolo checkpoint --once --force` on a partition
    still empty signs one) before the others: the stretch after it is an update of the
    empty map, its entries counted as that stretch's. Clean."""
    from protocolo.attestation.index_store import index_checkpoint_text
    from protocolo.evidence.checkpoint import sign_checkpoint
    from protocolo.evidence.merkle import EMPTY_ROOT
    from protocolo.evidence.vindex import EMPTY

    partition, _, _ = _grown_partition(ledger, copy_url)
    origin = ledger.origin(partition)
    signer = ledger.key.signer(origin)
    note = sign_checkpoint(index_checkpoint_text(origin, 0, EMPTY_ROOT, EMPTY), [signer])
    with psycopg.connect(copy_url, autocommit=True) as conn:
        conn.execute("INSERT INTO vindex_checkpoints (topic, kafka_partition, tree_size, root_hash,"
                     " map_root, origin, note, key_name, key_id) VALUES (%s, %s, 0, %s, %s, %s, %s,"
                     " %s, %s)", (ledger.topic, partition, EMPTY_ROOT, EMPTY, origin, note.decode(),
                                  signer.name, f"{signer.key_id:08x}"))
    code, details, _ = _run(ledger, copy_url, monkeypatch, capsys)
    assert code == 0 and not details, details


@pytest.mark.parametrize("case", ["other-partition", "other-root"])
def test_a_signed_note_not_of_this_log_state_is_forged(ledger: Ledger, copy_url: str, case: str,
                                                       monkeypatch, capsys) -> None:
    """An index checkpoint signed by a pinned key, saying this partition's size and map
    root, but of another partition's log (as two partitions whose records carry no key both
    sign the empty map), or naming another log root than the log's checkpoint of that size
    (a split view): index-forged, once; never clean."""
    from protocolo.attestation.index_store import index_checkpoint_text
    from protocolo.evidence.checkpoint import sign_checkpoint

    partition, _, second = _grown_partition(ledger, copy_url)
    other = next(p for p in sorted(ledger.records) if p != partition)
    origin = ledger.origin(other if case == "other-partition" else partition)
    with psycopg.connect(copy_url, autocommit=True) as conn:
        mine = index_checkpoints(conn, ledger.topic, partition)[-1]
        root = mine.root if case == "other-partition" else bytes(32)
        note = sign_checkpoint(index_checkpoint_text(origin, second, root, mine.map_root),
                               [ledger.key.signer(origin)])
        conn.execute(f"UPDATE vindex_checkpoints SET root_hash = %s, origin = %s, note = %s {WHERE}"
                     " AND tree_size = %s", (root, origin, note.decode(), ledger.topic, partition,
                                             second))
    code, details, found = _run(ledger, copy_url, monkeypatch, capsys)
    assert code == 1 and [(f["kind"], f["tree_size"]) for f in found] == \
        [("index-forged", second)], details
    assert ("not of" if case == "other-partition" else "another log root") in details[0], details


def test_an_earlier_entry_deleted_is_named_once_though_its_key_comes_again(
        ledger: Ledger, copy_url: str, monkeypatch, capsys) -> None:
    """A key's entry of the first stretch deleted, the key having leaves in the second: the
    second stretch builds on the rebuilt list, not the stored one: one finding, the replay
    goes on."""
    partition, first, _, khash = _reused_key(ledger, copy_url)
    with psycopg.connect(copy_url, autocommit=True) as conn:
        deleted = conn.execute(
            f"DELETE FROM vindex_entries {WHERE} AND key_hash = %s AND leaf_index = %s",
            (ledger.topic, partition, khash, ledger.oracle_map(partition, first)[khash][0])).rowcount
    assert deleted == 1
    code, details, found = _run(ledger, copy_url, monkeypatch, capsys)
    assert code == 1 and [f["tree_size"] for f in found] == [first], details
    assert "stored with leaves" in details[0] and "from leaf 0 on" in details[0], details


def test_an_entry_at_a_negative_leaf_is_named_once(ledger: Ledger, copy_url: str,
                                                   monkeypatch, capsys) -> None:
    partition, first, _, khash = _reused_key(ledger, copy_url)
    with psycopg.connect(copy_url, autocommit=True) as conn:
        conn.execute("INSERT INTO vindex_entries SELECT topic, kafka_partition, key_hash, -1, kind,"
                     f" key_value FROM vindex_entries {WHERE} AND key_hash = %s AND leaf_index = %s",
                     (ledger.topic, partition, khash, ledger.oracle_map(partition, first)[khash][0]))
    code, details, found = _run(ledger, copy_url, monkeypatch, capsys)
    assert code == 1 and [f["tree_size"] for f in found] == [first], details
    assert "stored with leaves [-1," in details[0], details


def test_the_entry_of_a_quarantined_record_deleted_is_named(ledger: Ledger, copy_url: str,
                                                            monkeypatch, capsys) -> None:
    """The map covers the quarantined records too (leaves whose rows are in quarantine):
    the entry of one deleted is named once, by its key."""
    with psycopg.connect(copy_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT e.kafka_partition, e.key_hash, e.leaf_index, e.kind, e.key_value FROM quarantine q"
            " JOIN vindex_entries e ON e.topic = q.topic AND e.kafka_partition = q.kafka_partition"
            " AND e.leaf_index = q.leaf_index WHERE q.topic = %s ORDER BY q.leaf_index LIMIT 1",
            (ledger.topic,)).fetchone()
        assert row is not None, "no quarantined record has a map key"
        partition, khash, leaf, kind, value = row
        conn.execute(f"DELETE FROM vindex_entries {WHERE} AND key_hash = %s AND leaf_index = %s",
                     (ledger.topic, partition, khash, leaf))
    code, details, found = _run(ledger, copy_url, monkeypatch, capsys)
    assert code == 1 and len(found) == 1 and found[0]["partition"] == partition, details
    assert f"key {kind}:{value}: stored with leaves" in details[0], details


def _indexed_late(ledger: Ledger, url: str) -> tuple[int, int, int]:
    """A partition whose index starts at its second checkpoint (as on a ledger upgraded
    between its two checkpoints): (partition, first size, second size)."""
    from protocolo.attestation.checkpointer import checkpoint_partition

    partition, first, second = _grown_partition(ledger, url)
    _back_to_first(ledger, url, partition, first, second)
    with psycopg.connect(url, autocommit=True) as conn:
        for table in ("vindex_checkpoints", "vindex_nodes", "vindex_entries"):
            conn.execute(f"DELETE FROM {table} {WHERE}", (ledger.topic, partition))
        made = checkpoint_partition(conn, ledger.key, ledger.topic, DEPLOYMENT, partition)
        assert made is not None and made.size == second
        assert [cp.size for cp in index_checkpoints(conn, ledger.topic, partition)] == [second]
    return partition, first, second


def test_a_ledger_indexed_from_its_second_checkpoint_is_clean(ledger: Ledger, copy_url: str,
                                                             monkeypatch, capsys) -> None:
    _indexed_late(ledger, copy_url)
    code, details, _ = _run(ledger, copy_url, monkeypatch, capsys)
    assert code == 0 and not details, details


def test_a_node_slipped_in_at_a_checkpoint_before_the_index_is_named_without_a_cascade(
        ledger: Ledger, copy_url: str, monkeypatch, capsys) -> None:
    """One node row copied to the size of a log checkpoint older than the index: that
    checkpoint has no index checkpoint and its stretch does not match what is stored,
    named in one finding (not one per node of the map), and the rows at the index's
    first size that the replay from there no longer writes in one more."""
    partition, first, second = _indexed_late(ledger, copy_url)
    with psycopg.connect(copy_url, autocommit=True) as conn:
        conn.execute("INSERT INTO vindex_nodes SELECT topic, kafka_partition, depth, prefix, %s,"
                     f" hash, leaf_key, list_hash FROM vindex_nodes {WHERE} AND depth = 0",
                     (first, ledger.topic, partition))
    code, details, found = _run(ledger, copy_url, monkeypatch, capsys)
    assert code == 1 and [f["tree_size"] for f in found] == [first, second], details
    assert details[0].startswith(f"{first}: the log's checkpoint of this size has no index "
                                 "checkpoint; replayed, ") and "differ" in details[0], details
    assert "stored map nodes at this map size that the rebuilt map does not write" in details[1]


def test_an_index_too_far_from_its_rows_stops_in_bounded_memory(ledger: Ledger, copy_url: str,
                                                                  monkeypatch, capsys) -> None:
    """Every node of the first map state deleted: past DIFFERENCES_HELD rebuilt nodes held
    in their stead the partition's replay stops, saying so; no traceback."""
    from protocolo.attestation import audit_index

    monkeypatch.setattr(audit_index, "DIFFERENCES_HELD", 3)
    partition, first, _ = _grown_partition(ledger, copy_url)
    with psycopg.connect(copy_url, autocommit=True) as conn:
        conn.execute(f"DELETE FROM vindex_nodes {WHERE} AND map_size = %s", (ledger.topic, partition, first))
    code, details, found = _run(ledger, copy_url, monkeypatch, capsys)
    assert code == 1 and {f["partition"] for f in found} == {partition}, details
    stops = [d for d in details if "more than 3 stored map nodes" in d]
    assert len(stops) == 1 and stops[0].startswith(f"{first}: ") and "not checked" in stops[0], details
    assert len(found) == 5, details  # the 4 nodes named before the bound, and the stop


def test_an_index_checkpoint_row_of_garbage_is_forged_without_a_traceback(
        ledger: Ledger, copy_url: str, monkeypatch, capsys) -> None:
    partition, _, second = _grown_partition(ledger, copy_url)
    with psycopg.connect(copy_url, autocommit=True) as conn:
        conn.execute(f"UPDATE vindex_checkpoints SET origin = 'nonsense', note = 'not a note' {WHERE}"
                     " AND tree_size = %s", (ledger.topic, partition, second))
    code, details, found = _run(ledger, copy_url, monkeypatch, capsys)
    assert code == 1 and [(f["kind"], f["tree_size"]) for f in found] == \
        [("index-forged", second)], details


@pytest.mark.parametrize("leaf", ["another", "its own"])
def test_the_checkpointer_refuses_an_entry_slipped_in_ahead_of_it(
        ledger: Ledger, copy_url: str, leaf: str, monkeypatch, capsys) -> None:
    """An entry for a key of the next stretch stored ahead of the checkpointer, at a leaf
    of that stretch that is not the key's (its list would sign a record that is not the
    key's) or at one of the key's own leaves (the update's own row then collides): refused,
    nothing signed, no traceback; verify names the row."""
    partition, first, second, khash = _reused_key(ledger, copy_url, room=True)
    mine = ledger.oracle_map(partition, second)[khash]
    target = next(i for i in range(first, second) if i not in mine) if leaf == "another" else mine[-1]
    _back_to_first(ledger, copy_url, partition, first, second)
    with psycopg.connect(copy_url, autocommit=True) as conn:
        conn.execute(f"INSERT INTO vindex_entries SELECT topic, kafka_partition, key_hash, %s, kind,"
                     f" key_value FROM vindex_entries {WHERE} AND key_hash = %s LIMIT 1",
                     (target, ledger.topic, partition, khash))
    assert _sign_next(ledger, copy_url, partition, first) == "index-entries-altered"
    code, details, found = _run(ledger, copy_url, monkeypatch, capsys)
    assert code == 1 and len(found) == 1, details
    assert "beyond the last index checkpoint" in details[0], details


def test_the_first_index_refuses_entries_no_row_gives(ledger: Ledger, copy_url: str) -> None:
    """A partition with no index yet (an upgraded ledger) whose vindex_entries already hold
    a row: the first index would fold it into its key's list; refused, nothing signed."""
    partition, first, second = _indexed_late(ledger, copy_url)  # index from its second checkpoint
    _back_to_first(ledger, copy_url, partition, first, second)
    with psycopg.connect(copy_url, autocommit=True) as conn:
        for table in ("vindex_checkpoints", "vindex_nodes", "vindex_entries"):
            conn.execute(f"DELETE FROM {table} {WHERE}", (ledger.topic, partition))
        conn.execute("INSERT INTO vindex_entries VALUES (%s, %s, %s, 0, 'protocol', '209900000000002')",
                     (ledger.topic, partition, oracle.key_hash("protocol", "209900000000002")))
    assert _sign_next(ledger, copy_url, partition, first, indexed=False) == "index-entries-altered"


def test_a_replay_stopped_by_a_stray_entry_still_names_it(ledger: Ledger, copy_url: str,
                                                          monkeypatch, capsys) -> None:
    """An entry slipped in at leaf 0 for a key whose first leaf is in the second stretch:
    the replay cannot build on that key's stored earlier list and stops there, and the
    first stretch's count, replayed in full, names the entry no row there gives."""
    partition, first, second = _grown_partition(ledger, copy_url)
    protocol = _new_protocol(ledger, partition, first)
    with psycopg.connect(copy_url, autocommit=True) as conn:
        conn.execute("INSERT INTO vindex_entries VALUES (%s, %s, %s, 0, 'protocol', %s)",
                     (ledger.topic, partition, oracle.key_hash("protocol", protocol), protocol))
    code, details, found = _run(ledger, copy_url, monkeypatch, capsys)
    assert code == 1 and [f["tree_size"] for f in found] == [first, second], details
    assert details[0] == f"{first}: 1 stored entries for leaves [0, {first}) that no row there gives"
    assert "were not checked" in details[1], details
