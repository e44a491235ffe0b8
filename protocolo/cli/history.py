"""``protocolo history``: find contacts and print their provable timelines."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from kafka.errors import KafkaError

from protocolo.attestation.pinned_log_keys import configured_log_keys
from protocolo.attestation.verified_read import (
    MISMATCH,
    ContactVerification,
    overlay_verified,
    verify_contact,
)
from protocolo.cli import CommandError
from protocolo.core.config import ConfigError
from protocolo.core.cpf import mask_cpf, normalise_cpf
from protocolo.core.errors import EventRejected
from protocolo.core.personal_data import PersonalDataUnavailable
from protocolo.core.protocol_number import format_protocol_number, normalise_protocol_number
from protocolo.core.watermark import projection_lag
from protocolo.projections.history import (
    Timeline,
    protocols_for_customer,
    requests_for_customer,
    timelines,
)
from protocolo.runtime import LedgerReader
from protocolo.schemas.catalogue import SchemaCatalogue

LOCAL = ZoneInfo("America/Sao_Paulo")
EXIT_NOT_FOUND = 1


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "history",
        help="timeline of contacts, by protocol number, CPF or customer code",
        description="Find contacts by protocol number, or without one by CPF or customer code "
        "(optionally within --from/--to), and print each contact's full timeline. "
        "Exit status: 0 found, 1 nothing found, 2 bad input.",
    )
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--protocol", metavar="N", help="protocol number (spaces, dots and dashes allowed)")
    who.add_argument("--cpf", metavar="CPF", help="customer CPF, NNN.NNN.NNN-DD or 11 digits")
    who.add_argument("--customer", metavar="CODE", help="customer code")
    p.add_argument("--from", dest="start", metavar="DATE", help="contacts opened on or after (YYYY-MM-DD or ISO time)")
    p.add_argument("--to", dest="end", metavar="DATE", help="contacts opened on or before (YYYY-MM-DD or ISO time)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


#: Dates the ledger can hold (validation refuses events before 2000); a window outside is
#: a typing mistake, said as such rather than searched.
EARLIEST_DAY = datetime(2000, 1, 1, tzinfo=LOCAL)
LATEST_DAY = datetime(2199, 12, 31, tzinfo=LOCAL)


def parse_when(text: str | None, option: str, upper: bool) -> datetime | None:
    """A date is a whole day in São Paulo time; a datetime without zone is São Paulo time.
    ``upper``: the value ends an inclusive window, returned as the exclusive bound after it."""
    if text is None:
        return None
    try:
        if len(text) == 10:
            day = datetime.fromisoformat(text).date()
            moment = datetime.combine(day, time.min, LOCAL)
        else:
            moment = datetime.fromisoformat(text)
    except ValueError:
        raise CommandError(f"{option} {text!r} is not a date (YYYY-MM-DD) or an ISO 8601 time") from None
    moment = moment if moment.tzinfo else moment.replace(tzinfo=LOCAL)
    if not EARLIEST_DAY <= moment <= LATEST_DAY:
        raise CommandError(f"{option} {text!r} is out of range: give a date from "
                           f"{EARLIEST_DAY:%Y-%m-%d} to {LATEST_DAY:%Y-%m-%d}")
    if len(text) == 10:
        return moment + timedelta(days=1) if upper else moment
    # Both ends are inclusive; the query's upper bound is exclusive.
    return moment + timedelta(microseconds=1) if upper else moment


def run(args: argparse.Namespace) -> int:
    if args.protocol and (args.start or args.end):
        raise CommandError("--from/--to select contacts found by --cpf or --customer; a protocol "
                           "number names one contact already (drop --from/--to)")
    start = parse_when(args.start, "--from", upper=False)
    end = parse_when(args.end, "--to", upper=True)
    if start and end and start >= end:
        raise CommandError("--from must be before --to")
    reader, search = _search(args, start, end)
    found, requests, ledger_of, checks = _collect(reader, search)
    lag_note = _lag_note(reader)
    customers = {t.protocol_number: _customer(reader.sealer(), t) for t in found}
    several = len(reader.ledgers) > 1
    if args.json:
        report = _as_json(search.query, found, requests, customers, checks)
        report["projection_lag"] = lag_note
        if several:
            report["ledgers"] = {t.protocol_number: ledger_of[t.protocol_number] for t in found}
        print(json.dumps(report, default=_json_default, indent=2, ensure_ascii=False))
    else:
        _print_text(found, requests, customers, ledger_of if several else {}, checks)
    _warn_lag(lag_note)
    if not found and not requests:
        what = ", ".join(f"{k} {v}" for k, v in search.query.items() if v and k != "window")
        print(f"protocolo: no contact found for {what}", file=sys.stderr)
        return EXIT_NOT_FOUND
    return 0


@dataclass
class _Search:
    """What was asked: one protocol, or a customer's blind index within a window."""

    query: dict[str, Any]
    protocol: str | None = None
    kind: str | None = None
    value: str | None = None
    start: datetime | None = None
    end: datetime | None = None


