"""One contact's proof-of-service bundle, read from the ledger database (read-only).

What goes in (docs/evidence-format.md §9): every journalled record of the contact's
timeline (its own events and those of the retrieval requests linked to it: the read
model's :func:`~protocolo.projections.history.timelines`), each with its raw key and
value, leaf input, decoded JSON, writer schema and a C2SP tlog-proof against the
*earliest* stored checkpoint that covers it (the one whose RFC 3161 token dates the record
most tightly); every checkpoint so used with its witnesses' cosignatures and timestamps, a
consistency proof from it to its partition's newest checkpoint (also included), the log's
verifier keys and a tlog-policy, ``summary.html``, ``README.txt`` and
``verify.py``. The manifest is signed with the log key under the origin of the contact's
partition.

Nothing is written to the ledger: a record no checkpoint covers yet is an error that says
to run ``protocolo checkpoint`` first.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from protocolo.attestation.anchoring import stored_anchors
from protocolo.attestation.bundle_pack import (
    BundleCheckpoint,
    BundleConsistency,
    BundleContents,
    BundleRecord,
    BundleTimestamp,
    pack_bundle,
)
from protocolo.attestation.bundle_summary import SummaryFacts, SummaryRecord, summary_html
from protocolo.attestation.checkpointer import StoredCheckpoint, known_log_keys, stored_checkpoints
from protocolo.attestation.log_key import LogKey
from protocolo.core.personal_data import PersonalDataSealer, PersonalDataUnavailable
from protocolo.core.policy import PolicyError, profile_named, profile_version
from protocolo.evidence.checkpoint import log_origin
from protocolo.evidence.leaf import record_leaf_input
from protocolo.evidence.merkle import consistency_proof, inclusion_proof
from protocolo.evidence.note import VerifierKey
from protocolo.evidence.tlog_proof import make_tlog_proof
from protocolo.projections.history import Timeline, journal_records, timelines
from protocolo.projections.history import request as request_row
from protocolo.projections.merkle_store import node_reader
from protocolo.schemas.catalogue import SchemaCatalogue
from protocolo.schemas.codec import UnknownFingerprint

__all__ = ["BundleNotPossible", "BundleRequest", "WriterContext", "write_bundle"]


class BundleNotPossible(Exception):
    """The bundle cannot be written (nothing found, or not yet checkpointed); says why."""


@dataclass(frozen=True)
class BundleRequest:
    """What was asked for, recorded in the manifest."""

    protocol_number: str | None
    request_id: str | None = None
    reveal: bool = False
    legal_basis: str | None = None


@dataclass(frozen=True)
class WriterContext:
    deployment: str
    topic: str
    log_key: LogKey
    sealer: PersonalDataSealer
    tool: str
    tsa_chain_pem: bytes | None = None
    witness_vkeys: tuple[str, ...] = ()


def _find_timeline(conn: psycopg.Connection[Any], request: BundleRequest) -> Timeline:
    protocol = request.protocol_number
    if request.request_id is not None:
        found = request_row(conn, request.request_id)
        if found is None:
            raise BundleNotPossible(f"no retrieval request {request.request_id} in this ledger")
        named = found.get("protocol_number") or next(iter(found.get("located_protocols") or []), None)
        if protocol is not None and named is not None and protocol != named:
            raise BundleNotPossible(f"request {request.request_id} is about protocol {named}, "
                                    f"not {protocol}")
        protocol = protocol or named
        if protocol is None:
            raise BundleNotPossible(f"request {request.request_id} names no contact yet "
                                    "(not located): nothing to prove about a contact")
    if protocol is None:
        raise BundleNotPossible("give --protocol or --request")
    (timeline,) = timelines(conn, [protocol])
    if request.request_id is not None:
        timeline.requests = [r for r in timeline.requests if str(r["request_id"]) == request.request_id]
        ids = {str(r["request_id"]) for r in timeline.requests}
        # the contact's own events, and of its requests' events only this request's
        timeline.events = [e for e in timeline.events
                           if (e["payload"] or {}).get("request_id") is None
                           or str(e["payload"]["request_id"]) in ids]
    if not timeline.events:
        raise BundleNotPossible(f"no contact with protocol number {protocol} in this ledger")
    return timeline


def _covering(checkpoints: Sequence[StoredCheckpoint], leaf_index: int) -> StoredCheckpoint | None:
    return next((c for c in checkpoints if c.size > leaf_index), None)


def _with_cosignatures(note: bytes, lines: Sequence[bytes]) -> bytes:
    extra = b"".join(line if line.endswith(b"\n") else line + b"\n"
                     for line in lines if line.rstrip(b"\n") not in note.split(b"\n"))
    return note + extra


def _customer(sealer: PersonalDataSealer, timeline: Timeline, reveal: bool) -> dict[str, Any]:
    interaction = timeline.interaction or {}
    pseudonym = interaction.get("cpf_index") or interaction.get("customer_code_index")
    opened = next((e for e in timeline.events if e["event_type"] == "ContactOpened"), None)
    sealed = ((opened or {}).get("payload") or {}).get("customer", {}) or {}
    if not sealed.get("sealed"):
        return {"pseudonym": pseudonym}
    assert opened is not None
    try:
        clear = sealer.open(sealed["sealed"], str(opened["event_id"]))
    except PersonalDataUnavailable as exc:
        return {"pseudonym": pseudonym, "unavailable": str(exc)}
    if clear is None:
        return {"pseudonym": pseudonym, "erased": True}
    if not reveal:
        return {"pseudonym": pseudonym}
    return {"pseudonym": pseudonym, "revealed": True, "name": clear.get("name"),
            "cpf": clear.get("cpf"), "customer_code": clear.get("customer_code")}


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, dict):
        return {k: _json_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_value(v) for v in value]
    return value if value is None or isinstance(value, str | int | float | bool) else str(value)


def write_bundle(conn: psycopg.Connection[Any], request: BundleRequest, context: WriterContext,
                 now: datetime) -> bytes:
    """The bundle's bytes for ``request``; raises :class:`BundleNotPossible` with the reason."""
    if request.reveal and not (request.legal_basis or "").strip():
        raise BundleNotPossible("--reveal needs --legal-basis TEXT: the legal basis for showing "
                                "personal data is recorded in the bundle")
    timeline = _find_timeline(conn, request)
    rows = journal_records(conn, context.topic, [(e["partition"], e["offset"]) for e in timeline.events])
    catalogue = SchemaCatalogue.load()
    partitions = sorted({int(r["partition"]) for r in rows})
    stored = {p: stored_checkpoints(conn, context.topic, p) for p in partitions}
    used: dict[tuple[int, int], StoredCheckpoint] = {}
    notes: dict[tuple[int, int], bytes] = {}
    records: list[BundleRecord] = []
    summary_records: list[SummaryRecord] = []

    def note_of(c: StoredCheckpoint) -> bytes:
        key = (c.partition, c.size)
        if key not in notes:
            cosigned = [a.token for a in stored_anchors(conn, c.topic, c.partition, c.size)
                        if a.kind == "cosignature"]
            notes[key] = _with_cosignatures(c.note, cosigned)
        return notes[key]

    for row in rows:
        partition, leaf = int(row["partition"]), int(row["leaf_index"])
        cover = _covering(stored[partition], leaf)
        if cover is None:
            newest_size = stored[partition][-1].size if stored[partition] else 0
            raise BundleNotPossible(
                f"record at partition {partition} offset {row['offset']} (leaf {leaf}) is not "
                f"covered by a signed checkpoint yet (newest of partition {partition}: size "
                f"{newest_size}): run `protocolo checkpoint`, then ask again")
        used[(partition, cover.size)] = cover
        reader = node_reader(conn, context.topic, partition)
        proof = make_tlog_proof(leaf, inclusion_proof(leaf, cover.size, reader), note_of(cover))
        fingerprint = bytes(row["fingerprint"])
        try:
            canonical: str | None = catalogue.by_fingerprint(fingerprint).canonical_form
        except UnknownFingerprint:
            canonical = None
        key = None if row["record_key"] is None else bytes(row["record_key"])
        value = bytes(row["record_value"])
        decoded = {k: _json_value(row[k]) for k in (
            "topic", "partition", "offset", "kafka_timestamp", "leaf_index", "event_type",
            "schema_version", "event_id", "protocol_number", "occurred_at", "is_duplicate", "payload")}
        decoded["schema_fingerprint"] = fingerprint.hex()
        records.append(BundleRecord(
            context.topic, partition, int(row["offset"]), leaf, key, value,
            record_leaf_input(context.topic, partition, int(row["offset"]), key, value), proof,
            str(row["event_type"]), json.loads(json.dumps(decoded)), fingerprint, canonical))
        summary_records.append(SummaryRecord(str(row["event_type"]), row["occurred_at"], partition,
                                             int(row["offset"]), leaf, cover.size))
    checkpoints: list[BundleCheckpoint] = []
    consistency: list[BundleConsistency] = []
    chain = context.tsa_chain_pem
    for p in partitions:
        newest = stored[p][-1]
        wanted = sorted({size for (q, size) in used if q == p} | {newest.size})
        for size in wanted:
            chosen: StoredCheckpoint = used.get((p, size), newest)
            stamps = () if chain is None else tuple(
                BundleTimestamp(a.token, chain, a.authority)
                for a in stored_anchors(conn, chosen.topic, p, size) if a.kind == "rfc3161")
            checkpoints.append(BundleCheckpoint(chosen.topic, p, size, note_of(chosen),
                                                size == newest.size, stamps))
            if size != newest.size:
                reader = node_reader(conn, context.topic, p)
                consistency.append(BundleConsistency(chosen.topic, p, size, newest.size,
                                                     tuple(consistency_proof(size, newest.size, reader))))
    origins = {p: log_origin(context.deployment, context.topic, p) for p in partitions}
    vkeys = [v for v in known_log_keys(conn) if VerifierKey.parse(v).name in origins.values()]
    policy = _policy(vkeys, context.witness_vkeys)
    facts = _facts(timeline, request, now, summary_records, _customer(context.sealer, timeline,
                                                                       request.reveal))
    contents = BundleContents(
        deployment=context.deployment,
        request={"protocol_number": timeline.protocol_number, "request_id": request.request_id,
                 "reveal": request.reveal, "legal_basis": request.legal_basis if request.reveal else None},
        created={"at": now.isoformat(), "tool": context.tool},
        records=records, checkpoints=checkpoints, consistency=consistency, log_vkeys=vkeys,
        policy=policy, summary_html=summary_html(facts), witness_vkeys=list(context.witness_vkeys))
    signer = context.log_key.signer(origins[int(rows[0]["partition"])])
    return pack_bundle(contents, signer)


