"""Adversarial tests of the kernel's rules: registry-wide protocol numbers, keys
that are never invented nor swapped, reproducible deadlines, a read-only ``history``, the
projection watermark in front of the sweeper and ``erase``, and a CLI that never shows a
traceback nor a password.

Everything runs against the session's real broker and PostgreSQL (``backend``), and the
CLI both in-process (:class:`helpers_flow.Cli`) and as a real ``protocolo`` subprocess.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import backends
import psutil
import psycopg
import pytest
from helpers_flow import (
    CPF,
    OTHER_CPF,
    Cli,
    contact_opened,
    now_s,
    project,
    recording_captured,
    start_runtime,
)
from psycopg import sql
from view_snapshot import PROTOCOLO, cli_env, scratch_database

from protocolo import devstack
from protocolo.core import policy
from protocolo.core.config import Settings
from protocolo.core.deployment_keys import KEY_BYTES
from protocolo.core.errors import EventRejected
from protocolo.core.protocol_number import make_protocol_number
from protocolo.core.watermark import ProjectionBehind, log_end_offsets, wait_until_projected
from protocolo.devstack import Endpoints
from protocolo.producers.erasure import erase_customer
from protocolo.producers.protocol_issuer import ProtocolIssuer
from protocolo.producers.publisher import Event
from protocolo.producers.retention import sweep
from protocolo.projections import views
from protocolo.projections.rebuild import rebuild_views
from protocolo.projections.views import PolicyMismatch
from protocolo.runtime import Runtime, RuntimeUnavailable
from protocolo.schemas import validation

KEY_VARIABLES = ("PROTOCOLO_INDEX_KEY", "PROTOCOLO_MASTER_KEY")
CODE = "C-KERNEL-1"
#: A TCP port on 127.0.0.1 where nothing listens (port 1 is privileged and unused here).
CLOSED = "127.0.0.1:1"


def _run(argv: list[str], env: dict[str, str], stdin: str | None = None,
         timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PROTOCOLO, *argv], env=env, input=stdin, capture_output=True, text=True,
                          timeout=timeout, check=False)


def _error_lines(stderr: str) -> list[str]:
    """The error lines (progress lines such as the demo's "Starting the stack ..." aside)."""
    return [line for line in stderr.splitlines() if line.startswith("protocolo:")]


def _new_key() -> str:
    return base64.b64encode(os.urandom(KEY_BYTES)).decode()


def _ends(settings: Settings) -> dict[int, int]:
    assert settings.kafka_bootstrap is not None
    return log_end_offsets(settings.kafka_bootstrap, settings.topic)


def _opened_event(protocol: str, at: datetime, customer: dict[str, str] | None = None,
                  **fields: Any) -> Event:
    return Event("ContactOpened", contact_opened(customer, **fields), protocol_number=protocol, occurred_at=at)


# ----------------------------------------------------------------------------- 2. keys


def test_missing_keys_are_a_one_line_startup_error_for_every_command(settings, tmp_path):
    rt = start_runtime(settings)  # the ledger exists (history would otherwise stop at the schema)
    with ProtocolIssuer(rt.registry_url, block_size=1) as issuer:
        protocol = issuer.issue()
    before = _ends(settings)
    bare_home = tmp_path / "no-keys-here"
    bare_home.mkdir()
    env = cli_env(replace(settings, home=bare_home))
    del env["PROTOCOLO_DEV_KEYS"]
    commands = {
        "history": ["history", "--protocol", protocol],
        "project": ["project", "--until-caught-up"],
        "erase": ["erase", "--cpf", CPF, "--legal-basis", "LGPD art. 18 VI", "--wait", "0"],
        "demo": ["demo", "--contacts", "1"],
    }
    for name, argv in commands.items():
        done = _run(argv, env)
        assert done.returncode == 2, (name, done.returncode, done.stderr)
        assert "Traceback" not in done.stderr, name
        lines = _error_lines(done.stderr)
        assert len(lines) == 1, (name, done.stderr)
        assert "PROTOCOLO_INDEX_KEY is not set" in lines[0], (name, lines[0])
        assert done.stdout == "", (name, done.stdout)
    assert _ends(settings) == before, "a command without keys published something"
    assert not (bare_home / "keys").exists(), "a key was invented outside dev"


def _dev_keys(home: Path) -> dict[str, str]:
    return {var: (home / "keys" / f"{name}.key").read_text().strip()
            for var, name in zip(KEY_VARIABLES, ("index", "master"), strict=True)}


@pytest.mark.parametrize("swapped", KEY_VARIABLES)
def test_a_key_other_than_the_registrys_first_one_is_refused(settings, tmp_path, monkeypatch, swapped):
    start_runtime(settings)  # the registry records the check values of the dev keys
    original = _dev_keys(settings.home)
    before = _ends(settings)
    keys = dict(original, **{swapped: _new_key()})
    for var, value in keys.items():
        monkeypatch.setenv(var, value)
    elsewhere = replace(settings, home=tmp_path / "other-host", dev_keys=False)

    with pytest.raises(RuntimeUnavailable) as refused:
        Runtime.start(elsewhere, log=lambda m: None)
    message = str(refused.value)
    assert message.startswith(f"{swapped} is not the"), message
    other = next(v for v in KEY_VARIABLES if v != swapped)
    assert other not in message
    assert keys[swapped] not in message and original[swapped] not in message  # no key in output

    env = cli_env(elsewhere, **keys)
    del env["PROTOCOLO_DEV_KEYS"]
    for argv in (["project", "--until-caught-up"],
                 ["erase", "--cpf", CPF, "--legal-basis", "LGPD art. 18 VI", "--wait", "0"]):
        done = _run(argv, env)
        assert done.returncode == 2, (argv, done.stderr)
        assert "Traceback" not in done.stderr
        assert f"{swapped} is not the" in done.stderr, done.stderr
    assert _ends(settings) == before, "a runtime with the wrong keys published something"

    # The original keys, from the environment this time, are accepted.
    for var, value in original.items():
        monkeypatch.setenv(var, value)
    Runtime.start(elsewhere, log=lambda m: None)


def test_history_refuses_an_index_key_the_registry_never_saw(settings, tmp_path):
    """A different index key makes ``--cpf`` silently find nothing: a read must refuse it too."""
    rt = start_runtime(settings)
    with ProtocolIssuer(rt.registry_url, block_size=1) as issuer:
        protocol = issuer.issue()
    with rt.publisher("keys-test") as publisher:
        publisher.publish_many([_opened_event(protocol, now_s() - timedelta(hours=1), {"cpf": CPF})])
    project(rt)
    original = _dev_keys(settings.home)
    elsewhere = replace(settings, home=tmp_path / "other-host")

    env = cli_env(elsewhere, **original)
    del env["PROTOCOLO_DEV_KEYS"]
    found = _run(["history", "--cpf", CPF], env)
    assert found.returncode == 0, found.stderr
    assert protocol in found.stdout.replace(" ", "").replace(".", "").replace("-", "")

    env["PROTOCOLO_INDEX_KEY"] = _new_key()
    refused = _run(["history", "--cpf", CPF], env)
    assert refused.returncode == 2, (refused.returncode, refused.stdout, refused.stderr)
    assert "PROTOCOLO_INDEX_KEY is not the" in refused.stderr
    assert "Traceback" not in refused.stderr


# ----------------------------------------------------------------------------- 4. history is read-only


def test_history_names_the_unreachable_url_without_its_password(settings):
    password = f"pw-{uuid.uuid4().hex[:12]}"
    url = f"postgresql://ledger_reader:{password}@{CLOSED}/ledger"
    done = _run(["history", "--protocol", make_protocol_number(2026, 1)],
                cli_env(settings, PROTOCOLO_DATABASE_URL=url), timeout=60)
    assert done.returncode == 3, (done.returncode, done.stderr)
    assert f"postgresql://ledger_reader:***@{CLOSED}/ledger" in done.stderr, done.stderr
    assert password not in done.stderr + done.stdout
    assert "Traceback" not in done.stderr


@contextlib.contextmanager
def _scratch_home(prefix: str) -> Iterator[Path]:
    """A fresh PROTOCOLO_HOME; whatever a command under test started there is stopped after."""
    with backends.scratch_dir(prefix) as home:
        try:
            yield home
        finally:
            devstack.down(Settings(home=home), log=lambda m: None)


def _stack_services(home: Path) -> list[str]:
    """The embedded services running for ``home``, as its stack state and processes say."""
    report = devstack.status(Settings(home=home))
    running = [name for name in ("kafka", "postgres") if report[name]["running"]]
    return running + _processes_under(home)


def _processes_under(home: Path) -> list[str]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            if any(str(home) in part for part in proc.info["cmdline"] or ()):
                found.append(" ".join(proc.info["cmdline"]))
    return found


def test_history_without_a_ledger_starts_nothing_and_creates_nothing(settings):
    with _scratch_home("protocolo-test-ro-") as home:
        env = cli_env(replace(settings, home=home), PROTOCOLO_KAFKA_BOOTSTRAP="", PROTOCOLO_DATABASE_URL="")
        for argv in (["history", "--protocol", make_protocol_number(2026, 1)], ["history", "--cpf", CPF]):
            done = _run(argv, env, timeout=60)
            assert done.returncode == 3, (argv, done.returncode, done.stderr)
            assert "no ledger is reachable" in done.stderr
            assert "protocolo dev up" in done.stderr
            assert "Traceback" not in done.stderr
        assert list(home.iterdir()) == [], "history wrote under PROTOCOLO_HOME"
        assert _stack_services(home) == [], "history started a service"


def test_history_warns_about_records_not_projected_yet(settings, monkeypatch, capsys):
    rt = start_runtime(settings)
    with ProtocolIssuer(rt.registry_url, block_size=2) as issuer:
        first, second = issuer.issue(), issuer.issue()
    at = now_s() - timedelta(hours=2)
    with rt.publisher("lag-test") as publisher:
        publisher.publish_many([_opened_event(first, at)])
    project(rt)
    cli = Cli(settings, monkeypatch, capsys)
    up_to_date = cli("history", "--protocol", first, "--json")
    assert up_to_date.code == 0, up_to_date.err
    assert up_to_date.json()["projection_lag"] is None
    assert "warning" not in up_to_date.err

    with rt.publisher("lag-test") as publisher:  # published, not projected
        publisher.publish_many([
            Event("ContactClosed", {"outcome": "RESOLVED"}, protocol_number=first, occurred_at=at + timedelta(minutes=3)),
            _opened_event(second, at + timedelta(minutes=5)),
        ])
    text = cli("history", "--protocol", first)
    assert text.code == 0, text.err
    assert "warning: 2 record(s) on the topic are not projected yet" in text.err, text.err
    assert "ContactClosed" not in text.out  # the view really is stale: the warning is why
    as_json = cli("history", "--protocol", first, "--json")
    assert as_json.code == 0
    lag = as_json.json()["projection_lag"]
    assert lag["total"] == 2
    assert sum(lag["behind"].values()) == 2
    assert "warning" in as_json.err

    project(rt)
    caught_up = cli("history", "--protocol", first, "--json")
    assert caught_up.json()["projection_lag"] is None
    assert [e["event_type"] for e in caught_up.json()["interactions"][0]["events"]] == [
        "ContactOpened", "ContactClosed"]


def test_history_answers_with_an_unknown_lag_when_kafka_is_down(settings):
    rt = start_runtime(settings)
    with ProtocolIssuer(rt.registry_url, block_size=1) as issuer:
        protocol = issuer.issue()
    with rt.publisher("lag-test") as publisher:
        publisher.publish_many([_opened_event(protocol, now_s() - timedelta(hours=1))])
    project(rt)
    done = _run(["history", "--protocol", protocol, "--json"], cli_env(settings, PROTOCOLO_KAFKA_BOOTSTRAP=CLOSED))
    assert done.returncode == 0, done.stderr
    lag = json.loads(done.stdout)["projection_lag"]
    assert lag["unknown"] is True and CLOSED in lag["message"]
    assert f"note: projection lag unknown: Kafka at {CLOSED} did not answer" in done.stderr


# ----------------------------------------------------------------------------- 7. no traceback, ever


def _subcommands() -> list[list[str]]:
    """Every sub-command ``protocolo --help`` lists, with arguments that pass argparse."""
    return [
        ["demo", "--contacts", "1"],
        ["dev", "up"],
        ["dev", "down"],
        ["dev", "status"],
        ["project", "--until-caught-up"],
        ["history", "--protocol", make_protocol_number(2026, 7)],
        ["erase", "--cpf", CPF, "--legal-basis", "LGPD art. 18 VI", "--wait", "0"],
        ["protocol", "reserve", "--count", "1"],
        ["topic", "create"],
        ["checkpoint", "--once"],
        ["keys", "show"],
        ["verify"],
        ["evidence", "--protocol", make_protocol_number(2026, 7), "--out", "/tmp/protocolo-never-written.zip"],
        # tools that read no deployment setting (an independent witness, the offline
        # verifier): run too, and must fail cleanly on their own arguments
        ["witness", "serve", "--key", "/nonexistent/witness.key", "--state", "/nonexistent",
         "--listen", "127.0.0.1:1", "--log-vkey", "x"],
        ["verify-evidence", "/nonexistent/bundle.zip"],
        ["verify-export", "/nonexistent/export"],
        ["verify-restore", "--mapping", "/nonexistent/mapping.json", "--vkey", "x"],
        ["export", "--from", "2026-01-01T00:00:00Z", "--to", "2026-01-02T00:00:00Z",
         "--out", "/tmp/protocolo-never-written-export"],
        ["report", "--from", "2026-01-01T00:00:00Z", "--to", "2026-01-02T00:00:00Z",
         "--out", "/tmp/protocolo-never-written-report.json", "--format", "json"],
        ["restore-topic", "--to", "protocolo-never-restored"],
        ["serve", "--listen", "127.0.0.1:1"],
        ["user", "add", "--name", "ana", "--role", "analyst"],
    ]


#: Sub-commands that read no PROTOCOLO_* setting, or need Kafka alone.
_SETTINGS_FREE = {"witness", "verify-evidence", "verify-export", "verify-restore"}


def _listed(help_text: str) -> set[str]:
    """The sub-command names an argparse help lists (indented four spaces under its metavar)."""
    return set(re.findall(r"^    ([a-z][a-z-]*)\b", help_text, flags=re.MULTILINE))


def test_the_subcommand_list_is_what_help_shows():
    """So that a new sub-command cannot escape the broken-environment test below."""
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    top, dev = _run(["--help"], env), _run(["dev", "--help"], env)
    assert top.returncode == dev.returncode == 0
    tested = _subcommands()
    assert _listed(top.stdout) == {argv[0] for argv in tested}
    assert _listed(dev.stdout) == {argv[1] for argv in tested if argv[0] == "dev"}


#: name -> (variable the message must name, overrides of the test's environment).
BROKEN_ENVIRONMENTS: dict[str, tuple[str, dict[str, str]]] = {
    "partitions": ("PROTOCOLO_PARTITIONS", {"PROTOCOLO_PARTITIONS": "six"}),
    "bootstrap": ("PROTOCOLO_KAFKA_BOOTSTRAP", {"PROTOCOLO_KAFKA_BOOTSTRAP": "kafka without port"}),
    "database-url": ("PROTOCOLO_DATABASE_URL", {"PROTOCOLO_DATABASE_URL": "mysql://root:hunter2@db/ledger"}),
    "policy": ("PROTOCOLO_POLICY", {"PROTOCOLO_POLICY": "br-made-up-2031"}),
    "index-key": ("PROTOCOLO_INDEX_KEY", {"PROTOCOLO_INDEX_KEY": "not base64 at all!", "PROTOCOLO_DEV_KEYS": ""}),
    "unreachable-database": ("PROTOCOLO_DATABASE_URL",
                             {"PROTOCOLO_DATABASE_URL": f"postgresql://u:hunter2@{CLOSED}/ledger"}),
    "unreachable-database-dsn": ("PROTOCOLO_DATABASE_URL", {
        "PROTOCOLO_DATABASE_URL": "host=127.0.0.1 port=1 user=u password=hunter2 dbname=ledger connect_timeout=5"}),
    "unreachable-registry": ("PROTOCOLO_REGISTRY_URL",
                             {"PROTOCOLO_REGISTRY_URL": f"postgresql://u:hunter2@{CLOSED}/registry"}),
}


@pytest.mark.parametrize("broken", sorted(BROKEN_ENVIRONMENTS))
def test_no_subcommand_shows_a_traceback_in_a_broken_environment(settings, broken):
    variable, overrides = BROKEN_ENVIRONMENTS[broken]
    with _scratch_home("protocolo-test-broken-") as home:
        env = cli_env(replace(settings, home=home), **overrides)
        before = _ends(settings)
        for argv in _subcommands():
            if argv[0] == "dev" and broken.startswith("unreachable-"):
                # The dev stack does not use a configured database URL (`dev up` says so):
                # `dev up` would rightly start a stack; status and down have nothing to report.
                if argv != ["dev", "up"]:
                    done = _run(argv, env, timeout=90)
                    assert "Traceback" not in done.stderr, done.stderr
                    assert done.returncode in {0, 3}, done.stderr
                continue
            if argv[:2] == ["topic", "create"] and broken.startswith("unreachable-"):
                # needs Kafka alone: it rightly succeeds without the database (no traceback)
                done = _run(argv, env, timeout=90)
                assert "Traceback" not in done.stderr and done.returncode == 0, done.stderr
                continue
            if argv[0] in _SETTINGS_FREE:
                done = _run(argv, env, timeout=90)
                assert "Traceback" not in done.stderr, done.stderr
                assert done.returncode in {1, 2}, done.stderr  # its own bad argument, said in one line
                continue
            done = _run(argv, env, timeout=90)
            where = f"{broken}: protocolo {' '.join(argv)} -> {done.returncode}\n{done.stderr}"
            assert "Traceback" not in done.stderr, where
            assert "hunter2" not in done.stderr + done.stdout, where
            assert done.returncode in {1, 2, 3}, where
            assert variable in done.stderr, where
            assert len(_error_lines(done.stderr)) == 1, where
        assert _ends(settings) == before, f"{broken}: something was published"
        assert _stack_services(home) == [], f"{broken}: a service was started"


# ----------------------------------------------------------------------------- 8. no password in the demo


@contextlib.contextmanager
def _role_with_password(admin_url: str) -> Iterator[tuple[str, str]]:
    role, password = f"demo_{uuid.uuid4().hex[:8]}", f"Pw-{uuid.uuid4().hex}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(role), sql.Literal(password)))
    try:
        yield role, password
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def test_demo_never_prints_the_database_password(backend: Endpoints, settings):
    with _role_with_password(backend.database_url) as (role, password), \
            scratch_database(backend.database_url, "demo_pw") as admin_db_url:
        name = urlsplit(admin_db_url).path.lstrip("/")
        with psycopg.connect(backend.database_url, autocommit=True) as conn:
            conn.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(sql.Identifier(name), sql.Identifier(role)))
        parts = urlsplit(admin_db_url)  # host and port in the netloc, or a socket in the query
        host = (parts.hostname or "") + (f":{parts.port}" if parts.port else "")
        url = urlunsplit(parts._replace(netloc=f"{role}:{password}@{host}"))
        with psycopg.connect(url) as conn:  # the role really logs in with that URL
            assert conn.execute("SELECT current_user").fetchone() == (role,)
        done = _run(["demo", "--contacts", "3", "--seed", "5"],
                    cli_env(settings, PROTOCOLO_DATABASE_URL=url), timeout=300)
        assert done.returncode in {0, 1}, done.stderr
        assert "Traceback" not in done.stderr
        output = done.stdout + done.stderr
        assert password not in output
        assert f"{role}:***@" in output  # the URL is shown, redacted
        assert "ledger totals" in done.stdout


