"""Queries behind ``protocolo history``: find contacts and assemble their timelines.

A contact's timeline is every journalled event about its protocol number plus the events
of retrieval requests that named it or were located to it (those may be keyed by the
request's own id when the customer had lost the number).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

__all__ = ["INDEX_KINDS", "RULES", "ContactFilters", "Timeline", "access_log", "approval", "approvals_pending",
           "contact_owner", "hold", "journal_records", "ledger_counts", "protocols_for_customer", "recording",
           "request", "request_queue", "requests_for_customer", "search_contacts", "timelines"]

#: Blind-index kinds a customer can be found by -> the column that holds them.
_INDEX_COLUMNS = {"cpf": "cpf_index", "customer_code": "customer_code_index"}
INDEX_KINDS = tuple(_INDEX_COLUMNS)

INTERACTION_COLUMNS = (
    "protocol_number", "channel", "direction", "service_type", "policy_profile", "cpf_index",
    "customer_code_index", "agent_id", "subject", "recorded", "language", "opened_at", "closed_at",
    "outcome", "summary", "protocol_disclosed_at", "recording_notice_at", "protocol_confirmed_at",
    "note_count",
)


@dataclass
class Timeline:
    protocol_number: str
    interaction: dict[str, Any] | None
    compliance: dict[str, Any] | None
    events: list[dict[str, Any]] = field(default_factory=list)
    recordings: list[dict[str, Any]] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    holds: list[dict[str, Any]] = field(default_factory=list)


def protocols_for_customer(
    conn: psycopg.Connection,
    index_kind: str,
    index_value: str,
    start: datetime | None = None,
    end: datetime | None = None,
) -> list[str]:
    rows = conn.execute(
        "SELECT c.protocol_number FROM customer_index c"
        " WHERE c.index_kind = %s AND c.index_value = %s"
        "   AND (%s::timestamptz IS NULL OR c.opened_at >= %s)"
        "   AND (%s::timestamptz IS NULL OR c.opened_at < %s)"
        " ORDER BY c.opened_at, c.protocol_number",
        (index_kind, index_value, start, start, end, end),
    ).fetchall()
    return [r[0] for r in rows]


def requests_for_customer(
    conn: psycopg.Connection[Any],
    index_kind: str,
    index_value: str,
    start: datetime | None = None,
    end: datetime | None = None,
) -> list[dict[str, Any]]:
    """Retrieval requests made by CPF or customer code, requested within ``[start, end)``."""
    column = sql.Identifier(_INDEX_COLUMNS[index_kind])
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            sql.SQL("SELECT * FROM retrieval_request_status WHERE {} = %s"
                    "   AND (%s::timestamptz IS NULL OR requested_at >= %s)"
                    "   AND (%s::timestamptz IS NULL OR requested_at < %s)"
                    " ORDER BY requested_at").format(column),
            (index_value, start, start, end, end),
        ).fetchall()


def timelines(conn: psycopg.Connection, protocols: list[str]) -> list[Timeline]:
    """Timelines in the order given. A protocol with no event at all gets ``interaction=None``."""
    if not protocols:
        return []
    with conn.cursor(row_factory=dict_row) as cur:
        interactions = {r["protocol_number"]: r for r in cur.execute(
            f"SELECT {', '.join(INTERACTION_COLUMNS)} FROM interactions WHERE protocol_number = ANY(%s)",
            (protocols,))}
        compliance = {r.pop("protocol_number"): r for r in cur.execute(
            "SELECT protocol_number, protocol_disclosed_at_start, recording_notice_at_start,"
            " protocol_confirmed_in_time FROM interaction_compliance WHERE protocol_number = ANY(%s)",
            (protocols,))}
        requests: dict[str, list[dict[str, Any]]] = {}
        request_protocols: dict[str, list[str]] = {}  # request id -> the timelines it belongs to
        for r in cur.execute(
            "SELECT p.protocol_number AS for_protocol, r.* FROM retrieval_request_status r"
            " JOIN unnest(%s::text[]) AS p(protocol_number)"
            "   ON r.protocol_number = p.protocol_number OR p.protocol_number = ANY(r.located_protocols)"
            # the same rows, found by two index probes instead of a scan of every request
            " WHERE r.request_id IN (SELECT request_id FROM retrieval_requests WHERE protocol_number = ANY(%s)"
            "   UNION ALL SELECT request_id FROM retrieval_requests WHERE located_protocols && %s::text[])"
            " ORDER BY r.requested_at",
            (protocols, protocols, protocols),
        ):
            for_protocol = r.pop("for_protocol")
            requests.setdefault(for_protocol, []).append(r)
            request_protocols.setdefault(str(r["request_id"]), []).append(for_protocol)
        events: dict[str, list[dict[str, Any]]] = {p: [] for p in protocols}
        for e in cur.execute(
            "SELECT event_type, occurred_at, kafka_partition AS partition, kafka_offset AS offset,"
            " event_id, schema_version, protocol_number, entity_key, is_duplicate, payload"
            " FROM journal"
            " WHERE protocol_number = ANY(%s) OR entity_key = ANY(%s)"
            " ORDER BY occurred_at, kafka_partition, kafka_offset",
            # a request without protocol is keyed by its own id
            (protocols, list(request_protocols)),
        ):
            if e["protocol_number"] in events:
                targets = [e["protocol_number"]]
            else:
                targets = request_protocols.get(e["payload"].get("request_id"), [])
            for p in targets:
                events[p].append(e)
        recordings: dict[str, list[dict[str, Any]]] = {}
        for r in cur.execute(
            "SELECT r.*, d.reason AS deletion_reason, d.before_retention_end, d.under_legal_hold,"
            " d.early_without_approval"
            " FROM recordings r LEFT JOIN recording_deletion_status d USING (recording_id)"
            " WHERE r.protocol_number = ANY(%s) ORDER BY r.captured_at",
            (protocols,),
        ):
            recordings.setdefault(r["protocol_number"], []).append(r)
        holds: dict[str, list[dict[str, Any]]] = {}
        for h in cur.execute(
            "SELECT * FROM legal_holds WHERE protocol_number = ANY(%s) ORDER BY placed_at", (protocols,)
        ):
            holds.setdefault(h["protocol_number"], []).append(h)
    return [
        Timeline(
            protocol_number=p,
            interaction=interactions.get(p),
            compliance=compliance.get(p),
            events=events[p],
            recordings=recordings.get(p, []),
            requests=requests.get(p, []),
            holds=holds.get(p, []),
        )
        for p in protocols
    ]


#: Compliance rules a contact can be searched by (broken), -> the SQL that says it is broken.
RULES = {
    "protocol-not-disclosed-at-start": "NOT coalesce(c.protocol_disclosed_at_start, false)",
    "recording-notice-not-at-start": "c.recording_notice_at_start IS FALSE",
    "protocol-not-confirmed-in-time": "NOT coalesce(c.protocol_confirmed_in_time, false)",
    # the two-person rule, judged on the log whoever published the deletion
    "early-deletion-without-approval": "EXISTS (SELECT 1 FROM recording_deletion_status s"
                                       " WHERE s.protocol_number = c.protocol_number AND s.early_without_approval)",
}
#: Sort keys a search accepts -> the ORDER BY it means (protocol number breaks ties).
SORTS = {
    "opened_at": "i.opened_at ASC NULLS LAST, i.protocol_number",
    "-opened_at": "i.opened_at DESC NULLS LAST, i.protocol_number",
    "protocol_number": "i.protocol_number",
}


@dataclass(frozen=True)
class ContactFilters:
    """What a contact search may combine. Customer identifiers are blind indexes here."""

    protocol_number: str | None = None
    cpf_index: str | None = None
    customer_code_index: str | None = None
    opened_from: datetime | None = None
    opened_to: datetime | None = None
    channel: str | None = None
    service_type: str | None = None
    agent_id: str | None = None
    rule_broken: str | None = None


def search_contacts(conn: psycopg.Connection[Any], f: ContactFilters, *, offset: int, limit: int,
                    sort: str = "-opened_at") -> tuple[list[dict[str, Any]], int]:
    """One page of contacts matching every filter given, and how many match in all."""
    where: list[sql.Composable] = []
    args: list[Any] = []
    for column, value in (("protocol_number", f.protocol_number), ("cpf_index", f.cpf_index),
                          ("customer_code_index", f.customer_code_index), ("channel", f.channel),
                          ("service_type", f.service_type), ("agent_id", f.agent_id)):
        if value is not None:
            where.append(sql.SQL("i.{} = %s").format(sql.Identifier(column)))
            args.append(value)
    if f.opened_from is not None:
        where.append(sql.SQL("i.opened_at >= %s"))
        args.append(f.opened_from)
    if f.opened_to is not None:
        where.append(sql.SQL("i.opened_at < %s"))
        args.append(f.opened_to)
    if f.rule_broken is not None:
        where.append(sql.SQL(RULES[f.rule_broken]))  # type: ignore[arg-type,unused-ignore]  # a constant's value
    condition = sql.SQL(" AND ").join(where) if where else sql.SQL("true")
    columns = sql.SQL(", ").join(sql.SQL("i.{}").format(sql.Identifier(c)) for c in INTERACTION_COLUMNS)
    query = sql.SQL(
        "SELECT {columns}, c.protocol_disclosed_at_start, c.recording_notice_at_start,"
        " c.protocol_confirmed_in_time, count(*) OVER () AS total"
        " FROM interactions i JOIN interaction_compliance c USING (protocol_number)"
        " WHERE i.opened_at IS NOT NULL AND {condition} ORDER BY {order} OFFSET %s LIMIT %s"
    ).format(columns=columns, condition=condition, order=sql.SQL(SORTS[sort]))  # type: ignore[arg-type,unused-ignore]
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(query, (*args, offset, limit)).fetchall()
        if rows:
            total = int(rows[0]["total"])
        else:  # past the last page: count anyway
            count = sql.SQL("SELECT count(*) AS n FROM interactions i JOIN interaction_compliance c"
                            " USING (protocol_number) WHERE i.opened_at IS NOT NULL AND {}").format(condition)
            found = cur.execute(count, args).fetchone()
            total = int(found["n"]) if found else 0
    for r in rows:
        r.pop("total")
    return rows, total


def contact_owner(conn: psycopg.Connection[Any], protocol_number: str) -> tuple[bool, str | None]:
    """Whether the contact is known, and its customer's CPF blind index."""
    row = conn.execute("SELECT cpf_index FROM interactions WHERE protocol_number = %s AND opened_at IS NOT NULL",
                       (protocol_number,)).fetchone()
    return (row is not None, row[0] if row else None)


