"""Personal data never travels in clear, and crypto-shredding erases it without touching
the evidence.

What is on the topic is read back as raw bytes with a plain kafka-python consumer (no
decoding by Protocolo), so a clear CPF or name anywhere in a key, value or header shows.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from helpers_flow import (
    CPF,
    CPF_DIGITS,
    CPF_MASKED,
    Cli,
    contact_opened,
    drain,
    now_s,
    project,
    start_runtime,
)

from protocolo.producers.protocol_issuer import ProtocolIssuer
from protocolo.producers.publisher import Event

NAME = "Gabriela Ribeiro"
CODE = "C-LGPD-42"


def _raw(record) -> bytes:
    return b"|".join([record.key or b"", record.value or b"",
                      *(k.encode() + b"=" + (v or b"") for k, v in record.headers)])


def _journal(conn) -> list[tuple]:
    return conn.execute(
        "SELECT kafka_partition, kafka_offset, record_key, record_value, payload::text, leaf_hash,"
        " is_duplicate FROM journal ORDER BY kafka_partition, kafka_offset"
    ).fetchall()


def test_no_clear_personal_data_on_kafka_and_erasure_keeps_the_evidence(settings, monkeypatch, capsys):
    rt = start_runtime(settings)
    with ProtocolIssuer(rt.database_url) as issuer:
        p = issuer.issue()
    t0 = now_s() - timedelta(days=3)
    customer = {"cpf": CPF, "customer_code": CODE, "name": NAME}
    request_id = str(uuid.uuid4())
    events = [
        Event("ContactOpened", contact_opened(customer), protocol_number=p, occurred_at=t0),
        Event("ContactClosed", {"outcome": "RESOLVED"}, protocol_number=p,
              occurred_at=t0 + timedelta(minutes=3)),
        Event("RetrievalRequested", {
            "request_id": request_id, "kind": "HISTORY", "requested_via": "WEB_FORM",
            "delivery_channel": "EMAIL", "customer": {"cpf": CPF, "name": NAME},
            "window_from": t0 - timedelta(days=1), "window_to": t0 + timedelta(days=1),
        }, occurred_at=t0 + timedelta(days=1)),
    ]
    with rt.publisher("lgpd-test") as publisher:
        receipts = publisher.publish_many(events)
    project(rt)

    records = drain(rt.kafka_bootstrap, settings.topic)
    assert sorted((r.partition, r.offset) for r in records) == sorted(
        (r.partition, r.offset) for r in receipts)
    sealer = rt.sealer()
    cpf_index = sealer.index.cpf(CPF)
    secrets = [CPF_DIGITS, CPF, NAME, "Gabriela", "Ribeiro", CODE]
    for record in records:
        raw = _raw(record)
        for secret in secrets:
            for encoding in ("utf-8", "utf-16-le"):
                assert secret.encode(encoding) not in raw, (secret, record.partition, record.offset)
    # ... yet each identified event carries the blind index, and the sealed data opens.
    assert sum(cpf_index.encode() in record.value for record in records) == 2

    with rt.connect() as conn:
        before = _journal(conn)
        payloads = conn.execute("SELECT string_agg(payload::text, ' ') FROM journal").fetchone()[0]
        index_rows = conn.execute("SELECT index_value FROM customer_index").fetchall()
        opened = conn.execute(
            "SELECT event_id, payload->'customer'->'sealed' FROM journal"
            " WHERE event_type = 'ContactOpened'").fetchone()
    assert len(before) == 3
    assert all(secret not in payloads for secret in secrets)
    assert sorted(r[0] for r in index_rows) == sorted([cpf_index, sealer.index.customer_code(CODE)])
    assert sealer.open(opened[1], str(opened[0])) == {"cpf": CPF_DIGITS, "customer_code": CODE,
                                                      "name": NAME}

    cli = Cli(settings, monkeypatch, capsys)
    shown = cli("history", "--protocol", p, "--json").json()["interactions"][0]["customer"]
    assert shown == {"identified": True, "erased": False, "name": NAME, "customer_code": CODE, "cpf_masked": CPF_MASKED}

    # Crypto-shredding: destroy the customer's key.
    keys = sealer.vault.live_key_refs([cpf_index])
    assert len(keys) == 1
    assert sealer.vault.destroy(keys, "LGPD art. 18 VI") == 1
    assert sealer.open(opened[1], str(opened[0])) is None

    by_protocol = cli("history", "--protocol", p, "--json")
    assert by_protocol.code == 0
    [contact] = by_protocol.json()["interactions"]
    assert contact["customer"] == {"identified": True, "erased": True}
    assert NAME not in by_protocol.out and CODE not in by_protocol.out
    text = cli("history", "--protocol", p)
    assert "[personal data erased]" in text.out and NAME not in text.out

    # The blind index still finds the contact (the record must be kept for the legal period).
    by_cpf = cli("history", "--cpf", CPF, "--json")
    assert by_cpf.code == 0
    doc = by_cpf.json()
    assert [i["protocol_number"] for i in doc["interactions"]] == [p]
    assert [r["request_id"] for r in doc["retrieval_requests"]] == [request_id]
    assert cli("history", "--customer", CODE).code == 0

    # The evidence is untouched: same journal rows, same bytes on Kafka.
    with rt.connect() as conn:
        assert _journal(conn) == before
        destroyed = conn.execute("SELECT wrapped_key, destroyed_reason FROM personal_data_keys"
                                 " WHERE subject_ref = %s", (cpf_index,)).fetchone()
    assert destroyed == (None, "LGPD art. 18 VI")
    after = drain(rt.kafka_bootstrap, settings.topic)
    assert [(r.partition, r.offset, r.key, r.value) for r in after] == [
        (r.partition, r.offset, r.key, r.value) for r in records]


def test_erase_command_by_customer_code_reaches_every_key_of_the_customer(settings, monkeypatch, capsys):
    """``protocolo erase --customer``: the contact sealed under the CPF's key is erased too."""
    rt = start_runtime(settings)
    with ProtocolIssuer(rt.database_url) as issuer:
        with_cpf, code_only = issuer.issue(), issuer.issue()
    t0 = now_s() - timedelta(days=2)
    with rt.publisher("lgpd-test") as publisher:
        publisher.publish_many([
            Event("ContactOpened", contact_opened({"cpf": CPF, "customer_code": CODE, "name": NAME}),
                  protocol_number=with_cpf, occurred_at=t0),
            Event("ContactOpened", contact_opened({"customer_code": CODE, "name": NAME}, channel="APP",
                                                  recorded=False),
                  protocol_number=code_only, occurred_at=t0 + timedelta(hours=1)),
        ])
    project(rt)
    sealer = rt.sealer()
    cpf_index, code_index = sealer.index.cpf(CPF), sealer.index.customer_code(CODE)
    with rt.connect() as conn:
        before = _journal(conn)
    cli = Cli(settings, monkeypatch, capsys)
    shown = cli("history", "--customer", CODE, "--json").json()["interactions"]
    assert [c["customer"]["name"] for c in shown] == [NAME, NAME]

    with rt.connect() as conn:  # one key per subject: the CPF's and the code-only contact's
        keys_before = [r[0] for r in conn.execute(
            "SELECT key_ref FROM personal_data_keys WHERE subject_ref = ANY(%s) ORDER BY key_ref",
            ([cpf_index, code_index],))]
    assert len(keys_before) == 2
    erased = cli("erase", "--customer", CODE, "--legal-basis", "LGPD art. 18 VI, request 77")
    assert erased.code == 0, erased.err
    project(rt)

    after = cli("history", "--customer", CODE, "--json")
    assert after.code == 0
    assert [(c["protocol_number"], c["customer"]) for c in after.json()["interactions"]] == [
        (with_cpf, {"identified": True, "erased": True}), (code_only, {"identified": True, "erased": True})]
    assert NAME not in after.out
    by_cpf = cli("history", "--cpf", CPF, "--json")
    assert [c["protocol_number"] for c in by_cpf.json()["interactions"]] == [with_cpf]
    with rt.connect() as conn:
        journal = _journal(conn)
        erasure = conn.execute("SELECT subject_ref, key_refs, legal_basis FROM erasures").fetchall()
        live = conn.execute("SELECT key_ref FROM personal_data_keys WHERE wrapped_key IS NOT NULL").fetchall()
    # The evidence is unchanged; the erasure itself is one more event, keyed by the subject.
    added = [row for row in journal if row not in before]
    assert [row for row in journal if row in before] == before and len(added) == 1
    assert added[0][2] == code_index.encode()
    records = drain(rt.kafka_bootstrap, settings.topic)
    assert sorted(dict(r.headers)["event_type"] for r in records) == [
        b"ContactOpened", b"ContactOpened", b"CustomerDataErased"]
    assert erasure == [(code_index, keys_before, "LGPD art. 18 VI, request 77")]
    assert live == []
    # Erasing again finds nothing live: it says so, exits 1 and publishes nothing.
    again = cli("erase", "--customer", CODE, "--legal-basis", "LGPD art. 18 VI, request 78")
    assert again.code == 1 and "no live data key" in again.err, again.err
    assert len(drain(rt.kafka_bootstrap, settings.topic)) == len(records)


