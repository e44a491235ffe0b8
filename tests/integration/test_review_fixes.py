"""Behaviour added after review: domain-rule poison, unreadable-but-not-erased personal
data, and a broker that goes away under a running publisher."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta

import backends
import pytest
from kafka import KafkaProducer

from protocolo import devstack
from protocolo.core.config import Settings
from protocolo.core.personal_data import KeyVault, PersonalDataSealer, PersonalDataUnavailable
from protocolo.core.protocol_number import make_protocol_number
from protocolo.producers.publisher import (
    BrokerUnavailable,
    Event,
    LedgerPublisher,
    PublisherOptions,
)
from protocolo.runtime import Runtime
from protocolo.schemas.catalogue import SchemaCatalogue

CATALOGUE = SchemaCatalogue.load()


def _opened(protocol: str, at: datetime) -> Event:
    return Event("ContactOpened", {"channel": "PHONE", "direction": "INBOUND", "service_type": "BANKING",
                                   "customer": {"cpf": "111.444.777-35", "name": "Ana"}, "agent_id": "a-1",
                                   "subject": "refund", "recorded": True},
                 protocol_number=protocol, occurred_at=at)


def test_a_record_breaking_a_domain_rule_is_quarantined_and_projection_goes_on(settings):
    rt = Runtime.start(settings, log=lambda m: None)
    at = datetime.now(UTC) - timedelta(days=1)
    good, bad = make_protocol_number(2026, 101), make_protocol_number(2026, 102)
    with rt.publisher("domain-poison-test") as publisher:
        publisher.publish_many([_opened(good, at), _opened(bad, at)])
        # A producer in another language skipped the rules: an unknown retention profile,
        # which the recordings view cannot hold (it names the profile of every deadline).
        record = {"meta": {"event_id": str(uuid.uuid4()), "protocol_number": bad, "occurred_at": at,
                           "producer": "legacy-recorder", "correlation_id": None},
                  "recording_id": "rec-legacy", "media_uri": "s3://r/legacy.opus",
                  "sha256": hashlib.sha256(b"legacy").hexdigest(), "duration_ms": 1000,
                  "retention_profile": "br-made-up", "retention_days": 30}
        raw = KafkaProducer(bootstrap_servers=rt.kafka_bootstrap)
        raw.send(settings.topic, key=bad.encode(), value=CATALOGUE.encode("RecordingCaptured", record)).get(10)
        raw.close()
        publisher.publish("ContactClosed", {"outcome": "RESOLVED"}, protocol_number=good,
                          occurred_at=at + timedelta(minutes=5))
    with rt.projector(batch_size=500) as projector:
        stats = projector.run(until_caught_up=True, idle_timeout_s=30)
    assert (stats.journaled, stats.quarantined) == (3, 1)
    with rt.connect() as conn:
        [(error,)] = conn.execute("SELECT error FROM quarantine").fetchall()
        assert "retention_profile" in error and "br-made-up" in error
        assert conn.execute("SELECT count(*) FROM recordings").fetchone()[0] == 0
        assert conn.execute("SELECT outcome FROM interactions WHERE protocol_number = %s",
                            (good,)).fetchone() == ("RESOLVED",)


def test_unreadable_personal_data_is_not_reported_as_erased(settings):
    rt = Runtime.start(settings, log=lambda m: None)
    p = make_protocol_number(2026, 201)
    with rt.publisher("pii-test") as publisher:
        receipt = publisher.publish_many([_opened(p, datetime.now(UTC) - timedelta(hours=2))])[0]
    with rt.projector() as projector:
        projector.run(until_caught_up=True, idle_timeout_s=30)
    with rt.connect() as conn:
        sealed = conn.execute("SELECT payload->'customer'->'sealed' FROM journal WHERE event_id = %s",
                              (receipt.event_id,)).fetchone()[0]
    assert rt.sealer().open(sealed, receipt.event_id)["name"] == "Ana"
    wrong_master = PersonalDataSealer(rt.sealer().index, KeyVault(rt.database_url, b"\x01" * 32))
    with pytest.raises(PersonalDataUnavailable, match="PROTOCOLO_MASTER_KEY"):
        wrong_master.open(sealed, receipt.event_id)
    tampered = dict(sealed, ciphertext="00" + sealed["ciphertext"][2:])
    with pytest.raises(PersonalDataUnavailable, match="altered"):
        rt.sealer().open(tampered, receipt.event_id)
    with pytest.raises(PersonalDataUnavailable, match="no data key"):
        rt.sealer().open(dict(sealed, key_ref=str(uuid.uuid4())), receipt.event_id)


@pytest.mark.kafka_client_lane
def test_a_broker_that_goes_away_fails_the_publish_in_bounded_time_and_says_which_events(settings):
    with backends.scratch_dir("protocolo-test-gone-") as home:
        backends.share_kafka_jars(home)
        own = Settings(home=home)
        bootstrap = devstack.start_kafka(own, log=lambda m: None)
        try:
            rt = Runtime.start(Settings(home=settings.home, kafka_bootstrap=bootstrap,
                                        database_url=settings.database_url, topic=settings.topic,
                                        partitions=settings.partitions, dev_keys=True), log=lambda m: None)
            publisher = LedgerPublisher(bootstrap, producer_name="gone-test", topic=settings.topic,
                                        sealer=rt.sealer(),
                                        options=PublisherOptions(delivery_timeout_ms=3000, request_timeout_ms=2000,
                                                                 max_block_ms=2000))
            at = datetime.now(UTC) - timedelta(hours=1)
            first = publisher.publish("ContactClosed", {"outcome": "RESOLVED"},
                                      protocol_number=make_protocol_number(2026, 301), occurred_at=at)
            assert first.offset == 0
            devstack.down(own, log=lambda m: None)
            events = [Event("ContactClosed", {"outcome": "RESOLVED"},
                            protocol_number=make_protocol_number(2026, 302 + i), occurred_at=at)
                      for i in range(5)]
            with pytest.raises(BrokerUnavailable) as failure:
                publisher.publish_many(events)
            # Bounded by the configured timeouts (no stopwatch): each event failed because one
            # of them (max_block_ms, delivery_timeout_ms) expired.
            reasons = list(failure.value.failed.values())
            assert all(r.startswith("KafkaTimedOut") for r in reasons), reasons
            assert failure.value.delivered == []
            assert len(failure.value.failed) == 5  # every event named: none dropped silently
            assert "publish them again with the same event ids" in str(failure.value)
            publisher.close(timeout_s=1)
        finally:
            devstack.down(own, log=lambda m: None)


def test_request_status_does_not_depend_on_batch_boundaries(settings):
    """A request both rejected and (earlier, but published later) fulfilled: the earlier
    ends it, whether the two arrive in one batch or in two, live or rebuilt."""
    from protocolo.projections.rebuild import rebuild_views

    rt = Runtime.start(settings, log=lambda m: None)
    p = make_protocol_number(2026, 401)
    at = datetime.now(UTC) - timedelta(days=20)
    request_id = str(uuid.uuid4())
    digest = hashlib.sha256(b"audio").hexdigest()
    with rt.publisher("status-test") as publisher:
        publisher.publish_many([
            _opened(p, at),
            Event("RetrievalRequested", {"request_id": request_id, "kind": "RECORDING", "requested_via": "APP",
                                         "delivery_channel": "EMAIL"}, protocol_number=p, occurred_at=at + timedelta(days=1)),
            Event("RetrievalRejected", {"request_id": request_id, "reason": "NOT_FOUND"},
                  protocol_number=p, occurred_at=at + timedelta(days=5)),
            Event("RetrievalFulfilled", {"request_id": request_id, "recording_id": None, "delivered_sha256": digest,
                                         "delivered_via": "EMAIL"}, protocol_number=p, occurred_at=at + timedelta(days=3)),
        ])
    projector = rt.projector(batch_size=1)  # one event per batch: rejection and fulfilment apart
    with projector:
        projector.run(until_caught_up=True, idle_timeout_s=30)
    query = "SELECT status, fulfilled_at IS NOT NULL, rejected_at IS NOT NULL FROM retrieval_requests"
    with rt.connect() as conn:
        live = conn.execute(query).fetchall()
        rebuild_views(conn)
        rebuilt = conn.execute(query).fetchall()
    assert live == rebuilt == [("fulfilled", True, True)]



def test_demo_projects_every_deletion_the_sweeper_published(settings, monkeypatch, capsys):
    """The main job reuses one projector for both projection steps: the second must not
    stop early on high watermarks seen before the sweeper published its deletions."""
    from protocolo.cli import main

    for name, value in (("PROTOCOLO_HOME", str(settings.home)), ("PROTOCOLO_KAFKA_BOOTSTRAP", settings.kafka_bootstrap),
                        ("PROTOCOLO_DATABASE_URL", settings.database_url), ("PROTOCOLO_TOPIC", settings.topic),
                        ("PROTOCOLO_GROUP_ID", settings.group_id), ("PROTOCOLO_DEV_KEYS", "1")):
        monkeypatch.setenv(name, value)
    assert main(["demo", "--contacts", "2000", "--seed", "11"]) == 0
    out, err = capsys.readouterr()
    published = int(next(line for line in err.splitlines() if "recordings past retention and not on hold" in line)
                    .split()[0].replace(",", ""))
    projected = int(next(line for line in out.splitlines() if "recordings deleted after retention" in line).split()[-1])
    assert published > 0
    assert projected == published

