"""Decisions taken once: against the registry, with all their events, published after.

An approval's grant or denial, a retrieval request's location or closing, a legal hold's
placement or release: two users (or one user twice) racing on the same thing must yield
one decision on the ledger. The projected views cannot arbitrate (they lag the log), so a
decision is taken in a registry transaction: a transaction-scoped advisory lock on the
subject serialises every decision about it, the steps already taken are read under that
lock, and the decision row is inserted together with the events it publishes, already
encoded with their event ids fixed. Only once that transaction commits are the events
sent.

Publication is completed, never re-decided: when the broker fails between the events of
a decision, the decision stands with its unconfirmed events stored, the caller gets 503,
and :func:`complete_pending` (run before every decision, when the server starts and every
few seconds by :func:`start_sweeper`) sends
them again with the same event ids; the projector applies an event id once. This is the
transactional-outbox pattern; a Kafka transaction was not used because every reader of
the ledger (projector, ``verify --against-kafka``, the lag probe, the tansu fallback
broker) would have to agree on ``read_committed`` and on offsets taken by commit markers.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from fastapi import HTTPException

from protocolo.producers.publisher import Event, PreparedEvent, PublishFailed, Receipt

from . import erasure_follow_up
from .identities import Principal
from .ledger_writes import WriteResult, await_projection, receipt_out
from .services import ApiServices

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Decision:
    """``subject``: what is decided on (``approval:<id>``); ``step``: which decision about it
    (one of each per subject); ``excludes``: steps that, once taken, forbid this one."""

    subject: str
    step: str
    outcome: str
    excludes: tuple[str, ...] = ()


class DecisionPending(HTTPException):
    def __init__(self, detail: str) -> None:
        super().__init__(503, detail)


def _headers_json(headers: Sequence[tuple[str, bytes]]) -> str:
    return json.dumps([[name, value.hex()] for name, value in headers])


def _prepared(row: tuple[Any, ...]) -> PreparedEvent:
    event_type, event_id, key, value, headers = row
    return PreparedEvent(event_type, event_id, bytes(key), bytes(value),
                         [(str(n), bytes.fromhex(v)) for n, v in headers])


def _record(conn: psycopg.Connection[Any], decision: Decision, who: Principal, topic: str,
            prepared: Sequence[PreparedEvent], follow_up: str | None = None) -> None:
    """The decision and its events, in one transaction under the subject's lock; 409 when a
    step it conflicts with (or itself) was taken already."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 7014))", (decision.subject,))
        taken = conn.execute(
            "SELECT step, outcome, decided_by FROM api_decisions WHERE subject = %s AND step = ANY(%s)"
            " ORDER BY decided_at LIMIT 1", (decision.subject, [decision.step, *decision.excludes])).fetchone()
        if taken is not None:
            raise HTTPException(409, f"{decision.subject.partition(':')[0]} already {taken[1].lower()} "
                                     f"by {taken[2]}: decided once [rule: decided-once]")
        conn.execute("INSERT INTO api_decisions (subject, step, outcome, decided_by, topic)"
                     " VALUES (%s, %s, %s, %s, %s)",
                     (decision.subject, decision.step, decision.outcome, who.user_name, topic))
        if follow_up is not None:  # work the decision entails beyond its events (erasure_follow_up)
            conn.execute("INSERT INTO api_decisions (subject, step, outcome, decided_by, topic)"
                         " VALUES (%s, 'follow-up', %s, %s, %s)", (decision.subject, follow_up, who.user_name, topic))
        for seq, p in enumerate(prepared):
            conn.execute(
                "INSERT INTO api_decision_events (subject, step, seq, event_id, event_type, record_key,"
                " record_value, headers) VALUES (%s, %s, %s, %s, %s, %s, %s, %s::jsonb)",
                (decision.subject, decision.step, seq, p.event_id, p.event_type, p.key, p.value,
                 _headers_json(p.headers)))


def _mark_published(conn: psycopg.Connection[Any], receipts: Sequence[Receipt]) -> None:
    for r in receipts:
        conn.execute("UPDATE api_decision_events SET published_at = now(), kafka_partition = %s, kafka_offset = %s"
                     " WHERE event_id = %s", (r.partition, r.offset, r.event_id))


_EVENT_COLUMNS = "e.event_type, e.event_id, e.record_key, e.record_value, e.headers, e.kafka_partition, e.kafka_offset"


