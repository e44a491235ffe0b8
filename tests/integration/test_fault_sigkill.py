"""Kill the projector process anywhere: the result is as if it had never stopped.

``protocolo project`` runs as a real subprocess against the real broker and PostgreSQL. The
kills are instrumented, not timed: run through the test-only entry script
``project_killed_at.py`` (kill_switch.py, installed as the batch writer's write observer)
the process SIGKILLs itself at a named point (inside its first transaction before the
first commit, inside the transaction of batch n, between batch n's commit and the next
transaction) after writing a report of where it died and what it had committed. The test
checks each report against PostgreSQL (what was committed is there, the open transaction's
batch is not), restarts the projector each time, and finally lets it run until caught up.
Its database must then equal, row for row, a reference database projected in one go from
the same topic: nothing lost, nothing applied twice. The day also holds events sent twice
(producer retries), so duplicate marking is checked across kills.

A clean stop (SIGTERM, SIGINT) must exit 0 promptly and leave no half batch: the stored
offsets are exactly the journal's last offset + 1 per partition.

The day and the batch numbers of the kills come from a seed, fixed by default so that a run
is reproducible, printed and named in every failure message; set ``PROTOCOLO_FAULT_SEED``
to try another.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from kill_switch import fault_seed, killed_projector_argv
from view_snapshot import (
    PROTOCOLO,
    cli_env,
    describe_difference,
    log_ends,
    project_in_process,
    publish_day,
    scratch_database,
    snapshot,
    stored_offsets,
)

from protocolo.core.config import Settings

APP_NAME = "fault-test-projector"  # PGAPPNAME of the subprocess: finds its backend in pg_stat_activity
START_TIMEOUT_S = 60.0  # process start + consumer-group join (~3 s, more after a SIGKILL)
STOP_TIMEOUT_S = 15.0


class Watch:
    """Looks at the test database from outside, as an operator would."""

    def __init__(self, database_url: str) -> None:
        self.conn = psycopg.connect(database_url, autocommit=True)

    def progress(self) -> int:
        """Records the projector has committed (sum of stored next offsets)."""
        row = self.conn.execute("SELECT coalesce(sum(next_offset), 0) FROM projector_offsets").fetchone()
        return int(row[0])

    def write_transaction_open(self) -> bool:
        """The projector process holds a transaction that has written something."""
        row = self.conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND application_name = %s AND backend_xid IS NOT NULL",
            (APP_NAME,),
        ).fetchone()
        return row[0] > 0

    def close(self) -> None:
        self.conn.close()


class ProjectorProcess:
    def __init__(self, settings: Settings, log_dir: Path, n: int, *args: str,
                 kill_at: tuple[str, Path] | None = None, **env: str) -> None:
        self.log_path = log_dir / f"project-{n}.log"
        self._log = self.log_path.open("wb")
        argv = [PROTOCOLO, "project", "--quiet", *args]
        if kill_at is not None:
            argv = killed_projector_argv(kill_at[0], kill_at[1], *argv[1:])
        self.proc = subprocess.Popen(
            argv,
            env=cli_env(settings, PGAPPNAME=APP_NAME, **env),
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
        )

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            self._log.close()

    def finish(self, timeout: float = 120) -> int:
        """Wait for the process to exit by itself; kill it and fail if it does not in time."""
        try:
            return self.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"projector still running after {timeout:.0f} s:\n{self.output()}") from None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.wait(STOP_TIMEOUT_S)


def wait_until(condition: Callable[[], bool], proc: ProjectorProcess, timeout: float, what: str,
               interval: float = 0.005) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.proc.poll() is not None:
            raise AssertionError(f"projector exited ({proc.proc.returncode}) before {what}:\n{proc.output()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"not {what} within {timeout:.0f} s:\n{proc.output()}")
        time.sleep(interval)


def journal_vs_offsets(database_url: str) -> tuple[dict, dict]:
    """(partition -> (max offset + 1, row count, max leaf + 1)) from the journal, and the stored offsets."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT kafka_partition, max(kafka_offset) + 1, count(*), max(leaf_index) + 1"
            " FROM journal GROUP BY kafka_partition"
        ).fetchall()
    return {p: (end, n, leaves) for p, end, n, leaves in rows}, stored_offsets(database_url)