# ----------------------------------------------------------------------------- 5. the sweeper waits


def _recorded_contact(protocol: str, opened: datetime, *, days: int = 180) -> list[Event]:
    """A MOBILE contact (br-anatel-rgc) with one recording kept ``days`` days."""
    return [
        _opened_event(protocol, opened),
        Event("RecordingCaptured", recording_captured(f"rec-{protocol}", protocol, days=days),
              protocol_number=protocol, occurred_at=opened + timedelta(minutes=4)),
    ]


@contextlib.contextmanager
def _projector_in_background(rt: Runtime) -> Iterator[None]:
    """The projector running in a thread for the duration of the block."""
    failures: list[BaseException] = []
    with rt.projector(batch_size=100) as projector:
        def run() -> None:
            try:
                projector.run()
            except BaseException as exc:  # reported by the test
                failures.append(exc)

        thread = threading.Thread(target=run, name="projector", daemon=True)
        thread.start()
        try:
            yield
        finally:
            projector.stop()
            thread.join(60)
    assert not thread.is_alive(), "the projector did not stop"
    assert not failures, failures


def test_a_hold_published_a_second_before_the_sweep_blocks_the_deletion(settings):
    rt = start_runtime(settings)
    with ProtocolIssuer(rt.registry_url, block_size=2) as issuer:
        held, free = issuer.issue(), issuer.issue()
    opened = now_s() - timedelta(days=200)  # past the 180 days of br-anatel-rgc
    with rt.publisher("sweep-test") as publisher:
        publisher.publish_many([*_recorded_contact(held, opened), *_recorded_contact(free, opened)])
    project(rt)

    with _projector_in_background(rt), rt.publisher("sweep-test") as publisher, rt.connect() as conn:
        now = now_s()
        publisher.publish("LegalHoldPlaced", {"hold_id": "hold-race", "case_reference": "Procon-2026-1",
                                              "placed_by": "legal@company"},
                          protocol_number=held, occurred_at=now - timedelta(seconds=1))
        receipts = sweep(conn, publisher, now, projection_timeout_s=60)
        # Still running: let the projector apply the deletions too.
        wait_until_projected(conn, rt.kafka_bootstrap, settings.topic, timeout_s=60)

    with rt.connect() as conn:
        deleted = conn.execute("SELECT payload->>'recording_id' FROM journal"
                               " WHERE event_type = 'RecordingDeleted'").fetchall()
        status = dict(conn.execute("SELECT recording_id, status FROM recordings").fetchall())
    assert len(receipts) == 1
    assert deleted == [(f"rec-{free}",)], "the recording under the fresh hold was deleted"
    assert status == {f"rec-{held}": "retained", f"rec-{free}": "deleted"}


