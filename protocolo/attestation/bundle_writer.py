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

Every readable part (``record.json``, ``summary.html``) is derived by ``bundle_pack`` from the
records' bytes (docs/evidence-format.md §9.5); the read model only chooses which records go
in. Nothing is written to the ledger: a record no checkpoint covers yet is listed as
pending (not proven), so proofs can be made while the ledger moves.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg

from protocolo.attestation.anchoring import stored_anchors
from protocolo.attestation.bundle_pack import (
    BundleCheckpoint,
    BundleConsistency,
    BundleContents,
    BundleLookup,
    BundleRecord,
    BundleTimestamp,
    PendingRecord,
    pack_bundle,
)
from protocolo.attestation.checkpointer import StoredCheckpoint, known_log_keys, stored_checkpoints
from protocolo.attestation.index_store import StoredIndex, index_checkpoints
from protocolo.attestation.log_key import LogKey
from protocolo.core.personal_data import PersonalDataSealer, PersonalDataUnavailable
from protocolo.core.policy import PolicyError, profile_in_force, profile_version
from protocolo.evidence.bundle import BundleReport, BundleTrust, Expected, verify_bundle
from protocolo.evidence.bundle_index import subject_keys
from protocolo.evidence.checkpoint import log_origin
from protocolo.evidence.leaf import record_leaf_input
from protocolo.evidence.merkle import consistency_proof, inclusion_proof
from protocolo.evidence.note import VerifierKey
from protocolo.evidence.readable import canonical_json, readable_record
from protocolo.evidence.tlog_proof import make_tlog_proof
from protocolo.projections.history import Timeline, journal_records, timelines
from protocolo.projections.history import request as request_row
from protocolo.projections.merkle_store import node_reader
from protocolo.schemas.catalogue import SchemaCatalogue
from protocolo.schemas.codec import UnknownFingerprint

__all__ = ["BundleNotPossible", "BundleRequest", "LedgerDamaged", "WriterContext", "deployment_trust",
           "self_check", "write_bundle"]


class BundleNotPossible(Exception):
    """The bundle cannot be written (nothing found, or not yet checkpointed); says why."""


class LedgerDamaged(BundleNotPossible):
    """The ledger fails its own checks (rows missing under a signed checkpoint, bytes that
    do not lead to the signed root): no bundle is handed out; the message names the
    partition and points at ``protocolo verify``."""

    def __init__(self, partition: int, what: str) -> None:
        self.partition = partition
        super().__init__(f"partition {partition} of the ledger differs from its signed checkpoints "
                         f"({what}): run `protocolo verify` for the full report; no bundle written")


def deployment_trust(key: LogKey, deployment: str, topic: str, partitions: Iterable[int]) -> BundleTrust:
    """The keys a self-check pins: each partition's log key derived from the deployment's
    own signing key (configuration), never the keys a bundle carries."""
    return BundleTrust(tuple(key.vkey(log_origin(deployment, topic, p)) for p in partitions))


def self_check(data: bytes, trust: BundleTrust, protocol_number: str | None) -> BundleReport:
    """Verify a bundle just written with the deployment's pinned keys before handing it out;
    a failure means the ledger's rows differ from what its checkpoints signed."""
    report = verify_bundle(data, trust, Expected(protocol_number))
    if report.ok:
        return report
    failed = next((r for r in report.records if not r.ok), None)
    if failed is not None:
        raise LedgerDamaged(failed.partition, f"record at offset {failed.offset}: {failed.reason}")
    finding = next(f for f in report.findings if not f.ok) if report.findings else None
    raise LedgerDamaged(-1 if finding is None else _partition_of(finding.subject),
                        f"{finding.subject if finding else 'bundle'}: "
                        f"{finding.reason if finding else ', '.join(report.reasons)}")


def _partition_of(path: str) -> int:
    """The partition a bundle path names (``checkpoints/p3/…``, ``records/p3-o9/…``), or -1."""
    for part in path.split("/"):
        digits = part[1:].split("-")[0]
        if part.startswith("p") and digits.isdigit():
            return int(digits)
    return -1


