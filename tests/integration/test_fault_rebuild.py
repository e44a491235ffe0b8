"""``protocolo project --rebuild``: views rebuilt from the journal equal the live ones.

The live views are built batch by batch (small batches); the rebuild replays the whole
journal as one batch. The test damages the views first (a view emptied, another edited),
so a rebuild that did nothing could not pass; a rebuild SIGKILLed in the middle of its
transaction must leave the views exactly as they were.
"""

from __future__ import annotations

import re
import signal
import subprocess
import threading
import time

import psycopg
from view_snapshot import (
    PROTOCOLO,
    VIEW_TABLES,
    cli_env,
    describe_difference,
    log_ends,
    project_in_process,
    publish_day,
    scratch_database,
    snapshot,
    stored_offsets,
)

from protocolo.runtime import Runtime

APP_NAME = "fault-test-rebuild"


def run_cli(settings, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PROTOCOLO, "project", "--quiet", *args], env=cli_env(settings, PGAPPNAME=APP_NAME),
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
    )


def views(snap: dict) -> dict:
    return {t: snap[t] for t in VIEW_TABLES}


def test_rebuilt_views_equal_live_views(settings, tmp_path):
    _, receipts = publish_day(settings, contacts=300, seed=505)
    ends = log_ends(receipts)
    rt = Runtime.start(settings, log=lambda m: None)
    with rt.projector(batch_size=25) as projector:
        projector.run(until_caught_up=True, idle_timeout_s=30)
    live = snapshot(settings.database_url)
    assert len(live["journal"]) == len(receipts)
    assert all(live[t] for t in ("interactions", "customer_index", "recordings", "retrieval_requests")), \
        "the day should fill the main views"

    # A rebuild killed inside its transaction changes nothing.
    proc = subprocess.Popen(
        [PROTOCOLO, "project", "--quiet", "--rebuild", "--until-caught-up"],
        env=cli_env(settings, PGAPPNAME=APP_NAME), stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        with psycopg.connect(settings.database_url, autocommit=True) as watch:
            deadline = time.monotonic() + 60
            while not watch.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND application_name = %s AND backend_xid IS NOT NULL"
                " AND query ILIKE '%%batch_events%%' AND query NOT ILIKE 'CREATE TEMP%%'",
                (APP_NAME,),
            ).fetchone()[0]:
                assert proc.poll() is None, f"the rebuild ended before it could be killed: {proc.stderr.read()}"
                assert time.monotonic() < deadline, "no rebuild transaction seen"
        proc.send_signal(signal.SIGKILL)
        proc.wait(15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(15)
        proc.stderr.close()
    after_kill = snapshot(settings.database_url)
    assert after_kill == live, describe_difference(live, after_kill)

    # Damage the views, then rebuild: the rebuilt views are the live ones, row for row.
    with psycopg.connect(settings.database_url) as conn:
        conn.execute("TRUNCATE interactions, customer_index")
        conn.execute("UPDATE retrieval_requests SET status = 'requested', fulfilled_at = NULL")
        conn.execute("DELETE FROM recordings WHERE recording_id IN (SELECT recording_id FROM recordings LIMIT 5)")
    damaged = snapshot(settings.database_url)
    assert views(damaged) != views(live)

    done = run_cli(settings, "--rebuild", "--until-caught-up")
    assert done.returncode == 0, done.stderr
    match = re.search(r"rebuilt the views from ([\d,]+) journalled events", done.stderr)
    assert match and int(match.group(1).replace(",", "")) == len(receipts), done.stderr
    rebuilt = snapshot(settings.database_url)
    assert rebuilt == live, describe_difference(live, rebuilt)
    assert stored_offsets(settings.database_url) == {p: (e, e) for p, e in ends.items()}


def test_rebuild_while_a_projector_is_applying_a_batch(backend, settings):
    """The rebuild's promise (projections/rebuild.py): "a projector running meanwhile waits
    instead of applying a batch to half-rebuilt views". Both must finish, and the result
    must equal a plain projection.

    The race is made deterministic: a maintenance transaction holds a SHARE lock on
    ``retrieval_requests`` (what a plain ``CREATE INDEX`` on it takes), so the projector's
    next batch stops half-way through its view statements, holding its locks on the views
    applied before. The rebuild starts then, and the maintenance transaction ends once the
    rebuild is seen waiting. (Without the maintenance lock the same happens by chance when a
    rebuild starts while batches flow.)
    """
    _, first = publish_day(settings, contacts=60, seed=606)
    rt = Runtime.start(settings, log=lambda m: None)
    projector = rt.projector(batch_size=25)
    projector_pid = projector.writer_backend_pid  # the connection batches are written on
    errors: list[BaseException] = []

    def run() -> None:
        try:
            projector.run()
        except BaseException as exc:  # reported below
            errors.append(exc)

    thread = threading.Thread(target=run, name="running-projector", daemon=True)
    thread.start()
    rebuild = None
    try:
        wait(lambda: stored_offsets(settings.database_url) == {p: (e, e) for p, e in log_ends(first).items()},
             60, "the first day projected", errors)
        with psycopg.connect(settings.database_url, autocommit=True) as watch, \
                psycopg.connect(settings.database_url) as maintenance:
            maintenance.execute("LOCK TABLE retrieval_requests IN SHARE MODE")

            def waiting(condition: str, *params: object) -> bool:
                return watch.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    f" AND wait_event_type = 'Lock' AND {condition}", params).fetchone()[0] > 0

            _, second = publish_day(settings, contacts=10, seed=607)
            wait(lambda: waiting("pid = %s", projector_pid), 30, "the projector's batch held up", errors)
            rebuild = subprocess.Popen(
                [PROTOCOLO, "project", "--quiet", "--rebuild", "--until-caught-up"],
                env=cli_env(settings, PGAPPNAME=APP_NAME), stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            )
            # Any rebuild has to wait here: it must replace retrieval_requests, which the
            # maintenance lock protects (today it waits in TRUNCATE, holding projector_offsets).
            wait(lambda: waiting("application_name = %s", APP_NAME), 60, "the rebuild waiting for a lock", errors)
            maintenance.commit()
        _, stderr = rebuild.communicate(timeout=120)
        ends = log_ends(first + second)
        wait(lambda: stored_offsets(settings.database_url) == {p: (e, e) for p, e in ends.items()},
             60, "everything projected", errors)
        assert rebuild.returncode == 0, f"the rebuild failed (exit {rebuild.returncode}):\n{stderr}"
        assert not errors, f"the running projector failed: {errors[0]!r}"
    finally:
        if rebuild is not None and rebuild.poll() is None:
            rebuild.kill()
            rebuild.communicate(timeout=15)
        projector.stop()
        thread.join(30)
        projector.close()

    live = snapshot(settings.database_url)
    with scratch_database(backend.database_url, "rebuild_ref") as reference_url:
        project_in_process(backend.kafka_bootstrap, reference_url, settings.topic)
        reference = snapshot(reference_url)
    assert live == reference, describe_difference(live, reference)


def wait(condition, timeout: float, what: str, errors: list[BaseException]) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if errors:
            raise AssertionError(f"the running projector failed before {what}: {errors[0]!r}") from errors[0]
        assert time.monotonic() < deadline, f"not {what} within {timeout:.0f} s"
        time.sleep(0.02)
