"""Verified reads: what a person is shown about a contact, checked against the signed log
at the moment it is read.

For one contact (a :class:`~protocolo.projections.history.Timeline`, as the views give it):

1. each of its journal rows' leaf hash is recomputed from the row's stored bytes (topic,
   partition, offset, key, value) and proved, with an inclusion proof assembled from the
   stored Merkle nodes, into its partition's **newest checkpoint**, whose note must verify
   with a **pinned** log key (:mod:`protocolo.attestation.pinned_log_keys`: the
   deployment's configuration, never the database's tables). Rows after that checkpoint
   are **pending**: read, not yet provable;
2. the contact's state (the ``interactions`` row and its compliance flags, its recordings,
   legal holds and retrieval requests, with their deadlines) is folded, here, from the
   events decoded from those bytes (never from ``journal.payload``), with the same rules
   the projector's SQL applies (first or last by offset, earliest disclosure, the policy
   profile in force), and compared with what the views say.

The answer is ``verified`` (every event proven into a checkpoint, the views agree),
``pending`` (the views agree with every event; some events are newer than the newest
checkpoint), ``MISMATCH`` (a view value differs from the folded one, or a row does not
prove into its signed checkpoint: each difference named, with both values) or
``unverified`` (no checkpoint, or no pinned key for its origin: says what to pin). The
caller shows the verified value, never the view's, when they differ
(:func:`overlay_verified`).

Cost: one query for the journal rows' bytes, per partition one for its newest checkpoint
and one for every proof node the contact's rows need, one Ed25519 signature check per
partition, and a Python fold of a few dozen events: bench/verified_read_bench.py.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import psycopg

from protocolo.attestation.audit_payloads import first_difference
from protocolo.attestation.checkpointer import StoredCheckpoint, latest_checkpoint
from protocolo.attestation.pinned_log_keys import ENV_LOG_VKEYS, PinnedLogKeys
from protocolo.core.policy import (
    DEFAULT_PROFILE,
    PolicyError,
    PolicyProfile,
    profile_for_service,
    profile_in_force,
)
from protocolo.evidence.checkpoint import open_checkpoint, parse_log_origin
from protocolo.evidence.errors import EvidenceError
from protocolo.evidence.leaf import record_leaf_hash
from protocolo.evidence.merkle import NodeId, ProofPlan, inclusion_nodes
from protocolo.evidence.proof import verify_inclusion
from protocolo.projections.history import Timeline, journal_records
from protocolo.projections.merkle_store import node_reader
from protocolo.schemas.catalogue import SchemaCatalogue
from protocolo.schemas.codec import DecodeError
from protocolo.schemas.json_form import to_json

__all__ = ["MISMATCH", "PENDING", "UNVERIFIED", "VERIFIED", "ContactVerification", "Difference",
           "overlay_verified", "verify_contact"]

VERIFIED = "verified"
PENDING = "pending"
MISMATCH = "MISMATCH"
UNVERIFIED = "unverified"

INTERACTION_FIELDS = ("channel", "direction", "service_type", "policy_profile", "agent_id", "subject",
                      "recorded", "language", "opened_at", "closed_at", "outcome", "summary",
                      "protocol_disclosed_at", "recording_notice_at", "protocol_confirmed_at", "note_count")
COMPLIANCE_FIELDS = ("protocol_disclosed_at_start", "recording_notice_at_start", "protocol_confirmed_in_time")
RECORDING_FIELDS = ("media_uri", "sha256", "duration_ms", "captured_at", "retention_profile", "retention_days",
                    "retain_until", "status", "deleted_at", "deletion_reason")
HOLD_FIELDS = ("case_reference", "placed_by", "placed_at", "released_at", "released_by", "release_reason")
REQUEST_FIELDS = ("kind", "requested_at", "requested_via", "delivery_channel", "due_at", "status", "located_at",
                  "fulfilled_at", "delivered_sha256", "rejected_at", "rejection_reason")


@dataclass(frozen=True)
class Difference:
    """A value the view shows that the signed log does not give."""

    table: str
    key: str
    column: str
    view: Any
    verified: Any

    def as_dict(self) -> dict[str, Any]:
        return {"table": self.table, "key": self.key, "column": self.column,
                "view": _plain(self.view), "verified": _plain(self.verified)}

    def describe(self) -> str:
        return (f"{self.table} {self.key} {self.column}: the view says {_plain(self.view)!r} (altered), "
                f"the signed log gives {_plain(self.verified)!r}")


@dataclass
class ContactVerification:
    protocol_number: str
    status: str = VERIFIED
    checkpoints: list[tuple[str, int]] = field(default_factory=list)
    covered: list[tuple[int, int]] = field(default_factory=list)  # (partition, offset) proven
    pending: list[tuple[int, int]] = field(default_factory=list)
    differences: list[Difference] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    #: the decoded copies (``journal.payload``) that differ from their bytes: (partition,
    #: offset) -> the payload decoded from the bytes, shown instead
    payloads: dict[tuple[int, int], dict[str, Any]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "checkpoints": [{"origin": o, "size": s} for o, s in self.checkpoints],
            "events_verified": [{"partition": p, "offset": o} for p, o in self.covered],
            "events_pending": [{"partition": p, "offset": o} for p, o in self.pending],
            "differences": [d.as_dict() for d in self.differences],
            "problems": list(self.problems),
            "summary": self.summary(),
        }

    def summary(self) -> str:
        where = ", ".join(f"checkpoint {o} {s}" for o, s in self.checkpoints)
        if self.status == MISMATCH:
            what = [d.describe() for d in self.differences] + self.problems
            return "MISMATCH: " + "; ".join(what)
        if self.status == UNVERIFIED:
            return "unverified: " + "; ".join(self.problems)
        text = f"verified: {where} ({len(self.covered)} events)"
        if self.status == PENDING:
            text += f"; pending: {len(self.pending)} events after the newest checkpoint"
        return text


# -- proving the rows ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Signed:
    origin: str
    size: int
    root: bytes


def _signed_checkpoint(conn: psycopg.Connection[Any], topic: str, partition: int,
                       keys: PinnedLogKeys) -> _Signed | str:
    """The partition's newest checkpoint, verified with a pinned key; or why not."""
    stored: StoredCheckpoint | None = latest_checkpoint(conn, topic, partition)
    if stored is None:
        return f"partition {partition} has no checkpoint yet (run `protocolo checkpoint`)"
    verifiers = keys.for_origin(stored.origin)
    if not verifiers:
        return (f"no log verifier key is pinned for {stored.origin}: set {ENV_LOG_VKEYS} "
                "(`protocolo keys show` prints each partition's key)")
    try:
        opened = open_checkpoint(stored.note, verifiers, origin=stored.origin)
        _, note_topic, note_partition = parse_log_origin(opened.checkpoint.origin)
    except EvidenceError as exc:
        return f"MISMATCH:partition {partition}: its newest checkpoint does not verify with the pinned key ({exc})"
    if (note_topic, note_partition) != (topic, partition):
        return f"MISMATCH:partition {partition}: its newest checkpoint is one of {opened.checkpoint.origin}"
    return _Signed(opened.checkpoint.origin, opened.checkpoint.size, opened.checkpoint.root)


