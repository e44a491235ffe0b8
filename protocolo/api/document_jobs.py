"""Exports and reports made while the server runs: one background thread per order, its
progress lines kept for the page that follows it (the console's progress page refreshes
itself; no JavaScript).

The making itself (checkpoints, the export, its verification, the report) is the command
line's (``protocolo export`` / ``protocolo report``); the composition root that starts the
server hands it in as ``maker``, so the API never imports the command line. Without a
maker (a server started by a test or embedded elsewhere) an order is refused, not faked.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

log = logging.getLogger(__name__)

KINDS = ("export", "report")


@dataclass(frozen=True)
class DocumentOrder:
    kind: str                # export | report
    period_from: datetime
    period_to: datetime
    regulator: str
    requested_by: str


class OrderRefused(Exception):
    """A maker's refusal, worded for the person who ordered (no traceback)."""


@dataclass
class DocumentJob:
    job_id: str
    order: DocumentOrder
    started_at: datetime
    lines: list[str] = field(default_factory=list)
    state: str = "running"   # running | done | failed
    outcome: str = ""

    def say(self, line: str) -> None:
        self.lines.append(line)
        del self.lines[:-50]  # the page shows the latest only


Maker = Callable[[DocumentOrder, Callable[[str], None]], str]


class DocumentJobs:
    def __init__(self) -> None:
        self.maker: Maker | None = None
        self._jobs: dict[str, DocumentJob] = {}
        self._lock = threading.Lock()

    def start(self, order: DocumentOrder) -> DocumentJob:
        if self.maker is None:
            raise OrderRefused("this server makes no exports: start it with `protocolo serve`")
        job = DocumentJob("job-" + secrets.token_hex(8), order, datetime.now(UTC))
        with self._lock:
            self._jobs[job.job_id] = job
        threading.Thread(target=self._run, args=(job, self.maker), name=job.job_id, daemon=True).start()
        return job

    def _run(self, job: DocumentJob, maker: Maker) -> None:
        try:
            job.outcome = maker(job.order, job.say)
            job.state = "done"
        except OrderRefused as exc:
            job.outcome, job.state = str(exc), "failed"
        except Exception:  # logged for the operator; the person sees a sentence, never a traceback
            log.exception("making %s failed", job.job_id)
            job.outcome, job.state = "internal error (see the server's log)", "failed"

    def get(self, job_id: str) -> DocumentJob | None:
        with self._lock:
            return self._jobs.get(job_id)

    def recent(self, requested_by: str | None = None) -> list[DocumentJob]:
        with self._lock:
            jobs = list(self._jobs.values())
        return sorted((j for j in jobs if requested_by is None or j.order.requested_by == requested_by),
                      key=lambda j: j.started_at, reverse=True)[:20]
