"""A UUID may be spelt many ways; the ledger must treat every spelling as the same id.

A producer that writes a ``request_id`` or an ``event_id`` in upper case, braced or as a
``urn:uuid:`` URN must get the same Kafka key and the same AES-GCM associated data as one
that writes the canonical lowercase form: otherwise the projector (which reads UUIDs back
canonical) quarantines the event as wrongly keyed, and ``history`` calls the customer's
personal data "altered". Published through the real publisher, projected by the real
projector, read back with the real CLI.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from helpers_flow import CPF, CPF_MASKED, Cli, contact_opened, drain, now_s, project, start_runtime

from protocolo.core.errors import EventRejected
from protocolo.producers.protocol_issuer import ProtocolIssuer
from protocolo.producers.publisher import Event

NAME = "Joana Spelling"
CODE = "C-UUID-7"

SPELLINGS = {
    "upper": lambda u: str(u).upper(),
    "braced": lambda u: "{" + str(u).upper() + "}",
    "urn": lambda u: f"urn:uuid:{u}",
    "hex": lambda u: u.hex.upper(),
}


def test_every_uuid_spelling_is_keyed_and_sealed_canonically(settings, monkeypatch, capsys):
    rt = start_runtime(settings)
    with ProtocolIssuer(rt.database_url) as issuer:
        protocols = {name: issuer.issue() for name in SPELLINGS}
    t0 = now_s() - timedelta(days=2)
    customer = {"cpf": CPF, "customer_code": CODE, "name": NAME}
    events: list[Event] = []
    canonical_ids: list[str] = []
    request_ids: dict[str, str] = {}
    for i, (name, spell) in enumerate(SPELLINGS.items()):
        opened_id, request_event_id, request_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        request_ids[name] = str(request_id)
        canonical_ids += [str(opened_id), str(request_event_id)]
        when = t0 + timedelta(minutes=10 * i)
        events += [
            Event("ContactOpened", contact_opened(customer), protocol_number=protocols[name],
                  occurred_at=when, event_id=spell(opened_id)),
            Event("RetrievalRequested", {
                "request_id": spell(request_id), "kind": "HISTORY", "requested_via": "WEB_FORM",
                "delivery_channel": "EMAIL", "customer": {"cpf": CPF, "name": NAME},
                "window_from": t0 - timedelta(days=1), "window_to": t0 + timedelta(days=1),
            }, occurred_at=when + timedelta(minutes=1), event_id=spell(request_event_id)),
            # The same request named in the canonical spelling by a later event.
            Event("RetrievalRejected", {
                "request_id": str(request_id), "reason": "IDENTITY_NOT_VERIFIED",
            }, occurred_at=when + timedelta(minutes=2)),
        ]
    with rt.publisher("uuid-spelling-test") as publisher:
        receipts = publisher.publish_many(events)

    # What the publisher answers and what is on the topic are canonical.
    assert [r.event_id for r in receipts][0::3] == canonical_ids[0::2]
    assert [r.event_id for r in receipts][1::3] == canonical_ids[1::2]
    assert [r.key for r in receipts][1::3] == list(request_ids.values())
    records = drain(rt.kafka_bootstrap, settings.topic)
    on_topic = {(r.partition, r.offset): r for r in records}
    for receipt in receipts:
        record = on_topic[(receipt.partition, receipt.offset)]
        assert record.key == receipt.key.encode()
        assert dict(record.headers)["event_id"] == receipt.event_id.encode()
        assert receipt.event_id == str(uuid.UUID(receipt.event_id))

    stats = project(rt)
    with rt.connect() as conn:
        quarantined = conn.execute("SELECT error FROM quarantine").fetchall()
    assert quarantined == []
    assert (stats.journaled, stats.quarantined) == (len(events), 0)

    cli = Cli(settings, monkeypatch, capsys)
    shown = cli("history", "--cpf", CPF, "--json")
    assert shown.code == 0, shown.err
    doc = shown.json()
    assert sorted(i["protocol_number"] for i in doc["interactions"]) == sorted(protocols.values())
    for interaction in doc["interactions"]:
        assert interaction["customer"] == {"identified": True, "erased": False, "name": NAME,
                                           "customer_code": CODE, "cpf_masked": CPF_MASKED}
    requests = {r["request_id"]: r for r in doc["retrieval_requests"]}
    assert sorted(requests) == sorted(request_ids.values())
    assert {r["status"] for r in requests.values()} == {"rejected"}


def test_a_rejected_event_seals_nothing(settings):
    """Sealing comes after validation: an event refused for any field creates no data key."""
    rt = start_runtime(settings)
    with ProtocolIssuer(rt.database_url) as issuer:
        p = issuer.issue()
    customer = {"cpf": CPF, "customer_code": CODE, "name": NAME}
    with rt.publisher("uuid-spelling-test") as publisher:
        for fields, event_id, rule in [
            ({**contact_opened(customer), "channel": "FAX"}, None, "enum"),
            (contact_opened(customer), "uuid:" + str(uuid.uuid4()), "uuid"),
        ]:
            with pytest.raises(EventRejected) as err:
                publisher.publish("ContactOpened", fields, protocol_number=p,
                                  occurred_at=now_s(), event_id=event_id)
            assert err.value.rule == rule
    with rt.connect() as conn:
        assert conn.execute("SELECT count(*) FROM personal_data_keys").fetchone() == (0,)