def killed_at(settings: Settings, tmp_path: Path, n: int, point: str, watch: Watch, ctx: str) -> dict[str, Any]:
    """Run a projector that SIGKILLs itself at ``point``; check its report against PostgreSQL."""
    report_path = tmp_path / f"kill-{n}.json"
    before = watch.progress()  # the previous process is dead: this is what it left
    proc = ProjectorProcess(settings, tmp_path, n, "--batch-size", "25", kill_at=(point, report_path))
    rc = proc.finish()
    where = f"kill {n} at {point} {ctx}"
    assert rc == -signal.SIGKILL, f"{where}: exit status {rc}, not SIGKILL:\n{proc.output()}"
    assert report_path.exists(), f"{where}: killed, but not at the instrumented point:\n{proc.output()}"
    report: dict[str, Any] = json.loads(report_path.read_text())
    report["resumed_from"] = before
    report["after_kill"] = watch.progress()
    # What this process committed is in PostgreSQL, and nothing more: an open transaction's
    # batch died with it.
    assert report["after_kill"] == before + report["committed_records"], f"{where}: {report}"
    stored = stored_offsets(settings.database_url)
    for partition, offset in report["committed_offsets"].items():
        assert stored[int(partition)][0] == offset, f"{where}: partition {partition} stored {stored}, {report}"
    if "pending_records" in report:  # killed inside a transaction that had written a batch
        assert report["transaction_status"] == "INTRANS" and report["pending_records"] > 0, f"{where}: {report}"
    else:
        assert report["transaction_status"] == "IDLE", f"{where}: {report}"
    return report


def test_sigkill_anywhere_equals_an_uninterrupted_run(backend, settings, tmp_path):
    seed = fault_seed()
    rng = random.Random(seed)
    ctx = f"(PROTOCOLO_FAULT_SEED={seed})"
    # ... and some events sent twice (producer retries): duplicates must be marked the same way.
    day, receipts = publish_day(settings, contacts=400, seed=seed, duplicates=60)
    ends = log_ends(receipts)
    total = sum(ends.values())
    assert len(ends) == settings.partitions, f"the day did not reach every partition {ctx}"

    # Batches of 25: each run below dies within its first 12 batches (<= 300 records), so
    # the four of them stop well before the end of the day's records.
    points = [
        "before-first-commit",
        f"in-transaction:{rng.randint(2, 12)}",
        f"between-batches:{rng.randint(1, 12)}",
        f"in-transaction:{rng.randint(2, 12)}",
    ]
    watch = Watch(settings.database_url)
    try:
        kills = [killed_at(settings, tmp_path, n, point, watch, ctx) for n, point in enumerate(points, 1)]
    finally:
        watch.close()
    assert kills[0]["committed_records"] == 0 and kills[0]["after_kill"] == 0, f"{kills[0]} {ctx}"
    assert all(k["committed_records"] > 0 for k in kills[1:]), f"{kills} {ctx}"
    assert kills[-1]["after_kill"] < total, f"a kill came after the end: {kills} {ctx}"

    final = ProjectorProcess(settings, tmp_path, len(points) + 1, "--batch-size", "25", "--until-caught-up")
    rc = final.finish()
    assert rc == 0, f"final run exited {rc} {ctx}:\n{final.output()}"

    live = snapshot(settings.database_url)
    with scratch_database(backend.database_url, "sigkill_ref") as reference_url:
        stats = project_in_process(backend.kafka_bootstrap, reference_url, settings.topic)
        reference = snapshot(reference_url)
    assert stats.journaled == total and stats.quarantined == 0

    # Nothing lost, nothing doubled.
    assert len(live["journal"]) == total, f"journal has {len(live['journal'])} of {total} records {ctx} {kills}"
    assert not live["quarantine"]
    assert sum(1 for row in live["journal"] if row[4]) == 60, f"duplicates not marked once each {ctx}"
    assert sorted(row[3] for row in live["journal"]) == sorted(uuid.UUID(r.event_id) for r in receipts)
    assert stored_offsets(settings.database_url) == {p: (end, end) for p, end in ends.items()}, ctx
    # ... and row for row what an uninterrupted run gives.
    assert live == reference, f"killed run differs from the reference {ctx} {kills}:\n" + describe_difference(live, reference)


