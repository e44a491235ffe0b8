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

__all__ = ["INDEX_KINDS", "Timeline", "journal_records", "protocols_for_customer", "request_by_id",
           "requests_for_customer", "timelines"]

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
            " ORDER BY r.requested_at",
            (protocols,),
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
            "SELECT r.*, d.reason AS deletion_reason, d.before_retention_end, d.under_legal_hold"
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


def request_by_id(conn: psycopg.Connection[Any], request_id: str) -> dict[str, Any] | None:
    """One retrieval request (``retrieval_request_status`` row) by its id, or None."""
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
