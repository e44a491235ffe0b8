"""The compliance report of a period, computed from verified events only.

The report is made from an audit export of the period (docs/export-format.md) that has
just passed :func:`~protocolo.attestation.export_verify.verify_export` under the log's keys:
every event it counts is one whose leaf hash folded into the signed roots and whose decoded
form was re-derived from its bytes. No view is read. Each broken rule names the protocol
numbers that broke it with the partition and offset of the contact's opening record (its
evidence in the export), so any figure can be traced to signed bytes.

Rules covered (DOMAIN.md; the policy profile in force when the contact opened, as the
projector resolves it): the protocol number told at the start, the recording notice given
at the start (recorded contacts), the protocol confirmed in writing in time (pending while
its deadline is after the period's end), and each recording deletion: not before the
retention the capture stated (counted from the contact's opening), unless an
EARLY_DELETION approval for that recording was granted before the deletion by someone other
than the one who asked for it (the two-person rule, judged on the log whoever published the
deletion), and never while a legal hold placed on the contact was in force; each retrieval request answered (fulfilled or
rejected) within its deadline (history hours or recording days of the profile), pending
while the deadline is after the period's end.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastavro import reader

from protocolo.core.policy import PolicyError, profile_for_service, profile_in_force, profile_named

RULES = (
    ("protocol_told_at_start", "Protocol number told at the start", "Protocolo informado no início"),
    ("recording_notice_at_start", "Recording notice at the start", "Aviso de gravação no início"),
    ("protocol_confirmed_in_time", "Protocol confirmed in writing in time", "Protocolo confirmado por escrito no prazo"),
    ("recording_deleted_lawfully", "Recording deleted only after its retention, never under a hold",
     "Gravação apagada só após a retenção e nunca sob bloqueio judicial"),
    ("request_answered_in_time", "Retrieval request delivered or rejected within the deadline",
     "Pedido de gravação/histórico entregue ou recusado no prazo"),
    ("demand_answered_in_time", "Demand answered (contact closed) within the deadline",
     "Demanda respondida (atendimento encerrado) no prazo"),
)


@dataclass
class Request:
    request_id: str
    kind: str
    requested_at: datetime
    protocol: str | None
    partition: int = -1  # where the RetrievalRequested record is in the export
    offset: int = -1
    answered_at: datetime | None = None
    answer: str | None = None  # FULFILLED or REJECTED: reason


@dataclass
class Contact:
    protocol: str
    partition: int
    offset: int
    opened_at: datetime
    service_type: str
    channel: str
    recorded: bool
    profile: str
    start_seconds: int
    confirmation_hours: int
    answer_days: int = 7  # the profile's demand_answer_days
    closed_at: datetime | None = None  # the first ContactClosed: the demand's answer
    disclosed: dict[str, datetime] = field(default_factory=dict)
    retention: dict[str, int] = field(default_factory=dict)  # recording id -> retention days
    deletions: dict[str, datetime] = field(default_factory=dict)  # recording id -> first deletion
    holds: dict[str, list[datetime | None]] = field(default_factory=dict)  # hold id -> [placed, released]
    #: recording id -> when an EARLY_DELETION approval of two different people was granted
    two_person_grants: dict[str, list[datetime]] = field(default_factory=dict)


@dataclass
class Approval:
    """An approval as the log tells it: its request and its first decision (as the
    ``approvals`` view keeps it)."""

    action: str | None = None
    recording_id: str | None = None
    requested_by: str | None = None
    decided_at: datetime | None = None
    decision: str | None = None
    decided_by: str | None = None

    def grants_early_deletion(self) -> bool:
        return (self.action == "EARLY_DELETION" and self.decision == "GRANTED" and self.recording_id is not None
                and bool(self.requested_by) and bool(self.decided_by) and self.requested_by != self.decided_by)


@dataclass
class RuleFigure:
    rule: str
    applicable: int = 0
    broken: int = 0
    pending: int = 0
    protocols: list[dict[str, Any]] = field(default_factory=list)

    @property
    def rate(self) -> float | None:
        """Share of the applicable contacts that kept the rule."""
        judged = self.applicable - self.pending
        return None if judged == 0 else round((judged - self.broken) / judged, 4)

    def as_json(self) -> dict[str, Any]:
        return {"rule": self.rule, "applicable": self.applicable, "broken": self.broken,
                "pending": self.pending, "rate": self.rate, "broken_by": self.protocols}


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _profile(payload: dict[str, Any], opened: datetime) -> tuple[str, int, int, int]:
    name = payload.get("policy_profile") or profile_for_service(str(payload.get("service_type") or ""))
    try:
        profile = profile_in_force(str(name), opened)
    except PolicyError:
        profile = profile_named(str(name))
    return (profile.key, profile.start_disclosure_seconds, profile.protocol_confirmation_hours,
            profile.demand_answer_days)


def verified_events(export: Path) -> Iterator[tuple[int, int, str, dict[str, Any]]]:
    """``(partition, offset, event type, decoded event)`` of every journalled record of a
    verified export, in partition and leaf order."""
    manifest = json.loads((export / "manifest.json").read_bytes())
    for entry in manifest["partitions"]:
        with open(export / entry["data"], "rb") as f:
            for record in reader(f):
                assert isinstance(record, dict)
                if record["event"] is not None:
                    yield record["partition"], record["offset"], record["event_type"], json.loads(record["event"])


def fold_requests(export: Path) -> dict[str, Request]:
    """Retrieval requests made in the export, with their first answer (fulfilled or rejected)."""
    requests: dict[str, Request] = {}
    answers: list[tuple[str, datetime, str]] = []
    for partition, offset, event_type, event in verified_events(export):
        when = _time(event["meta"]["occurred_at"])
        if event_type == "RetrievalRequested":
            requests.setdefault(str(event["request_id"]), Request(
                str(event["request_id"]), str(event["kind"]), when, event["meta"].get("protocol_number"),
                partition, offset))
        elif event_type == "RetrievalFulfilled":
            answers.append((str(event["request_id"]), when, "FULFILLED"))
        elif event_type == "RetrievalRejected":
            answers.append((str(event["request_id"]), when, f"REJECTED: {event.get('reason')}"))
    for rid, when, answer in answers:
        request = requests.get(rid)
        if request is not None and (request.answered_at is None or when < request.answered_at):
            request.answered_at, request.answer = when, answer
    return requests


def _due(request: Request, profile: str) -> datetime:
    name, _, number = profile.partition("@")
    policy = profile_named(name) if not number.isdigit() else _version(name, int(number))
    return request.requested_at + (timedelta(hours=policy.history_delivery_hours) if request.kind == "HISTORY"
                                   else timedelta(days=policy.recording_delivery_days))


def _request_verdict(request: Request, profile: str, period_end: datetime) -> str:
    due = _due(request, profile)
    if request.answered_at is not None:
        return "kept" if request.answered_at <= due else "broken"
    return "pending" if due > period_end else "broken"


def _version(name: str, number: int) -> Any:
    from protocolo.core.policy import profile_version

    return profile_version(name, number)


def fold_contacts(export: Path) -> dict[str, Contact]:
    contacts: dict[str, Contact] = {}
    later: list[tuple[str, str, datetime, dict[str, Any]]] = []
    approvals: dict[str, Approval] = {}
    for partition, offset, event_type, event in verified_events(export):
        if event_type in _APPROVAL_EVENTS:
            _note_approval(approvals, event_type, event)
            continue
        protocol = (event.get("meta") or {}).get("protocol_number")
        if not protocol:
            continue
        when = _time(event["meta"]["occurred_at"])
        if event_type == "ContactOpened" and protocol not in contacts:
            key, seconds, hours, days = _profile(event, when)
            contacts[protocol] = Contact(protocol, partition, offset, when, str(event.get("service_type")),
                                         str(event.get("channel")), bool(event.get("recorded")), key,
                                         seconds, hours, days)
        else:
            later.append((protocol, event_type, when, event))
    for protocol, event_type, when, event in later:  # events may precede their contact's opening
        contact = contacts.get(protocol)
        if contact is not None:
            _apply(contact, event_type, when, event)
    grants: dict[str, list[datetime]] = {}
    for approval in approvals.values():
        if approval.grants_early_deletion() and approval.decided_at is not None:
            grants.setdefault(str(approval.recording_id), []).append(approval.decided_at)
    for contact in contacts.values():
        contact.two_person_grants = {rid: grants[rid] for rid in contact.deletions if rid in grants}
    return contacts


_APPROVAL_EVENTS = frozenset({"ApprovalRequested", "ApprovalGranted", "ApprovalDenied"})


def _note_approval(approvals: dict[str, Approval], event_type: str, event: dict[str, Any]) -> None:
    """The request as first logged; the decision taken first (by its time), as the view does."""
    approval = approvals.setdefault(str(event["approval_id"]), Approval())
    if event_type == "ApprovalRequested":
        if approval.action is None:
            approval.action, approval.requested_by = str(event["action"]), str(event["requested_by"])
            approval.recording_id = event.get("recording_id")
        return
    when = _time(event["meta"]["occurred_at"])
    if approval.decided_at is None or when < approval.decided_at:
        approval.decided_at = when
        approval.decision = "GRANTED" if event_type == "ApprovalGranted" else "DENIED"
        approval.decided_by = str(event.get("approved_by") or event.get("denied_by") or "")


def _apply(contact: Contact, event_type: str, when: datetime, event: dict[str, Any]) -> None:
    if event_type == "DisclosureMade":
        kind = str(event.get("kind"))
        if kind not in contact.disclosed or when < contact.disclosed[kind]:
            contact.disclosed[kind] = when
    elif event_type == "RecordingCaptured":
        contact.retention.setdefault(str(event["recording_id"]), int(event["retention_days"]))
    elif event_type == "RecordingDeleted":
        rid = str(event["recording_id"])
        if rid not in contact.deletions or when < contact.deletions[rid]:
            contact.deletions[rid] = when
    elif event_type == "ContactClosed":
        if contact.closed_at is None or when < contact.closed_at:
            contact.closed_at = when
    elif event_type == "LegalHoldPlaced":
        contact.holds.setdefault(str(event["hold_id"]), [None, None])[0] = when
    elif event_type == "LegalHoldReleased":
        contact.holds.setdefault(str(event["hold_id"]), [None, None])[1] = when


def _deletion_verdicts(contact: Contact) -> list[str]:
    """One verdict per deleted recording of the contact whose capture is known."""
    verdicts = []
    for rid, deleted in sorted(contact.deletions.items()):
        if rid not in contact.retention:
            continue
        early = (deleted < contact.opened_at + timedelta(days=contact.retention[rid])
                 and not any(granted <= deleted for granted in contact.two_person_grants.get(rid, ())))
        held = any(placed is not None and placed <= deleted and (released is None or released > deleted)
                   for placed, released in contact.holds.values())
        verdicts.append("broken" if early or held else "kept")
    return verdicts


def _answer_verdict(contact: Contact, period_end: datetime) -> str:
    """A demand is answered when its contact is closed (the company's answer, DOMAIN.md:
    7 calendar days under the 2022 decree, the profile's ``demand_answer_days``); still open
    is pending until the deadline, broken after it."""
    deadline = contact.opened_at + timedelta(days=contact.answer_days)
    if contact.closed_at is not None:
        return "kept" if contact.closed_at <= deadline else "broken"
    return "pending" if deadline > period_end else "broken"


def _judge(contact: Contact, rule: str, period_end: datetime) -> str | None:
    """``kept``, ``broken``, ``pending``, or None when the rule does not apply."""
    start = timedelta(seconds=contact.start_seconds)
    if rule == "protocol_told_at_start":
        told = contact.disclosed.get("PROTOCOL_NUMBER")
        return "kept" if told is not None and told <= contact.opened_at + start else "broken"
    if rule == "recording_notice_at_start":
        if not contact.recorded:
            return None
        notice = contact.disclosed.get("RECORDING_NOTICE")
        return "kept" if notice is not None and notice <= contact.opened_at + start else "broken"
    deadline = contact.opened_at + timedelta(hours=contact.confirmation_hours)
    confirmed = contact.disclosed.get("PROTOCOL_CONFIRMATION")
    if confirmed is not None and confirmed <= deadline:
        return "kept"
    return "pending" if deadline > period_end else "broken"


def compliance_report(export: Path) -> dict[str, Any]:
    """The report's figures (JSON-ready), from a verified export."""
    manifest = json.loads((export / "manifest.json").read_bytes())
    period_end = _time(manifest["period"]["to"])
    groups: dict[tuple[str, str, str], dict[str, RuleFigure]] = defaultdict(
        lambda: {rule: RuleFigure(rule) for rule, _, _ in RULES})
    daily: dict[str, dict[str, list[int]]] = defaultdict(dict)  # day -> rule -> [kept, judged]
    contacts = fold_contacts(export)
    for contact in sorted(contacts.values(), key=lambda c: c.protocol):
        figures = groups[(contact.service_type, contact.channel, contact.profile)]
        judged = [(rule, _judge(contact, rule, period_end)) for rule, _, _ in RULES[:3]]
        judged += [("recording_deleted_lawfully", v) for v in _deletion_verdicts(contact)]
        judged.append(("demand_answered_in_time", _answer_verdict(contact, period_end)))
        evidence = {"protocol_number": contact.protocol, "partition": contact.partition, "offset": contact.offset}
        day = contact.opened_at.astimezone(UTC).date().isoformat()
        for rule, verdict in judged:
            _count(figures[rule], verdict, evidence)
            if verdict in ("kept", "broken"):
                tally = daily[day].setdefault(rule, [0, 0])
                tally[0] += verdict == "kept"
                tally[1] += 1
    sla: list[dict[str, Any]] = []
    for request in sorted(fold_requests(export).values(), key=lambda r: r.request_id):
        owner = contacts.get(request.protocol or "")
        if owner is None:  # a request by CPF or code, not located in this export: the default profile
            key = profile_in_force(profile_for_service(""), request.requested_at).key
            group = ("(no contact)", "-", key)
        else:
            group = (owner.service_type, owner.channel, owner.profile)
        evidence = {"protocol_number": request.protocol or "", "request_id": request.request_id,
                    "answer": request.answer,
                    "partition": request.partition, "offset": request.offset}
        _count(groups[group]["request_answered_in_time"], _request_verdict(request, group[2], period_end), evidence)
        if request.answered_at is not None:  # how much of its deadline the answer used (1.0 = on the day)
            allowed = (_due(request, group[2]) - request.requested_at).total_seconds()
            sla.append({"request_id": request.request_id, "kind": request.kind,
                        "share_of_deadline": round((request.answered_at - request.requested_at).total_seconds()
                                                   / allowed, 4)})
    return {
        "period": manifest["period"], "export_id": manifest["export_id"],
        "export_manifest_sha256": _sha256(export / "manifest.json"),
        "rules": [{"rule": r, "en": en, "pt": pt} for r, en, pt in RULES],
        "request_sla": sla,
        "daily": {day: {rule: {"kept": k, "judged": n} for rule, (k, n) in sorted(rules.items())}
                  for day, rules in sorted(daily.items())},
        "groups": [{"service_type": s, "channel": c, "policy_profile": p,
                    "figures": [f.as_json() for f in figures.values()]}
                   for (s, c, p), figures in sorted(groups.items())],
    }


def _count(figure: RuleFigure, verdict: str | None, evidence: dict[str, Any]) -> None:
    if verdict is None:
        return
    figure.applicable += 1
    if verdict == "pending":
        figure.pending += 1
    elif verdict == "broken":
        figure.broken += 1
        figure.protocols.append(evidence)


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()
