"""A broker that lost what was projected: the projector stops, says so, and changes nothing.

How the loss is simulated: the topic is deleted and created again with the same name
(``KafkaAdminClient.delete_topics`` then ``ensure_ledger_topic``), as an operator who
recreates a topic, or a memory-only broker after a restart, would leave it. The embedded
tansu 0.6 broker deletes topics (measured), so this is a real recreated topic, not
doctored ``projector_offsets`` rows. A couple of new records are written to the new topic,
fewer than were projected, so one partition's log is not even empty, just too short.

The projector, in-process and as ``protocolo project`` (the long-running mode, not only
``--until-caught-up``), opened after the topic was recreated or running while it is, must
stop with :class:`StoredOffsetBeyondLogEnd` / exit status 2 and a message that says what
happened and what to do, instead of skipping or re-projecting; the database must be
exactly as before.
"""

from __future__ import annotations

import subprocess
import threading
import time
from datetime import UTC, datetime

import pytest
from kafka import KafkaAdminClient
from kafka.errors import UnknownTopicOrPartitionError
from view_snapshot import (
    PROTOCOLO,
    cli_env,
    describe_difference,
    log_ends,
    publish_day,
    snapshot,
    stored_offsets,
)

from protocolo.consumers.projector import ProjectorError, StoredOffsetBeyondLogEnd
from protocolo.producers.ledger_topic import ensure_ledger_topic
from protocolo.producers.publisher import Event
from protocolo.runtime import Runtime

#: What the message must tell an operator (lower case): what happened and what to do.
MESSAGE_FRAGMENTS = ("already projected", "recreated", "lost data", "nothing was skipped",
                     "restore the topic", "fresh database")


def recreate_topic(bootstrap: str, topic: str, partitions: int) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="logend-test")
    try:
        admin.delete_topics([topic], timeout_ms=15_000)
        deadline = time.monotonic() + 15
        while admin.describe_topics([topic])[0].get("error_code") != UnknownTopicOrPartitionError.errno:
            assert time.monotonic() < deadline, f"topic {topic} still described after deletion"
            time.sleep(0.1)
    finally:
        admin.close()
    assert ensure_ledger_topic(bootstrap, topic, partitions) == partitions


@pytest.mark.tansu_lane
@pytest.mark.kafka_client_lane
def test_recreated_topic_stops_the_projector_and_changes_nothing(settings, tmp_path):
    _, receipts = publish_day(settings, contacts=60, seed=404)
    ends = log_ends(receipts)
    rt = Runtime.start(settings, log=lambda m: None)
    with rt.projector(batch_size=100) as projector:
        projector.run(until_caught_up=True, idle_timeout_s=30)
    assert stored_offsets(settings.database_url) == {p: (e, e) for p, e in ends.items()}
    assert len(ends) == settings.partitions and min(ends.values()) > 2, ends
    before = snapshot(settings.database_url)

    recreate_topic(rt.kafka_bootstrap, settings.topic, settings.partitions)
    # The new log: two records on one partition, far fewer than were projected there.
    protocol = receipts[0].key
    with rt.publisher("logend-test") as publisher:
        fresh = publisher.publish_many([
            Event("ContactClosed", {"outcome": "RESOLVED"}, protocol_number=protocol, occurred_at=datetime.now(UTC))
            for _ in range(2)
        ])
    refilled = fresh[0].partition
    assert [r.offset for r in fresh] == [0, 1], "the recreated topic was not empty"

    # In-process.
    with rt.projector(batch_size=100) as projector, pytest.raises(StoredOffsetBeyondLogEnd) as caught:
        projector.run(until_caught_up=True, idle_timeout_s=30)
    exc = caught.value
    assert exc.topic == settings.topic
    assert exc.stored == ends[exc.partition]
    assert exc.log_end in (None, 2 if exc.partition == refilled else 0), (exc.partition, exc.log_end)
    message = str(exc).lower()
    assert all(f in message for f in MESSAGE_FRAGMENTS), str(exc)
    after = snapshot(settings.database_url)
    assert after == before, describe_difference(before, after)

    # The command, in its long-running mode: it must stop by itself, with status 2.
    started = time.monotonic()
    proc = subprocess.run(
        [PROTOCOLO, "project", "--quiet", "--batch-size", "100"],
        env=cli_env(settings), stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120,
    )
    took = time.monotonic() - started
    assert proc.returncode == 2, f"exit {proc.returncode} after {took:.0f} s:\n{proc.stderr}"
    lines = [line for line in proc.stderr.splitlines() if line.startswith("protocolo: ")]
    assert len(lines) == 1, proc.stderr
    cli_message = lines[0].lower()
    assert settings.topic in lines[0] and "partition" in cli_message, lines[0]
    assert all(f in cli_message for f in MESSAGE_FRAGMENTS), lines[0]
    assert "traceback" not in proc.stderr.lower(), proc.stderr
    after = snapshot(settings.database_url)
    assert after == before, describe_difference(before, after)