def _check_rows(conn: psycopg.Connection[Any], topic: str, partition: int, size: int) -> None:
    """Every leaf under the newest signed checkpoint has its row, in the journal or in the
    quarantine (a deleted row would otherwise just be left out of the bundle). Two index-only
    counts on (topic, partition, leaf_index)."""
    (count,) = conn.execute(
        "SELECT (SELECT count(*) FROM journal WHERE topic = %(t)s AND kafka_partition = %(p)s"
        "        AND leaf_index < %(n)s)"
        "     + (SELECT count(*) FROM quarantine WHERE topic = %(t)s AND kafka_partition = %(p)s"
        "        AND leaf_index < %(n)s)",
        {"t": topic, "p": partition, "n": size}).fetchone() or (0,)
    if count != size:
        raise LedgerDamaged(partition, f"the journal and quarantine hold {count} of the {size} "
                            "records its newest signed checkpoint covers")


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


def _declared(sealer: PersonalDataSealer, opened: dict[str, Any] | None,
              request: BundleRequest) -> dict[str, Any]:
    """What the maker states about the customer beyond the records (``declared``): the clear
    data with its legal basis when revealed, or that the data was erased. Read from the
    ContactOpened record's own bytes (its sealed blob), never from the journal's JSON."""
    fields = (opened or {}).get("fields") or {}
    customer = fields.get("customer") if isinstance(fields, dict) else None
    sealed = customer.get("sealed") if isinstance(customer, dict) else None
    if not sealed:
        return {}
    event_id = str((fields.get("meta") or {}).get("event_id"))
    try:
        clear = sealer.open(sealed, event_id)
    except PersonalDataUnavailable as exc:
        return {"customer": {"unavailable": str(exc)}}
    if clear is None:
        return {"customer": {"erased": "dados pessoais APAGADOS a pedido do titular / personal "
                                       "data ERASED on the data subject's request (LGPD art. 18): "
                                       "the data key was destroyed"}}
    if not request.reveal:
        return {}
    return {"customer": {"name": clear.get("name"), "cpf": clear.get("cpf"),
                         "customer_code": clear.get("customer_code"),
                         "legal_basis": request.legal_basis}}


def _rules(opened: dict[str, Any] | None, view_profile: Any) -> dict[str, Any]:
    """The policy parameters of the profile the ContactOpened record names (its bytes), in the
    version the read model recorded when it is that profile, else the version in force when
    the contact opened."""
    fields = (opened or {}).get("fields") or {}
    name = fields.get("policy_profile") if isinstance(fields, dict) else None
    name, _, number = str(name or view_profile or "").partition("@")
    if not name:
        return {}
    view_name, _, view_number = str(view_profile or "").partition("@")
    try:
        if view_name == name and view_number.isdigit():
            profile = profile_version(name, int(view_number))
        else:
            micros = ((fields.get("meta") or {}).get("occurred_at") or 0)
            profile = profile_in_force(name, datetime.fromtimestamp(micros / 1e6, UTC))
    except PolicyError:
        return {"profile": name}
    return {"profile": profile.key, "source": profile.source,
            "start_disclosure_seconds": profile.start_disclosure_seconds,
            "protocol_confirmation_hours": profile.protocol_confirmation_hours,
            "recording_delivery_days": profile.recording_delivery_days}


