"""A realistic call-centre day, as the events the company's services would publish.

Deterministic for a seed. The day lies ``days_ago`` days in the past (default 120), so
that by "now" the 90-day recordings of SAC services are past retention while the 180-day
telecom ones are not: the retention sweeper then has real work, and legal holds really
stop some deletions.

What a day holds: contacts across every channel and service type, the protocol number
told at the start (a few told late or never, which the compliance view must show), the
recording notice and recordings for phone calls, notes with the agent's name for
unrecorded channels, SMS/e-mail confirmations, closings; in the following weeks,
retrieval requests (by protocol, and by CPF without one), their location, delivery
(mostly in time, some late, some rejected, some still open) and legal holds.
"""

from __future__ import annotations

import hashlib
import random
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from protocolo.core.cpf import format_cpf
from protocolo.core.policy import profile_for_service, profile_in_force

from .publisher import Event

BRAZIL = ZoneInfo("America/Sao_Paulo")
CHANNELS = (("PHONE", 55), ("CHAT", 15), ("APP", 10), ("EMAIL", 10), ("WEB_FORM", 10))
SERVICES = (("MOBILE", 30), ("BROADBAND", 20), ("PAY_TV", 15), ("FIXED_LINE", 10), ("BANKING", 20), ("GENERAL", 5))
SUBJECTS = (
    "second copy of the bill", "charge not recognised", "plan change", "cancellation request",
    "technical visit", "slow connection", "refund promised", "card blocked", "contract copy",
    "portability", "signal outage", "installment renegotiation",
)
OUTCOMES = (("RESOLVED", 70), ("UNRESOLVED", 10), ("TRANSFERRED", 8), ("ESCALATED", 7), ("ABANDONED", 5))
FIRST = ("Ana", "Bruno", "Carla", "Diego", "Eduarda", "Felipe", "Gabriela", "Henrique", "Isabela", "João",
         "Larissa", "Marcos", "Natália", "Otávio", "Paula", "Rafael", "Sofia", "Thiago", "Vitória", "Wagner")
LAST = ("Silva", "Santos", "Oliveira", "Souza", "Rodrigues", "Ferreira", "Alves", "Pereira", "Lima", "Gomes",
        "Costa", "Ribeiro", "Martins", "Carvalho", "Almeida")


def _weighted(rng: random.Random, table: tuple[tuple[str, int], ...]) -> str:
    return rng.choices([k for k, _ in table], weights=[w for _, w in table])[0]


def random_cpf(rng: random.Random) -> str:
    while True:
        base = [rng.randrange(10) for _ in range(9)]
        if len(set(base)) > 1:
            break
    for weight_start in (10, 11):
        total = sum(d * (weight_start - i) for i, d in enumerate(base))
        r = total % 11
        base.append(0 if r < 2 else 11 - r)
    return format_cpf("".join(map(str, base)))


@dataclass
class Customer:
    cpf: str | None
    customer_code: str
    name: str


@dataclass
class SimulatedDay:
    """The events of a day and what the demo needs to talk about them."""

    day: datetime
    events: list[Event] = field(default_factory=list)
    contacts: int = 0
    protocols: list[str] = field(default_factory=list)
    sample_protocol: str | None = None
    sample_cpf: str | None = None


def _when(event: Event) -> datetime:
    assert event.occurred_at is not None  # the simulator dates every event it makes
    return event.occurred_at