@pytest.mark.tansu_lane
@pytest.mark.kafka_client_lane
def test_recreated_topic_that_grew_past_the_stored_offsets_is_not_skipped(settings):
    """The same fault, found later: by the time the projector looks, producers have written
    more to the recreated topic than was projected from the old one. Seeking to the stored
    offsets would skip the new log's first records without a word and append the rest to
    the old log's journal and Merkle trees. ARCHITECTURE.md ("Never silently lose"): the
    projector must stop with a clear error instead of skipping; nothing may change.
    """
    _, old = publish_day(settings, contacts=40, seed=408)
    rt = Runtime.start(settings, log=lambda m: None)
    with rt.projector(batch_size=500) as projector:
        projector.run(until_caught_up=True, idle_timeout_s=30)
    stored = stored_offsets(settings.database_url)
    assert stored == {p: (e, e) for p, e in log_ends(old).items()}
    before = snapshot(settings.database_url)

    recreate_topic(rt.kafka_bootstrap, settings.topic, settings.partitions)
    _, new = publish_day(settings, contacts=160, seed=409)
    grown = log_ends(new)
    assert all(grown.get(p, 0) > next_offset for p, (next_offset, _) in stored.items()), (stored, grown)

    with rt.projector(batch_size=500) as projector, pytest.raises(ProjectorError) as caught:
        projector.run(until_caught_up=True, idle_timeout_s=30)
    assert "recreated" in str(caught.value).lower(), str(caught.value)
    after = snapshot(settings.database_url)
    assert after == before, describe_difference(before, after)


@pytest.mark.kafka_client_lane
def test_topic_recreated_under_a_running_projector_stops_it_and_changes_nothing(settings):
    """The same fault while the projector runs: its client sees the topic vanish (unknown
    topic, its partitions taken away), then a new topic of the same name (new metadata, a new
    assignment, the seek to the stored offsets out of range). It must stop by itself, not
    wait for ever nor read the new log from its start, and change nothing."""
    _, receipts = publish_day(settings, contacts=40, seed=410)
    rt = Runtime.start(settings, log=lambda m: None)
    with rt.projector(batch_size=100) as projector:
        projector.run(until_caught_up=True, idle_timeout_s=30)
    before = snapshot(settings.database_url)

    outcome: dict[str, BaseException] = {}
    projector = rt.projector(batch_size=100)

    def run() -> None:
        try:
            projector.run()
        except BaseException as exc:  # noqa: BLE001 - the test reads it
            outcome["error"] = exc

    thread = threading.Thread(target=run, name="running-projector", daemon=True)
    try:
        thread.start()
        deadline = time.monotonic() + 60
        while len(_assigned(projector)) < settings.partitions:
            assert time.monotonic() < deadline and thread.is_alive(), outcome
            time.sleep(0.1)
        recreate_topic(rt.kafka_bootstrap, settings.topic, settings.partitions)
        with rt.publisher("logend-test") as publisher:
            publisher.publish_many([
                Event("ContactClosed", {"outcome": "RESOLVED"}, protocol_number=receipts[0].key,
                      occurred_at=datetime.now(UTC))
                for _ in range(2)
            ])
        thread.join(timeout=120)
        assert not thread.is_alive(), "the projector was still running 120 s after the topic was recreated"
    finally:
        projector.stop()
        thread.join(timeout=30)
        projector.close()
    assert isinstance(outcome.get("error"), ProjectorError), outcome
    assert "recreated" in str(outcome["error"]).lower(), str(outcome["error"])
    after = snapshot(settings.database_url)
    assert after == before, describe_difference(before, after)


def _assigned(projector) -> set[int]:
    try:
        return projector.assigned_partitions()
    except RuntimeError:  # a rebalance changed it under this read
        return set()