def test_the_sweeper_refuses_when_no_projector_catches_up_and_publishes_nothing(settings):
    rt = start_runtime(settings)
    with ProtocolIssuer(rt.registry_url, block_size=1) as issuer:
        protocol = issuer.issue()
    with rt.publisher("sweep-test") as publisher:  # past retention, never projected
        publisher.publish_many(_recorded_contact(protocol, now_s() - timedelta(days=200)))
    before = _ends(settings)
    with rt.publisher("sweep-test") as publisher, rt.connect() as conn, \
            pytest.raises(ProjectionBehind) as behind:
        sweep(conn, publisher, now_s(), projection_timeout_s=1)
    assert behind.value.lag.total == 2
    assert "2 record(s) on the topic are not projected yet" in str(behind.value)
    assert _ends(settings) == before, "the sweeper published while the views lagged"


# ----------------------------------------------------------------------------- 6. erase


def _erased_keys(registry_url: str) -> int:
    with psycopg.connect(registry_url) as conn:
        return int(conn.execute("SELECT count(*) FROM personal_data_keys WHERE wrapped_key IS NULL").fetchone()[0])


def test_erase_waits_for_the_projection_reads_the_cpf_privately_and_history_shows_it(settings, tmp_path):
    rt = start_runtime(settings)
    with ProtocolIssuer(rt.registry_url, block_size=2) as issuer:
        first, second = issuer.issue(), issuer.issue()
    at = now_s() - timedelta(days=3)
    with rt.publisher("erase-test") as publisher:
        publisher.publish_many([
            _opened_event(first, at, {"cpf": CPF, "name": "Ana Souza"}),
            _opened_event(second, at + timedelta(hours=1), {"cpf": OTHER_CPF, "name": "Rui Lopes"}),
        ])
    env = cli_env(settings)
    cpf_file = tmp_path / "cpf.txt"
    cpf_file.write_text(OTHER_CPF + "\n")
    outputs: list[str] = []

    before = _ends(settings)
    refused = _run(["erase", "--cpf-file", str(cpf_file), "--legal-basis", "LGPD art. 18 VI", "--wait", "1"], env)
    outputs.append(refused.stdout + refused.stderr)
    assert refused.returncode == 2, refused.stderr
    assert "not projected yet" in refused.stderr and "protocolo project" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert _ends(settings) == before, "erase published while the views lagged"
    assert _erased_keys(rt.registry_url) == 0, "erase destroyed a key while the views lagged"

    project(rt)
    by_stdin = _run(["erase", "--cpf", "-", "--legal-basis", "LGPD art. 18 VI"], env, stdin=CPF + "\n")
    outputs.append(by_stdin.stdout + by_stdin.stderr)
    assert by_stdin.returncode == 0, by_stdin.stderr
    assert "erased: 1 data key(s) destroyed" in by_stdin.stderr
    project(rt)
    by_file = _run(["erase", "--cpf-file", str(cpf_file), "--legal-basis", "LGPD art. 18 VI"], env)
    outputs.append(by_file.stdout + by_file.stderr)
    assert by_file.returncode == 0, by_file.stderr
    assert _erased_keys(rt.registry_url) == 2
    project(rt)

    for cpf, protocol in ((CPF, first), (OTHER_CPF, second)):
        shown = _run(["history", "--cpf", cpf, "--json"], env)
        outputs.append(shown.stdout + shown.stderr)
        assert shown.returncode == 0, shown.stderr
        [contact] = json.loads(shown.stdout)["interactions"]
        assert contact["protocol_number"] == protocol
        assert contact["customer"] == {"identified": True, "erased": True}
        text = _run(["history", "--protocol", protocol], env)
        outputs.append(text.stdout + text.stderr)
        assert "[personal data erased]" in text.stdout
    for cpf in (CPF, OTHER_CPF):
        digits = "".join(c for c in cpf if c.isdigit())
        for output in outputs:
            assert cpf not in output and digits not in output, output
    for output in outputs:
        assert "Ana Souza" not in output and "Rui Lopes" not in output


