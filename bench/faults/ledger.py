"""One ledger under test: a fresh topic and database on the campaign's services, a
publisher and a protocol issuer, projector subprocesses, and the oracles that say what was
lost or duplicated.

Oracles (independent of the projector's own bookkeeping):

* **receipts**: every receipt the publisher returned names (partition, offset, event id);
  the journal must hold that event id at that place. A receipt missing is *lost*.
* **event ids**: every event published (retried ones included) must be in the journal
  exactly once with ``is_duplicate = false``; more than once is *duplicated*. Rows marked
  ``is_duplicate`` are the log's own duplicates (a retried send that had landed), counted
  and reported, not an error.
* **clean run**: ``snapshot()`` (tests/integration/view_snapshot.py) of the database the
  faults hit must equal that of a database projected in one uninterrupted run from the same
  topic: views, journal, quarantine, offsets and Merkle trees, row for row.
* **clean topic** (where the log itself holds duplicates): the journal's first occurrences,
  in log order, written to a fresh topic and projected there give the same *views*.
"""

from __future__ import annotations

import json
import random
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from kafka import KafkaProducer
from kill_switch import killed_projector_argv
from psycopg import sql
from view_snapshot import (
    PROTOCOLO,
    VIEW_TABLES,
    cli_env,
    describe_difference,
    project_in_process,
    snapshot,
)

from protocolo.core.config import Settings
from protocolo.producers.ledger_topic import ensure_ledger_topic
from protocolo.producers.protocol_issuer import ProtocolIssuer
from protocolo.producers.publisher import PreparedEvent, PublishFailed, Receipt
from protocolo.producers.simulator import CallCentreDay, chunks
from protocolo.runtime import Runtime

APP_NAME = "fault-campaign-projector"


