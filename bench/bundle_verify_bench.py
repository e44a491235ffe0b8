"""What re-deriving a bundle's readable parts costs the offline verifier.

Builds one proof-of-service bundle (format v2) from the committed event vectors (real
Avro values of every event type of one contact) over a synthetic tree, then times
``verify_bundle`` twice in the same run: the full v2 verification, and the reference, the
same bundle verified with the readable re-derivation (§9.5) switched off. Prints the
per-bundle times and their ratio (never asserted: a bench, not a test).

    .venv/bin/python bench/bundle_verify_bench.py [--rounds 20]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import time
from pathlib import Path

from protocolo.attestation.bundle_pack import (
    BundleCheckpoint,
    BundleContents,
    BundleRecord,
    pack_bundle,
)
from protocolo.evidence import bundle
from protocolo.evidence.bundle import BundleTrust, verify_bundle
from protocolo.evidence.checkpoint import Checkpoint, log_origin, sign_checkpoint
from protocolo.evidence.leaf import record_leaf_input
from protocolo.evidence.merkle import CompactRange, inclusion_proof, leaf_hash
from protocolo.evidence.note import Ed25519NoteSigner
from protocolo.evidence.tlog_proof import make_tlog_proof

VECTORS = Path(__file__).resolve().parent.parent / "schemas" / "vectors"
DEPLOYMENT, TOPIC = "bench", "protocolo.ledger"


def _bundle() -> tuple[bytes, BundleTrust]:
    vectors = [json.loads(p.read_text()) for p in sorted(VECTORS.glob("*.json"))
               if "single_object_hex" in p.read_text()]
    protocol = "202500041823076"  # the vectors' main contact; keep its events and its requests'
    vectors = [v for v in vectors if v["record"]["meta"]["protocol_number"] in (protocol, None)
               and (v["record"]["meta"]["protocol_number"] or v["record"].get("request_id"))]
    requests = sorted({v["record"]["request_id"] for v in vectors
                       if v["record"]["meta"]["protocol_number"] is None})
    origin = log_origin(DEPLOYMENT, TOPIC, 0)
    signer = Ed25519NoteSigner(origin, hashlib.sha256(b"bench").digest())
    leaves, nodes = [], {}
    compact = CompactRange()
    for offset, v in enumerate(vectors):
        value = bytes.fromhex(v["single_object_hex"])
        key = (v.get("kafka_key") or "").encode() or None
        leaf = record_leaf_input(TOPIC, 0, offset, key, value)
        leaves.append((offset, key, value, leaf, v))
        for stored in compact.append(leaf_hash(leaf)):
            nodes[stored.node] = stored.hash
    size = len(leaves)
    note = sign_checkpoint(Checkpoint(origin, size, compact.root()), [signer])
    def read(ids: list) -> list[bytes]:
        return [nodes[i] for i in ids]

    records = [BundleRecord(TOPIC, 0, o, o, key, value, leaf,
                            make_tlog_proof(o, inclusion_proof(o, size, read), note),
                            v["event_type"], size, bytes.fromhex(v["schema_fingerprint_hex"]),
                            v["schema_canonical_form"])
               for o, key, value, leaf, v in leaves]
    vkey = str(signer.verifier)
    contents = BundleContents(
        deployment=DEPLOYMENT, request={"protocol_number": protocol, "request_id": None,
                                        "reveal": False, "legal_basis": None},
        created={"at": "2026-12-05T00:00:00+00:00", "tool": "bench"}, records=records,
        checkpoints=[BundleCheckpoint(TOPIC, 0, size, note, True)], consistency=[],
        log_vkeys=[vkey], policy=f"log {vkey}\nquorum none\n".encode(),
        subject={"kind": "contact", "protocol_number": protocol, "request_ids": requests})
    return pack_bundle(contents, signer), BundleTrust((vkey,))


def _once(data: bytes, trust: BundleTrust, rederive: bool) -> float:
    original = bundle._check_readable  # noqa: SLF001 - the reference switches the re-derivation off
    if not rederive:
        bundle._check_readable = lambda *a: None  # type: ignore[assignment]  # noqa: SLF001
    try:
        started = time.perf_counter()
        verify_bundle(data, trust)
        return time.perf_counter() - started
    finally:
        bundle._check_readable = original  # type: ignore[assignment]  # noqa: SLF001


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    data, trust = _bundle()
    report = verify_bundle(data, trust)
    records = len(report.records)
    full, reference = [], []
    for _ in range(args.rounds):  # alternate, so both see the same load
        full.append(_once(data, trust, True))
        reference.append(_once(data, trust, False))
    full_s, reference_s = statistics.median(full), statistics.median(reference)
    print(f"bundle: {records} records ({len(data):,} bytes), verdict {report.verdict}, "
          f"reasons {report.reasons}")
    print(f"verify without re-derivation (reference): {reference_s * 1000:.1f} ms per bundle (median)")
    print(f"verify with record.json + summary.html re-derived: {full_s * 1000:.1f} ms per bundle")
    print(f"ratio: {full_s / reference_s:.2f}x  (+{(full_s - reference_s) * 1000 / records:.2f} ms per record)")


if __name__ == "__main__":
    main()