def _prove_partition(conn: psycopg.Connection[Any], topic: str, partition: int, signed: _Signed,
                     rows: Sequence[dict[str, Any]], result: ContactVerification) -> None:
    """Prove every row of one partition into its signed checkpoint (one node query)."""
    plans: list[tuple[dict[str, Any], ProofPlan]] = []
    for row in rows:
        if row["leaf_index"] >= signed.size:
            result.pending.append((partition, row["offset"]))
        else:
            plans.append((row, inclusion_nodes(row["leaf_index"], signed.size)))
    wanted: list[NodeId] = sorted({n for _, plan in plans for n in plan.nodes})
    try:
        hashes = dict(zip(wanted, node_reader(conn, topic, partition)(wanted), strict=True)) if wanted else {}
    except EvidenceError as exc:
        result.problems.append(f"partition {partition}: the stored tree cannot prove its rows ({exc})")
        return
    for row, plan in plans:
        leaf = record_leaf_hash(topic, partition, row["offset"], row["record_key"], row["record_value"])
        try:
            verify_inclusion(leaf, row["leaf_index"], signed.size,
                             plan.assemble([hashes[n] for n in plan.nodes]), signed.root)
        except EvidenceError:
            result.problems.append(f"the event at partition {partition} offset {row['offset']} is not what "
                                   f"checkpoint {signed.origin} {signed.size} signed at leaf {row['leaf_index']}")
            continue
        result.covered.append((partition, row["offset"]))