def test_the_shipped_projector_ignores_the_old_kill_variable(settings, tmp_path):
    """No variable makes the production projector kill itself: PROTOCOLO_TEST_KILL_AT is ignored."""
    _, receipts = publish_day(settings, contacts=20, seed=fault_seed())
    ends = log_ends(receipts)
    proc = ProjectorProcess(settings, tmp_path, 1, "--batch-size", "25", "--until-caught-up",
                            PROTOCOLO_TEST_KILL_AT="before-first-commit",
                            PROTOCOLO_TEST_KILL_REPORT=str(tmp_path / "r.json"))
    assert proc.finish() == 0, proc.output()
    assert not (tmp_path / "r.json").exists()
    assert stored_offsets(settings.database_url) == {p: (end, end) for p, end in ends.items()}


@pytest.mark.kafka_client_lane
def test_sigkill_before_the_first_commit_then_resume(backend, settings, tmp_path):
    """Killed inside its first transaction, before anything was committed: the next run starts from zero."""
    seed = fault_seed()
    _, receipts = publish_day(settings, contacts=40, seed=seed)
    ends = log_ends(receipts)
    watch = Watch(settings.database_url)
    try:
        report = killed_at(settings, tmp_path, 1, "before-first-commit", watch, f"(seed {seed})")
    finally:
        watch.close()
    assert report["after_kill"] == 0 and not stored_offsets(settings.database_url), report
    final = ProjectorProcess(settings, tmp_path, 2, "--batch-size", "25", "--until-caught-up")
    rc = final.finish()
    assert rc == 0, final.output()
    offsets = stored_offsets(settings.database_url)
    assert offsets == {p: (end, end) for p, end in ends.items()}, f"seed {seed}"
    journal, _ = journal_vs_offsets(settings.database_url)
    assert journal == {p: (end, end, end) for p, end in ends.items()}


def _clean_stop(sig: signal.Signals, settings: Settings, tmp_path: Path) -> None:
    seed = fault_seed()
    ctx = f"({sig.name}, PROTOCOLO_FAULT_SEED={seed})"
    day, receipts = publish_day(settings, contacts=200, seed=seed)
    ends = log_ends(receipts)
    total = sum(ends.values())
    watch = Watch(settings.database_url)
    proc = ProjectorProcess(settings, tmp_path, 1, "--batch-size", "10")
    try:
        wait_until(lambda: watch.progress() >= total // 4, proc, START_TIMEOUT_S, f"progress {ctx}")
        # Signal while a batch is being written: it must be finished (committed), not cut.
        wait_until(watch.write_transaction_open, proc, START_TIMEOUT_S, f"a write transaction open {ctx}",
                   interval=0)
        proc.proc.send_signal(sig)
        try:
            rc = proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise AssertionError(f"no exit within {STOP_TIMEOUT_S:.0f} s of {sig.name} {ctx}:\n{proc.output()}") from None
        assert rc == 0, f"exit status {rc} after {sig.name} {ctx}:\n{proc.output()}"
        assert "projected" in proc.output(), proc.output()
    finally:
        watch.close()
        if proc.proc.poll() is None:
            proc.kill()

    journal, offsets = journal_vs_offsets(settings.database_url)
    assert sum(n for _, n, _ in journal.values()) < total, f"the signal came after the end {ctx}"
    # No half batch: every stored offset is the journal's last offset + 1 and its leaf count,
    # and the journal of each partition has no gap (its rows are offsets 0..end-1).
    assert set(offsets) == set(journal), f"{offsets} vs {journal} {ctx}"
    for p, (end, rows, leaves) in journal.items():
        assert offsets[p] == (end, rows), f"partition {p}: stored {offsets[p]}, journal {journal[p]} {ctx}"
        assert rows == end == leaves, f"partition {p}: journal has a gap {journal[p]} {ctx}"

    # And the next run picks up exactly there.
    final = ProjectorProcess(settings, tmp_path, 2, "--batch-size", "500", "--until-caught-up")
    assert final.finish() == 0, final.output()
    assert stored_offsets(settings.database_url) == {p: (end, end) for p, end in ends.items()}, ctx
    journal, _ = journal_vs_offsets(settings.database_url)
    assert journal == {p: (end, end, end) for p, end in ends.items()}, ctx


@pytest.mark.kafka_client_lane
def test_sigterm_finishes_the_batch_in_flight_and_exits_0(settings, tmp_path):
    _clean_stop(signal.SIGTERM, settings, tmp_path)


def test_sigint_finishes_the_batch_in_flight_and_exits_0(settings, tmp_path):
    _clean_stop(signal.SIGINT, settings, tmp_path)