def request(conn: psycopg.Connection[Any], request_id: str) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute("SELECT * FROM retrieval_request_status WHERE request_id = %s::uuid",
                           (request_id,)).fetchone()


def journal_records(conn: psycopg.Connection[Any], topic: str,
                    positions: list[tuple[int, int]]) -> list[dict[str, Any]]:
    """The journal rows at ``(partition, offset)`` positions, raw bytes included (key and
    value exactly as read from Kafka, schema fingerprint, leaf index and hash), in the order
    of ``positions``; positions with no row are left out."""
    if not positions:
        return []
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT j.topic, j.kafka_partition AS partition, j.kafka_offset AS offset,"
            " j.kafka_timestamp, j.record_key, j.record_value, j.fingerprint, j.event_type,"
            " j.schema_version, j.event_id, j.protocol_number, j.occurred_at, j.payload,"
            " j.is_duplicate, j.leaf_index, j.leaf_hash"
            " FROM unnest(%s::integer[], %s::bigint[]) WITH ORDINALITY AS w(p, o, i)"
            " JOIN journal j ON j.topic = %s AND j.kafka_partition = w.p AND j.kafka_offset = w.o"
            " ORDER BY w.i",
            ([p for p, _ in positions], [o for _, o in positions], topic),
        ).fetchall()


