"""One registry per deployment, whatever the shell.

The sequence a new user runs: ``eval "$(protocolo dev up)"``, a demo in that shell, then a
demo in a new shell without the exports. Both must issue numbers from the same registry
(no protocol number opened twice), every contact must be found by ``history --protocol``
from either shell, and an erasure made from either shell must reach every contact of the
customer. A shell that points at the ledger with another registry (the exports of an
older ``dev up``, which had no ``PROTOCOLO_REGISTRY_URL``) is refused, naming the setting,
and publishes nothing. The dev stack's exports keep the dev keys: ``keys show``,
``verify`` and ``history`` all work there, and all refuse alike without them.

Real processes: ``protocolo`` as installed, in a home of its own, on Apache Kafka.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from protocolo import devstack
from protocolo.cli import main as cli_main
from protocolo.core.config import Settings

try:
    import backends
except ImportError:  # tests/ turned into a package
    from tests import backends

PROTOCOLO = str(Path(sys.executable).with_name("protocolo"))
_OURS = ("PROTOCOLO_KAFKA_BOOTSTRAP", "PROTOCOLO_DATABASE_URL", "PROTOCOLO_REGISTRY_URL", "PROTOCOLO_DEV_KEYS",
         "PROTOCOLO_INDEX_KEY", "PROTOCOLO_MASTER_KEY", "PROTOCOLO_SIGNING_KEY", "PROTOCOLO_BROKER",
         "PROTOCOLO_TOPIC", "PROTOCOLO_GROUP_ID", "PROTOCOLO_POLICY", "PROTOCOLO_PARTITIONS")


@pytest.fixture
def new_shell() -> Iterator[dict[str, str]]:
    """The environment of a new shell: a home of its own, none of Protocolo's variables."""
    with backends.scratch_dir("protocolo-test-reg-") as home:
        backends.share_kafka_jars(home)
        env = {k: v for k, v in os.environ.items() if k not in _OURS}
        env["PROTOCOLO_HOME"] = str(home)
        try:
            yield env
        finally:
            devstack.down(Settings(home=home), log=lambda _: None)


def protocolo(env: dict[str, str], *argv: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PROTOCOLO, *argv], env=env, capture_output=True, text=True, timeout=timeout)


def exported(env: dict[str, str], script: str) -> dict[str, str]:
    """What ``eval "$(protocolo dev up)"`` leaves in a real shell."""
    out = subprocess.run(["sh", "-c", script + "\nenv -0"], env=env, capture_output=True, text=True, check=True)
    return dict(line.split("=", 1) for line in out.stdout.split("\0") if "=" in line)


def contacts_opened(database_url: str) -> list[str]:
    """Protocol number of every ContactOpened journalled (the projection of the topic)."""
    with psycopg.connect(database_url) as conn:
        return [r[0] for r in conn.execute(
            "SELECT protocol_number FROM journal WHERE event_type = 'ContactOpened' AND NOT is_duplicate")]


def demo_cpf(output: str) -> str:
    found = re.search(r"customer with CPF (\d{3}\.\d{3}\.\d{3}-\d{2})", output)
    assert found, output
    return found.group(1)


