"""A granted customer erasure, carried out until it is.

The grant is a decision (``decisions``) recorded with a ``follow-up`` row (``ERASE``) in
the same registry transaction; the erasure itself (``erase_subject``: CustomerDataErased
published, then the keys destroyed) runs after it, and a ``carried-out`` row records that
it ran. An erasure a broker failure (or a crash) interrupted is run again by the outbox
sweep; running it twice is harmless (a second run finds no live key), and a
transaction-scoped advisory lock per approval keeps two runs from overlapping.
"""

from __future__ import annotations

import contextlib
from typing import Any

import psycopg

from protocolo.producers.erasure import NothingToErase, erase_subject
from protocolo.producers.publisher import Receipt
from protocolo.projections import history

from .services import ApiServices

ERASE = "ERASE"
#: The sweep leaves a fresh grant to the request carrying it out (it answers with the receipts).
SWEEP_AFTER_S = 10


def carry_out(svc: ApiServices, approval_id: str, *, wait: bool = True) -> list[Receipt]:
    """Run the erasure granted by ``approval_id`` unless it ran; its receipts (none when it
    ran already or had nothing left to erase). ``wait``: for a run in progress elsewhere
    (else skip it: the sweep)."""
    subject = f"approval:{approval_id}"
    with svc.registry.connection() as lock, lock.transaction():
        locked = lock.execute(f"SELECT {'pg_advisory_xact_lock' if wait else 'pg_try_advisory_xact_lock'}"
                              "(hashtextextended(%s, 7015))::text", (subject,)).fetchone()
        if locked is None or locked[0] == "false":
            return []  # the sweep skips what a request is running
        if _carried_out(lock, subject):
            return []
        with svc.ledger.connection() as conn:
            approval = history.approval(conn, approval_id)
        if approval is None or approval["subject_ref"] is None:
            return []  # not projected yet: the sweep comes back
        receipts: list[Receipt] = []
        with svc.ledger.connection() as ledger, svc.registry.connection() as registry, \
                contextlib.suppress(NothingToErase):  # nothing left to erase: the grant stands on record
                receipts.append(erase_subject(
                    ledger, registry, svc.publisher, svc.sealer, index_refs=[approval["subject_ref"]],
                    legal_basis=approval["reason"], correlation_id=approval_id,
                    projection_timeout_s=svc.projection_timeout_s).receipt)
        lock.execute("INSERT INTO api_decisions (subject, step, outcome, decided_by, topic)"
                     " SELECT subject, 'carried-out', 'ERASED', decided_by, topic FROM api_decisions"
                     " WHERE subject = %s AND step = 'follow-up'", (subject,))
    return receipts


def _carried_out(conn: psycopg.Connection[Any], subject: str) -> bool:
    return conn.execute("SELECT 1 FROM api_decisions WHERE subject = %s AND step = 'carried-out'",
                        (subject,)).fetchone() is not None


def carry_out_pending(svc: ApiServices) -> int:
    """Carry out every granted erasure of this topic that has not run (granted more than
    SWEEP_AFTER_S ago); how many were tried."""
    with svc.registry.connection() as conn:
        pending = [r[0] for r in conn.execute(
            "SELECT f.subject FROM api_decisions f WHERE f.step = 'follow-up' AND f.outcome = %s AND f.topic = %s"
            " AND NOT EXISTS (SELECT 1 FROM api_decisions c WHERE c.subject = f.subject AND c.step = 'carried-out')"
            " AND f.decided_at < now() - make_interval(secs => %s)"
            " ORDER BY f.decided_at", (ERASE, svc.topic, SWEEP_AFTER_S)).fetchall()]
    for subject in pending:
        carry_out(svc, subject.partition(":")[2], wait=False)
    return len(pending)
