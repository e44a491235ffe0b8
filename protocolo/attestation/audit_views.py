"""``protocolo verify``'s check of the views: every view table against the journal.

The views (``interactions``, ``recordings``, ``legal_holds``...) are what ``history``, the
API and the console show; nothing in the evidence covers them. Here they are recomputed
from the journal with the projector's own view statements
(:func:`protocolo.projections.rebuild.recompute_views_in_scratch`: session-private
scratch tables, the journal read through a temporary view, never copied) and compared
with the stored ones row by row, in key order, by the server: a full join on each table's
primary key returns only the rows that differ, read through a server-side cursor, so
memory stays one fetch batch whatever the table's size. Each difference is a
``view-mismatch`` naming the table, the key and the column (a row only one side has names
no column). The policy profiles the views' deadlines come from are compared with the
code's too.

The check runs in its own REPEATABLE READ transaction (journal and views seen at one
point) that is always rolled back: it needs PostgreSQL's TEMP privilege, nothing else.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg

from protocolo.attestation.audit_findings import VIEW_MISMATCH, Finding, FindingLog
from protocolo.projections.rebuild import recompute_views_in_scratch
from protocolo.projections.views import profile_differences

FETCH_ROWS = 500


@dataclass
class ViewStats:
    """Rows compared per table (the stored table's count), journal rows replayed, seconds."""

    tables: dict[str, int] = field(default_factory=dict)
    journal_rows: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        rows = sum(self.tables.values())
        rate = round(self.journal_rows / self.seconds) if self.seconds > 0 else None
        return {"tables": dict(self.tables), "rows": rows, "journal_rows": self.journal_rows,
                "seconds": round(self.seconds, 3), "journal_rows_per_s": rate}


def _primary_key(conn: psycopg.Connection[Any], schema: str, table: str) -> list[str]:
    rows = conn.execute(
        "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid"
        " AND a.attnum = ANY(i.indkey) WHERE i.indrelid = format('%%I.%%I', %s::text, %s::text)::regclass"
        " AND i.indisprimary ORDER BY array_position(i.indkey::int2[], a.attnum)", (schema, table)).fetchall()
    return [str(name) for (name,) in rows]


def _differing_rows(conn: psycopg.Connection[Any], schema: str, table: str,
                    key: list[str]) -> Iterator[tuple[dict[str, Any] | None, dict[str, Any] | None]]:
    """(recomputed, stored) for every key whose rows differ, in key order."""
    join = " AND ".join(f'r."{k}" = v."{k}"' for k in key)
    order = ", ".join(f'coalesce(r."{k}", v."{k}")' for k in key)
    cur = conn.cursor(name=f"verify_view_{table}")
    cur.itersize = FETCH_ROWS
    cur.execute(f'SELECT CASE WHEN r IS NULL THEN NULL ELSE to_jsonb(r) END,'
                f' CASE WHEN v IS NULL THEN NULL ELSE to_jsonb(v) END'
                f' FROM pg_temp.{table} r FULL JOIN "{schema}".{table} v ON {join}'
                f' WHERE (r.*) IS DISTINCT FROM (v.*) ORDER BY {order}')
    try:
        yield from cur
    finally:
        cur.close()


def _describe_key(key: list[str], row: dict[str, Any]) -> str:
    return ", ".join(f"{k}={row.get(k)}" for k in key)


def _compare_table(conn: psycopg.Connection[Any], schema: str, table: str, findings: FindingLog) -> None:
    key = _primary_key(conn, schema, table)
    for recomputed, stored in _differing_rows(conn, schema, table, key):
        if stored is None and recomputed is not None:
            findings.add(Finding(VIEW_MISMATCH, -1, None, None, "view", "the journal gives this row; the "
                                 "view does not hold it (deleted)", table=table, key=_describe_key(key, recomputed)))
            continue
        if recomputed is None and stored is not None:
            findings.add(Finding(VIEW_MISMATCH, -1, None, None, "view", "the view holds this row; no journal "
                                 "event gives it (inserted)", table=table, key=_describe_key(key, stored)))
            continue
        assert recomputed is not None and stored is not None
        for column in recomputed:
            if recomputed[column] != stored.get(column):
                findings.add(Finding(VIEW_MISMATCH, -1, None, None, "view",
                                     f"stored {_value(stored.get(column))}, the journal gives "
                                     f"{_value(recomputed[column])}", table=table,
                                     key=_describe_key(key, recomputed), column=column))


def _value(value: Any) -> str:
    text = "NULL" if value is None else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def audit_views(conn: psycopg.Connection[Any], findings: FindingLog) -> ViewStats:
    """Compare every view table with the journal replayed through the view code."""
    stats = ViewStats()
    started = time.monotonic()
    conn.read_only = False  # temporary tables only; the transaction is rolled back
    conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    with conn.transaction(force_rollback=True):
        for problem in profile_differences(conn):
            findings.add(Finding(VIEW_MISMATCH, -1, None, None, "view", problem, table="policy_profiles"))
        schemas = recompute_views_in_scratch(conn)
        row = conn.execute("SELECT count(*) FROM batch_events").fetchone()
        stats.journal_rows = int(row[0]) if row else 0
        for table, schema in schemas.items():
            counted = conn.execute(f'SELECT count(*) FROM "{schema}".{table}').fetchone()
            stats.tables[table] = int(counted[0]) if counted else 0
            _compare_table(conn, schema, table, findings)
    stats.seconds = time.monotonic() - started
    return stats
