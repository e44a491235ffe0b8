"""The publisher refuses what PostgreSQL cannot store, and publishes the rest faithfully.

Every event of the fuzz corpus (tests/fuzz_corpus.py) goes through the real publisher to
the real broker. An event holding content the ledger's PostgreSQL cannot store (NUL, lone
surrogates) or too big for a Kafka record is refused with the field and the rule, without
echoing the content, and nothing of it reaches the topic (read back with a raw consumer).
Every other event, however nasty its text, is published and then projected by the real
projector without a single quarantine, its text intact in the record and the journal.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from fuzz_corpus import hostile_events
from helpers_flow import drain, now_s, project, start_runtime

from protocolo.core.errors import EventRejected
from protocolo.producers.protocol_issuer import ProtocolIssuer
from protocolo.producers.publisher import Event
from protocolo.schemas.catalogue import SchemaCatalogue

#: publish and project end to end: also run with librdkafka (CONTRIBUTING, "Kafka client lane")
pytestmark = pytest.mark.kafka_client_lane


def _at(record: dict, path: str):
    for part in path.split("."):
        record = record[part]
    return record


def test_hostile_events_are_refused_or_kept_exactly(settings):
    rt = start_runtime(settings)
    with ProtocolIssuer(rt.database_url) as issuer:
        p = issuer.issue()
    events = hostile_events(p, now_s() - timedelta(minutes=30), seed=5)
    refused = [e for e in events if e.rule]
    kept = [e for e in events if not e.rule]
    assert {e.rule for e in refused} == {"nul-character", "lone-surrogate", "record-size"}
    assert len(kept) > 20

    published = {}
    with rt.publisher("fuzz-test") as publisher:
        for e in refused:
            with pytest.raises(EventRejected) as err:
                publisher.publish(e.event_type, e.fields, **e.meta)
            assert (err.value.field, err.value.rule) == (e.path, e.rule), e.name
            assert e.text not in str(err.value), f"{e.name}: the rejection echoes the content"
        # One hostile event among good ones: the whole call is refused.
        good = Event("NoteAdded", {"agent_id": "a", "text": "fine"}, **refused[0].meta)
        bad = Event(refused[0].event_type, refused[0].fields, **refused[0].meta)
        with pytest.raises(EventRejected) as many:
            publisher.publish_many([good, bad, good])
        assert (many.value.field, many.value.rule) == (f"events[1].{refused[0].path}", refused[0].rule)
        for e in kept:
            published[publisher.publish(e.event_type, e.fields, **e.meta).event_id] = e

    records = drain(rt.kafka_bootstrap, settings.topic)
    assert sorted(dict(r.headers)["event_id"].decode() for r in records) == sorted(published)
    catalogue = SchemaCatalogue.load()
    sealer = rt.sealer()
    for r in records:
        decoded = catalogue.decode(r.value).record
        e = published[str(decoded["meta"]["event_id"])]
        if e.path.startswith("customer."):
            clear = sealer.open(decoded["customer"]["sealed"], str(decoded["meta"]["event_id"]))
            assert clear[e.path.split(".")[1]] == e.text, e.name
        else:
            assert _at(decoded, e.path) == e.text, e.name

    stats = project(rt)
    assert (stats.journaled, stats.quarantined) == (len(kept), 0)
    with rt.connect() as conn:
        payloads = dict(conn.execute("SELECT event_id::text, payload FROM journal").fetchall())
    assert sorted(payloads) == sorted(published)
    for event_id, e in published.items():
        if not e.path.startswith("customer."):
            assert _at(payloads[event_id], e.path) == e.text, e.name