def test_erase_right_after_publishing_covers_what_the_projector_is_still_applying(settings, tmp_path):
    """The contact linking the CPF to the customer code is published a moment before the
    erasure: erase must wait for the running projector, or the code's key survives."""
    rt = start_runtime(settings)
    with ProtocolIssuer(rt.registry_url, block_size=2) as issuer:
        by_code, linking = issuer.issue(), issuer.issue()
    at = now_s() - timedelta(hours=2)
    cpf_file = tmp_path / "cpf"
    cpf_file.write_text(CPF)
    with _projector_in_background(rt):
        with rt.publisher("erase-race") as publisher:
            publisher.publish_many([
                _opened_event(by_code, at, {"customer_code": CODE, "name": "Ana Souza"}),
                _opened_event(linking, at + timedelta(minutes=1), {"cpf": CPF, "customer_code": CODE}),
            ])
        done = _run(["erase", "--cpf-file", str(cpf_file), "--legal-basis", "LGPD art. 18 VI"], cli_env(settings))
        assert done.returncode == 0, done.stderr
        assert "erased: 2 data key(s) destroyed" in done.stderr
        shown = _run(["history", "--customer", CODE, "--json"], cli_env(settings))
    gone = {"identified": True, "erased": True}
    assert {i["protocol_number"]: i["customer"] for i in json.loads(shown.stdout)["interactions"]} == {
        by_code: gone, linking: gone}