def request_queue(conn: psycopg.Connection[Any], *, open_only: bool, cpf_index: str | None,
                  offset: int, limit: int) -> tuple[list[dict[str, Any]], int]:
    """Requests by deadline (soonest first), with the seconds left (negative: overdue)."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "SELECT r.*, extract(epoch FROM r.due_at - now())::bigint AS seconds_left,"
            "       count(*) OVER () AS total"
            "  FROM retrieval_request_status r"
            " WHERE r.requested_at IS NOT NULL"
            "   AND (NOT %s OR r.status IN ('requested', 'located'))"
            "   AND (%s::text IS NULL OR r.cpf_index = %s"
            "        OR r.protocol_number IN (SELECT protocol_number FROM interactions WHERE cpf_index = %s))"
            " ORDER BY r.due_at, r.request_id OFFSET %s LIMIT %s",
            (open_only, cpf_index, cpf_index, cpf_index, offset, limit)).fetchall()
    total = int(rows[0].pop("total")) if rows else 0
    for r in rows[1:]:
        r.pop("total")
    return rows, total


def access_log(conn: psycopg.Connection[Any], *, subject_ref: str | None = None,
               protocol_number: str | None = None, actor: str | None = None,
               limit: int = 500) -> list[dict[str, Any]]:
    """Who accessed what: by customer (their CPF's blind index: accesses naming it, their
    contacts, or their customer code), by contact, or by the person who did."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT * FROM access_log"
            " WHERE (%s::text IS NULL OR subject_ref = %s OR protocol_number IN"
            "        (SELECT protocol_number FROM interactions WHERE cpf_index = %s)"
            "        OR subject_ref IN (SELECT customer_code_index FROM interactions WHERE cpf_index = %s))"
            "   AND (%s::text IS NULL OR protocol_number = %s)"
            "   AND (%s::text IS NULL OR actor = %s)"
            " ORDER BY accessed_at DESC, access_id LIMIT %s",
            (subject_ref, subject_ref, subject_ref, subject_ref, protocol_number, protocol_number, actor, actor, limit),
        ).fetchall()


