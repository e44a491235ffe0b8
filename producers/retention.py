"""The retention sweeper: deletes recordings whose legal minimum has passed.

It reads the ``recordings`` view, never writes it: for every recording still retained
whose deadline is before ``now`` and whose contact has no active legal hold, it publishes
``RecordingDeleted`` (reason ``RETENTION_EXPIRED``) and lets the projector apply it. Media
storage deletes the audio on seeing that event; the event carries the digest that was
captured, so the deletion is provably of that recording. Running it twice publishes
nothing new once the first run is projected; running it before then publishes the same
recordings again under new event ids, which the views apply once per recording.

The views may lag the topic (a legal hold published a second ago, not projected yet):
before deciding anything the sweeper waits until the projection has applied everything
that was on the topic when it started (:func:`~protocolo.core.watermark.wait_until_projected`),
and refuses with :class:`~protocolo.core.watermark.ProjectionBehind` if it does not in time.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import psycopg

from protocolo.core.watermark import wait_until_projected

from .publisher import Event, LedgerPublisher, Receipt

DUE_FOR_DELETION = """
SELECT r.recording_id, r.protocol_number, r.sha256, r.retention_profile, r.retain_until
  FROM recordings r
 WHERE r.status = 'retained' AND r.retain_until < %(now)s
   AND NOT EXISTS (SELECT 1 FROM legal_holds h
                    WHERE h.protocol_number = r.protocol_number AND h.placed_at <= %(now)s
                      AND (h.released_at IS NULL OR h.released_at > %(now)s))
   AND (r.retain_until, r.recording_id) > (%(after_until)s, %(after_id)s)
 ORDER BY r.retain_until, r.recording_id
 LIMIT %(limit)s
"""


def sweep(
    conn: psycopg.Connection[Any],
    publisher: LedgerPublisher,
    now: datetime,
    batch: int = 1000,
    progress: Callable[[int], None] | None = None,
    *,
    projection_timeout_s: float = 30.0,
) -> list[Receipt]:
    """Publish ``RecordingDeleted`` for every recording past retention and not on hold,
    once the projection has caught up with the topic (see the module's doc)."""
    wait_until_projected(conn, publisher.bootstrap_servers, publisher.topic, timeout_s=projection_timeout_s)
    receipts: list[Receipt] = []
    after: tuple[datetime, str] = (datetime.min.replace(tzinfo=now.tzinfo), "")
    while True:
        rows = conn.execute(DUE_FOR_DELETION, {"now": now, "limit": batch,
                                               "after_until": after[0], "after_id": after[1]}).fetchall()
        conn.rollback()
        if not rows:
            return receipts
        receipts += publisher.publish_many([
            Event("RecordingDeleted",
                  {"recording_id": rec, "sha256": digest, "reason": "RETENTION_EXPIRED",
                   "authorised_by": f"retention-sweeper ({profile}, kept until {until.date().isoformat()})"},
                  protocol_number=protocol, occurred_at=now)
            for rec, protocol, digest, profile, until in rows
        ])
        after = (rows[-1][4], rows[-1][0])
        if progress:
            progress(len(receipts))