class CallCentreDay:
    def __init__(
        self,
        issue_protocol: Callable[[], str],  # e.g. a ProtocolIssuer's issue
        contacts: int = 2000,
        seed: int = 6523,
        days_ago: int = 120,
        now: datetime | None = None,
    ) -> None:
        self.issue = issue_protocol
        self.contacts = contacts
        self.rng = random.Random(seed)
        self.now = now or datetime.now(UTC)
        local_day = (self.now - timedelta(days=days_ago)).astimezone(BRAZIL).date()
        self.day = datetime(local_day.year, local_day.month, local_day.day, tzinfo=BRAZIL)
        self.customers = [self._customer(i) for i in range(max(contacts // 3, 1))]

    def _customer(self, i: int) -> Customer:
        rng = self.rng
        return Customer(
            cpf=random_cpf(rng) if rng.random() < 0.9 else None,
            customer_code=f"C{1_000_000 + i * 7 + rng.randrange(7):07d}",
            name=f"{rng.choice(FIRST)} {rng.choice(LAST)}",
        )

    def _start_time(self) -> datetime:
        # Busiest mid-morning and after lunch, 08:00-21:00 local time.
        hour = min(max(self.rng.gauss(13.0, 3.0), 8.0), 20.99)
        return self.day + timedelta(hours=hour)

    def build(self) -> SimulatedDay:
        result = SimulatedDay(day=self.day)
        for _ in range(self.contacts):
            self._contact(result)
        # Per-key order is what Kafka keeps; publishing in time order keeps it realistic.
        result.events.sort(key=_when)
        result.events = [e for e in result.events if _when(e) <= self.now]
        result.contacts = self.contacts
        return result

    def _contact(self, day: SimulatedDay) -> None:
        rng = self.rng
        protocol = self.issue()
        day.protocols.append(protocol)
        channel = _weighted(rng, CHANNELS)
        service = _weighted(rng, SERVICES)
        customer = rng.choice(self.customers)
        identified = rng.random() > 0.03  # some customers never identify themselves
        start = self._start_time()
        recorded = channel == "PHONE"
        agent = None if rng.random() < 0.08 else f"agent-{rng.randrange(1, 121):03d}"
        ident: dict[str, str] = {}
        if identified:
            ident = {"customer_code": customer.customer_code, "name": customer.name}
            if customer.cpf:
                ident["cpf"] = customer.cpf
        add = day.events.append

        def ev(kind: str, at: datetime, fields: dict[str, Any], **meta: Any) -> None:
            add(Event(kind, fields, protocol_number=meta.pop("protocol", protocol), occurred_at=at, **meta))

        ev("ContactOpened", start, {
            "channel": channel, "direction": "INBOUND" if rng.random() < 0.9 else "OUTBOUND",
            "service_type": service, "customer": ident, "agent_id": agent,
            "subject": rng.choice(SUBJECTS), "recorded": recorded,
        })
        told = rng.random()
        if told < 0.97:  # told at the start; a few late, a few never
            ev("DisclosureMade", start + timedelta(seconds=rng.uniform(2, 40)),
               {"kind": "PROTOCOL_NUMBER", "medium": "IVR_PROMPT" if recorded else "SCREEN"})
        elif told < 0.99:
            ev("DisclosureMade", start + timedelta(minutes=rng.uniform(3, 15)),
               {"kind": "PROTOCOL_NUMBER", "medium": "VOICE"})
        if recorded:
            ev("DisclosureMade", start + timedelta(seconds=rng.uniform(1, 10)),
               {"kind": "RECORDING_NOTICE", "medium": "IVR_PROMPT"})
        duration = timedelta(seconds=rng.lognormvariate(5.6, 0.6))
        end = start + duration
        if rng.random() < 0.95:
            ev("DisclosureMade", end + timedelta(minutes=rng.uniform(1, 60 if rng.random() < 0.97 else 2000)),
               {"kind": "PROTOCOL_CONFIRMATION", "medium": "SMS" if rng.random() < 0.7 else "EMAIL"})
        recording = None
        if recorded:
            profile = profile_in_force(profile_for_service(service), start)
            recording = {
                "recording_id": f"rec-{uuid.UUID(int=rng.getrandbits(128))}",
                "media_uri": f"s3://protocolo-recordings/{start:%Y/%m/%d}/{protocol}.opus",
                "sha256": hashlib.sha256(f"audio of {protocol}".encode()).hexdigest(),
                "duration_ms": int(duration.total_seconds() * 1000),
                "retention_profile": profile.name,
                "retention_days": profile.recording_retention_days,
            }
            ev("RecordingCaptured", end + timedelta(seconds=2), recording)
        elif agent:
            ev("NoteAdded", end, {"agent_id": agent, "agent_name": f"{rng.choice(FIRST)} {rng.choice(LAST)}",
                                  "text": f"Customer contacted about {rng.choice(SUBJECTS)}; answered in {channel.lower()}."})
        ev("ContactClosed", end + timedelta(seconds=1), {"outcome": _weighted(rng, OUTCOMES)})
        if recording and day.sample_protocol is None and identified and customer.cpf and told < 0.97:
            day.sample_protocol, day.sample_cpf = protocol, customer.cpf
            self._request_by_protocol(protocol, end, recording, ev, forced="fulfilled")
            self._request_by_cpf(day, customer, protocol, end, recording)
        elif recording and rng.random() < 0.04:
            self._request_by_protocol(protocol, end, recording, ev)
        elif recording and identified and customer.cpf and rng.random() < 0.015:
            self._request_by_cpf(day, customer, protocol, end, recording)
        if recording and rng.random() < 0.012:
            hold = f"hold-{uuid.UUID(int=rng.getrandbits(128))}"
            placed = end + timedelta(days=rng.uniform(3, 60))
            ev("LegalHoldPlaced", placed, {"hold_id": hold, "case_reference": f"Procon-{rng.randrange(10**6):06d}",
                                           "placed_by": "legal@company"})
            if rng.random() < 0.3:
                ev("LegalHoldReleased", placed + timedelta(days=rng.uniform(10, 40)),
                   {"hold_id": hold, "released_by": "legal@company", "reason": "case closed"})

    def _fulfil(self, request_id: str, protocol: str, at: datetime, recording: dict[str, Any], outcome: str,
                emit: Callable[..., None]) -> None:
        rng = self.rng
        located = at + timedelta(hours=rng.uniform(1, 30))
        emit("RetrievalLocated", located, {"request_id": request_id, "protocol_numbers": [protocol],
                                            "recording_ids": [recording["recording_id"]]})
        if outcome == "fulfilled":
            emit("RetrievalFulfilled", at + timedelta(days=rng.uniform(1, 9)),
                 {"request_id": request_id, "recording_id": recording["recording_id"],
                  "delivered_sha256": recording["sha256"], "delivered_via": "EMAIL"})
        elif outcome == "late":
            emit("RetrievalFulfilled", at + timedelta(days=rng.uniform(11, 14)),
                 {"request_id": request_id, "recording_id": recording["recording_id"],
                  "delivered_sha256": recording["sha256"], "delivered_via": "APP"})
        elif outcome == "rejected":
            emit("RetrievalRejected", at + timedelta(days=rng.uniform(1, 5)),
                 {"request_id": request_id, "reason": "IDENTITY_NOT_VERIFIED",
                  "detail": "requester could not confirm the account holder's data"})
        # "open": located but never delivered, overdue by now

    def _request_by_protocol(self, protocol: str, end: datetime, recording: dict[str, Any], ev: Callable[..., None],
                             forced: str | None = None) -> None:
        rng = self.rng
        request_id = str(uuid.UUID(int=rng.getrandbits(128)))
        at = end + timedelta(days=rng.uniform(1, 30))
        ev("RetrievalRequested", at, {
            "request_id": request_id, "kind": "RECORDING", "requested_via": "APP", "delivery_channel": "EMAIL",
        })
        outcome = forced or rng.choices(("fulfilled", "late", "rejected", "open"), weights=(80, 8, 7, 5))[0]
        self._fulfil(request_id, protocol, at, recording, outcome, ev)

    def _request_by_cpf(self, day: SimulatedDay, customer: Customer, protocol: str, end: datetime,
                        recording: dict[str, Any]) -> None:
        """The customer lost the protocol number: the request is keyed by its own id."""
        rng = self.rng
        request_id = str(uuid.UUID(int=rng.getrandbits(128)))
        at = end + timedelta(days=rng.uniform(2, 40))
        def emit(kind: str, at: datetime, fields: dict[str, Any]) -> None:
            day.events.append(Event(kind, fields, protocol_number=None, occurred_at=at))

        emit("RetrievalRequested", at, {
            "request_id": request_id, "kind": "RECORDING", "requested_via": "WEB_FORM",
            "delivery_channel": "EMAIL", "customer": {"cpf": customer.cpf, "name": customer.name},
            "window_from": self.day, "window_to": self.day + timedelta(days=1),
        })
        self._fulfil(request_id, protocol, at, recording, rng.choices(("fulfilled", "late", "open"), weights=(85, 10, 5))[0], emit)


def chunks(events: list[Event], size: int) -> Iterator[list[Event]]:
    for i in range(0, len(events), size):
        yield events[i:i + size]