def _send_locked(svc: ApiServices, conn: psycopg.Connection[Any], rows: Sequence[tuple[Any, ...]]) -> list[Receipt]:
    """Send the rows (locked by the caller's transaction) the broker has not confirmed, mark
    what it confirms; return the receipts of every row. Re-raises PublishFailed after
    marking what was confirmed (the caller's transaction must still commit)."""
    done = {r[1]: Receipt(svc.topic, r[5], r[6], r[1], r[0], bytes(r[2]).decode()) for r in rows if r[5] is not None}
    pending = [r for r in rows if r[5] is None]
    if pending:
        try:
            sent = svc.publisher.send_prepared([_prepared(r[:5]) for r in pending])
        except PublishFailed as exc:
            _mark_published(conn, exc.delivered)
            raise
        _mark_published(conn, sent)
        done.update((r.event_id, r) for r in sent)
    return [done[r[1]] for r in rows]


def _publish(svc: ApiServices, subject: str, step: str | None) -> list[Receipt]:
    """Publish the pending events of one decision (``step`` given) or of every decision of
    this topic, under row locks: whoever holds them sends, the others find them sent."""
    failed: PublishFailed | None = None
    receipts: list[Receipt] = []
    with svc.registry.connection() as conn, conn.transaction():
        if step is not None:
            rows = conn.execute(f"SELECT {_EVENT_COLUMNS} FROM api_decision_events e"
                                " WHERE e.subject = %s AND e.step = %s ORDER BY e.seq FOR UPDATE",
                                (subject, step)).fetchall()
        else:
            rows = conn.execute(
                f"SELECT {_EVENT_COLUMNS} FROM api_decision_events e JOIN api_decisions d USING (subject, step)"
                " WHERE e.published_at IS NULL AND d.topic = %s ORDER BY d.decided_at, e.subject, e.seq"
                " FOR UPDATE OF e SKIP LOCKED", (svc.topic,)).fetchall()
        try:
            receipts = _send_locked(svc, conn, rows)
        except PublishFailed as exc:
            failed = exc  # what was confirmed is marked and committed below
    if failed is not None:
        raise failed
    return receipts


def decide(svc: ApiServices, who: Principal, decision: Decision, events: Sequence[Event],
           follow_up: str | None = None) -> WriteResult:
    """Take ``decision`` once and publish ``events`` for it; 409 if it (or a step excluding
    it) was taken, 422 if an event is refused (nothing recorded), 503 if the broker did not
    confirm every event (the decision stands; its publication is completed later)."""
    finish_pending(svc)
    prepared = [svc.publisher.prepare(e) for e in events]  # refused input records nothing
    with svc.registry.connection() as conn:
        _record(conn, decision, who, svc.topic, prepared, follow_up)
    try:
        receipts = _publish(svc, decision.subject, decision.step)
    except PublishFailed as exc:
        raise DecisionPending(
            f"the decision is recorded but Kafka confirmed {len(exc.delivered)} of its {len(prepared)} "
            "events; the rest are published with the same event ids as soon as Kafka answers "
            "(do not decide again)") from exc
    return WriteResult(receipts=[receipt_out(r) for r in receipts], projected=await_projection(svc, receipts))


def complete_pending(svc: ApiServices) -> int:
    """Publish every decision event of this topic the broker has not confirmed yet, in
    decision order, with the event ids they were decided with; return how many. Raises
    :class:`PublishFailed` when the broker still does not answer (they stay pending)."""
    return len(_publish(svc, "", None))


def finish_pending(svc: ApiServices) -> None:
    """:func:`complete_pending`, quietly: run before a decision route reads the views (so a
    half-published decision is whole before anyone is told it was taken); a broker still
    refusing leaves them pending for the next call."""
    with contextlib.suppress(PublishFailed):
        complete_pending(svc)


def start_sweeper(svc: ApiServices, every_s: float = 5.0) -> None:
    """Complete pending decision events every ``every_s`` seconds in a daemon thread, so a
    publication a broker failure interrupted is finished once Kafka answers, even if no
    one decides anything after; stopped by ``svc.close()``."""
    stop = threading.Event()

    def sweep() -> None:
        while not stop.wait(every_s):
            try:
                complete_pending(svc)
                erasure_follow_up.carry_out_pending(svc)
            except Exception as exc:  # noqa: BLE001 - a sweep that fails is retried, never fatal
                log.warning("decision outbox sweep: %s: %s", type(exc).__name__, exc)

    thread = threading.Thread(target=sweep, name="decision-outbox", daemon=True)
    thread.start()

    def halt() -> None:
        stop.set()
        thread.join(timeout=30)

    svc.stoppers.append(halt)
