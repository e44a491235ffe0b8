"""Completeness of a proof-of-service bundle: its records against the verifiable index.

A bundle (format v2) may carry, per partition it holds records of, the **index checkpoint**
of the newest checkpoint it lists (the checkpoint with its ``protocolo-vindex/v1`` map-root
line, signed by the same log key) and **lookup proofs** for the keys of its subject: the
protocol number and each request id (docs/evidence-format.md §9, §11). The verifier checks
each index checkpoint against the bundle's verified checkpoint of that size, each lookup
proof against its map root, and then that the bundle holds exactly the records the lists
name below that size: a record the index names but the bundle lacks is ``record-missing``;
a record of the bundle no proved list names (another contact's, or one added) is
``record-not-in-index``. Standard library only (part of the offline verifier).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from protocolo.evidence.checkpoint import open_checkpoint
from protocolo.evidence.errors import EvidenceError
from protocolo.evidence.note import decode_base64
from protocolo.evidence.policy import VerifiedCheckpoint
from protocolo.evidence.vindex import (
    EXTENSION_PREFIX,
    IndexProofError,
    LookupProof,
    MapKey,
    kafka_key_entry,
    verify_lookup,
)

#: the manifest's subject field naming a customer -> the map key kind of its blind index
CUSTOMER_KEY_KINDS = {"cpf_index": "cpf-index", "customer_code_index": "customer-code-index"}


@dataclass(frozen=True)
class HeldRecord:
    """A record of the bundle: where it is in the log and its Kafka key (from key.bin)."""

    directory: str
    partition: int
    leaf_index: int
    key: bytes | None


@dataclass(frozen=True)
class IndexResult:
    subject: str
    ok: bool
    reason: str = ""
    detail: str = ""


def subject_keys(subject: Mapping[str, Any]) -> list[MapKey]:
    """The keys whose lists a bundle of ``subject`` must prove."""
    keys = []
    for field, kind in CUSTOMER_KEY_KINDS.items():
        if isinstance(subject.get(field), str):
            keys.append(MapKey(kind, subject[field]))
    protocols = [subject.get("protocol_number")] + list(subject.get("protocol_numbers") or [])
    for protocol in protocols:
        if isinstance(protocol, str):
            keys.append(MapKey("protocol", protocol))
    for rid in subject.get("request_ids") or []:
        if isinstance(rid, str):
            keys.append(MapKey("id", rid))
    return keys


def map_root_of(note: bytes, verified: VerifiedCheckpoint) -> bytes:
    """The map root an index checkpoint states, once it is proved to be signed by the log
    key that signed ``verified`` and to name the same origin, size and root."""
    try:
        signed = open_checkpoint(note, [verified.log.verifier]).checkpoint
    except EvidenceError as exc:
        raise EvidenceError("index-not-signed", f"index checkpoint: {exc.detail}") from None
    base = verified.signed.checkpoint
    if (signed.origin, signed.size, signed.root) != (base.origin, base.size, base.root):
        raise EvidenceError("index-other-checkpoint", f"the index checkpoint names {signed.origin} "
                            f"size {signed.size}, not the bundle's checkpoint of size {base.size}")
    lines = [e for e in signed.extensions if e.startswith(EXTENSION_PREFIX)]
    if len(lines) != 1:
        raise EvidenceError("index-not-signed", "the index checkpoint has no single "
                            f"{EXTENSION_PREFIX.strip()} line")
    return decode_base64(lines[0][len(EXTENSION_PREFIX):], "map root")


def _entry(raw: Any) -> tuple[str, str, int, int]:
    if not isinstance(raw, dict):
        raise EvidenceError("index-malformed", "an index entry is not an object")
    path, checkpoint, partition, size = (raw.get(k) for k in ("path", "checkpoint", "partition",
                                                                "size"))
    if not (isinstance(path, str) and isinstance(checkpoint, str) and isinstance(partition, int)
            and isinstance(size, int)):
        raise EvidenceError("index-malformed", "an index entry needs path, checkpoint, "
                            "partition and size")
    return path, checkpoint, partition, size


def check_index(files: Mapping[str, bytes], entries: Sequence[Any], subject: Mapping[str, Any],
                records: Sequence[HeldRecord],
                verified: Mapping[tuple[int, int], VerifiedCheckpoint]) -> list[IndexResult]:
    """Every check of the bundle's index entries and of its records against them."""
    results: list[IndexResult] = []
    proved: dict[int, tuple[int, dict[MapKey, set[int]]]] = {}
    for raw in entries:
        try:
            path, checkpoint, partition, size = _entry(raw)
            lists = proved.setdefault(partition, (size, {}))
            if lists[0] != size:
                raise EvidenceError("index-malformed", f"partition {partition}: lookup proofs at "
                                    "two sizes")
            key, indexes = _lookup(files, path, checkpoint, partition, size, verified)
            lists[1][key] = set(indexes or ())
            results.append(IndexResult(path, True, detail=f"{key}: {len(indexes or ())} leaves "
                                       f"below {size}"))
        except EvidenceError as exc:
            where = raw.get("path") if isinstance(raw, dict) else None
            results.append(IndexResult(str(where or "index"), False, exc.reason, exc.detail))
    newest = {p: max(s for (q, s) in verified if q == p) for (p, _) in verified}
    for partition, (size, _) in sorted(proved.items()):
        if newest.get(partition, size) != size:
            results.append(IndexResult(f"index/p{partition}", False, "index-other-checkpoint",
                                       f"the lookup proofs are at size {size}, the bundle's newest "
                                       f"checkpoint of partition {partition} is {newest[partition]}"))
    results += _completeness(subject, records, proved)
    return results