def approval(conn: psycopg.Connection[Any], approval_id: str) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute("SELECT * FROM approvals WHERE approval_id = %s::uuid", (approval_id,)).fetchone()


def approvals_pending(conn: psycopg.Connection[Any], limit: int = 500) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute("SELECT * FROM approvals WHERE decision IS NULL AND requested_at IS NOT NULL"
                           " ORDER BY requested_at LIMIT %s", (limit,)).fetchall()


def ledger_counts(conn: psycopg.Connection[Any]) -> dict[str, int]:
    """What /metrics reports from the views: quarantined records, open and overdue requests."""
    row = conn.execute(
        "SELECT (SELECT count(*) FROM quarantine),"
        " (SELECT count(*) FROM retrieval_request_status WHERE status IN ('requested', 'located')),"
        " (SELECT count(*) FROM retrieval_request_status WHERE overdue)").fetchone()
    assert row is not None
    return {"quarantined": int(row[0]), "open_requests": int(row[1]), "overdue_requests": int(row[2])}


def hold(conn: psycopg.Connection[Any], hold_id: str) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute("SELECT * FROM legal_holds WHERE hold_id = %s", (hold_id,)).fetchone()


def recording(conn: psycopg.Connection[Any], recording_id: str) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute("SELECT * FROM recordings WHERE recording_id = %s", (recording_id,)).fetchone()
