"""Writes projector batches to PostgreSQL on a thread of its own.

While batch *k* commits (PostgreSQL works in its own process, psycopg waits without the
GIL), the projector fetches and decodes batch *k+1*: the two halves of the work overlap
instead of taking turns. At most one batch waits behind the one being written, so memory
stays bounded by the batch size.

Exactly-once is untouched: each batch is still one transaction holding its rows and its
offsets, fenced on the offsets the batch started from. The projector advances its
positions optimistically when it hands a batch over; if a write fails, every batch
handed over after it fails its fence too, and the projector, on seeing the failure,
waits for the writer to go idle and re-reads the stored offsets. A batch the database
refuses for one row's content is written without that row (quarantined instead, with the
same Merkle leaf, see :mod:`.row_isolation`), so positions and trees are unchanged.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

import psycopg

from protocolo.projections.journal import write_journal, write_quarantine

from . import write_hooks
from .batch import Batch
from .row_isolation import RowIsolatingWrite, refused_content
from .tracking import TrackingStore


class BatchWriter:
    def __init__(self, conn: psycopg.Connection, tracking: TrackingStore,
                 on_committed: Callable[[Batch], None]) -> None:
        self._conn = conn
        self._tracking = tracking
        self._topic = tracking.topic
        self._on_committed = on_committed
        self._queue: queue.Queue[Batch | None] = queue.Queue(maxsize=1)
        self._error: BaseException | None = None
        self._lock = threading.Lock()
        self._observer = write_hooks.installed()  # crash tests only: see write_hooks
        self._batches = 0  # batches this writer has started to write
        self._committed_records = 0
        self._committed_at: dict[int, int] = {}  # partition -> next offset, as this writer committed it
        self._thread = threading.Thread(target=self._run, name="protocolo-batch-writer", daemon=True)
        self._thread.start()

    def submit(self, batch: Batch) -> None:
        """Hand a batch over; blocks while one is already waiting."""
        if not self._thread.is_alive():
            raise RuntimeError("the batch writer has stopped")
        self._queue.put(batch)

    def drain(self) -> None:
        """Wait until every batch handed over is committed or has failed."""
        if not self._thread.is_alive():
            if self._queue.unfinished_tasks:
                raise RuntimeError("the batch writer stopped with batches not written")
            return
        self._queue.join()

    def failed(self) -> bool:
        with self._lock:
            return self._error is not None

    def take_error(self) -> BaseException | None:
        """The first failure since the last call (after :meth:`drain`, all of them are in)."""
        with self._lock:
            error, self._error = self._error, None
        return error

    def close(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def _run(self) -> None:
        while True:
            batch = self._queue.get()
            try:
                if batch is None:
                    return
                with self._lock:
                    failed_before = self._error is not None
                if failed_before:
                    continue  # its fence is stale: the projector will re-read and redo it
                try:
                    written = self._write(batch)
                except BaseException as exc:  # noqa: BLE001 - handed to the projector's thread
                    self._fail(exc)
                    continue
                self._note_committed(written)
                self._on_committed(written)
                if self._observer is not None:
                    self._observer.reached("between-batches", self._batches, self._write_facts)
            finally:
                self._queue.task_done()

    def _note_committed(self, batch: Batch) -> None:
        self._committed_records += batch.records
        for p in batch.progress:
            self._committed_at[p.partition] = p.next_offset

    def _write_facts(self, pending: Batch | None = None) -> dict[str, Any]:
        """For a write observer (write_hooks): what this writer committed, what is open."""
        facts: dict[str, Any] = {
            "committed_records": self._committed_records,
            "committed_offsets": {str(p): o for p, o in self._committed_at.items()},
            "transaction_status": self._conn.info.transaction_status.name,
        }
        if pending is not None:
            facts["pending_records"] = pending.records
            facts["pending_offsets"] = {str(p.partition): p.next_offset for p in pending.progress}
        return facts

    def _fail(self, exc: BaseException) -> None:
        with self._lock:
            self._error = self._error or exc

    def _write(self, batch: Batch) -> Batch:
        """One transaction: journal rows and views, quarantine rows, fenced positions. If the
        database refuses a row's content, the batch is written again without the refused
        rows, which are quarantined (:mod:`.row_isolation`). Returns what was written."""
        self._batches += 1
        try:
            with self._conn.transaction(), self._conn.cursor() as cur:
                write_journal(cur, self._topic, batch.rows)
                write_quarantine(cur, self._topic, batch.quarantined)
                self._tracking.advance(cur, batch.progress, batch.nodes)
                if self._observer is not None:
                    def facts() -> dict[str, Any]:
                        return self._write_facts(pending=batch)
                    if self._batches == 1:
                        self._observer.reached("before-first-commit", self._batches, facts)
                    self._observer.reached("in-transaction", self._batches, facts)
        except psycopg.Error as exc:
            if not refused_content(exc):
                raise
            return RowIsolatingWrite(self._conn, self._tracking, batch).write()
        return batch