def _lookup(files: Mapping[str, bytes], path: str, checkpoint: str, partition: int, size: int,
            verified: Mapping[tuple[int, int], VerifiedCheckpoint]) -> tuple[MapKey, Any]:
    base = verified.get((partition, size))
    if base is None:
        raise EvidenceError("index-other-checkpoint", f"no verified checkpoint of partition "
                            f"{partition} has size {size}")
    note, proof_bytes = files.get(checkpoint), files.get(path)
    if note is None or proof_bytes is None:
        raise EvidenceError("index-malformed", f"{checkpoint} or {path} is absent")
    map_root = map_root_of(note, base)
    try:
        proof = LookupProof.from_json(json.loads(proof_bytes.decode("utf-8")))
        return proof.key, verify_lookup(proof, map_root, size)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise EvidenceError("index-malformed", f"{path} is not JSON") from None
    except IndexProofError as exc:
        raise EvidenceError(f"lookup-{exc.reason}", exc.detail) from None


def _completeness(subject: Mapping[str, Any], records: Sequence[HeldRecord],
                  proved: dict[int, tuple[int, dict[MapKey, set[int]]]]) -> list[IndexResult]:
    results: list[IndexResult] = []
    wanted = subject_keys(subject)
    partitions = {r.partition for r in records}
    customer = _customer_key(subject)
    if customer is not None:  # a customer's records may be in any partition: every one proven
        partitions |= set(range(int(subject.get("partitions") or 0))) - set(
            subject.get("without_checkpoint") or ())
    for partition in sorted(partitions):
        before = len(results)
        size, lists = proved.get(partition, (0, {}))
        missing_keys = [k for k in wanted if k not in lists]
        if missing_keys:
            results.append(IndexResult(f"index/p{partition}", False, "index-proof-missing",
                                       "no lookup proof for " + ", ".join(map(str, missing_keys))))
            continue
        held = {r.leaf_index: r for r in records if r.partition == partition and r.leaf_index < size}
        named = set().union(*(lists[k] for k in wanted)) if wanted else set()
        for leaf in sorted(named - set(held)):
            results.append(IndexResult(f"index/p{partition}", False, "record-missing",
                                       f"the index names leaf {leaf} of partition {partition} "
                                       "for the subject; the bundle does not hold it"))
        for leaf in sorted(set(held) - named):
            key = kafka_key_entry(held[leaf].key)
            results.append(IndexResult(held[leaf].directory, False, "record-not-in-index",
                                       f"leaf {leaf} (key {key}) is in no proved list of the "
                                       "subject's keys"))
        if customer is not None:
            results += _contacts_named(partition, lists.get(customer, set()), held, wanted)
        if len(results) == before:
            results.append(IndexResult(f"index/p{partition}", True, detail=f"the bundle holds "
                                       f"every record of its subject below size {size}"))
    return results


def _customer_key(subject: Mapping[str, Any]) -> MapKey | None:
    if subject.get("kind") != "customer":
        return None
    return next((MapKey(kind, subject[field]) for field, kind in CUSTOMER_KEY_KINDS.items()
                 if isinstance(subject.get(field), str)), None)


def _contacts_named(partition: int, leaves: set[int], held: Mapping[int, HeldRecord],
                    wanted: Sequence[MapKey]) -> list[IndexResult]:
    """Each record carrying the customer's blind index names its contact (or request) by its
    Kafka key: that key must be one of the subject's, so the contact's other records are
    proven too. A contact left out of the subject is ``contact-missing``."""
    results = []
    for leaf in sorted(leaves & set(held)):
        key = kafka_key_entry(held[leaf].key)
        if key is not None and key.kind in ("protocol", "id") and key not in wanted:
            results.append(IndexResult(held[leaf].directory, False, "contact-missing",
                                       f"leaf {leaf} of partition {partition} carries the "
                                       f"customer's blind index; its key {key} is not in the "
                                       "bundle's subject (its other records are not proven)"))
    return results
