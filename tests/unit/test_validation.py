"""Contract validation: every rejection names the field and the rule."""

import hashlib
from datetime import UTC, datetime, timedelta

import pytest

from protocolo.core.errors import EventRejected
from protocolo.core.protocol_number import make_protocol_number
from protocolo.schemas.catalogue import SchemaCatalogue
from protocolo.schemas.validation import StructureValidator, check_domain_rules, entity_key

CATALOGUE = SchemaCatalogue.load()
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
P = make_protocol_number(2026, 42)


def meta(**kw):
    return {"event_id": "5f0c6b1e-8a51-4d8e-9b7a-2f1d3c4b5a69", "protocol_number": P,
            "occurred_at": NOW - timedelta(minutes=1), "producer": "ivr", "correlation_id": None} | kw


def recording(**kw):
    return {"meta": meta(), "recording_id": "rec-1", "media_uri": "s3://r/1.opus",
            "sha256": hashlib.sha256(b"a").hexdigest(), "duration_ms": 1000,
            "retention_profile": "br-anatel-rgc", "retention_days": 180} | kw


def validate(event_type, record):
    StructureValidator(CATALOGUE.current(event_type).schema).check(record)
    check_domain_rules(event_type, record, now=NOW)


def rejected(event_type, record):
    with pytest.raises(EventRejected) as err:
        validate(event_type, record)
    return err.value


def test_a_valid_recording_passes_and_encodes():
    validate("RecordingCaptured", recording())
    assert CATALOGUE.encode("RecordingCaptured", recording())[:2] == b"\xc3\x01"


def test_missing_recording_digest():
    record = recording()
    del record["sha256"]
    err = rejected("RecordingCaptured", record)
    assert (err.field, err.rule) == ("sha256", "required")


def test_malformed_digest():
    err = rejected("RecordingCaptured", recording(sha256="ABC"))
    assert (err.field, err.rule) == ("sha256", "sha256")


def test_retention_below_the_legal_minimum():
    err = rejected("RecordingCaptured", recording(retention_days=90))
    assert (err.field, err.rule) == ("retention_days", "legal-minimum")
    assert "180" in str(err)


def test_unknown_channel_lists_the_known_ones():
    record = {"meta": meta(), "channel": "FAX", "direction": "INBOUND", "service_type": "MOBILE",
              "customer": {}, "agent_id": None, "subject": "x", "recorded": False}
    err = rejected("ContactOpened", record)
    assert (err.field, err.rule) == ("channel", "enum")
    assert "PHONE" in str(err) and "UNKNOWN" not in str(err).split("use one of")[1]


def test_publishers_may_not_send_the_reader_fallback_symbol():
    record = {"meta": meta(), "outcome": "UNKNOWN", "summary": None}
    assert rejected("ContactClosed", record).rule == "enum"


def test_wrong_protocol_check_digit():
    err = rejected("ContactClosed", {"meta": meta(protocol_number=P[:-1] + str((int(P[-1]) + 1) % 10)),
                                     "outcome": "RESOLVED"})
    assert (err.field, err.rule) == ("meta.protocol_number", "check-digit")


def test_occurred_at_too_far_in_the_future():
    err = rejected("ContactClosed", {"meta": meta(occurred_at=NOW + timedelta(hours=1)), "outcome": "RESOLVED"})
    assert (err.field, err.rule) == ("meta.occurred_at", "future")


def test_naive_timestamp_is_refused():
    err = rejected("ContactClosed", {"meta": meta(occurred_at=datetime(2026, 1, 1)), "outcome": "RESOLVED"})
    assert err.rule == "timestamp"


def test_interaction_events_need_a_protocol():
    err = rejected("ContactClosed", {"meta": meta(protocol_number=None), "outcome": "RESOLVED"})
    assert (err.field, err.rule) == ("meta.protocol_number", "required")


def test_unknown_field_is_named():
    err = rejected("ContactClosed", {"meta": meta(), "outcome": "RESOLVED", "mood": "happy"})
    assert (err.field, err.rule) == ("mood", "unknown-field")


def test_request_without_protocol_needs_customer_and_window():
    base = {"meta": meta(protocol_number=None), "request_id": "6a3e1f4e-8b7c-4c1d-9e2f-0a1b2c3d4e5f",
            "kind": "RECORDING", "customer": None, "window_from": None, "window_to": None,
            "requested_via": "APP", "delivery_channel": "EMAIL"}
    assert rejected("RetrievalRequested", base).field == "customer"
    with_customer = base | {"customer": {"cpf_index": "a" * 64, "customer_code_index": None, "sealed": None}}
    assert rejected("RetrievalRequested", with_customer).field == "window_from"
    windowed = with_customer | {"window_from": NOW, "window_to": NOW - timedelta(days=1)}
    assert (rejected("RetrievalRequested", windowed).rule) == "range"
    ok = windowed | {"window_to": NOW}
    validate("RetrievalRequested", ok)
    assert entity_key("RetrievalRequested", ok) == ok["request_id"]