# ----------------------------------------------------------------------------- 3. reproducible deadlines


def _use_profile_versions(monkeypatch: pytest.MonkeyPatch, versions: tuple[policy.PolicyProfile, ...]) -> None:
    """Make ``versions`` the code's profile versions everywhere they are read: the kernel,
    the validator (which imported PROFILES) and the views (which imported PROFILE_VERSIONS;
    ``install_profiles`` writes and checks them)."""
    newest: dict[str, policy.PolicyProfile] = {}
    for p in versions:
        if p.name not in newest or p.valid_from > newest[p.name].valid_from:
            newest[p.name] = p
    monkeypatch.setattr(policy, "PROFILE_VERSIONS", versions)
    monkeypatch.setattr(policy, "PROFILES", newest)
    monkeypatch.setattr(policy.profile_in_force, "__defaults__", (versions,))
    monkeypatch.setattr(views, "PROFILE_VERSIONS", versions)
    monkeypatch.setattr(validation, "PROFILES", newest)


def _deadlines(database_url: str) -> dict[str, Any]:
    with psycopg.connect(database_url) as conn:
        return {
            "interactions": sorted(conn.execute("SELECT protocol_number, policy_profile FROM interactions")),
            "recordings": sorted(conn.execute(
                "SELECT recording_id, retention_profile, retention_days, retain_until FROM recordings")),
            "requests": sorted(conn.execute(
                "SELECT request_id::text, policy_profile, due_at FROM retrieval_requests")),
        }