def test_erasure_reaches_a_process_that_already_used_the_key(settings):
    """Crypto-shredding must hold in every running process, not only in the one that erased:
    a long-running reader (API, history) or publisher that opened the customer's data before
    the erasure must not keep decrypting it afterwards."""
    rt = start_runtime(settings)
    with ProtocolIssuer(rt.database_url) as issuer:
        p = issuer.issue()
    with rt.publisher("lgpd-test") as publisher:
        receipt = publisher.publish("ContactOpened", contact_opened({"cpf": CPF, "name": NAME}),
                                    protocol_number=p, occurred_at=now_s() - timedelta(hours=1))
    [record] = [r for r in drain(rt.kafka_bootstrap, settings.topic) if r.offset == receipt.offset]
    sealed = publisher.catalogue.decode(record.value).record["customer"]["sealed"]

    service = start_runtime(settings).sealer()  # another process: its own vault and key cache
    assert service.open(sealed, receipt.event_id)["name"] == NAME

    cpf_index = rt.sealer().index.cpf(CPF)
    vault = rt.sealer().vault
    assert vault.destroy(vault.live_key_refs([cpf_index]), "LGPD art. 18 VI") == 1
    assert rt.sealer().open(sealed, receipt.event_id) is None
    assert service.open(sealed, receipt.event_id) is None, "erased data still readable in a running process"


