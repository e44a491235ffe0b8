"""One contact through every event type, on a real topic: the world the verified-read and
view-check tests tamper with. Times are fixed relative to now, so every view row the
contact gets is known (the contact opened 200 days ago; its recording captured, requested,
delivered, held, released and deleted; an access recorded and an approval decided).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from helpers_flow import CPF, contact_opened, now_s, recording_captured

from protocolo.producers.protocol_issuer import ProtocolIssuer
from protocolo.producers.publisher import Event, Receipt

CODE = "C-VIEW-0001"
NAME = "Ana Beatriz Souza"


@dataclass
class Contact:
    protocol: str
    recording: str
    hold: str
    requests: tuple[str, str]
    approval: str
    access: str
    cpf_index: str
    code_index: str
    receipts: list[Receipt]


def publish_contact(rt: Any) -> Contact:
    """Publish the contact's events (one partition: they share the protocol number's key)."""
    with ProtocolIssuer(rt.database_url, block_size=5) as issuer:
        p = issuer.issue()
    t0 = now_s() - timedelta(days=200)
    rec, hold = f"rec-{uuid.uuid4().hex[:8]}", f"hold-{uuid.uuid4().hex[:8]}"
    captured = recording_captured(rec, p)
    req_a, req_b = str(uuid.uuid4()), str(uuid.uuid4())
    approval, access = str(uuid.uuid4()), str(uuid.uuid4())
    sealer = rt.sealer()
    cpf_index, code_index = sealer.index.cpf(CPF), sealer.index.customer_code(CODE)

    def at(**delta: float) -> datetime:
        return t0 + timedelta(**delta)

    def on_p(event_type: str, fields: dict[str, Any], when: datetime) -> Event:
        return Event(event_type, fields, protocol_number=p, occurred_at=when)

    events = [
        on_p("ContactOpened", contact_opened({"cpf": CPF, "customer_code": CODE, "name": NAME}), at()),
        on_p("DisclosureMade", {"kind": "RECORDING_NOTICE", "medium": "IVR_PROMPT"}, at(seconds=3)),
        on_p("DisclosureMade", {"kind": "PROTOCOL_NUMBER", "medium": "IVR_PROMPT"}, at(seconds=8)),
        on_p("ContactClosed", {"outcome": "RESOLVED", "summary": "refund confirmed"}, at(minutes=4)),
        on_p("RecordingCaptured", captured, at(minutes=4, seconds=2)),
        on_p("DisclosureMade", {"kind": "PROTOCOL_CONFIRMATION", "medium": "SMS"}, at(minutes=10)),
        on_p("NoteAdded", {"agent_id": "agent-007", "agent_name": "Carla Lima", "text": "refund promised"},
             at(hours=1)),
        on_p("RetrievalRequested", {"request_id": req_a, "kind": "RECORDING", "requested_via": "APP",
                                    "delivery_channel": "EMAIL"}, at(days=2)),
        on_p("RetrievalLocated", {"request_id": req_a, "protocol_numbers": [p], "recording_ids": [rec]},
             at(days=3)),
        on_p("RetrievalFulfilled", {"request_id": req_a, "recording_id": rec,
                                    "delivered_sha256": captured["sha256"], "delivered_via": "EMAIL"}, at(days=5)),
        on_p("RetrievalRequested", {"request_id": req_b, "kind": "RECORDING", "requested_via": "PHONE",
                                    "delivery_channel": "APP"}, at(days=6)),
        on_p("RetrievalRejected", {"request_id": req_b, "reason": "IDENTITY_NOT_VERIFIED",
                                   "detail": "could not confirm the holder"}, at(days=7)),
        on_p("LegalHoldPlaced", {"hold_id": hold, "case_reference": "Procon-123456",
                                 "placed_by": "legal@company"}, at(days=10)),
        on_p("AccessRecorded", {"access_id": access, "actor": "ana", "role": "SUPERVISOR", "action": "UNMASK",
                                "subject_ref": cpf_index, "target": None, "purpose": "Procon-123456",
                                "source_address": "10.0.0.7"}, at(days=11)),
        on_p("ApprovalRequested", {"approval_id": approval, "action": "EARLY_DELETION", "requested_by": "ana",
                                   "requester_role": "SUPERVISOR", "recording_id": rec, "subject_ref": None,
                                   "reason": "court order"}, at(days=12)),
        on_p("ApprovalDenied", {"approval_id": approval, "denied_by": "bruno", "approver_role": "COMPLIANCE",
                                "reason": "hold in force"}, at(days=13)),
        on_p("LegalHoldReleased", {"hold_id": hold, "released_by": "legal@company", "reason": "case closed"},
             at(days=40)),
        on_p("RecordingDeleted", {"recording_id": rec, "sha256": captured["sha256"],
                                  "reason": "RETENTION_EXPIRED", "authorised_by": "retention job"}, at(days=190)),
    ]
    with rt.publisher("view-tests") as publisher:
        receipts = publisher.publish_many(events)
    return Contact(p, rec, hold, (req_a, req_b), approval, access, cpf_index, code_index, receipts)
