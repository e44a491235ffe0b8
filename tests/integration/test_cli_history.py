"""``protocolo history`` as dispute teams use it: exit codes, bad input, date windows, output.

Two contacts of one customer are opened around São Paulo midnight, so a date window read
in UTC instead of São Paulo time would select the wrong contacts.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from helpers_flow import (
    CPF,
    CPF_DIGITS,
    CPF_MASKED,
    OTHER_CPF,
    Cli,
    contact_opened,
    project,
    start_runtime,
)

from protocolo.core.protocol_number import format_protocol_number
from protocolo.producers.protocol_issuer import ProtocolIssuer
from protocolo.producers.publisher import Event

SAO_PAULO = ZoneInfo("America/Sao_Paulo")
NAME = "Bruno Carvalho"


def _mistyped(protocol: str) -> str:
    return protocol[:-1] + str((int(protocol[-1]) + 1) % 10)


def test_history_exit_codes_windows_and_masking(settings, monkeypatch, capsys):
    rt = start_runtime(settings)
    with ProtocolIssuer(rt.database_url, block_size=10) as issuer:
        late_evening, after_midnight, unknown = issuer.issue(), issuer.issue(), issuer.issue()
    day = datetime.now(SAO_PAULO).date() - timedelta(days=20)
    next_day = day + timedelta(days=1)
    # 23:30 in São Paulo is already the next day in UTC; 00:30 the next day is that day in both.
    opened_a = datetime.combine(day, time(23, 30), SAO_PAULO)
    opened_b = datetime.combine(next_day, time(0, 30), SAO_PAULO)
    customer = {"cpf": CPF, "customer_code": "C-CLI-1", "name": NAME}
    with rt.publisher("cli-test") as publisher:
        publisher.publish_many([
            Event("ContactOpened", contact_opened(customer, subject="plan change"),
                  protocol_number=late_evening, occurred_at=opened_a),
            Event("DisclosureMade", {"kind": "PROTOCOL_NUMBER", "medium": "VOICE"},
                  protocol_number=late_evening, occurred_at=opened_a + timedelta(seconds=10)),
            Event("ContactClosed", {"outcome": "RESOLVED"}, protocol_number=late_evening,
                  occurred_at=opened_a + timedelta(minutes=5)),
            Event("ContactOpened", contact_opened(customer, channel="CHAT", recorded=False),
                  protocol_number=after_midnight, occurred_at=opened_b),
        ])
    project(rt)
    cli = Cli(settings, monkeypatch, capsys)

    # Bad input: exit 2 and a message that says what is wrong, before any lookup.
    typo = cli("history", "--protocol", format_protocol_number(_mistyped(late_evening)))
    assert typo.code == 2
    assert typo.err.startswith("protocolo: ") and "check digit" in typo.err
    assert "--protocol" in typo.err and typo.out == ""
    bad_cpf = cli("history", "--cpf", "111.444.777-36")
    assert bad_cpf.code == 2
    assert "--cpf" in bad_cpf.err and "check digit" in bad_cpf.err
    short_cpf = cli("history", "--cpf", "1114447773")
    assert short_cpf.code == 2 and "10 digits" in short_cpf.err
    reversed_window = cli("history", "--cpf", CPF, "--from", str(next_day), "--to", str(day))
    assert reversed_window.code == 2 and "--from" in reversed_window.err
    bad_date = cli("history", "--cpf", CPF, "--from", "yesterday")
    assert bad_date.code == 2 and "yesterday" in bad_date.err

    # A valid number that was never used, a CPF that never called: exit 1.
    missing = cli("history", "--protocol", unknown)
    assert missing.code == 1
    assert "no contact found" in missing.err and unknown in missing.err
    assert cli("history", "--cpf", OTHER_CPF).code == 1

    # Found, written the way people read it out (spaces), exit 0.
    found = cli("history", "--protocol", format_protocol_number(late_evening))
    assert found.code == 0, found.err
    assert f"Protocol {format_protocol_number(late_evening)}" in found.out
    assert CPF_MASKED in found.out and NAME in found.out
    assert CPF not in found.out and CPF_DIGITS not in found.out
    assert "RESOLVED" in found.out and "plan change" in found.out

    # Date windows are whole days in São Paulo time.
    def protocols(*window: str) -> tuple[int, list[str]]:
        r = cli("history", "--cpf", CPF, *window, "--json")
        return r.code, [i["protocol_number"] for i in r.json()["interactions"]]

    assert protocols() == (0, [late_evening, after_midnight])
    assert protocols("--from", str(day), "--to", str(day)) == (0, [late_evening])
    assert protocols("--from", str(next_day), "--to", str(next_day)) == (0, [after_midnight])
    assert protocols("--from", str(next_day)) == (0, [after_midnight])
    assert protocols("--to", str(day)) == (0, [late_evening])
    assert protocols("--from", f"{next_day}T00:15") == (0, [after_midnight])  # São Paulo time
    assert protocols("--to", f"{day}T23:00") == (1, [])
    windowed = cli("history", "--cpf", CPF, "--from", str(day), "--to", str(day), "--json")
    assert windowed.json()["query"] == {
        "cpf": CPF_MASKED,
        "from": str(day),  # as the user gave it, and the exact bounds searched
        "to": str(day),
        "window": {"from": datetime.combine(day, time.min, SAO_PAULO).isoformat(),
                   "to_exclusive": datetime.combine(next_day, time.min, SAO_PAULO).isoformat()},
    }

    text = cli("history", "--cpf", CPF)
    assert text.code == 0
    for p in (late_evening, after_midnight):
        assert f"Protocol {format_protocol_number(p)}" in text.out
    assert text.out.count(CPF_MASKED) == 2
    assert CPF not in text.out and CPF_DIGITS not in text.out
    assert CPF not in text.err and CPF_DIGITS not in text.err

    # "--to: contacts opened on or before": a contact opened at exactly that time is included.
    assert protocols("--to", f"{day}T23:30") == (0, [late_evening])


def test_unidentified_customer_is_not_reported_as_erased(settings, monkeypatch, capsys):
    """A customer who never identified themselves (allowed: Decreto 11.034/2022 art. 4 §4) had
    no personal data, so history must not claim an LGPD erasure that never happened."""
    rt = start_runtime(settings)
    with ProtocolIssuer(rt.database_url) as issuer:
        anonymous = issuer.issue()
    opened = datetime.now(SAO_PAULO).replace(microsecond=0) - timedelta(hours=3)
    with rt.publisher("cli-test") as publisher:
        publisher.publish("ContactOpened", contact_opened({}, channel="CHAT", recorded=False),
                          protocol_number=anonymous, occurred_at=opened)
    project(rt)
    cli = Cli(settings, monkeypatch, capsys)
    as_json = cli("history", "--protocol", anonymous, "--json")
    assert as_json.code == 0, as_json.err
    [contact] = as_json.json()["interactions"]
    assert datetime.fromisoformat(contact["opened_at"]) == opened
    with rt.connect() as conn:
        erasures = conn.execute("SELECT count(*) FROM erasures").fetchone()[0]
        keys = conn.execute("SELECT count(*) FROM personal_data_keys").fetchone()[0]
    assert (erasures, keys) == (0, 0)  # nothing was ever sealed, nothing was erased
    assert not (contact["customer"] or {}).get("erased"), contact["customer"]
    text = cli("history", "--protocol", anonymous)
    assert text.code == 0
    assert "erased" not in text.out, text.out


def test_installed_command_exit_status(settings):
    """The console script returns main()'s status to the shell."""
    rt = start_runtime(settings)
    with ProtocolIssuer(rt.database_url) as issuer:
        unknown = issuer.issue()
    env = os.environ | {
        "PROTOCOLO_HOME": str(settings.home),
        "PROTOCOLO_DATABASE_URL": rt.database_url,
        "PROTOCOLO_KAFKA_BOOTSTRAP": rt.kafka_bootstrap,
        "PROTOCOLO_TOPIC": settings.topic,
        "PROTOCOLO_DEV_KEYS": "1",  # the test's key files (dev keys, like every other command)
    }
    command = str(Path(sys.executable).with_name("protocolo"))
    typo = subprocess.run([command, "history", "--protocol", _mistyped(unknown)], env=env,
                          capture_output=True, text=True, timeout=60)
    assert typo.returncode == 2, typo.stderr
    assert "check digit" in typo.stderr
    missing = subprocess.run([command, "history", "--protocol", unknown, "--json"], env=env,
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 1, missing.stderr
    assert "no contact found" in missing.stderr