def with_database(admin_url: str, name: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    return urlunsplit(urlsplit(admin_url)._replace(path=f"/{name}"))


def create_database(admin_url: str, label: str) -> str:
    name = f"faults_{label}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return with_database(admin_url, name)


class Projection:
    """A ``protocolo project`` subprocess on a ledger."""

    def __init__(self, ledger: Ledger, name: str, *args: str,
                 kill_at: tuple[str, Path] | None = None, **env: str) -> None:
        self.log_path = ledger.work / f"{name}.log"
        self._log = self.log_path.open("wb")
        argv = [PROTOCOLO, "project", "--quiet", *args]
        if kill_at is not None:  # the test-only entry script (tests/integration/kill_switch.py)
            argv = killed_projector_argv(kill_at[0], kill_at[1], *argv[1:])
        self.proc = subprocess.Popen(
            argv,
            env=cli_env(ledger.settings, PGAPPNAME=APP_NAME, **env),
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
        )

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def wait(self, timeout: float) -> int:
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(30)
            self._log.close()
            raise RuntimeError(f"projector still running after {timeout:.0f} s:\n{self.output()[-2000:]}") from None
        self._log.close()
        return rc

    def running(self) -> bool:
        return self.proc.poll() is None


class Ledger:
    def __init__(self, home: Path, work: Path, kafka_bootstrap: str, admin_url: str, label: str,
                 partitions: int = 4) -> None:
        self.work = work / label
        self.work.mkdir(parents=True, exist_ok=True)
        self.admin_url = admin_url
        self.topic = f"faults.{label}.{uuid.uuid4().hex[:8]}"
        ensure_ledger_topic(kafka_bootstrap, self.topic, partitions, timeout=120)
        self.settings = Settings(
            home=home, kafka_bootstrap=kafka_bootstrap, database_url=create_database(admin_url, label),
            topic=self.topic, partitions=partitions, group_id=f"faults-{label}-{uuid.uuid4().hex[:8]}",
            dev_keys=True,
        )
        self.runtime = Runtime.start(self.settings, log=lambda m: None)
        self.publisher = self.runtime.publisher("fault-campaign")
        self.issuer = ProtocolIssuer(self.runtime.database_url)
        self.receipts: list[Receipt] = []
        self.published: list[PreparedEvent] = []
        self.failed_sends = 0
        self._runs = 0

    @property
    def database_url(self) -> str:
        assert self.settings.database_url is not None
        return self.settings.database_url

    def close(self) -> None:
        self.publisher.close()
        self.issuer.close()

    # -- publishing ----------------------------------------------------------------------

    def events(self, contacts: int, seed: int) -> list[PreparedEvent]:
        day = CallCentreDay(self.issuer.issue, contacts=contacts, seed=seed).build()
        return [self.publisher.prepare(e) for e in day.events]

    def publish(self, prepared: list[PreparedEvent], chunk: int = 500,
                on_receipts: Callable[[list[Receipt]], None] | None = None) -> list[PreparedEvent]:
        """Send in chunks; returns the events the broker did not confirm (to send again)."""
        unconfirmed: list[PreparedEvent] = []
        for part in chunks(prepared, chunk):
            try:
                got = self.publisher.send_prepared(part)
            except PublishFailed as exc:
                got = exc.delivered
                unconfirmed += [p for p in part if p.event_id in exc.failed]
                self.failed_sends += len(exc.failed)
            self.receipts += got
            if on_receipts is not None:
                on_receipts(got)
        self.published += [p for p in prepared if p not in unconfirmed]
        return unconfirmed

    def publish_until_confirmed(self, prepared: list[PreparedEvent], chunk: int = 500,
                                attempts: int = 20) -> int:
        """Publish, sending again (same bytes, same event ids) what was not confirmed."""
        retried = 0
        pending = prepared
        for _ in range(attempts):
            pending = self.publish(pending, chunk)
            if not pending:
                return retried
            retried += len(pending)
            time.sleep(1.0)
        raise RuntimeError(f"{len(pending)} events still unconfirmed after {attempts} attempts")

    def resend(self, prepared: list[PreparedEvent]) -> None:
        """Send events again byte for byte (a producer retrying an unconfirmed send)."""
        self.receipts += self.publisher.send_prepared(prepared)

    # -- projecting ----------------------------------------------------------------------

    def projection(self, *args: str, kill_at: tuple[str, Path] | None = None, **env: str) -> Projection:
        self._runs += 1
        return Projection(self, f"project-{self._runs}", *args, kill_at=kill_at, **env)

    def progress(self) -> int:
        """Records projected (sum of the stored next offsets); -1 when PostgreSQL does not answer."""
        try:
            with psycopg.connect(self.database_url, autocommit=True, connect_timeout=3) as conn:
                if conn.execute("SELECT to_regclass('projector_offsets')").fetchone() == (None,):
                    return 0
                row = conn.execute("SELECT coalesce(sum(next_offset), 0) FROM projector_offsets"
                                   " WHERE topic = %s", (self.topic,)).fetchone()
                return int(row[0]) if row else 0
        except psycopg.OperationalError:
            return -1

    def log_end(self) -> int:
        ends: dict[int, int] = {}
        for r in self.receipts:
            ends[r.partition] = max(ends.get(r.partition, 0), r.offset + 1)
        return sum(ends.values())

    # -- oracles -------------------------------------------------------------------------

    def journal(self) -> list[tuple[int, int, str, bool]]:
        with psycopg.connect(self.database_url) as conn:
            return [(p, o, str(e), d) for p, o, e, d in conn.execute(
                "SELECT kafka_partition, kafka_offset, event_id, is_duplicate FROM journal"
                " WHERE topic = %s ORDER BY 1, 2", (self.topic,))]

    def lost_and_duplicated(self, receipts: list[Receipt] | None = None) -> dict[str, Any]:
        """Receipts (default: all) not found at their place, and event ids applied twice."""
        rows = self.journal()
        at = {(p, o): e for p, o, e, _ in rows}
        checked = self.receipts if receipts is None else receipts
        lost_receipts = [r for r in checked if at.get((r.partition, r.offset)) != str(uuid.UUID(r.event_id))]
        applied: dict[str, int] = {}
        log_duplicates = 0
        for _, _, e, dup in rows:
            if dup:
                log_duplicates += 1
            else:
                applied[e] = applied.get(e, 0) + 1
        published = {str(uuid.UUID(p.event_id)) for p in self.published}
        missing = sorted(published - set(applied))
        twice = sorted(e for e, n in applied.items() if n > 1)
        return {"receipts_checked": len(checked), "lost_receipts": len(lost_receipts),
                "events": len(published), "missing_events": len(missing),
                "applied_twice": len(twice), "log_duplicates": log_duplicates,
                "examples": [str(r) for r in lost_receipts[:3]] + missing[:3] + twice[:3]}

    def reference(self, label: str = "ref") -> str:
        """A database projected in one uninterrupted in-process run from the same topic."""
        url = create_database(self.admin_url, label)
        self.catch_up(url)
        return url

    def catch_up(self, url: str, group_id: str | None = None) -> None:
        """Project the topic into ``url`` in process until caught up (a clean, uninterrupted run)."""
        assert self.settings.kafka_bootstrap is not None
        project_in_process(self.settings.kafka_bootstrap, url, self.topic, group_id=group_id,
                           idle_timeout_s=120)

    def same_as(self, reference_url: str, tables: tuple[str, ...] | None = None) -> str | None:
        """None if the snapshots are equal (on ``tables`` if given), else what differs."""
        live, ref = snapshot(self.database_url), snapshot(reference_url)
        if tables is not None:
            live = {t: live[t] for t in tables}
            ref = {t: ref[t] for t in tables}
        return None if live == ref else describe_difference(live, ref)

    def clean_topic_views(self, home: Path) -> str | None:
        """Replay the journal's first occurrences to a fresh topic, project it, compare views."""
        assert self.settings.kafka_bootstrap is not None
        clean = f"{self.topic}.clean"
        ensure_ledger_topic(self.settings.kafka_bootstrap, clean, self.settings.partitions, timeout=120)
        producer = KafkaProducer(bootstrap_servers=self.settings.kafka_bootstrap, acks="all",
                                 enable_idempotence=True)
        try:
            with psycopg.connect(self.database_url) as conn:
                rows = conn.execute(
                    "SELECT kafka_partition, record_key, record_value, headers FROM journal"
                    " WHERE topic = %s AND NOT is_duplicate ORDER BY kafka_partition, kafka_offset",
                    (self.topic,)).fetchall()
            for partition, key, value, headers in rows:
                pairs = headers if isinstance(headers, list) else json.loads(headers or "[]")
                producer.send(clean, key=bytes(key) if key is not None else None, value=bytes(value),
                              headers=[(k, v.encode()) for k, v in pairs], partition=partition)
            producer.flush(timeout=120)
        finally:
            producer.close()
        url = create_database(self.admin_url, "clean")
        project_in_process(self.settings.kafka_bootstrap, url, clean, idle_timeout_s=120)
        live, ref = snapshot(self.database_url), snapshot(url)
        live = {t: live[t] for t in VIEW_TABLES}
        ref = {t: ref[t] for t in VIEW_TABLES}
        return None if live == ref else describe_difference(live, ref)


def pick(rng: random.Random, low: int, high: int) -> int:
    return rng.randint(low, max(low, high))
