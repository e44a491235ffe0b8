"""Adversarial tests of the kernel's rules (issue 5): registry-wide protocol numbers, keys
that are never invented nor swapped, reproducible deadlines, a read-only ``history``, the
projection watermark in front of the sweeper and ``erase``, and a CLI that never shows a
traceback nor a password.

Everything runs against the session's real broker and PostgreSQL (``backend``), and the
CLI both in-process (:class:`helpers_flow.Cli`) and as a real ``protocolo`` subprocess.
"""

from __future__ import annotations

import base64
import contextlib
import os
import subprocess
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
    Cli,
    contact_opened,
    now_s,
    project,
    start_runtime,
)
from psycopg import sql
from view_snapshot import PROTOCOLO, cli_env, scratch_database

from protocolo import devstack
from protocolo.core.config import Settings
from protocolo.core.deployment_keys import KEY_BYTES
from protocolo.core.protocol_number import make_protocol_number
from protocolo.core.watermark import log_end_offsets
from protocolo.devstack import Endpoints
from protocolo.producers.protocol_issuer import ProtocolIssuer
from protocolo.producers.publisher import Event
from protocolo.runtime import Runtime, RuntimeUnavailable

KEY_VARIABLES = ("PROTOCOLO_INDEX_KEY", "PROTOCOLO_MASTER_KEY")
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
    ]


def test_the_subcommand_list_is_what_help_shows():
    listed = _run(["--help"], {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")})
    assert listed.returncode == 0
    commands = {argv[0] for argv in _subcommands()}
    section = listed.stdout.split("{", 1)[1].split("}", 1)[0] if "{" in listed.stdout else listed.stdout
    shown = {word for word in ("demo", "dev", "project", "history", "erase") if word in section}
    assert shown == commands
    dev = _run(["dev", "--help"], {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")})
    assert {"up", "down", "status"} <= set(dev.stdout.replace(",", " ").replace("{", " ").replace("}", " ").split())


#: name -> (variable the message must name, overrides of the test's environment).
BROKEN_ENVIRONMENTS: dict[str, tuple[str, dict[str, str]]] = {
    "partitions": ("PROTOCOLO_PARTITIONS", {"PROTOCOLO_PARTITIONS": "six"}),
    "bootstrap": ("PROTOCOLO_KAFKA_BOOTSTRAP", {"PROTOCOLO_KAFKA_BOOTSTRAP": "kafka without port"}),
    "database-url": ("PROTOCOLO_DATABASE_URL", {"PROTOCOLO_DATABASE_URL": "mysql://root:hunter2@db/ledger"}),
    "policy": ("PROTOCOLO_POLICY", {"PROTOCOLO_POLICY": "br-made-up-2031"}),
    "index-key": ("PROTOCOLO_INDEX_KEY", {"PROTOCOLO_INDEX_KEY": "not base64 at all!", "PROTOCOLO_DEV_KEYS": ""}),
    "unreachable-database": ("PROTOCOLO_DATABASE_URL",
                             {"PROTOCOLO_DATABASE_URL": f"postgresql://u:hunter2@{CLOSED}/ledger"}),
}


@pytest.mark.parametrize("broken", sorted(BROKEN_ENVIRONMENTS))
def test_no_subcommand_shows_a_traceback_in_a_broken_environment(settings, broken):
    variable, overrides = BROKEN_ENVIRONMENTS[broken]
    with _scratch_home("protocolo-test-broken-") as home:
        env = cli_env(replace(settings, home=home), **overrides)
        before = _ends(settings)
        for argv in _subcommands():
            if argv[0] == "dev" and broken == "unreachable-database":
                # The dev stack does not use a configured database URL (`dev up` says so):
                # `dev up` would rightly start a stack; status and down have nothing to report.
                if argv != ["dev", "up"]:
                    done = _run(argv, env, timeout=90)
                    assert "Traceback" not in done.stderr, done.stderr
                    assert done.returncode in {0, 3}, done.stderr
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