def history_json(env: dict[str, str], *argv: str) -> dict:  # type: ignore[type-arg]
    done = protocolo(env, "history", *argv, "--json", timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def test_a_demo_with_the_exports_and_one_without_share_one_registry(
        new_shell: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    up = protocolo(new_shell, "dev", "up", "--broker", "kafka")
    assert up.returncode == 0, up.stderr
    with_exports = exported(new_shell, up.stdout)
    assert with_exports["PROTOCOLO_REGISTRY_URL"].split("?")[0].endswith("/protocolo_registry")
    assert with_exports["PROTOCOLO_DEV_KEYS"] == "1"
    ledger_url = with_exports["PROTOCOLO_DATABASE_URL"]

    first = protocolo(with_exports, "demo", "--contacts", "20", "--seed", "3")
    assert first.returncode == 0, first.stderr
    second = protocolo(new_shell, "demo", "--contacts", "20", "--seed", "5")  # a new shell: no exports
    assert second.returncode == 0, second.stderr

    opened = contacts_opened(ledger_url)
    assert len(opened) == 40
    assert len(set(opened)) == 40, "a protocol number was opened twice (two registries issued it)"

    # every contact is found, as one contact, from either shell (the same command, run in
    # this process with each shell's variables: 80 process starts would dominate the test)
    for env in (new_shell, with_exports):
        for name in _OURS:
            monkeypatch.delenv(name, raising=False)
        for name, value in env.items():
            if name.startswith("PROTOCOLO_"):
                monkeypatch.setenv(name, value)
        for protocol in opened:
            capsys.readouterr()
            assert cli_main(["history", "--protocol", protocol, "--json"]) == 0
            found = json.loads(capsys.readouterr().out)
            assert [c["protocol_number"] for c in found["interactions"]] == [protocol]

    # an older shell's exports (no PROTOCOLO_REGISTRY_URL: the ledger database would be its
    # registry) are refused before anything is issued, naming the setting
    older = {k: v for k, v in with_exports.items() if k != "PROTOCOLO_REGISTRY_URL"}
    refused = protocolo(older, "demo", "--contacts", "3", "--seed", "7")
    assert refused.returncode == 2
    assert "PROTOCOLO_REGISTRY_URL" in refused.stderr and "belongs to registry" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert protocolo(older, "history", "--protocol", opened[0]).returncode != 0
    assert len(contacts_opened(ledger_url)) == 40

    # an erasure from the new shell reaches the customer of the first demo (made with the exports)
    cpf = demo_cpf(first.stdout + first.stderr)
    before = history_json(with_exports, "--cpf", cpf)["interactions"]
    assert before and not any(c["customer"]["erased"] for c in before)
    erased = protocolo(new_shell, "erase", "--cpf", cpf, "--legal-basis", "LGPD_ART_18_VI")
    assert erased.returncode == 0, erased.stderr
    after = history_json(with_exports, "--cpf", cpf)["interactions"]
    assert {c["protocol_number"] for c in after} == {c["protocol_number"] for c in before}
    assert all(c["customer"]["erased"] for c in after)

    # the exports keep the dev stack's dev keys for every command; the same URLs without
    # PROTOCOLO_DEV_KEYS are a deployment, whose keys must be given, for every command alike
    commands = [("keys", "show"), ("verify", "--quiet"), ("history", "--protocol", opened[0])]
    for argv in commands:
        done = protocolo(with_exports, *argv, timeout=120)
        assert done.returncode == 0, (argv, done.stderr)
    deployment = {k: v for k, v in with_exports.items() if k != "PROTOCOLO_DEV_KEYS"}
    for argv in commands:
        done = protocolo(deployment, *argv, timeout=120)
        assert done.returncode != 0, argv
        # keys show and history: the key variable; verify: the verifier keys to pin
        assert re.search(r"PROTOCOLO_(SIGNING|INDEX)_KEY is not set|no log verifier key is pinned",
                         done.stderr), (argv, done.stderr)
        assert "Traceback" not in done.stderr

    # a ledger database nothing was projected into yet (what a tansu restart leaves) is
    # skipped by history's search of every ledger, not fatal
    admin = psycopg.conninfo.make_conninfo(ledger_url, dbname="postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("CREATE DATABASE ledger_99999999999999")
    assert history_json(new_shell, "--protocol", opened[0])["interactions"]


@pytest.mark.tansu_lane
def test_on_tansu_a_restart_keeps_one_registry_and_history_skips_the_new_empty_ledger(
        new_shell: dict[str, str]) -> None:
    up = protocolo(new_shell, "dev", "up", "--broker", "tansu")
    assert up.returncode == 0, up.stderr
    with_exports = exported(new_shell, up.stdout)
    first = protocolo(with_exports, "demo", "--contacts", "20", "--seed", "3")
    assert first.returncode == 0, first.stderr
    first_ledger = with_exports["PROTOCOLO_DATABASE_URL"]
    before_restart = contacts_opened(first_ledger)

    assert protocolo(new_shell, "dev", "down").returncode == 0
    again = protocolo(new_shell, "dev", "up", "--broker", "tansu")  # an empty log, a new ledger database
    assert again.returncode == 0, again.stderr
    second_exports = exported(new_shell, again.stdout)
    second_ledger = second_exports["PROTOCOLO_DATABASE_URL"]
    assert second_ledger != first_ledger
    # right after the restart the new ledger has no tables yet: history still searches the others
    assert history_json(new_shell, "--protocol", before_restart[0])["interactions"]

    second = protocolo(new_shell, "demo", "--contacts", "20", "--seed", "5")
    assert second.returncode == 0, second.stderr
    opened = before_restart + contacts_opened(second_ledger)
    assert len(opened) == 40
    assert len(set(opened)) == 40, "the sequence restarted with the broker"
    for protocol in opened[::4]:
        assert [c["protocol_number"] for c in history_json(new_shell, "--protocol", protocol)["interactions"]] \
            == [protocol]
    cpf = demo_cpf(first.stdout + first.stderr)  # a customer of the first incarnation's ledger
    # erased from the shell of the second incarnation's exports (its ledger: the new one)
    erased = protocolo(second_exports, "erase", "--cpf", cpf, "--legal-basis", "LGPD_ART_18_VI")
    assert erased.returncode == 0, erased.stderr
    after = history_json(new_shell, "--cpf", cpf)["interactions"]
    assert after and all(c["customer"]["erased"] for c in after)