def _search(args: argparse.Namespace, start: datetime | None, end: datetime | None) -> tuple[LedgerReader, _Search]:
    try:
        protocol = normalise_protocol_number(args.protocol, "--protocol") if args.protocol else None
        reader = LedgerReader.open()
        sealer = reader.sealer()
        if protocol:
            search = _Search({"protocol_number": protocol}, protocol=protocol)
        elif args.cpf:
            search = _Search({"cpf": mask_cpf(normalise_cpf(args.cpf, "--cpf"))}, kind="cpf",
                             value=sealer.index.cpf(args.cpf, "--cpf"))
        else:
            search = _Search({"customer_code": args.customer}, kind="customer_code",
                             value=sealer.index.customer_code(args.customer, "--customer"))
    except (EventRejected, ConfigError) as exc:
        raise CommandError(str(exc)) from exc
    search.start, search.end = start, end
    if args.start or args.end:
        # as the user gave it, and the exact bounds searched
        search.query |= {"from": args.start, "to": args.end,
                         "window": {"from": start.isoformat() if start else None,
                                    "to_exclusive": end.isoformat() if end else None}}
    return reader, search


def _collect(reader: LedgerReader, search: _Search) -> tuple[list[Timeline], list[dict[str, Any]], dict[str, str],
                                                              dict[str, ContactVerification]]:
    """Every ledger's timelines (a protocol belongs to the first ledger that has it), each
    checked against the signed log and shown with the verified values."""
    try:
        keys = configured_log_keys(reader.settings)
    except ConfigError as exc:
        raise CommandError(str(exc)) from exc
    catalogue = SchemaCatalogue.load()
    found: list[Timeline] = []
    requests: list[dict[str, Any]] = []
    ledger_of: dict[str, str] = {}
    checks: dict[str, ContactVerification] = {}
    for ledger in reader.ledgers:
        with reader.connect(ledger) as conn:
            if search.kind is not None and search.value is not None:
                protocols = protocols_for_customer(conn, search.kind, search.value, search.start, search.end)
                requests += requests_for_customer(conn, search.kind, search.value, search.start, search.end)
            else:
                protocols = [search.protocol or ""]
            here = [t for t in timelines(conn, protocols) if t.events and t.protocol_number not in ledger_of]
            for t in here:
                ledger_of[t.protocol_number] = ledger.name
                checks[t.protocol_number] = verify_contact(conn, reader.settings.topic, t, keys, catalogue)
                overlay_verified(t, checks[t.protocol_number])
        found += here
    return found, requests, ledger_of, checks


def _warn_lag(lag_note: dict[str, Any] | None) -> None:
    if lag_note and lag_note.get("behind"):
        print(f"protocolo: warning: {lag_note['message']}: this answer may be incomplete", file=sys.stderr)
    elif lag_note and lag_note.get("unknown"):
        print(f"protocolo: note: {lag_note['message']}", file=sys.stderr)


def _lag_note(reader: LedgerReader) -> dict[str, Any] | None:
    """The projection lag of the current ledger, or why it is unknown; None when up to date."""
    current = next((ledger for ledger in reader.ledgers if ledger.current), None)
    if current is None:
        return None
    if not reader.kafka_bootstrap:
        return {"unknown": True, "message": "projection lag unknown: no Kafka broker is configured or running"}
    try:
        with reader.connect(current) as conn:
            lag = projection_lag(conn, reader.kafka_bootstrap, reader.settings.topic, timeout_s=5)
    except (KafkaError, LookupError, TimeoutError, OSError) as exc:
        return {"unknown": True, "message": f"projection lag unknown: Kafka at {reader.kafka_bootstrap} "
                                            f"did not answer ({type(exc).__name__})"}
    if not lag.behind:
        return None
    return {"behind": {str(p): n for p, n in lag.behind.items()}, "total": lag.total, "message": lag.describe()}


