"""A proof-of-service bundle built from a synthetic two-partition log (no Kafka, no PostgreSQL).

The trees, checkpoints, cosignatures and proofs are made with the evidence primitives the
ledger uses; tokens come from a real local TSA (OpenSSL). ``build`` takes a ``change``
hook over the gathered :class:`BundleContents`, so a test can make a writer that lies
(wrong proof, wrong size, foreign token) and still signs the manifest with the real key.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import fastavro

from protocolo.attestation.bundle_pack import (
    BundleCheckpoint,
    BundleConsistency,
    BundleContents,
    BundleRecord,
    BundleTimestamp,
    pack_bundle,
)
from protocolo.evidence.bundle import BundleTrust, avro_fingerprint
from protocolo.evidence.checkpoint import Checkpoint, log_origin, sign_checkpoint
from protocolo.evidence.cosignature import CosignatureV1Signer
from protocolo.evidence.leaf import record_leaf_input
from protocolo.evidence.merkle import (
    CompactRange,
    NodeId,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
)
from protocolo.evidence.note import Ed25519NoteSigner, NoteSigner
from protocolo.evidence.timestamp import request_timestamp
from protocolo.evidence.tlog_proof import make_tlog_proof

DEPLOYMENT = "acme-test"
TOPIC = "protocolo.ledger"
SCHEMA = ('{"name":"protocolo.events.Test","type":"record","fields":[{"name":"meta","type":'
          '{"name":"protocolo.events.Meta","type":"record","fields":[{"name":"protocol_number",'
          '"type":["null","string"]},{"name":"occurred_at","type":"long"}]}},'
          '{"name":"n","type":"long"}]}')
FINGERPRINT = avro_fingerprint(SCHEMA.encode())
PROTOCOL = "202600000000016"
SUBJECT = {"kind": "contact", "protocol_number": PROTOCOL, "request_ids": []}
CLOCK = 1_800_000_000

#: partition -> Kafka offsets of its leaves (offsets have gaps), checkpoint sizes, the
#: leaves of the contact.
LOG = {0: ([0, 1, 2, 4, 5, 7], [4, 6], [1, 3, 4]), 1: ([0, 1, 2], [3], [2])}


def log_signer(partition: int) -> Ed25519NoteSigner:
    """One key per partition's origin, named after it (as the checkpointer signs)."""
    origin = log_origin(DEPLOYMENT, TOPIC, partition)
    return Ed25519NoteSigner(origin, hashlib.sha256(b"bundle test log key " + origin.encode()).digest())


def witness_signer() -> CosignatureV1Signer:
    seed = hashlib.sha256(b"bundle test witness key").digest()
    return CosignatureV1Signer("auditor.example/witness", seed, clock=lambda: CLOCK)


def value(partition: int, offset: int, protocol: str = PROTOCOL) -> bytes:
    """A real Avro single-object value of the test schema (fastavro writes the body)."""
    body = io.BytesIO()
    fastavro.schemaless_writer(body, fastavro.parse_schema(json.loads(SCHEMA)),
                               {"meta": {"protocol_number": protocol,
                                         "occurred_at": 1_800_000_000_000_000 + offset},
                                "n": partition * 100 + offset})
    return b"\xc3\x01" + FINGERPRINT + body.getvalue()


@dataclass
class Tree:
    nodes: dict[NodeId, bytes] = field(default_factory=dict)
    compact: CompactRange = field(default_factory=CompactRange)

    def read(self, ids: Sequence[NodeId]) -> list[bytes]:
        return [self.nodes[i] for i in ids]


def contents(tsa_url: str | None, tsa_chain: bytes | None, witnessed: bool) -> BundleContents:
    records: list[BundleRecord] = []
    checkpoints: list[BundleCheckpoint] = []
    consistency: list[BundleConsistency] = []
    for partition, (offsets, sizes, wanted) in LOG.items():
        tree = Tree()
        leaves = []
        for offset in offsets:
            key = None if offset == 2 else f"key-{offset}".encode()
            leaf = record_leaf_input(TOPIC, partition, offset, key, value(partition, offset))
            leaves.append((offset, key, leaf))
            for stored in tree.compact.append(leaf_hash(leaf)):
                tree.nodes[stored.node] = stored.hash
        roots = {}
        for size in sizes:
            compact = CompactRange()
            for _, _, leaf in leaves[:size]:
                compact.append(leaf_hash(leaf))
            roots[size] = compact.root()
        signers: list[NoteSigner] = [log_signer(partition)]
        if witnessed:
            signers.append(witness_signer())
        notes = {s: sign_checkpoint(Checkpoint(log_origin(DEPLOYMENT, TOPIC, partition), s, roots[s]),
                                    signers) for s in sizes}
        newest = max(sizes)
        for s in sizes:
            stamps: tuple[BundleTimestamp, ...] = ()
            if tsa_url and tsa_chain and s == min(sizes):
                text = notes[s][: notes[s].index(b"\n\n") + 1]
                stamps = (BundleTimestamp(request_timestamp(tsa_url, text).der, tsa_chain, tsa_url),)
            checkpoints.append(BundleCheckpoint(TOPIC, partition, s, notes[s], s == newest, stamps))
            if s != newest:
                consistency.append(BundleConsistency(TOPIC, partition, s, newest,
                                                     tuple(consistency_proof(s, newest, tree.read))))
        for index in wanted:
            size = min(s for s in sizes if s > index)
            offset, key, leaf = leaves[index]
            proof = make_tlog_proof(index, inclusion_proof(index, size, tree.read), notes[size])
            records.append(BundleRecord(TOPIC, partition, offset, index, key, value(partition, offset),
                                        leaf, proof, "Test", size, FINGERPRINT, SCHEMA))
    log_vkeys = [str(log_signer(p).verifier) for p in LOG]
    return BundleContents(
        deployment=DEPLOYMENT,
        request={"protocol_number": PROTOCOL, "request_id": None, "reveal": False,
                 "legal_basis": None},
        created={"at": "2026-11-28T02:00:00+00:00", "tool": "protocolo test"},
        records=records, checkpoints=checkpoints, consistency=consistency,
        log_vkeys=log_vkeys, policy=policy(list(LOG), witnessed), subject=dict(SUBJECT),
        witness_vkeys=[str(witness_signer().verifier)] if witnessed else [],
    )


def build(
    tsa_url: str | None = None,
    tsa_chain: bytes | None = None,
    *,
    witnessed: bool = True,
    change: Callable[[BundleContents], BundleContents] | None = None,
) -> bytes:
    gathered = contents(tsa_url, tsa_chain, witnessed)
    if change is not None:
        gathered = change(gathered)
    return pack_bundle(gathered, log_signer(0))


def policy(partitions: list[int], witnessed: bool) -> bytes:
    text = "".join(f"log {log_signer(p).verifier}\n" for p in partitions)
    text += f"witness auditor {witness_signer().verifier}\nquorum auditor\n" if witnessed else "quorum none\n"
    return text.encode()


def pinned(tsa_root: bytes | None = None, policies: tuple[bytes, ...] = ()) -> BundleTrust:
    return BundleTrust(tuple(str(log_signer(p).verifier) for p in LOG), policies,
                       (tsa_root,) if tsa_root else ())