# -- folding the state --------------------------------------------------------------------


@dataclass(frozen=True)
class _Event:
    partition: int
    offset: int
    event_type: str
    occurred_at: datetime
    protocol_number: str | None
    body: dict[str, Any]


def _decode(rows: Sequence[dict[str, Any]], catalogue: SchemaCatalogue,
            result: ContactVerification) -> list[_Event]:
    """The events from their stored bytes, first occurrence of each event id only, in
    (partition, offset) order, as the projector applies them."""
    seen: set[str] = set()
    events = []
    for row in sorted(rows, key=lambda r: (r["partition"], r["offset"])):
        try:
            decoded = catalogue.decode(bytes(row["record_value"]))
        except (DecodeError, KeyError, ValueError) as exc:
            result.problems.append(f"the event at partition {row['partition']} offset {row['offset']} "
                                   f"does not decode: {exc}")
            continue
        _check_payload(row, decoded.record, result)
        meta = decoded.record["meta"]
        if str(meta["event_id"]) in seen:
            continue
        seen.add(str(meta["event_id"]))
        events.append(_Event(row["partition"], row["offset"], decoded.event_type, meta["occurred_at"],
                             meta.get("protocol_number"), decoded.record))
    return events


def _check_payload(row: dict[str, Any], record: dict[str, Any], result: ContactVerification) -> None:
    """The row's decoded copy against its bytes: a lie there would be shown in the timeline."""
    recomputed = json.loads(to_json(record))
    if row["payload"] == recomputed:
        return
    where = f"partition={row['partition']} offset={row['offset']}"
    detail = first_difference(row["payload"], recomputed) or "payload differs"
    path, _, _ = detail.partition(":")
    shown = _at_path(row["payload"], path)
    result.differences.append(Difference("journal", where, path, shown, _at_path(recomputed, path)))
    result.payloads[(int(row["partition"]), int(row["offset"]))] = recomputed


def _at_path(value: Any, path: str) -> Any:
    for part in path.split(".")[1:]:
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _profile(name: str | None, at: datetime | None) -> PolicyProfile | None:
    if name is None or at is None:
        return None
    try:
        return profile_in_force(name, at)
    except PolicyError:
        return None


def _fold_interaction(events: Sequence[_Event]) -> dict[str, Any]:
    state: dict[str, Any] = dict.fromkeys(INTERACTION_FIELDS)
    state["note_count"] = 0
    kinds = {"PROTOCOL_NUMBER": "protocol_disclosed_at", "RECORDING_NOTICE": "recording_notice_at",
             "PROTOCOL_CONFIRMATION": "protocol_confirmed_at"}
    for e in events:
        b = e.body
        if e.event_type == "ContactOpened" and state["opened_at"] is None:
            state.update({k: b.get(k) for k in ("channel", "direction", "service_type", "agent_id", "subject",
                                                "recorded", "language")})
            state["opened_at"] = e.occurred_at
            profile = _profile(b.get("policy_profile") or profile_for_service(b["service_type"]), e.occurred_at)
            state["policy_profile"] = profile.key if profile else None
        elif e.event_type == "DisclosureMade" and b.get("kind") in kinds:
            column = kinds[b["kind"]]
            state[column] = min(filter(None, (state[column], e.occurred_at)))
        elif e.event_type == "ContactClosed":
            state.update(closed_at=e.occurred_at, outcome=b.get("outcome"), summary=b.get("summary"))
        elif e.event_type == "NoteAdded":
            state["note_count"] += 1
    return state


def _compliance(state: dict[str, Any]) -> dict[str, Any] | None:
    opened = state["opened_at"]
    profile = _profile((state["policy_profile"] or "").split("@")[0] or None, opened)
    if opened is None or profile is None:
        return None
    start = opened + timedelta(seconds=profile.start_disclosure_seconds)

    def by(moment: datetime | None, limit: datetime) -> bool:
        return moment is not None and moment <= limit

    return {
        "protocol_disclosed_at_start": by(state["protocol_disclosed_at"], start),
        "recording_notice_at_start": by(state["recording_notice_at"], start) if state["recorded"] else None,
        "protocol_confirmed_in_time": by(state["protocol_confirmed_at"],
                                         opened + timedelta(hours=profile.protocol_confirmation_hours)),
    }