def _customer(sealer: Any, t: Timeline) -> dict[str, Any] | None:
    opened = next((e for e in t.events if e["event_type"] == "ContactOpened"), None)
    if opened is None:
        return None
    customer = opened["payload"].get("customer") or {}
    sealed = customer.get("sealed")
    if sealed is None:
        # Outside producers identify the customer by blind index only (docs/wire-contract.md):
        # found by --cpf/--customer, but there is no personal data to show.
        indexed = customer.get("cpf_index") is not None or customer.get("customer_code_index") is not None
        return {"identified": indexed, "erased": False, "sealed": False}
    try:
        clear = sealer.open(sealed, opened["event_id"])
    except PersonalDataUnavailable as exc:
        return {"identified": True, "erased": False, "unavailable": str(exc)}
    if clear is None:
        return {"identified": True, "erased": True}
    return {"identified": True, "erased": False, "name": clear.get("name"), "customer_code": clear.get("customer_code"),
            "cpf_masked": mask_cpf(clear["cpf"]) if clear.get("cpf") else None}


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def _as_json(query: dict[str, Any], found: list[Timeline], requests: list[dict[str, Any]],
             customers: dict[str, Any], checks: dict[str, ContactVerification]) -> dict[str, Any]:
    return {
        "query": query,
        "interactions": [
            {
                "protocol_number": t.protocol_number,
                **{k: v for k, v in (t.interaction or {}).items() if k not in ("protocol_number", "cpf_index", "customer_code_index")},
                "customer": customers.get(t.protocol_number),
                "verified": checks[t.protocol_number].as_dict() if t.protocol_number in checks else None,
                "compliance": t.compliance,
                "recordings": t.recordings,
                "legal_holds": t.holds,
                "retrieval_requests": t.requests,
                "events": [
                    {"event_type": e["event_type"], "occurred_at": e["occurred_at"], "partition": e["partition"],
                     "offset": e["offset"], "event_id": e["event_id"], "schema_version": e["schema_version"],
                     "duplicate": e["is_duplicate"], "payload": e["payload"]}
                    for e in t.events
                ],
            }
            for t in found
        ],
        "retrieval_requests": requests,
    }