def _policy(log_vkeys: Sequence[str], witness_vkeys: Sequence[str]) -> bytes:
    lines = ["# Protocolo: the logs (one per partition) of this bundle's records; the known",
             "# witnesses are listed, none is required here (pin your own policy to require one)"]
    lines += [f"log {v}" for v in log_vkeys]
    lines += [f"witness w{i} {v}" for i, v in enumerate(witness_vkeys)]
    lines.append("quorum none")
    return ("\n".join(lines) + "\n").encode("utf-8")


def _facts(timeline: Timeline, request: BundleRequest, now: datetime,
           records: list[SummaryRecord], customer: dict[str, Any]) -> SummaryFacts:
    interaction = timeline.interaction or {}
    profile_name = interaction.get("policy_profile")
    seconds = source = None
    if profile_name:
        name, _, number = str(profile_name).partition("@")  # "<name>@<version>" (PolicyProfile.key)
        try:
            profile = profile_version(name, int(number)) if number.isdigit() else profile_named(name)
            seconds, source = profile.start_disclosure_seconds, profile.source
        except PolicyError:
            pass
    return SummaryFacts(
        protocol_number=timeline.protocol_number, created_at=now.isoformat(),
        interaction=interaction, compliance=timeline.compliance or {}, customer=customer,
        recordings=timeline.recordings, requests=timeline.requests, records=records,
        profile=profile_name, start_disclosure_seconds=seconds, profile_source=source,
        legal_basis=request.legal_basis if request.reveal else None)