def test_deadlines_follow_the_profile_version_in_force_and_survive_a_rebuild(settings, monkeypatch):
    now = now_s()
    v1 = policy.profile_version("br-sac-2022", 1)
    v2 = replace(v1, version=2, valid_from=now - timedelta(days=10), recording_retention_days=120,
                 recording_delivery_days=5, history_delivery_hours=48, source="test: stricter since 10 days ago")
    _use_profile_versions(monkeypatch, (*policy.PROFILE_VERSIONS, v2))
    rt = start_runtime(settings)
    with ProtocolIssuer(rt.registry_url, block_size=2) as issuer:
        old, new = issuer.issue(), issuer.issue()
    opened_old, opened_new = now - timedelta(days=20), now - timedelta(days=5)
    banking = {"service_type": "BANKING"}  # governed by br-sac-2022
    requests = {name: str(uuid.uuid4()) for name in ("old-rec", "new-hist", "cpf-before", "cpf-after")}
    events = [
        _opened_event(old, opened_old, {"cpf": CPF}, **banking),
        Event("RecordingCaptured", recording_captured("rec-old", old, profile="br-sac-2022",
                                                      days=v1.recording_retention_days),
              protocol_number=old, occurred_at=opened_old + timedelta(minutes=5)),
        _opened_event(new, opened_new, {"cpf": CPF}, **banking),
        Event("RecordingCaptured", recording_captured("rec-new", new, profile="br-sac-2022",
                                                      days=v2.recording_retention_days),
              protocol_number=new, occurred_at=opened_new + timedelta(minutes=5)),
        # A request made after v2 started, about a contact opened under v1: the contact's profile.
        Event("RetrievalRequested", {"request_id": requests["old-rec"], "kind": "RECORDING",
                                     "requested_via": "APP", "delivery_channel": "EMAIL"},
              protocol_number=old, occurred_at=now - timedelta(days=2)),
        Event("RetrievalRequested", {"request_id": requests["new-hist"], "kind": "HISTORY",
                                     "requested_via": "APP", "delivery_channel": "EMAIL"},
              protocol_number=new, occurred_at=now - timedelta(days=1)),
        # Requests by CPF, no contact named: the default profile in force when requested.
        *(Event("RetrievalRequested", {"request_id": requests[name], "kind": "RECORDING",
                                       "requested_via": "WEB_FORM", "delivery_channel": "EMAIL",
                                       "customer": {"cpf": CPF}, "window_from": opened_old - timedelta(days=1),
                                       "window_to": when}, occurred_at=when)
          for name, when in (("cpf-before", now - timedelta(days=15)), ("cpf-after", now - timedelta(days=3)))),
    ]
    with rt.publisher("policy-test") as publisher:
        publisher.publish_many(events)
        # The version in force at the recording's time sets the minimum: v1's 90 days no longer do.
        with pytest.raises(EventRejected) as short:
            publisher.prepare(Event("RecordingCaptured", recording_captured("rec-short", new, profile="br-sac-2022",
                                                                            days=v1.recording_retention_days),
                                    protocol_number=new, occurred_at=opened_new + timedelta(minutes=6)))
        assert (short.value.field, short.value.rule) == ("retention_days", "legal-minimum")
        assert "br-sac-2022@2" in str(short.value)
    project(rt)

    # The oracle: the profile numbers, applied by hand.
    expected = {
        "interactions": sorted([(old, v1.key), (new, v2.key)]),
        "recordings": sorted([
            ("rec-old", v1.key, v1.recording_retention_days, opened_old + timedelta(days=v1.recording_retention_days)),
            ("rec-new", v2.key, v2.recording_retention_days, opened_new + timedelta(days=v2.recording_retention_days)),
        ]),
        "requests": sorted([
            (requests["old-rec"], v1.key, now - timedelta(days=2) + timedelta(days=v1.recording_delivery_days)),
            (requests["new-hist"], v2.key, now - timedelta(days=1) + timedelta(hours=v2.history_delivery_hours)),
            (requests["cpf-before"], v1.key, now - timedelta(days=15) + timedelta(days=v1.recording_delivery_days)),
            (requests["cpf-after"], v2.key, now - timedelta(days=3) + timedelta(days=v2.recording_delivery_days)),
        ]),
    }
    assert _deadlines(rt.database_url) == expected

    # Newer code adds a v3 starting now: a rebuild reproduces every earlier deadline exactly.
    v3 = replace(v2, version=3, valid_from=now + timedelta(seconds=1), recording_delivery_days=2,
                 source="test: newer code")
    _use_profile_versions(monkeypatch, (*policy.PROFILE_VERSIONS, v3))
    with rt.connect() as conn:
        rebuild_views(conn)
        conn.commit()
    assert _deadlines(rt.database_url) == expected

    # A released version edited in the ledger: the next projector refuses to start.
    with rt.connect(autocommit=True) as conn:
        conn.execute("UPDATE policy_profiles SET recording_delivery_days = 30 WHERE profile = %s", (v1.key,))
    writers, sessions = _batch_writer_threads(), _sessions_on(rt.database_url)  # the key vault's
    with pytest.raises(PolicyMismatch) as mismatch:
        rt.projector()
    assert v1.key in str(mismatch.value)
    assert "recording_delivery_days=30" in str(mismatch.value)
    # (mismatch keeps the failed constructor's frame, and with it anything leaked, alive)
    assert _sessions_on(rt.database_url, settle_to=sessions) == sessions, "the refused projector left a connection open"
    assert _batch_writer_threads() == writers


