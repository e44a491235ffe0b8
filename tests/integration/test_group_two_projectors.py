"""Scaling out: two projectors in one consumer group, one database.

Both join the group (threads, each Projector with its own Kafka consumer and its own
PostgreSQL connection) and split the 4 partitions; a day is published and each projects
only the partitions it was given. Then one leaves: the other is given its partitions,
starts them from the offsets stored in PostgreSQL and projects a second day. The result
must equal one projector reading the whole topic in one go into another database.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable

import psycopg
import pytest
from view_snapshot import (
    describe_difference,
    log_ends,
    project_in_process,
    publish_day,
    scratch_database,
    snapshot,
    stored_offsets,
)

from protocolo.consumers.projector import Projector, ProjectorOptions, ProjectorStats
from protocolo.producers.protocol_issuer import ProtocolIssuer
from protocolo.producers.simulator import CallCentreDay, chunks
from protocolo.runtime import Runtime

JOIN_TIMEOUT_S = 40.0  # a join takes ~3 s on the embedded broker with the projector's timeouts
PROJECT_TIMEOUT_S = 60.0


class Member:
    """One projector running in its own thread until stopped."""

    def __init__(self, name: str, bootstrap: str, database_url: str, topic: str, group_id: str) -> None:
        self.name = name
        self.projector = Projector(
            bootstrap, database_url, topic=topic, group_id=group_id,
            options=ProjectorOptions(batch_size=50),
        )
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name=f"projector-{name}", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.projector.run()
        except BaseException as exc:  # reported by the test thread
            self.error = exc

    def partitions(self) -> set[int]:
        # Read from the test thread while the member's thread polls: retry a torn read.
        for _ in range(100):
            try:
                return self.projector.assigned_partitions()
            except RuntimeError:
                time.sleep(0.01)
        raise AssertionError(f"{self.name}: assignment unreadable")

    @property
    def stats(self) -> ProjectorStats:
        return self.projector.stats

    def stop(self) -> None:
        self.projector.stop()
        self.thread.join(30)
        assert not self.thread.is_alive(), f"{self.name} did not stop"
        self.projector.close()
        if self.error is not None:
            raise AssertionError(f"{self.name} failed: {self.error!r}") from self.error


def wait_for(condition: Callable[[], bool], timeout: float, what: str, members: list[Member]) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        for m in members:
            if m.error is not None:
                raise AssertionError(f"{m.name} failed while waiting for {what}: {m.error!r}") from m.error
        if time.monotonic() > deadline:
            state = {m.name: (sorted(m.partitions()), m.stats.journaled) for m in members}
            raise AssertionError(f"not {what} within {timeout:.0f} s: {state}")
        time.sleep(0.05)


def journal_rows_per_partition(database_url: str) -> dict[int, int]:
    with psycopg.connect(database_url) as conn:
        return dict(conn.execute("SELECT kafka_partition, count(*) FROM journal GROUP BY 1").fetchall())


@pytest.mark.kafka_client_lane
def test_two_projectors_split_the_partitions_and_hand_over(backend, settings):
    everything = set(range(settings.partitions))
    group = f"group-{uuid.uuid4().hex[:8]}"
    args = (backend.kafka_bootstrap, settings.database_url, settings.topic, group)
    a = Member("a", *args)
    b = Member("b", *args)
    members = [a, b]
    try:
        # Phase 1: both in the group, partitions split, then a day to project.
        def split() -> bool:
            pa, pb = a.partitions(), b.partitions()
            return bool(pa) and bool(pb) and not pa & pb and pa | pb == everything

        wait_for(split, JOIN_TIMEOUT_S, "the partitions split between a and b", members)
        share = {"a": a.partitions(), "b": b.partitions()}
        _, first = publish_day(settings, contacts=200, seed=101)
        ends = log_ends(first)
        assert set(ends) == everything
        wait_for(lambda: stored_offsets(settings.database_url) == {p: (e, e) for p, e in ends.items()},
                 PROJECT_TIMEOUT_S, "the first day projected", members)
        wait_for(lambda: a.stats.journaled + b.stats.journaled == len(first), 10, "stats settled", members)
        assert {"a": a.partitions(), "b": b.partitions()} == share, "the group rebalanced during the run"
        per_partition = journal_rows_per_partition(settings.database_url)
        # Each projected exactly the records of its own partitions, and both did work.
        assert a.stats.journaled == sum(per_partition[p] for p in share["a"]) > 0, (share, per_partition)
        assert b.stats.journaled == sum(per_partition[p] for p in share["b"]) > 0, (share, per_partition)
        b_before = b.stats.journaled

        # Phase 2: a leaves; b is given a's partitions and resumes them from PostgreSQL.
        a.stop()
        members = [b]
        wait_for(lambda: b.partitions() == everything, JOIN_TIMEOUT_S, "b given every partition", members)
        _, second = publish_day(settings, contacts=80, seed=202)
        ends = log_ends(first + second)
        wait_for(lambda: stored_offsets(settings.database_url) == {p: (e, e) for p, e in ends.items()},
                 PROJECT_TIMEOUT_S, "the second day projected", members)
        wait_for(lambda: b.stats.journaled - b_before == len(second), 10, "stats settled", members)
        b.stop()
        members = []
    finally:
        for m in members:
            m.projector.stop()
        for m in members:
            m.thread.join(30)
            m.projector.close()

    live = snapshot(settings.database_url)
    assert len(live["journal"]) == len(first) + len(second)
    with scratch_database(backend.database_url, "group_ref") as reference_url:
        stats = project_in_process(backend.kafka_bootstrap, reference_url, settings.topic)
        reference = snapshot(reference_url)
    assert stats.journaled == len(first) + len(second)
    assert live == reference, describe_difference(live, reference)


def test_members_join_and_leave_while_records_flow(backend, settings):
    """Rebalances in the middle of live traffic: b joins while a is projecting, then a
    leaves while b is; a publisher keeps writing throughout. Nothing lost, nothing doubled."""
    everything = set(range(settings.partitions))
    group = f"group-{uuid.uuid4().hex[:8]}"
    args = (backend.kafka_bootstrap, settings.database_url, settings.topic, group)
    rt = Runtime.start(settings, log=lambda m: None)
    with ProtocolIssuer(rt.database_url) as issuer:
        day = CallCentreDay(issuer.issue, contacts=700, seed=303).build()
    receipts: list = []
    stop_publishing = threading.Event()
    publish_errors: list[BaseException] = []

    def publish() -> None:
        try:
            with rt.publisher("group-churn") as publisher:
                for chunk in chunks(day.events, 20):
                    receipts.extend(publisher.publish_many(chunk))
                    if stop_publishing.wait(0.1):
                        return
        except BaseException as exc:
            publish_errors.append(exc)

    feeder = threading.Thread(target=publish, name="publisher", daemon=True)
    a = Member("a", *args)
    members = [a]
    try:
        wait_for(lambda: a.partitions() == everything, JOIN_TIMEOUT_S, "a given every partition", members)
        feeder.start()
        wait_for(lambda: a.stats.journaled > 0, PROJECT_TIMEOUT_S, "a projecting", members)
        b = Member("b", *args)
        members.append(b)
        wait_for(lambda: bool(b.partitions()) and not a.partitions() & b.partitions()
                 and a.partitions() | b.partitions() == everything,
                 JOIN_TIMEOUT_S, "the partitions split between a and b", members)
        wait_for(lambda: b.stats.journaled > 0, PROJECT_TIMEOUT_S, "b projecting", members)
        a.stop()
        members.remove(a)
        wait_for(lambda: b.partitions() == everything, JOIN_TIMEOUT_S, "b given every partition", members)
        still_flowing = feeder.is_alive()
        stop_publishing.set()
        feeder.join(60)
        assert not feeder.is_alive() and not publish_errors, publish_errors
        ends = log_ends(receipts)
        wait_for(lambda: stored_offsets(settings.database_url) == {p: (e, e) for p, e in ends.items()},
                 PROJECT_TIMEOUT_S, "everything published projected", members)
        wait_for(lambda: a.stats.journaled + b.stats.journaled == len(receipts), 10, "stats settled", members)
        b.stop()
        members.remove(b)
    finally:
        stop_publishing.set()
        for m in members:
            m.projector.stop()
        for m in members:
            m.thread.join(30)
            m.projector.close()

    assert still_flowing, "the publisher had finished before the rebalances: make the day longer"
    assert a.stats.journaled > 0 and b.stats.journaled > 0
    live = snapshot(settings.database_url)
    assert len(live["journal"]) == len(receipts)
    with scratch_database(backend.database_url, "churn_ref") as reference_url:
        stats = project_in_process(backend.kafka_bootstrap, reference_url, settings.topic)
        reference = snapshot(reference_url)
    assert stats.journaled == len(receipts)
    assert live == reference, describe_difference(live, reference)
