"""A customer's bundle: every contact and request of one customer, in every partition.

The customer is named by a blind index (``cpf-index:`` / ``customer-code-index:``, the keyed
HMAC of the CPF or code); the verifiable index answers which leaves of each partition carry
it. Their Kafka keys name the customer's contacts (``protocol:``) and requests (``id:``), and
those keys' lists name every other record of them. The bundle holds exactly the union of
those lists below each partition's newest checkpoint, with the lookup proofs of every key in
**every** partition (a partition without the customer's records proves the key absent), so
the verifier can check that nothing is missing up to the checkpoints
(docs/evidence-format.md §11.6); a partition with no signed checkpoint at all is stated in
``subject.without_checkpoint`` and the verifier warns that absence there is not proven.
Records newer than the checkpoints, found in the read
model, are listed as pending, as for a contact.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from protocolo.attestation.bundle_writer import (
    BundleNotPossible,
    BundleRequest,
    WriterContext,
    _check_rows,
    _Gathered,
    pack_gathered,
)
from protocolo.attestation.checkpointer import stored_checkpoints
from protocolo.attestation.index_store import StoredIndex, index_checkpoints
from protocolo.evidence.bundle_index import CUSTOMER_KEY_KINDS, subject_keys
from protocolo.evidence.vindex import MapKey, kafka_key_entry
from protocolo.projections.history import journal_records, protocols_for_customer, timelines

__all__ = ["CustomerRef", "pack_customer", "write_customer_bundle"]

#: manifest field -> the read model's customer_index kind
_VIEW_KIND = {"cpf_index": "cpf", "customer_code_index": "customer_code"}


@dataclass(frozen=True)
class CustomerRef:
    """The customer, by blind index: ``field`` is ``cpf_index`` or ``customer_code_index``."""

    field: str
    value: str

    @property
    def key(self) -> MapKey:
        return MapKey(CUSTOMER_KEY_KINDS[self.field], self.value)


_COLUMNS = ("j.topic, j.kafka_partition AS partition, j.kafka_offset AS offset, j.record_key,"
            " j.record_value, j.fingerprint, j.event_type, j.payload, j.leaf_index")


def _rows_at(conn: psycopg.Connection[Any], topic: str, partition: int,
             leaves: set[int]) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(f"SELECT {_COLUMNS} FROM journal j WHERE j.topic = %s AND "
                           "j.kafka_partition = %s AND j.leaf_index = ANY(%s) ORDER BY j.leaf_index",
                           (topic, partition, sorted(leaves))).fetchall()


class _Partitions:
    """Each partition's newest checkpoint with an index checkpoint, and lookups in it."""

    def __init__(self, conn: psycopg.Connection[Any], topic: str, count: int) -> None:
        self.conn, self.topic = conn, topic
        self.sizes: dict[int, int] = {}
        self.without_checkpoint: list[int] = []  # nothing signed yet: nothing to prove against
        self.without_index: list[int] = []
        for p in range(count):
            stored = stored_checkpoints(conn, topic, p)
            indexed = {c.size for c in index_checkpoints(conn, topic, p)}
            if not stored:
                self.without_checkpoint.append(p)
            elif stored[-1].size in indexed:
                self.sizes[p] = stored[-1].size
            else:
                self.without_index.append(p)

    def leaves(self, key: MapKey) -> dict[int, set[int]]:
        found = {}
        for p, size in self.sizes.items():
            indexes = StoredIndex(self.conn, self.topic, p).prove(key, size).indexes
            found[p] = set(indexes or ())
        return found


def _subject(conn: psycopg.Connection[Any], customer: CustomerRef, parts: _Partitions,
             topic: str, partitions: int) -> dict[str, Any]:
    """The customer's contacts and requests: those whose Kafka keys the index lists under the
    customer's key, and those the read model links to them (newer ones included)."""
    protocols = set(protocols_for_customer(conn, _VIEW_KIND[customer.field], customer.value))
    requests: set[str] = set()
    for p, leaves in parts.leaves(customer.key).items():
        for row in _rows_at(conn, topic, p, leaves):
            key = kafka_key_entry(None if row["record_key"] is None else bytes(row["record_key"]))
            if key is not None and key.kind == "protocol":
                protocols.add(key.value)
            elif key is not None and key.kind == "id":
                requests.add(key.value)
    for timeline in timelines(conn, sorted(protocols)):
        requests |= {str(r["request_id"]) for r in timeline.requests}
    return {"kind": "customer", customer.field: customer.value,
            "protocol_numbers": sorted(protocols), "request_ids": sorted(requests),
            "partitions": partitions, "without_checkpoint": parts.without_checkpoint}


def write_customer_bundle(conn: psycopg.Connection[Any], customer: CustomerRef,
                          request: BundleRequest, context: WriterContext, partitions: int,
                          now: datetime) -> bytes:
    """The customer's bundle; raises :class:`BundleNotPossible` with the reason."""
    topic = context.topic
    parts = _Partitions(conn, topic, partitions)
    if parts.without_index or not parts.sizes:
        missing = parts.without_index or parts.without_checkpoint
        raise BundleNotPossible(f"partitions {missing} have no signed checkpoint with an index "
                                "checkpoint yet: run `protocolo checkpoint`, then ask again")
    subject = _subject(conn, customer, parts, topic, partitions)
    if not subject["protocol_numbers"] and not subject["request_ids"]:
        raise BundleNotPossible(f"no contact or request of this customer ({customer.field} "
                                f"{customer.value[:12]}…) in this ledger")
    gathered = _Gathered(conn, context)
    seen: set[tuple[int, int]] = set()
    wanted: dict[int, set[int]] = {p: set() for p in parts.sizes}
    for key in subject_keys(subject):
        for p, leaves in parts.leaves(key).items():
            wanted[p] |= leaves
    rows = [r for p, leaves in sorted(wanted.items()) for r in _rows_at(conn, topic, p, leaves)]
    newer = [(e["partition"], e["offset"]) for t in timelines(conn, subject["protocol_numbers"])
             for e in t.events]
    rows += journal_records(conn, topic, newer)
    for row in rows:
        if (int(row["partition"]), int(row["offset"])) not in seen:
            seen.add((int(row["partition"]), int(row["offset"])))
            gathered.add(row)
    for p in parts.sizes:  # every partition's newest checkpoint, for its lookup proofs
        gathered.stored.setdefault(p, stored_checkpoints(conn, topic, p))
        newest = gathered.stored[p][-1]
        gathered.used[(p, newest.size)] = newest
        _check_rows(conn, topic, p, newest.size)
    if not gathered.records:
        raise BundleNotPossible("no record of this customer is covered by a signed checkpoint yet "
                                f"({len(gathered.pending)} pending): run `protocolo checkpoint`")
    return pack_customer(conn, gathered, subject, request, context, now)


def pack_customer(conn: psycopg.Connection[Any], gathered: _Gathered, subject: dict[str, Any],
          request: BundleRequest, context: WriterContext, now: datetime) -> bytes:
    return pack_gathered(conn, gathered, context, request, now, subject=subject,
                         named=(None, None), view_profile=None)