def test_an_edited_service_mapping_or_an_unknown_version_stops_the_projector(settings):
    rt = start_runtime(settings)
    rt.projector().close()  # installs the code's profiles and mapping
    env = cli_env(settings)
    with rt.connect(autocommit=True) as conn:
        conn.execute("UPDATE service_type_profiles SET profile_name = 'br-sac-2008' WHERE service_type = 'MOBILE'")
    with pytest.raises(PolicyMismatch, match="service type MOBILE: the ledger maps it to 'br-sac-2008'"):
        rt.projector()
    done = _run(["project", "--until-caught-up"], env)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert _error_lines(done.stderr) == [line for line in done.stderr.splitlines() if line.strip()]
    assert "service type MOBILE" in done.stderr

    with rt.connect(autocommit=True) as conn:
        conn.execute("UPDATE service_type_profiles SET profile_name = 'br-anatel-rgc' WHERE service_type = 'MOBILE'")
        columns = ("recording_retention_days, record_retention_days, recording_delivery_days, history_delivery_hours,"
                   " demand_answer_days, protocol_confirmation_hours, start_disclosure_seconds")
        conn.execute(f"INSERT INTO policy_profiles (profile, name, version, valid_from, source, {columns})"
                     f" SELECT 'br-sac-2022@9', name, 9, valid_from + interval '1 day', 'newer code', {columns}"
                     "   FROM policy_profiles WHERE profile = 'br-sac-2022@1'")
    with pytest.raises(PolicyMismatch, match="br-sac-2022@9: the ledger holds .* this code says nothing"):
        rt.projector()


def _sessions_on(database_url: str, settle_to: int | None = None) -> int:
    """Connections to that database other than the one asking. ``settle_to``: a closed
    connection's server process leaves pg_stat_activity a moment after the client closed
    it, so poll (up to 10 s) until the count is down to that before answering."""
    name = urlsplit(database_url).path.lstrip("/")
    with psycopg.connect(database_url, autocommit=True) as conn:
        deadline = time.monotonic() + 10
        while True:
            count = int(conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s"
                                     " AND pid <> pg_backend_pid()", (name,)).fetchone()[0])
            if settle_to is None or count <= settle_to or time.monotonic() > deadline:
                return count
            time.sleep(0.1)


def _batch_writer_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name == "protocolo-batch-writer")


def test_a_projector_without_a_broker_leaves_no_connection_nor_thread(settings):
    from kafka.errors import KafkaError

    from protocolo.consumers.projector import Projector, ProjectorOptions

    start_runtime(settings)
    writers = _batch_writer_threads()
    with pytest.raises(KafkaError) as refused:  # keeps the failed constructor's frame alive
        Projector(CLOSED, settings.database_url, topic=settings.topic, group_id=settings.group_id,
                  options=ProjectorOptions(kafka={"api_version_auto_timeout_ms": 1000}))
    assert refused.value is not None
    assert _sessions_on(settings.database_url, settle_to=0) == 0
    assert _batch_writer_threads() == writers


def test_a_contact_names_its_profile_and_the_deployment_choice_is_written_by_the_publisher(settings, monkeypatch):
    rt = start_runtime(settings)
    with ProtocolIssuer(rt.registry_url, block_size=3) as issuer:
        named, imposed, by_service = issuer.issue(), issuer.issue(), issuer.issue()
    at = now_s() - timedelta(hours=3)
    small = policy.profile_named("br-anatel-rgc-small")
    with rt.publisher("policy-test") as publisher:  # no PROTOCOLO_POLICY
        publisher.publish_many([
            Event("ContactOpened", {**contact_opened(), "policy_profile": small.name},
                  protocol_number=named, occurred_at=at, schema_version=3),
            _opened_event(by_service, at),
        ])
    monkeypatch.setenv("PROTOCOLO_POLICY", small.name)
    with rt.publisher("policy-test") as publisher:
        publisher.publish_many([_opened_event(imposed, at)])
        # An older schema cannot carry the deployment's choice: refused, not silently dropped.
        with pytest.raises(EventRejected) as old_schema:
            publisher.prepare(Event("ContactOpened", contact_opened(), protocol_number=imposed,
                                    occurred_at=at, schema_version=2))
        assert (old_schema.value.field, old_schema.value.rule) == ("policy_profile", "schema-version")
    project(rt)
    with rt.connect() as conn:
        profiles = dict(conn.execute("SELECT protocol_number, policy_profile FROM interactions").fetchall())
        written = dict(conn.execute("SELECT protocol_number, payload->>'policy_profile' FROM journal").fetchall())
    assert profiles == {named: small.key, imposed: small.key,
                        by_service: policy.profile_named(policy.SERVICE_TYPE_PROFILES["MOBILE"]).key}
    assert written == {named: small.name, imposed: small.name, by_service: None}


