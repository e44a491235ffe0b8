"""The checkpointer: signs each partition's tree head as a C2SP checkpoint, stores it in
PostgreSQL and publishes it on the checkpoints topic.

API (stable; ``protocolo verify`` and the evidence bundles build on it)::

    checkpoint_partitions(conn, key, topic, deployment, *, partitions=None,
                          publish=None, force=False) -> list[StoredCheckpoint]
    stored_checkpoints(conn, topic, partition) -> list[StoredCheckpoint]   # oldest first
    latest_checkpoint(conn, topic, partition) -> StoredCheckpoint | None
    known_log_keys(conn) -> list[str]        # every log vkey that ever signed here
    publish_pending(conn, topic, publisher) -> list[StoredCheckpoint]

``conn`` is a connection to the ledger database; the writing functions need it in
autocommit mode (each partition's checkpoint is its own transaction, committed before it
is published). ``key`` is the deployment's :class:`~protocolo.attestation.log_key.LogKey`.
``publish`` is a :class:`CheckpointPublisher` (e.g.
:class:`~protocolo.attestation.publication.KafkaCheckpointPublisher`) or ``None`` to leave
checkpoints unpublished (``published_offset`` NULL; the next call with a publisher sends
them, oldest first).

For each partition, in one transaction under an advisory lock (so two checkpointers never
race): read ``tree_size``/``compact_range`` from ``projector_offsets``; check that the
compact range is made of the stored perfect nodes proofs are built from; root = fold of the
compact range; open the previous stored checkpoint (its note must verify with the configured log key
or a configured past key, never one only the database's ``signing_keys`` names, and say
what its row says); compute the consistency proof from it with
:func:`~protocolo.projections.merkle_store.node_reader` and **verify it before signing**;
sign the Ed25519 note under the origin's key name; store the row (and the verifier key in
``signing_keys``). Anything that does not hold raises :class:`CheckpointRefused` and signs
nothing: a log must never sign two inconsistent checkpoints (C2SP tlog-checkpoint).

An unchanged tree yields no new checkpoint unless ``force``; then the previous one is
returned as it is (Ed25519 signatures are deterministic: signing the same text with the
same key gives the same note), for the caller to anchor again (the "empty period"
checkpoint of EVIDENCE.md §7: same statement, fresh timestamp).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Protocol

import psycopg

from protocolo.attestation.index_store import IndexRefused, commit_index, published_catalogue
from protocolo.attestation.log_key import LogKey
from protocolo.evidence.checkpoint import Checkpoint, log_origin, parse_checkpoint, sign_checkpoint
from protocolo.evidence.errors import EvidenceError, ProofError
from protocolo.evidence.merkle import CompactRange, consistency_proof, range_nodes
from protocolo.evidence.note import Ed25519NoteSigner, NoteVerifier, open_note
from protocolo.evidence.proof import verify_consistency
from protocolo.projections.merkle_store import node_reader

__all__ = [
    "CheckpointPublisher",
    "CheckpointRefused",
    "StoredCheckpoint",
    "checkpoint_partition",
    "checkpoint_partitions",
    "known_log_keys",
    "latest_checkpoint",
    "publish_pending",
    "stored_checkpoints",
    "tree_heads",
]


class CheckpointRefused(RuntimeError):
    """The checkpointer would not sign: the stored state is not what a checkpoint may vouch
    for. ``reason`` is a short stable name; the message names the partition and sizes."""

    def __init__(self, topic: str, partition: int, reason: str, message: str) -> None:
        super().__init__(f"refusing to sign a checkpoint of {topic} partition {partition}: "
                         f"{message} [{reason}]")
        self.topic = topic
        self.partition = partition
        self.reason = reason


class CheckpointPublisher(Protocol):
    def publish(self, origin: str, note: bytes) -> int:
        """Append ``note`` (key = ``origin``) to the checkpoints topic; return its offset."""
        ...


@dataclass(frozen=True)
class StoredCheckpoint:
    """One row of ``checkpoints``: a signed tree head of one partition."""

    topic: str
    partition: int
    size: int
    root: bytes
    origin: str
    note: bytes  # the signed note, verbatim (UTF-8)
    key_name: str
    key_id: int
    compact_range: tuple[bytes, ...]  # of [0, size), largest subtree first
    consistency_from: int | None  # size of the checkpoint before, if any
    consistency_proof: tuple[bytes, ...]  # from that one to this one (empty from size 0)
    signed_at: datetime
    published_offset: int | None  # offset on the checkpoints topic

    @property
    def checkpoint(self) -> Checkpoint:
        return Checkpoint(self.origin, self.size, self.root)

    @property
    def text(self) -> bytes:
        """The note text (what the log signature, RFC 3161 tokens and witnesses cover)."""
        return self.checkpoint.body().encode()


_COLUMNS = (
    "topic, kafka_partition, tree_size, root_hash, origin, note, key_name, key_id, "
    "compact_range, consistency_from, consistency_proof, signed_at, published_offset"
)


def _row(row: Sequence[Any]) -> StoredCheckpoint:
    (topic, partition, size, root, origin, note, key_name, key_id, compact, cons_from,
     cons_proof, signed_at, offset) = row
    return StoredCheckpoint(
        topic, int(partition), int(size), bytes(root), origin, note.encode(), key_name,
        int(key_id, 16), tuple(bytes(h) for h in compact or ()),
        None if cons_from is None else int(cons_from),
        tuple(bytes(h) for h in cons_proof or ()), signed_at,
        None if offset is None else int(offset),
    )


def stored_checkpoints(
    conn: psycopg.Connection[Any], topic: str, partition: int
) -> list[StoredCheckpoint]:
    """Every stored checkpoint of one partition, oldest (smallest) first, newest last."""
    return [_row(r) for r in conn.execute(
        f"SELECT {_COLUMNS} FROM checkpoints WHERE topic = %s AND kafka_partition = %s"
        " ORDER BY tree_size", (topic, partition))]


def latest_checkpoint(
    conn: psycopg.Connection[Any], topic: str, partition: int
) -> StoredCheckpoint | None:
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM checkpoints WHERE topic = %s AND kafka_partition = %s"
        " ORDER BY tree_size DESC LIMIT 1", (topic, partition)).fetchone()
    return None if row is None else _row(row)


def known_log_keys(conn: psycopg.Connection[Any]) -> list[str]:
    """The verifier keys of every log key that signed a checkpoint here, oldest first."""
    return [v for (v,) in conn.execute(
        "SELECT vkey FROM signing_keys ORDER BY first_used_at, key_name, key_id")]


def tree_heads(
    conn: psycopg.Connection[Any], topic: str, partitions: Sequence[int] | None = None
) -> list[tuple[int, int]]:
    """``(partition, tree size)`` of every partition the projector has a tree for."""
    return [(int(p), int(s)) for p, s in conn.execute(
        "SELECT kafka_partition, tree_size FROM projector_offsets WHERE topic = %s"
        " AND (%s::integer[] IS NULL OR kafka_partition = ANY(%s::integer[]))"
        " ORDER BY kafka_partition", (topic, partitions, partitions))]


def _require_autocommit(conn: psycopg.Connection[Any]) -> None:
    if not conn.autocommit:
        raise ValueError("the checkpointer needs an autocommit connection: each checkpoint is "
                         "committed in its own transaction before it is published")


def checkpoint_partitions(
    conn: psycopg.Connection[Any],
    key: LogKey,
    topic: str,
    deployment: str,
    *,
    partitions: Sequence[int] | None = None,
    publish: CheckpointPublisher | None = None,
    force: bool = False,
) -> list[StoredCheckpoint]:
    """Sign a checkpoint of each partition whose tree grew since its last checkpoint (all
    partitions with a tree, or those in ``partitions``); return them, published if
    ``publish`` is given. With ``force``, an unchanged partition returns its newest
    checkpoint (a partition with an empty tree and no checkpoint gets a size-0 one).
    Raises :class:`CheckpointRefused` at the first partition that cannot be signed
    (partitions before it keep their new checkpoints)."""
    _require_autocommit(conn)
    made: list[StoredCheckpoint] = []
    wanted = None if partitions is None else list(partitions)
    for partition, _ in tree_heads(conn, topic, wanted):
        stored = checkpoint_partition(conn, key, topic, deployment, partition, force=force)
        if stored is not None:
            made.append(stored)
    if publish is not None:
        published = {(c.partition, c.size): c for c in publish_pending(conn, topic, publish)}
        made = [published.get((c.partition, c.size), c) for c in made]
    return made


def checkpoint_partition(
    conn: psycopg.Connection[Any],
    key: LogKey,
    topic: str,
    deployment: str,
    partition: int,
    *,
    force: bool = False,
) -> StoredCheckpoint | None:
    """Sign and store one partition's checkpoint (see the module docstring); ``None`` when
    the tree did not grow and ``force`` is not set."""
    _require_autocommit(conn)
    origin = log_origin(deployment, topic, partition)

    def refuse(reason: str, message: str) -> CheckpointRefused:
        return CheckpointRefused(topic, partition, reason, message)

    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('protocolo.checkpoint:' || %s), %s)",
                     (topic, partition))
        row = conn.execute(
            "SELECT tree_size, compact_range FROM projector_offsets"
            " WHERE topic = %s AND kafka_partition = %s", (topic, partition)).fetchone()
        if row is None:
            raise refuse("no-tree", "the projector has no tree for it")
        try:
            tree = CompactRange(int(row[0]), [bytes(h) for h in row[1] or ()])
        except EvidenceError as exc:
            raise refuse("bad-compact-range", f"projector_offsets holds {exc.detail}") from None
        size = tree.size
        read = node_reader(conn, topic, partition)
        if size:
            try:
                nodes = list(read(range_nodes(0, size)))
            except ProofError as exc:
                raise refuse("missing-nodes", exc.detail) from None
            if nodes != list(tree.hashes):
                raise refuse("compact-range-mismatch",
                              f"the compact range of size {size} in projector_offsets is not "
                              "made of the stored merkle_nodes (the tree was altered)")
        root = tree.root()
        previous = latest_checkpoint(conn, topic, partition)
        proof: list[bytes] = []
        consistency_from: int | None = None
        if previous is None:
            if size == 0 and not force:
                return None
        else:
            _check_previous(conn, key, previous, origin, refuse)
            if previous.size > size:
                raise refuse("tree-shrank",
                             f"the newest stored checkpoint has size {previous.size} but the "
                             f"tree has {size} leaves")
            if previous.size == size:
                if previous.root != root:
                    raise refuse("inconsistent",
                                 f"the stored checkpoint of size {size} has another root than "
                                 "the tree of that size")
                return previous if force else None
            if previous.size > 0:
                try:
                    proof = consistency_proof(previous.size, size, read)
                    verify_consistency(previous.size, size, previous.root, root, proof)
                except ProofError as exc:
                    raise refuse("inconsistent",
                                 f"the tree of size {size} is not consistent with the stored "
                                 f"checkpoint of size {previous.size}: {exc.detail}") from None
            consistency_from = previous.size
        signer = key.signer(origin)
        note = sign_checkpoint(Checkpoint(origin, size, root), [signer])
        vkey = str(signer.verifier)
        conn.execute("INSERT INTO signing_keys (key_name, key_id, vkey) VALUES (%s, %s, %s)"
                     " ON CONFLICT DO NOTHING", (signer.name, f"{signer.key_id:08x}", vkey))
        known = conn.execute("SELECT vkey FROM signing_keys WHERE key_name = %s AND key_id = %s",
                             (signer.name, f"{signer.key_id:08x}")).fetchone()
        if known is None or known[0] != vkey:
            raise refuse("key-id-collision",
                         f"signing_keys holds another key with name {signer.name} and key ID "
                         f"{signer.key_id:08x}")
        stored = conn.execute(
            "INSERT INTO checkpoints (topic, kafka_partition, tree_size, root_hash, origin, note,"
            " key_name, key_id, compact_range, consistency_from, consistency_proof)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
            f" RETURNING {_COLUMNS}",
            (topic, partition, size, root, origin, note.decode(), signer.name,
             f"{signer.key_id:08x}", list(tree.hashes), consistency_from,
             proof if consistency_from is not None else None),
        ).fetchone()
        assert stored is not None
        _sign_index(conn, signer, topic, partition, origin, size, root, refuse)
        return _row(stored)


_TRUSTED_KEYS = ("Trusted are PROTOCOLO_SIGNING_KEY and, after a rotation, the old key's verifier "
                 "keys listed in PROTOCOLO_PAST_LOG_VKEYS; never a key found only in signing_keys")


def _sign_index(conn: psycopg.Connection[Any], signer: Ed25519NoteSigner, topic: str,
                partition: int, origin: str, size: int, root: bytes,
                refuse: Callable[[str, str], CheckpointRefused]) -> None:
    """The verifiable index, brought to this checkpoint and signed with it (index_store)."""
    try:
        commit_index(conn, published_catalogue(), signer, topic, partition, origin, size, root)
    except IndexRefused as exc:
        raise refuse(exc.reason, str(exc)) from None


def _check_previous(conn: psycopg.Connection[Any], key: LogKey, previous: StoredCheckpoint,
                    origin: str, refuse: Callable[[str, str], CheckpointRefused]) -> None:
    """The previous checkpoint is what the next one is proved consistent with: it must be a
    checkpoint this log signed, saying what its row says."""
    if previous.origin != origin:
        raise refuse("other-origin",
                      f"the stored checkpoints are for origin {previous.origin!r}, this "
                      f"checkpointer signs {origin!r} (was PROTOCOLO_DEPLOYMENT changed?)")
    # Only keys from the deployment's configuration: signing_keys is the database's own
    # record, and whoever can write the database could have added a key to it.
    verifiers: list[NoteVerifier] = key.trusted(origin)
    try:
        opened = open_note(previous.note, verifiers)
        signed = parse_checkpoint(opened.text)
    except EvidenceError as exc:
        raise refuse("previous-forged",
                     f"the stored checkpoint of size {previous.size} does not verify with the "
                     f"log's configured keys: {exc.detail}. {_TRUSTED_KEYS}") from None
    if not opened.verified_by(previous.origin, previous.key_id) or previous.key_name != origin:
        raise refuse("previous-forged",
                     f"the stored checkpoint of size {previous.size} is not signed by the key "
                     f"its row names ({previous.key_name}+{previous.key_id:08x}). {_TRUSTED_KEYS}")
    if (signed.origin, signed.size, signed.root) != (origin, previous.size, previous.root):
        raise refuse("previous-forged",
                      f"the stored checkpoint of size {previous.size}: its row (size, root) "
                      f"differs from its signed note (size {signed.size})")


def publish_pending(
    conn: psycopg.Connection[Any], topic: str, publisher: CheckpointPublisher
) -> list[StoredCheckpoint]:
    """Publish every checkpoint of ``topic`` not yet on the checkpoints topic, oldest first,
    and record where each went. A crash between Kafka's ack and the UPDATE sends that note
    again next time: the same bytes twice, which readers de-duplicate."""
    _require_autocommit(conn)
    pending = [_row(r) for r in conn.execute(
        f"SELECT {_COLUMNS} FROM checkpoints WHERE topic = %s AND published_offset IS NULL"
        " ORDER BY signed_at, kafka_partition, tree_size", (topic,))]
    done: list[StoredCheckpoint] = []
    for stored in pending:
        offset = publisher.publish(stored.origin, stored.note)
        conn.execute("UPDATE checkpoints SET published_offset = %s WHERE topic = %s"
                     " AND kafka_partition = %s AND tree_size = %s",
                     (offset, topic, stored.partition, stored.size))
        done.append(replace(stored, published_offset=offset))
    return done