def write_bundle(conn: psycopg.Connection[Any], request: BundleRequest, context: WriterContext,
                 now: datetime) -> bytes:
    """The bundle's bytes for ``request``; raises :class:`BundleNotPossible` with the reason.

    Records no signed checkpoint covers yet are listed as ``pending`` (not proven), so a
    bundle can be written while the ledger moves; at least one record must be covered.
    """
    if request.reveal and not (request.legal_basis or "").strip():
        raise BundleNotPossible("--reveal needs --legal-basis TEXT: the legal basis for showing "
                                "personal data is recorded in the bundle")
    timeline = _find_timeline(conn, request)
    rows = journal_records(conn, context.topic, [(e["partition"], e["offset"]) for e in timeline.events])
    gathered = _Gathered(conn, context)
    for row in rows:
        gathered.add(row)
    if not gathered.records:
        raise BundleNotPossible(
            f"no record of protocol {timeline.protocol_number} is covered by a signed checkpoint "
            f"yet ({len(gathered.pending)} pending): run `protocolo checkpoint`, then ask again")
    for p, stored in sorted(gathered.stored.items()):
        if stored:
            _check_rows(conn, context.topic, p, stored[-1].size)
    subject = {"kind": "contact", "protocol_number": timeline.protocol_number,
               "request_ids": sorted(str(r["request_id"]) for r in timeline.requests)}
    return pack_gathered(conn, gathered, context, request, now, subject=subject,
                         named=(timeline.protocol_number, request.request_id),
                         view_profile=(timeline.interaction or {}).get("policy_profile"))


def pack_gathered(conn: psycopg.Connection[Any], gathered: _Gathered, context: WriterContext,
                  request: BundleRequest, now: datetime, *, subject: dict[str, Any],
                  named: tuple[str | None, str | None], view_profile: Any) -> bytes:
    """The signed bundle of what was gathered, for ``subject``: one packing for a
    contact's bundle and a customer's, so both pin the same log keys, state the policy,
    rules and declared personal data the same way, and carry the same lookup proofs.
    ``named`` is the protocol number and request id the request named (none for a
    customer); ``view_profile`` the read model's policy profile, if it has one."""
    checkpoints, consistency = gathered.checkpoints_and_consistency()
    origins = {p: log_origin(context.deployment, context.topic, p) for p in sorted(gathered.stored)}
    vkeys = [v for v in known_log_keys(conn) if VerifierKey.parse(v).name in origins.values()]
    schemas = {r.schema_fingerprint.hex(): r.schema_canonical.encode("utf-8")
               for r in gathered.records if r.schema_fingerprint and r.schema_canonical}
    opened = next((d for d in (readable_record(r.topic, r.partition, r.offset, r.leaf_index, r.key,
                                               r.value, schemas) for r in gathered.records)
                   if d.get("event_type") == "ContactOpened"), None)
    protocol_number, request_id = named
    contents = BundleContents(
        deployment=context.deployment,
        request={"protocol_number": protocol_number, "request_id": request_id,
                 "reveal": request.reveal, "legal_basis": request.legal_basis if request.reveal else None},
        created={"at": now.isoformat(), "tool": context.tool},
        records=gathered.records, checkpoints=checkpoints, consistency=consistency, log_vkeys=vkeys,
        policy=_policy(vkeys, context.witness_vkeys), subject=subject,
        rules=_rules(opened, view_profile), declared=_declared(context.sealer, opened, request),
        pending=gathered.pending, witness_vkeys=list(context.witness_vkeys))
    contents = dataclasses.replace(contents, index=lookups(conn, context.topic, gathered.stored, subject))
    signer = context.log_key.signer(origins[gathered.records[0].partition])
    return pack_bundle(contents, signer)


def lookups(conn: psycopg.Connection[Any], topic: str,
            stored: dict[int, list[StoredCheckpoint]], subject: dict[str, Any]) -> list[BundleLookup]:
    """The verifiable index's lookup proofs of the subject's keys in each partition the
    bundle holds records of, at its newest checkpoint, when that checkpoint has an index
    checkpoint (ledgers checkpointed before the index have none: no completeness proof)."""
    found: list[BundleLookup] = []
    for partition, checkpoints in sorted(stored.items()):
        if not checkpoints:
            continue
        size = checkpoints[-1].size
        notes = {c.size: c.note for c in index_checkpoints(conn, topic, partition)}
        if size not in notes:
            continue
        index = StoredIndex(conn, topic, partition)
        for key in subject_keys(subject):
            proof = canonical_json(index.prove(key, size).to_json())
            found.append(BundleLookup(partition, size, key.kind, key.value, proof, notes[size]))
    return found