def _fold_recordings(events: Sequence[_Event], opened_at: datetime | None) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    deleted: dict[str, _Event] = {}
    for e in events:
        b = e.body
        if e.event_type == "RecordingCaptured" and b["recording_id"] not in found:
            profile = _profile(b.get("retention_profile"), e.occurred_at)
            found[b["recording_id"]] = {
                "media_uri": b.get("media_uri"), "sha256": b.get("sha256"), "duration_ms": b.get("duration_ms"),
                "captured_at": e.occurred_at, "retention_profile": profile.key if profile else None,
                "retention_days": b.get("retention_days"),
                "retain_until": (opened_at or e.occurred_at) + timedelta(days=b.get("retention_days") or 0),
            }
        elif e.event_type == "RecordingDeleted":
            deleted.setdefault(b["recording_id"], e)
    for recording_id, r in found.items():
        d = deleted.get(recording_id)
        r.update(status="deleted" if d else "retained", deleted_at=d.occurred_at if d else None,
                 deletion_reason=d.body.get("reason") if d else None)
    return found


def _fold_holds(events: Sequence[_Event]) -> dict[str, dict[str, Any]]:
    holds: dict[str, dict[str, Any]] = {}
    for e in events:
        b = e.body
        if e.event_type not in ("LegalHoldPlaced", "LegalHoldReleased"):
            continue
        h = holds.setdefault(b["hold_id"], dict.fromkeys(HOLD_FIELDS))
        if e.event_type == "LegalHoldPlaced" and h["placed_at"] is None:
            h.update(case_reference=b.get("case_reference"), placed_by=b.get("placed_by"), placed_at=e.occurred_at)
        elif e.event_type == "LegalHoldReleased" and h["released_at"] is None:
            h.update(released_at=e.occurred_at, released_by=b.get("released_by"), release_reason=b.get("reason"))
    return holds


def _request_event(r: dict[str, Any], e: _Event) -> None:
    b = e.body
    if e.event_type == "RetrievalRequested" and r["requested_at"] is None:
        r.update(kind=b.get("kind"), requested_at=e.occurred_at, requested_via=b.get("requested_via"),
                 delivery_channel=b.get("delivery_channel"), protocol=e.protocol_number)
    elif e.event_type == "RetrievalLocated":
        r["located_at"] = e.occurred_at  # the last location holds
    elif e.event_type == "RetrievalFulfilled" and r["fulfilled_at"] is None:
        r.update(fulfilled_at=e.occurred_at, delivered_sha256=b.get("delivered_sha256"))
    elif e.event_type == "RetrievalRejected" and r["rejected_at"] is None:
        r.update(rejected_at=e.occurred_at, rejection_reason=b.get("reason"))


def _fold_requests(events: Sequence[_Event], interaction: dict[str, Any]) -> dict[str, dict[str, Any]]:
    requests: dict[str, dict[str, Any]] = {}
    for e in events:
        if e.event_type.startswith("Retrieval"):
            r = requests.setdefault(str(e.body["request_id"]), {**dict.fromkeys(REQUEST_FIELDS), "protocol": None})
            _request_event(r, e)
    for r in requests.values():
        fulfilled, rejected = r["fulfilled_at"], r["rejected_at"]
        r["status"] = ("fulfilled" if fulfilled and (rejected is None or fulfilled <= rejected) else
                       "rejected" if rejected else "located" if r["located_at"] else "requested")
        own = r.pop("protocol") is not None and interaction["policy_profile"]
        profile = _profile((interaction["policy_profile"] or "").split("@")[0] if own else DEFAULT_PROFILE,
                           interaction["opened_at"] if own else r["requested_at"])
        if profile is not None and r["requested_at"] is not None:
            r["due_at"] = r["requested_at"] + (timedelta(hours=profile.history_delivery_hours)
                                               if r["kind"] == "HISTORY" else
                                               timedelta(days=profile.recording_delivery_days))
    return requests


# -- comparing ----------------------------------------------------------------------------


