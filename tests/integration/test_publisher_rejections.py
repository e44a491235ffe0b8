"""The publisher refuses bad events before anything reaches the broker.

Each rejection must name the field and the rule, and the topic must stay untouched: read
back with a raw consumer from the beginning, the only record on it is the good sentinel
published afterwards (which also proves that the read-back really sees what is sent).
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from helpers_flow import CPF, contact_opened, drain, now_s, recording_captured, start_runtime

from protocolo.core.errors import EventRejected
from protocolo.core.kafka_client import KafkaUnreachable
from protocolo.core.protocol_number import damm_digit, make_protocol_number
from protocolo.producers.protocol_issuer import ProtocolIssuer
from protocolo.producers.publisher import (
    BrokerUnavailable,
    Event,
    LedgerPublisher,
    PublisherOptions,
)

#: publish and project end to end: also run with librdkafka (CONTRIBUTING, "Kafka client lane")
pytestmark = pytest.mark.kafka_client_lane


def _mistyped(protocol: str) -> str:
    """The same number with its check digit changed: a typo the Damm digit catches."""
    wrong = (int(protocol[-1]) + 1) % 10
    assert damm_digit(protocol[:-1] + str(wrong)) != 0
    return protocol[:-1] + str(wrong)


def test_rejected_events_name_field_and_rule_and_publish_nothing(settings):
    rt = start_runtime(settings)
    with ProtocolIssuer(rt.database_url) as issuer:
        p, p2 = issuer.issue(), issuer.issue()
    when = now_s() - timedelta(minutes=10)
    opened = contact_opened({"cpf": CPF, "customer_code": "C9", "name": "Ana"})
    bad_recording = recording_captured("rec-bad", p)
    del bad_recording["sha256"]

    cases = [
        # (description, event, expected field, expected rule)
        ("CPF with a wrong check digit",
         Event("ContactOpened", contact_opened({"cpf": "111.444.777-36", "name": "Ana"}),
               protocol_number=p, occurred_at=when),
         "customer.cpf", "check-digit"),
        ("protocol number with a wrong check digit",
         Event("ContactOpened", opened, protocol_number=_mistyped(p), occurred_at=when),
         "meta.protocol_number", "check-digit"),
        ("unknown channel",
         Event("ContactOpened", {**opened, "channel": "FAX"}, protocol_number=p, occurred_at=when),
         "channel", "enum"),
        ("recording without its digest",
         Event("RecordingCaptured", bad_recording, protocol_number=p, occurred_at=when),
         "sha256", "required"),
        ("occurred_at one hour in the future",
         Event("ContactOpened", opened, protocol_number=p, occurred_at=now_s() + timedelta(hours=1)),
         "meta.occurred_at", "future"),
        ("retention below the profile's legal minimum",
         Event("RecordingCaptured", recording_captured("rec-short", p, days=179),
               protocol_number=p, occurred_at=when),
         "retention_days", "legal-minimum"),
    ]
    with rt.publisher("rejection-test") as publisher:
        for what, event, field, rule in cases:
            with pytest.raises(EventRejected) as single:
                publisher.publish(event.event_type, event.fields, protocol_number=event.protocol_number,
                                  occurred_at=event.occurred_at)
            # publish() names the field itself; publish_many() prefixes the event's index
            assert (single.value.field, single.value.rule) == (field, rule), what
            assert field in str(single.value) and rule in str(single.value), what

        # Three good events and one bad: the whole call is refused, nothing of it is sent.
        good = [
            Event("ContactOpened", opened, protocol_number=p2, occurred_at=when),
            Event("DisclosureMade", {"kind": "PROTOCOL_NUMBER", "medium": "VOICE"},
                  protocol_number=p2, occurred_at=when + timedelta(seconds=5)),
            Event("NoteAdded", {"agent_id": "agent-1", "text": "asked for a copy of the bill"},
                  protocol_number=p2, occurred_at=when + timedelta(seconds=30)),
        ]
        bad = Event("ContactClosed", {"outcome": "SOLVED"}, protocol_number=p2,
                    occurred_at=when + timedelta(minutes=1))
        with pytest.raises(EventRejected) as many:
            publisher.publish_many([good[0], good[1], bad, good[2]])
        assert (many.value.field, many.value.rule) == ("events[2].outcome", "enum")

        sentinel = publisher.publish("ContactClosed", {"outcome": "RESOLVED"}, protocol_number=p2,
                                     occurred_at=when + timedelta(minutes=2))

    records = drain(rt.kafka_bootstrap, settings.topic)
    assert [(r.partition, r.offset) for r in records] == [(sentinel.partition, sentinel.offset)]
    assert sentinel.offset == 0
    assert dict(records[0].headers)["event_id"] == sentinel.event_id.encode()


def test_unreachable_broker_fails_fast_saying_what_to_check():
    """Bounded by the configured timeouts, not by a stopwatch: the failure must come from one
    of them expiring (KafkaTimedOut, with either Kafka client), not from anything that could
    wait longer."""
    with pytest.raises(BrokerUnavailable) as err:
        publisher = LedgerPublisher("127.0.0.1:1", producer_name="unreachable-test",
                                    options=PublisherOptions(bootstrap_timeout_ms=2000,
                                                             max_block_ms=2000,
                                                             delivery_timeout_ms=3000,
                                                             request_timeout_ms=2000))
        try:  # a client that connects lazily must fail on the first publish instead
            publisher.publish("NoteAdded", {"agent_id": "a", "text": "t"},
                              protocol_number=make_protocol_number(2026, 1))
        finally:
            publisher.close(timeout_s=1)
    timed_out = isinstance(err.value.__cause__, KafkaUnreachable) or (
        err.value.failed and all(e.startswith("KafkaTimedOut") for e in err.value.failed.values()))
    assert timed_out, (err.value.__cause__, err.value.failed)
    message = str(err.value)
    assert "127.0.0.1:1" in message
    assert "PROTOCOLO_KAFKA_BOOTSTRAP" in message
    assert err.value.delivered == []