class _Gathered:
    """The records, their proofs and the checkpoints they use, read from the ledger."""

    def __init__(self, conn: psycopg.Connection[Any], context: WriterContext) -> None:
        self.conn, self.context = conn, context
        self.catalogue = SchemaCatalogue.load()
        self.stored: dict[int, list[StoredCheckpoint]] = {}
        self.used: dict[tuple[int, int], StoredCheckpoint] = {}
        self.notes: dict[tuple[int, int], bytes] = {}
        self.records: list[BundleRecord] = []
        self.pending: list[PendingRecord] = []

    def note_of(self, c: StoredCheckpoint) -> bytes:
        key = (c.partition, c.size)
        if key not in self.notes:
            cosigned = [a.token for a in stored_anchors(self.conn, c.topic, c.partition, c.size)
                        if a.kind == "cosignature"]
            self.notes[key] = _with_cosignatures(c.note, cosigned)
        return self.notes[key]

    def add(self, row: dict[str, Any]) -> None:
        topic = self.context.topic
        partition, leaf, offset = int(row["partition"]), int(row["leaf_index"]), int(row["offset"])
        if partition not in self.stored:
            self.stored[partition] = stored_checkpoints(self.conn, topic, partition)
        cover = _covering(self.stored[partition], leaf)
        if cover is None:
            self.pending.append(PendingRecord(topic, partition, offset, leaf))
            return
        self.used[(partition, cover.size)] = cover
        reader = node_reader(self.conn, topic, partition)
        proof = make_tlog_proof(leaf, inclusion_proof(leaf, cover.size, reader), self.note_of(cover))
        fingerprint = bytes(row["fingerprint"])
        try:
            canonical: str | None = self.catalogue.by_fingerprint(fingerprint).canonical_form
        except UnknownFingerprint:
            canonical = None
        key = None if row["record_key"] is None else bytes(row["record_key"])
        value = bytes(row["record_value"])
        self.records.append(BundleRecord(
            topic, partition, offset, leaf, key, value,
            record_leaf_input(topic, partition, offset, key, value), proof,
            str(row["event_type"]), cover.size, fingerprint, canonical))

    def checkpoints_and_consistency(self) -> tuple[list[BundleCheckpoint], list[BundleConsistency]]:
        checkpoints: list[BundleCheckpoint] = []
        consistency: list[BundleConsistency] = []
        chain = self.context.tsa_chain_pem
        for p in sorted({q for (q, _) in self.used}):
            newest = self.stored[p][-1]
            for size in sorted({size for (q, size) in self.used if q == p} | {newest.size}):
                chosen: StoredCheckpoint = self.used.get((p, size), newest)
                stamps = () if chain is None else tuple(
                    BundleTimestamp(a.token, chain, a.authority)
                    for a in stored_anchors(self.conn, chosen.topic, p, size) if a.kind == "rfc3161")
                checkpoints.append(BundleCheckpoint(chosen.topic, p, size, self.note_of(chosen),
                                                    size == newest.size, stamps))
                if size != newest.size:
                    reader = node_reader(self.conn, self.context.topic, p)
                    consistency.append(BundleConsistency(
                        chosen.topic, p, size, newest.size,
                        tuple(consistency_proof(size, newest.size, reader))))
        return checkpoints, consistency


def _policy(log_vkeys: Sequence[str], witness_vkeys: Sequence[str]) -> bytes:
    lines = ["# Protocolo: the logs (one per partition) of this bundle's records; the known",
             "# witnesses are listed, none is required here (pin your own policy to require one)"]
    lines += [f"log {v}" for v in log_vkeys]
    lines += [f"witness w{i} {v}" for i, v in enumerate(witness_vkeys)]
    lines.append("quorum none")
    return ("\n".join(lines) + "\n").encode("utf-8")