def test_a_customer_who_returns_after_erasure_can_be_served(settings, monkeypatch, capsys):
    """After an LGPD erasure the same person may call again: the new contact must still be
    put on the ledger with the data they now give, and the erased one must stay erased."""
    rt = start_runtime(settings)
    with ProtocolIssuer(rt.database_url) as issuer:
        before, after = issuer.issue(), issuer.issue()
    t0 = now_s() - timedelta(days=10)
    with rt.publisher("lgpd-test") as publisher:
        publisher.publish("ContactOpened", contact_opened({"cpf": CPF, "name": NAME}),
                          protocol_number=before, occurred_at=t0)
    vault = rt.sealer().vault
    vault.destroy(vault.live_key_refs([rt.sealer().index.cpf(CPF)]), "LGPD art. 18 VI")

    with start_runtime(settings).publisher("ivr") as publisher:  # e.g. the IVR, started later
        publisher.publish("ContactOpened", contact_opened({"cpf": CPF, "name": "Gabriela R."}),
                          protocol_number=after, occurred_at=now_s() - timedelta(minutes=5))
    project(rt)
    history = Cli(settings, monkeypatch, capsys)("history", "--cpf", CPF, "--json")
    assert history.code == 0, history.err
    assert [(c["protocol_number"], c["customer"].get("name"), c["customer"]["erased"])
            for c in history.json()["interactions"]] == [(before, None, True), (after, "Gabriela R.", False)]
