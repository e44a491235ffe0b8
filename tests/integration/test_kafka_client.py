"""The Kafka client behind the publisher and the projector (protocolo.core.kafka_client).

``PROTOCOLO_KAFKA_CLIENT`` chooses kafka-python (default) or librdkafka (``confluent``).
The tests marked ``kafka_client_lane`` run twice in CI, once per client; the first test here
makes sure the lane really uses the client it names, so it cannot pass on the default.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta

import pytest
from helpers_flow import now_s, start_runtime
from view_snapshot import cli_env

from protocolo.core.config import ConfigError, Settings
from protocolo.core.kafka_client import (
    CLIENTS,
    CONFLUENT,
    ENV_KAFKA_CLIENT,
    KAFKA_PYTHON,
    chosen_client,
)
from protocolo.core.protocol_number import make_protocol_number
from protocolo.producers.publisher import Event, LedgerPublisher, PublisherOptions

#: What the lane under test asked for (unset: the default).
ASKED = os.environ.get(ENV_KAFKA_CLIENT, "").strip() or KAFKA_PYTHON


@pytest.mark.kafka_client_lane
def test_the_publisher_and_the_projector_use_the_client_the_environment_names(settings: Settings) -> None:
    rt = start_runtime(settings)
    publisher = rt.publisher("client-choice-test")
    try:
        assert publisher.kafka_client == ASKED
        # The library object itself, not only the name the wrapper reports.
        producer = publisher._producer.producer  # noqa: SLF001 - what the lane must not fake
        expected_module = "confluent_kafka" if ASKED == CONFLUENT else "kafka"
        assert type(producer).__module__.split(".")[0] in {expected_module, "cimpl"}, type(producer)
        if ASKED == CONFLUENT:
            import confluent_kafka

            assert isinstance(producer, confluent_kafka.Producer)
        else:
            import kafka

            assert isinstance(producer, kafka.KafkaProducer)
        receipt = publisher.publish("ContactClosed", {"outcome": "RESOLVED"},
                                    protocol_number=make_protocol_number(2026, 1),
                                    occurred_at=now_s() - timedelta(minutes=1))
    finally:
        publisher.close()
    with rt.projector() as projector:
        assert projector.kafka_client == ASKED
        stats = projector.run(until_caught_up=True, idle_timeout_s=60)
    assert stats.journaled == 1
    with rt.connect() as conn:
        row = conn.execute("SELECT kafka_partition, kafka_offset FROM journal").fetchone()
    assert row == (receipt.partition, receipt.offset)


@pytest.mark.kafka_client_lane
def test_the_commands_the_lane_starts_use_its_client_too(settings: Settings) -> None:
    """The lane's tests also run ``protocolo project`` as a subprocess, with the environment
    view_snapshot.cli_env builds: that process must choose the lane's client, not the default."""
    proc = subprocess.run(
        [sys.executable, "-c", "from protocolo.core.kafka_client import chosen_client; print(chosen_client())"],
        env=cli_env(settings), capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ASKED


def java_murmur2(data: bytes) -> int:
    """Kafka's ``Utils.murmur2`` (clients/src/main/java/org/apache/kafka/common/utils/Utils.java),
    transcribed: the hash the Java producer's default partitioner uses for keyed records."""
    length = len(data)
    seed, m, r = 0x9747B28C, 0x5BD1E995, 24
    h = (seed ^ length) & 0xFFFFFFFF
    for i in range(length // 4):
        k = int.from_bytes(data[i * 4:i * 4 + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = (h * m) & 0xFFFFFFFF
        h ^= k
    tail = length & ~3
    rest = length % 4
    if rest == 3:
        h ^= data[tail + 2] << 16
    if rest >= 2:
        h ^= data[tail + 1] << 8
    if rest >= 1:
        h ^= data[tail]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h


def test_both_clients_put_a_protocol_on_the_partition_java_would(settings: Settings) -> None:
    """A protocol's events must share a partition whichever client published them (the
    per-partition order and Merkle tree depend on it): both clients, the same keys, and
    Java's murmur2 as the oracle."""
    rt = start_runtime(settings)
    protocols = [make_protocol_number(2026, n) for n in range(1, 61)]
    at = now_s() - timedelta(minutes=1)
    placed: dict[str, dict[str, int]] = {}
    for client in CLIENTS:
        with LedgerPublisher(rt.kafka_bootstrap, producer_name=f"partition-{client}", topic=settings.topic,
                             sealer=rt.sealer(), options=PublisherOptions(client=client)) as publisher:
            assert publisher.kafka_client == client
            receipts = publisher.publish_many(
                [Event("ContactClosed", {"outcome": "RESOLVED"}, protocol_number=p, occurred_at=at)
                 for p in protocols])
        placed[client] = {r.key: r.partition for r in receipts}
    java = {p: (java_murmur2(p.encode()) & 0x7FFFFFFF) % settings.partitions for p in protocols}
    assert placed[KAFKA_PYTHON] == java
    assert placed[CONFLUENT] == java
    assert len(set(java.values())) == settings.partitions  # the keys do spread


def test_a_client_name_that_is_not_one_is_refused_naming_the_variable_and_the_choices() -> None:
    with pytest.raises(ConfigError) as refused:
        chosen_client({ENV_KAFKA_CLIENT: "librdkafka"})
    message = str(refused.value)
    assert ENV_KAFKA_CLIENT in message and "'librdkafka'" in message
    assert "kafka-python" in message and "confluent" in message
    assert chosen_client({ENV_KAFKA_CLIENT: ""}) == KAFKA_PYTHON
    assert chosen_client({}) == KAFKA_PYTHON
    with pytest.raises(ConfigError, match=ENV_KAFKA_CLIENT):  # every command refuses it up front
        Settings.from_env({ENV_KAFKA_CLIENT: "Confluent"})


def test_the_cli_refuses_a_bad_client_without_a_traceback(tmp_path) -> None:
    env = {**os.environ, ENV_KAFKA_CLIENT: "rdkafka", "PROTOCOLO_HOME": str(tmp_path)}
    command = "import sys; from protocolo.cli import main; sys.exit(main(['dev', 'status']))"
    done = subprocess.run([sys.executable, "-c", command], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "PROTOCOLO_KAFKA_CLIENT='rdkafka'" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


def test_confluent_without_its_library_says_how_to_install_it() -> None:
    """Run where confluent-kafka cannot be imported (sys.modules entry None: Python's own
    way of making an import fail), the choice fails with the install command."""
    script = (
        "import sys; sys.modules['confluent_kafka'] = None\n"
        "from protocolo.core.kafka_client import chosen_client\n"
        "from protocolo.core.config import ConfigError\n"
        "try:\n"
        "    chosen_client({'PROTOCOLO_KAFKA_CLIENT': 'confluent'})\n"
        "except ConfigError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "pip install 'protocolo[confluent]'" in done.stdout, done.stdout
    assert ENV_KAFKA_CLIENT in done.stdout
