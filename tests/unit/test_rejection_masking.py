"""A rejection names the field and the rule, and never echoes a CPF or a customer code.

Rejection messages reach logs, CLI output and API responses; a CPF typed into the wrong
field, or with a typo, must not be printed back. Every path that can reject such a value is
exercised: the CPF parser, the personal-data sealer, the structure walk (each of its
messages) and the domain rules. The oracle: no run of three or more digits of the CPF's
first nine appears in the message, and neither does the customer code.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta

import pytest

from protocolo.core.cpf import normalise_cpf
from protocolo.core.errors import EventRejected, shown_value
from protocolo.core.personal_data import BlindIndex, KeyVault, PersonalDataSealer
from protocolo.core.protocol_number import make_protocol_number, normalise_protocol_number
from protocolo.schemas.catalogue import SchemaCatalogue
from protocolo.schemas.validation import StructureValidator, check_domain_rules

CATALOGUE = SchemaCatalogue.load()
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
P = make_protocol_number(2026, 42)
CPF = "529.982.247-25"
CPF_DIGITS = "52998224725"
CODE = "C-LGPD-4242"
CPF_SHAPES = [CPF, CPF_DIGITS, "529.982.247-26", "529 982 247 25", "52998224725x", "5299822472", int(CPF_DIGITS)]


def assert_not_echoed(err: EventRejected, secret: object = CPF) -> None:
    message = str(err)
    digits = re.sub(r"\D", "", str(secret))[:9]
    for run in re.findall(r"\d{3,}", message):
        assert run not in digits and digits not in run, f"{message!r} echoes {secret!r}"
    for part in (CODE, "LGPD"):
        assert part not in message, f"{message!r} echoes the customer code"
    assert err.field in message and f"[rule: {err.rule}]" in message


def meta(**kw):
    return {"event_id": "5f0c6b1e-8a51-4d8e-9b7a-2f1d3c4b5a69", "protocol_number": P,
            "occurred_at": NOW - timedelta(minutes=1), "producer": "ivr", "correlation_id": None} | kw


def recording(**kw):
    return {"meta": meta(), "recording_id": "rec-1", "media_uri": "s3://r/1.opus",
            "sha256": hashlib.sha256(b"a").hexdigest(), "duration_ms": 1000,
            "retention_profile": "br-anatel-rgc", "retention_days": 180} | kw


def opened(**kw):
    return {"meta": meta(), "channel": "PHONE", "direction": "INBOUND", "service_type": "MOBILE",
            "customer": None, "agent_id": "a", "subject": "s", "recorded": False} | kw


def rejection(event_type: str, record: dict) -> EventRejected:
    with pytest.raises(EventRejected) as err:
        StructureValidator(CATALOGUE.current(event_type).schema).check(record)
        check_domain_rules(event_type, record, now=NOW)
    return err.value


@pytest.mark.parametrize("value", ["529.982.247-26", "529.982.247-2X", "529.982.247-255", "5299822472",
                                   "529982247\x0025", 52998224726])
def test_the_cpf_parser_does_not_echo_the_cpf(value):
    with pytest.raises(EventRejected) as err:
        normalise_cpf(value, "customer.cpf")
    assert_not_echoed(err.value, value)


def test_the_sealer_does_not_echo_the_cpf():
    sealer = PersonalDataSealer(BlindIndex(b"k" * 32), KeyVault("postgresql://never-used", b"m" * 32))
    with pytest.raises(EventRejected) as err:
        sealer.identify({"cpf": "529.982.247-26", "customer_code": CODE, "name": "Ana"})
    assert (err.value.field, err.value.rule) == ("customer.cpf", "check-digit")
    assert_not_echoed(err.value)


@pytest.mark.parametrize("secret", [*CPF_SHAPES, CODE], ids=repr)
@pytest.mark.parametrize("event_type,make", [
    ("ContactOpened", lambda v: opened(channel=v)),                      # enum
    ("ContactOpened", lambda v: opened(recorded=v)),                     # boolean
    ("ContactOpened", lambda v: opened(meta=meta(occurred_at=v))),       # timestamp
    ("ContactOpened", lambda v: opened(meta=meta(event_id=v))),          # uuid
    ("ContactOpened", lambda v: opened(meta=meta(protocol_number=v))),   # union, then domain rule
    ("ContactOpened", lambda v: opened(customer=v)),                     # union of a record
    ("RecordingCaptured", lambda v: recording(retention_days=v)),        # int (32 bits)
    ("RecordingCaptured", lambda v: recording(sha256=v)),                # domain rule: digest
    ("RecordingCaptured", lambda v: recording(retention_profile=v)),     # domain rule: profile
    ("RetrievalLocated", lambda v: {"meta": meta(), "request_id": "5f0c6b1e-8a51-4d8e-9b7a-2f1d3c4b5a69",
                                    "protocol_numbers": [P, v], "recording_ids": []}),  # array item
], ids=["enum", "boolean", "timestamp", "uuid", "protocol-number", "record", "int", "sha256",
        "profile", "array"])
def test_a_cpf_or_customer_code_in_the_wrong_field_is_not_echoed(event_type, make, secret):
    err = rejection(event_type, make(secret))
    assert_not_echoed(err, secret)


def test_the_protocol_number_parser_does_not_echo_a_cpf():
    for value in (CPF, CPF_DIGITS, CPF_DIGITS + "0000"):
        with pytest.raises(EventRejected) as err:
            normalise_protocol_number(value, "--protocol")
        assert_not_echoed(err.value, value)


def test_safe_values_are_still_shown():
    """Masking keeps what helps a producer fix the event: enum-like words and small numbers."""
    assert shown_value("FAX") == "'FAX'"
    assert shown_value("ContactOpend") == "'ContactOpend'"
    assert shown_value("br-anatel-rgc") == "'br-anatel-rgc'"
    assert shown_value(-5) == "-5"
    assert shown_value(None) == "None"
    assert shown_value("111.444.777-35") == "'***.***.***-35'"
    assert shown_value(11144477735) == "*********35"
    assert "Maria" not in shown_value("Maria Silva")
    assert shown_value("x" * 500).endswith("(500 characters)")


@pytest.mark.parametrize("secret", [CPF, CPF_DIGITS, CODE], ids=repr)
def test_a_cpf_used_as_a_field_name_is_not_echoed(secret):
    err = rejection("ContactClosed", {"meta": meta(), "outcome": "RESOLVED", secret: "x"})
    assert err.rule == "unknown-field"
    assert_not_echoed(err, secret)
    sealer = PersonalDataSealer(BlindIndex(b"k" * 32), KeyVault("postgresql://never-used", b"m" * 32))
    with pytest.raises(EventRejected) as sealed:
        sealer.identify({"cpf": CPF, secret: "x"})
    assert sealed.value.rule == "unknown-field"
    assert_not_echoed(sealed.value, secret)


def test_ordinary_unknown_field_names_are_named():
    err = rejection("ContactClosed", {"meta": meta(), "outcome": "RESOLVED", "sumary": "typo"})
    assert (err.field, err.rule) == ("sumary", "unknown-field")