def _local(moment: datetime | None, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    return moment.astimezone(LOCAL).strftime(fmt) if moment else "-"


def _yes(flag: bool | None) -> str:
    return {True: "yes", False: "NO", None: "n/a"}[flag]


def _print_text(found: list[Timeline], requests: list[dict[str, Any]], customers: dict[str, Any],
                ledger_of: dict[str, str], checks: dict[str, ContactVerification]) -> None:
    out = sys.stdout
    for t in found:
        i = t.interaction or {}
        out.write(f"Protocol {format_protocol_number(t.protocol_number)}  |  {i.get('channel') or '?'} "
                  f"{(i.get('direction') or '').lower()}  |  {i.get('service_type') or '?'} ({i.get('policy_profile') or 'no profile'})\n")
        if t.protocol_number in ledger_of:
            out.write(f"  ledger    {ledger_of[t.protocol_number]}\n")
        if t.protocol_number in checks:
            _print_verification(checks[t.protocol_number])
        out.write(f"  customer  {_who(customers.get(t.protocol_number) or {})}\n"
                  f"  agent     {i.get('agent_id') or '(self-service)'}\n  subject   {i.get('subject') or '-'}\n")
        out.write(f"  opened    {_local(i.get('opened_at'))} (São Paulo)   closed {_local(i.get('closed_at'))}"
                  f"   outcome {i.get('outcome') or '-'}\n")
        _print_facts(t)
        out.write("  timeline\n")
        for e in t.events:
            detail = _event_detail(e)
            out.write(f"    {_local(e['occurred_at'])}  {e['event_type']:<19} p{e['partition']}@{e['offset']}"
                      f"{'  (duplicate, not applied)' if e['is_duplicate'] else ''}{'  ' + detail if detail else ''}\n")
        out.write("\n")
    _print_orphans(requests)


def _print_verification(check: ContactVerification) -> None:
    """The verdict first: a mismatch in words, each altered value named with the verified one
    (which is what the lines below show)."""
    out = sys.stdout
    if check.status != MISMATCH:
        out.write(f"  signed    {check.summary()}\n")
        return
    out.write("  signed    MISMATCH: the views differ from the signed log; the values below are the "
              "verified ones\n")
    for d in check.differences:
        out.write(f"    ALTERED {d.describe()}\n")
    for problem in check.problems:
        out.write(f"    ALTERED {problem}\n")


def _who(c: dict[str, Any]) -> str:
    if c and not c["identified"]:
        return "(not identified)"
    if c and c.get("sealed") is False:
        return "(identified by blind index only: no personal data sealed)"
    if c and c.get("unavailable"):
        return f"[personal data unavailable: {c['unavailable']}]"
    if c and c["erased"]:
        return "[personal data erased]"
    parts = (c.get("name"), c.get("cpf_masked") and f"CPF {c['cpf_masked']}",
             c.get("customer_code") and f"code {c['customer_code']}")
    return " ".join(x for x in parts if x) or "-"


def _print_facts(t: Timeline) -> None:
    out = sys.stdout
    if t.compliance:
        k = t.compliance
        out.write(f"  rules     protocol told at start: {_yes(k['protocol_disclosed_at_start'])}   "
                  f"recording notice at start: {_yes(k['recording_notice_at_start'])}   "
                  f"protocol confirmed by SMS/e-mail in time: {_yes(k['protocol_confirmed_in_time'])}\n")
    for r in t.recordings:
        state = (f"deleted {_local(r['deleted_at'], '%Y-%m-%d')} ({r['deletion_reason']})" if r["status"] == "deleted"
                 else f"kept until {_local(r['retain_until'], '%Y-%m-%d')}")
        if r.get("early_without_approval"):
            state += "  RULE BROKEN: deleted before retention end without a two-person approval"
        out.write(f"  recording {r['recording_id']}  {r['duration_ms'] / 1000:.0f}s  sha256 {r['sha256'][:16]}...  "
                  f"{state}  [{r['retention_profile']}]\n")
    for h in t.holds:
        out.write(f"  hold      {h['hold_id']} case {h['case_reference']} placed {_local(h['placed_at'], '%Y-%m-%d')}"
                  f"{' released ' + _local(h['released_at'], '%Y-%m-%d') if h['released_at'] else ' (active)'}\n")
    for r in t.requests:
        out.write(f"  request   {r['kind']} {r['request_id']} {r['status']}  due {_local(r['due_at'])}"
                  f"{'  OVERDUE' if r['overdue'] else ''}\n")


def _print_orphans(requests: list[dict[str, Any]]) -> None:
    out = sys.stdout
    orphans = [r for r in requests if not r.get("protocol_number")]
    if orphans:
        out.write("Requests without protocol number\n")
        for r in orphans:
            out.write(f"  {r['kind']} {r['request_id']}  requested {_local(r['requested_at'])}  {r['status']}"
                      f"  due {_local(r['due_at'])}{'  OVERDUE' if r['overdue'] else ''}"
                      f"  located: {', '.join(r['located_protocols'] or []) or '-'}\n")


def _event_detail(e: dict[str, Any]) -> str:
    p = e["payload"]
    match e["event_type"]:
        case "DisclosureMade":
            return f"{p['kind']} via {p['medium']}"
        case "ContactClosed":
            return str(p["outcome"])
        case "RecordingCaptured" | "RecordingDeleted":
            return f"{p['recording_id']}" + (f" ({p['reason']})" if "reason" in p else "")
        case "RetrievalRequested" | "RetrievalFulfilled" | "RetrievalRejected" | "RetrievalLocated":
            return f"request {p['request_id']}" + (f" {p.get('kind') or p.get('reason') or ''}".rstrip())
        case "LegalHoldPlaced" | "LegalHoldReleased":
            return f"hold {p['hold_id']}"
        case "NoteAdded":
            return f"by {p.get('agent_name') or p['agent_id']}"
        case "AccessRecorded":
            return f"{p['action']} by {p['actor']} ({p['role']}): {p['purpose']}"
        case "ApprovalRequested":
            return f"{p['action']} asked by {p['requested_by']}"
        case "ApprovalGranted":
            return f"granted by {p['approved_by']}"
        case "ApprovalDenied":
            return f"denied by {p['denied_by']}"
    return ""