def _compare_rows(result: ContactVerification, table: str, id_column: str, view_rows: Sequence[dict[str, Any]],
                  folded: dict[str, dict[str, Any]], columns: Sequence[str]) -> None:
    shown = {str(r[id_column]): r for r in view_rows}
    for key in sorted(set(shown) | set(folded)):
        name = f"{id_column}={key}"
        if key not in folded:
            result.differences.append(Difference(table, name, "*", "present", "no verified event gives it"))
        elif key not in shown:
            result.differences.append(Difference(table, name, "*", "absent", "present"))
        else:
            for column in columns:
                if column in shown[key] and shown[key][column] != folded[key][column]:
                    result.differences.append(Difference(table, name, column, shown[key][column],
                                                         folded[key][column]))


def _compare(result: ContactVerification, timeline: Timeline, events: Sequence[_Event]) -> None:
    interaction = _fold_interaction([e for e in events if e.protocol_number == timeline.protocol_number])
    view = timeline.interaction or {}
    key = f"protocol_number={timeline.protocol_number}"
    for column in INTERACTION_FIELDS:
        if column in view and view[column] != interaction[column]:
            result.differences.append(Difference("interactions", key, column, view[column], interaction[column]))
    compliance = _compliance(interaction)
    if compliance is not None and timeline.compliance is not None:
        for column in COMPLIANCE_FIELDS:
            if timeline.compliance.get(column) != compliance[column]:
                result.differences.append(Difference("interaction_compliance", key, column,
                                                     timeline.compliance.get(column), compliance[column]))
    own = [e for e in events if e.protocol_number == timeline.protocol_number]
    _compare_rows(result, "recordings", "recording_id", timeline.recordings,
                  _fold_recordings(own, interaction["opened_at"]), RECORDING_FIELDS)
    _compare_rows(result, "legal_holds", "hold_id", timeline.holds, _fold_holds(own), HOLD_FIELDS)
    _compare_rows(result, "retrieval_requests", "request_id", timeline.requests,
                  _fold_requests(events, interaction), REQUEST_FIELDS)


def verify_contact(conn: psycopg.Connection[Any], topic: str, timeline: Timeline, keys: PinnedLogKeys,
                   catalogue: SchemaCatalogue) -> ContactVerification:
    """Prove the contact's rows into the newest signed checkpoints and compare the views
    with the state folded from them. Reads only."""
    result = ContactVerification(timeline.protocol_number)
    positions = [(int(e["partition"]), int(e["offset"])) for e in timeline.events]
    rows = journal_records(conn, topic, positions)
    by_partition: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        by_partition.setdefault(int(row["partition"]), []).append(row)
    unverified: list[str] = []
    for partition in sorted(by_partition):
        signed = _signed_checkpoint(conn, topic, partition, keys)
        if isinstance(signed, str):
            (result.problems if signed.startswith("MISMATCH:") else unverified).append(
                signed.removeprefix("MISMATCH:"))
            continue
        result.checkpoints.append((signed.origin, signed.size))
        _prove_partition(conn, topic, partition, signed, by_partition[partition], result)
    _compare(result, timeline, _decode(rows, catalogue, result))
    if result.differences or result.problems:
        result.status = MISMATCH
    elif unverified:
        result.status, result.problems = UNVERIFIED, unverified
    elif result.pending:
        result.status = PENDING
    return result


def overlay_verified(timeline: Timeline, result: ContactVerification) -> None:
    """Replace every value the views got wrong with the verified one, in place: a mismatch
    is never shown as the truth."""
    tables = {"interactions": [timeline.interaction] if timeline.interaction else [],
              "interaction_compliance": [timeline.compliance] if timeline.compliance else [],
              "recordings": timeline.recordings, "legal_holds": timeline.holds,
              "retrieval_requests": timeline.requests}
    for e in timeline.events:
        decoded = result.payloads.get((int(e["partition"]), int(e["offset"])))
        if decoded is not None:
            e["payload"] = decoded
    for d in result.differences:
        if d.column == "*" or d.table == "journal":
            continue
        id_column, _, key = d.key.partition("=")
        for row in tables.get(d.table, []):
            if d.table in ("interactions", "interaction_compliance") or str(row.get(id_column)) == key:
                row[d.column] = d.verified


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)