# ----------------------------------------------------------------------------- 1. protocol numbers


def test_ledgers_sharing_a_registry_never_get_the_same_number(backend: Endpoints, settings, tmp_path):
    with scratch_database(backend.database_url, "ledger_b") as ledger_b, \
            scratch_database(backend.database_url, "registry") as registry_url:
        shared = dict(registry_url=registry_url, dev_keys=True)
        a = Runtime.start(replace(settings, **shared), log=lambda m: None)
        b = Runtime.start(replace(settings, database_url=ledger_b, **shared), log=lambda m: None)
        assert a.registry_url == b.registry_url == registry_url
        numbers: list[str] = []
        with ProtocolIssuer(a.registry_url, block_size=3) as on_a, ProtocolIssuer(b.registry_url, block_size=3) as on_b:
            for _ in range(10):
                numbers += [on_a.issue(), on_b.issue()]
        assert len(set(numbers)) == len(numbers)
        for ledger in (settings.database_url, ledger_b):  # the sequence lives in the registry only
            with psycopg.connect(ledger) as conn:
                assert conn.execute("SELECT to_regclass('protocol_number_sequence')").fetchone() == (None,)

        # One contact, projected into both ledgers; erased through A, it is erased in B too.
        with a.publisher("registry-test") as publisher:
            receipt = publisher.publish_many([_opened_event(numbers[0], now_s() - timedelta(hours=1),
                                                            {"cpf": CPF, "name": "Ana Souza"})])[0]
        project(a)
        b_group = replace(b, settings=replace(b.settings, group_id=f"{settings.group_id}-b"))
        project(b_group)
        with psycopg.connect(ledger_b) as conn:
            sealed = conn.execute("SELECT payload->'customer'->'sealed' FROM journal WHERE event_id = %s",
                                  (receipt.event_id,)).fetchone()[0]
        assert b.sealer().open(sealed, receipt.event_id)["name"] == "Ana Souza"
        with a.connect(autocommit=True) as ledger, psycopg.connect(registry_url, autocommit=True) as keys, \
                a.publisher("registry-test") as publisher:
            erase_customer(ledger, keys, publisher, a.sealer(), cpf=CPF, legal_basis="LGPD art. 18 VI")
        assert b.sealer().open(sealed, receipt.event_id) is None, "the key still opens B's copy"


def test_numbers_and_contacts_survive_a_restart_of_the_embedded_broker(monkeypatch, capsys):
    """On tansu, whose log is in memory: each incarnation gets a new ledger database (on
    Apache Kafka the log and the ledger database survive a restart: test_durable_restart)."""
    monkeypatch.setenv("PROTOCOLO_BROKER", "tansu")
    with _scratch_home("protocolo-test-restart-") as home:
        embedded = Settings(home=home, partitions=2)
        quiet = lambda m: None  # noqa: E731
        first = Runtime.start(embedded, log=quiet)
        with ProtocolIssuer(first.registry_url, block_size=2) as issuer:
            before = [issuer.issue() for _ in range(3)]
        with first.publisher("restart-test") as publisher:
            publisher.publish_many([
                _opened_event(before[0], now_s() - timedelta(hours=2), {"cpf": CPF, "customer_code": CODE,
                                                                        "name": "Ana Souza"}),
                # The same customer, known by their code only: sealed under the code's key.
                _opened_event(before[1], now_s() - timedelta(hours=1), {"customer_code": CODE, "name": "Ana Souza"}),
            ])
        project(first)

        devstack.down(embedded, log=quiet)
        second = Runtime.start(embedded, log=quiet)
        assert second.database_url != first.database_url, "a new broker must get a new ledger database"
        assert second.registry_url == first.registry_url
        with ProtocolIssuer(second.registry_url, block_size=2) as issuer:
            after = [issuer.issue() for _ in range(3)]
        assert not set(before) & set(after), f"numbers reissued after the restart: {before} {after}"
        assert min(int(n[4:]) for n in after) > max(int(n[4:]) for n in before)

        cli = Cli(embedded, monkeypatch, capsys)
        found = cli("history", "--protocol", before[0], "--json")
        assert found.code == 0, found.err
        [contact] = found.json()["interactions"]
        assert contact["protocol_number"] == before[0]
        old_ledger = urlsplit(first.database_url).path.lstrip("/")
        assert found.json()["ledgers"] == {before[0]: old_ledger}
        by_cpf = cli("history", "--cpf", CPF)
        assert by_cpf.code == 0, by_cpf.err
        assert f"ledger    {old_ledger}" in by_cpf.out

        # An erasure after the restart reaches what the old ledger holds: only the contact
        # projected there links the CPF to the customer code whose key sealed the other one.
        erased = cli("erase", "--cpf", CPF, "--legal-basis", "LGPD art. 18 VI")
        assert erased.code == 0, erased.err
        by_code = cli("history", "--customer", CODE, "--json")
        assert by_code.code == 0, by_code.err
        gone = {"identified": True, "erased": True}
        assert {i["protocol_number"]: i["customer"] for i in by_code.json()["interactions"]} == {
            before[0]: gone, before[1]: gone}
        assert "Ana Souza" not in by_code.out

        # Stopped again: history says so, and neither starts nor touches anything.
        devstack.down(embedded, log=quiet)
        files = _tree(home)
        stopped = cli("history", "--protocol", before[0])
        assert stopped.code == 3, stopped.err
        assert "protocolo dev up" in stopped.err
        assert _stack_services(home) == []
        assert _tree(home) == files, "history changed files under PROTOCOLO_HOME"


def _tree(home: Path) -> dict[str, int]:
    """Every file under ``home`` with its modification time."""
    return {str(p.relative_to(home)): p.stat().st_mtime_ns for p in home.rglob("*") if p.is_file()}
