"""A reproducible corpus of hostile inputs for the ledger: strings, events and raw Kafka records.

The rule it tests: **no single record, whatever its bytes, can stop projection**. The
contract refuses at the publisher what PostgreSQL cannot store (``schemas/storable.py``),
and the projector quarantines, with its raw bytes, anything that cannot be applied.

Three layers, each seeded (``random.Random(seed)``) so a failure can be replayed:

* :func:`hostile_strings`: text with NUL, lone surrogates (bytes smuggled in with
  ``surrogateescape``), sizes over the record limit, and text that is nasty but storable
  (right-to-left and zero-width characters, JSON- and SQL-breaking quotes and backslashes,
  controls, noncharacters, astral characters), each with the rule that refuses it or None;
* :func:`hostile_events`: publisher input putting those strings into every kind of string
  field (free text, ids, the sealed customer, ``meta.correlation_id``), with the
  ``(field, rule)`` the publisher must refuse it with, or None when it must be published
  and projected faithfully;
* :func:`hostile_records`: raw Kafka records that bypass the publisher (random bytes,
  valid Avro encodings of hostile strings, bytes no UTF-8 decoder takes, hostile keys and
  headers), each saying whether the projector must journal or quarantine it, and
  :func:`send_records` to put them on a topic with a real kafka-python producer.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from kafka import KafkaProducer

from protocolo.schemas.catalogue import SchemaCatalogue
from protocolo.schemas.codec import MAGIC
from protocolo.schemas.storable import MAX_RECORD_BYTES

__all__ = [
    "HostileEvent", "HostileRecord", "HostileString", "RawHeaderName", "hostile_events",
    "hostile_records", "hostile_strings", "send_records",
]

Rule = str | None


@dataclass(frozen=True)
class HostileString:
    name: str
    text: str
    rule: Rule  # the storable/size rule the publisher refuses it with; None: must be stored as is
    huge: bool = False  # over the record limit on its own (skip where size is not the point)


@dataclass(frozen=True)
class HostileEvent:
    """Keyword arguments for ``LedgerPublisher.publish`` and the expected outcome."""

    name: str
    event_type: str
    fields: dict[str, Any]
    meta: dict[str, Any]
    path: str  # the field holding the hostile string (customer.*: sealed, in clear)
    rule: Rule  # the rule the publisher must refuse it with; None: must be published as is
    text: str  # the hostile string inside (customer code: with the prefix it is given)


@dataclass(frozen=True)
class HostileRecord:
    name: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]] = field(default_factory=list)
    expect: Literal["journal", "quarantine"] = "quarantine"
    why: str = ""


class RawHeaderName(str):
    """A header name whose wire bytes are ``raw`` (not UTF-8): kafka-python encodes header
    names with ``name.encode("utf-8")``, which this returns as the raw bytes."""

    raw: bytes

    def __new__(cls, raw: bytes) -> RawHeaderName:
        obj = super().__new__(cls, raw.decode("latin-1"))
        obj.raw = raw
        return obj

    def encode(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        return self.raw


# -- strings ---------------------------------------------------------------------------

_STORABLE_NASTY = {
    "rtl-override": "\u202eevil.exe\u202c",
    "zero-width": "a\u200bb\u200cc\u200dd\u2060e\ufeff",
    "json-quotes": '"}, {"event_type": "x", "a": "\\"',
    "backslashes": "\\\\\\u0000\\x00\\n",
    "escaped-nul-literal": "\\u0000",
    "sql": "'); DROP TABLE journal; --",
    "copy-delimiters": "a\tb\nc\rd\\.\n\\N",
    "controls": "".join(chr(c) for c in range(1, 32)) + "\x7f\x85\x9f",
    "noncharacters": "\ufffe\uffff\U0001fffe\U0010ffff",
    "astral": "\U0001f600\U0001d54f\U00020000",
    "combining": "e\u0301\u0301\u0301\u0301",
    "bidi-isolates": "\u2066\u2067\u2068\u2069",
    "replacement-char": "\ufffd",
    "large-but-fits": "y" * 200_000,
}


def _random_storable(rng: random.Random, n: int) -> str:
    out = []
    while len(out) < n:
        c = rng.choice([rng.randrange(1, 0x80), rng.randrange(0x80, 0xD800), rng.randrange(0xE000, 0x110000)])
        out.append(chr(c))
    return "".join(out)


def hostile_strings(seed: int = 0) -> list[HostileString]:
    rng = random.Random(seed)
    smuggled = b"caf\xe9 \xff\xfe".decode("utf-8", "surrogateescape")
    found: list[HostileString] = [
        HostileString("nul-alone", "\x00", "nul-character"),
        HostileString("nul-inside", "before\x00after", "nul-character"),
        HostileString("nul-at-end", "x" * 1000 + "\x00", "nul-character"),
        HostileString("nul-runs", "\x00" * 64, "nul-character"),
        HostileString("lone-high-surrogate", "\ud800", "lone-surrogate"),
        HostileString("lone-low-surrogate", "ok\udfff", "lone-surrogate"),
        HostileString("half-an-emoji", "\ud83d is half of \U0001f600", "lone-surrogate"),
        HostileString("surrogate-escaped-bytes", smuggled, "lone-surrogate"),
        HostileString("huge-ascii", "h" * (MAX_RECORD_BYTES + 1), "record-size", huge=True),
        HostileString("huge-multibyte", "\u20ac" * (MAX_RECORD_BYTES // 3 + 1), "record-size", huge=True),
        *(HostileString(name, text, None) for name, text in _STORABLE_NASTY.items()),
    ]
    for i in range(4):
        text = _random_storable(rng, rng.randrange(1, 300))
        found.append(HostileString(f"random-{i}", text, None))
        at = rng.randrange(len(text) + 1)
        found.append(HostileString(f"random-{i}-with-nul", text[:at] + "\x00" + text[at:], "nul-character"))
        found.append(HostileString(f"random-{i}-with-surrogate",
                                   text[:at] + chr(rng.randrange(0xD800, 0xE000)) + text[at:], "lone-surrogate"))
    return found


# -- events (publisher input) -------------------------------------------------------------

def hostile_events(protocol_number: str, occurred_at: datetime, seed: int = 0) -> list[HostileEvent]:
    """Every hostile string in free text, in an id, in the sealed customer (name and code)
    and in ``meta.correlation_id``; the huge ones only once each (in free text)."""
    events: list[HostileEvent] = []
    meta = {"protocol_number": protocol_number, "occurred_at": occurred_at}
    for s in hostile_strings(seed):
        def add(where: str, event_type: str, fields: dict[str, Any], field_path: str,
                extra_meta: dict[str, Any] | None = None, s: HostileString = s) -> None:
            text = next(v for v in _strings(fields, extra_meta) if s.text in v)
            events.append(HostileEvent(f"{s.name} in {where}", event_type, fields,
                                       {**meta, **(extra_meta or {})}, field_path, s.rule, text))

        add("NoteAdded.text", "NoteAdded", {"agent_id": "agent-1", "text": s.text}, "text")
        if s.huge:
            continue
        add("NoteAdded.agent_id", "NoteAdded", {"agent_id": f"a{s.text}", "text": "t"}, "agent_id")
        add("ContactOpened.subject", "ContactOpened", _opened(f"s{s.text}", {}), "subject")
        add("customer name", "ContactOpened",
            _opened("subject", {"cpf": "111.444.777-35", "name": s.text}), "customer.name")
        add("customer code", "ContactOpened",
            _opened("subject", {"customer_code": f"C{s.text}"}), "customer.customer_code")
        add("meta.correlation_id", "ContactClosed", {"outcome": "RESOLVED"}, "meta.correlation_id",
            {"correlation_id": s.text})
    return events


def _strings(fields: dict[str, Any], meta: dict[str, Any] | None) -> list[str]:
    found = [v for v in (meta or {}).values() if isinstance(v, str)]
    for v in fields.values():
        if isinstance(v, str):
            found.append(v)
        elif isinstance(v, dict):
            found += [x for x in v.values() if isinstance(x, str)]
    return found


def _opened(subject: str, customer: dict[str, str]) -> dict[str, Any]:
    return {"channel": "PHONE", "direction": "INBOUND", "service_type": "MOBILE", "customer": customer,
            "agent_id": "agent-007", "subject": subject, "recorded": False}


# -- raw records (projector input) -------------------------------------------------------

def _note_record(protocol_number: str, occurred_at: datetime, text: str) -> dict[str, Any]:
    return {
        "meta": {"event_id": str(uuid.uuid4()), "protocol_number": protocol_number,
                 "occurred_at": occurred_at, "producer": "fuzz", "correlation_id": None},
        "agent_id": "agent-fuzz", "agent_name": None, "text": text,
    }


def _headers(record: dict[str, Any], event_type: str = "NoteAdded") -> list[tuple[str, bytes | None]]:
    return [("event_type", event_type.encode()), ("event_id", record["meta"]["event_id"].encode())]


def hostile_records(catalogue: SchemaCatalogue, protocol_number: str, occurred_at: datetime,
                    seed: int = 0) -> list[HostileRecord]:
    """Raw records for one topic, all keyed to ``protocol_number`` unless the key is the point.

    ``expect`` is what the projector must do: "journal" (a valid event, stored faithfully)
    or "quarantine" (kept with its raw bytes and a reason; projection goes on).
    """
    rng = random.Random(seed)
    key = protocol_number.encode()
    fp = catalogue.current("NoteAdded").fingerprint
    out: list[HostileRecord] = []

    def note(text: str) -> tuple[dict[str, Any], bytes]:
        record = _note_record(protocol_number, occurred_at, text)
        return record, catalogue.encode("NoteAdded", record)

    # Random bytes, bare and behind a real or unknown single-object header.
    for i, size in enumerate([0, 1, 2, 9, 10, 11, 64, 4096]):
        out.append(HostileRecord(f"random-bytes-{size}", key, rng.randbytes(size), why="not an encoded event"))
        out.append(HostileRecord(f"random-body-{i}", key, MAGIC + fp + rng.randbytes(size),
                                 why="a real fingerprint and a random body"))
    out.append(HostileRecord("unknown-fingerprint", key, MAGIC + rng.randbytes(8) + note("x")[1][10:],
                             why="no schema has the fingerprint"))
    out.append(HostileRecord("tombstone", key, None, why="the ledger never deletes"))

    # Valid Avro encodings of hostile strings (fastavro writes NUL, PostgreSQL cannot store it).
    for s in hostile_strings(seed):
        if s.huge or s.rule == "lone-surrogate":
            continue  # too big for a record / not encodable as UTF-8: below, as raw bytes
        record, value = note(s.text)
        out.append(HostileRecord(f"avro-{s.name}", key, value, _headers(record),
                                 "quarantine" if s.rule else "journal",
                                 f"{s.rule} in text" if s.rule else "storable, must be kept as is"))

    # Bytes no strict UTF-8 decoder accepts, in an otherwise valid encoding: an encoded
    # surrogate (ED A0 80, what surrogatepass writes), a lone continuation byte, an overlong NUL.
    for name, raw in [("encoded-surrogate", "\ud800".encode("utf-8", "surrogatepass")),
                      ("lone-continuation", b"\x80\x80\x80"), ("overlong-nul", b"\xc0\x80\x41")]:
        marker = "M" * len(raw)
        record, value = note(f"<{marker}>")
        out.append(HostileRecord(f"avro-{name}", key, value.replace(marker.encode(), raw), _headers(record),
                                 "quarantine", "a string that is not UTF-8"))

    # Hostile keys around a valid event.
    for name, bad_key in [("no-key", None), ("empty-key", b""), ("non-utf8-key", b"\xff\xfe" + key),
                          ("nul-key", key + b"\x00"), ("key-with-spaces", b" " + key),
                          ("huge-key", key * 10_000)]:
        fresh, value = note(f"key {name}")
        out.append(HostileRecord(name, bad_key, value, _headers(fresh), "quarantine", "not the event's key"))

    # Hostile headers around a valid event.
    def with_headers(name: str, headers: Iterable[tuple[str, bytes | None]], expect: Literal["journal", "quarantine"],
                     why: str) -> None:
        fresh, value = note(f"headers {name}")
        out.append(HostileRecord(f"headers-{name}", key, value, [*_headers(fresh), *headers], expect, why))

    with_headers("nul-value", [("trace", b"a\x00b")], "quarantine", "NUL in a header value")
    with_headers("nul-name", [("tr\x00ce", b"x")], "quarantine", "NUL in a header name")
    with_headers("non-utf8-value", [("trace", b"\xff\xfe\xfd")], "quarantine", "a header value that is not UTF-8")
    with_headers("non-utf8-name", [(RawHeaderName(b"tr\xffce"), b"x")], "quarantine",
                 "a header name that is not UTF-8 (kafka-python's consumer raises decoding it)")
    with_headers("empty-value", [("trace", b"")], "journal", "an empty header value is fine")
    with_headers("duplicate-event-type", [("event_type", b"ContactOpened"), ("event_type", b"NoteAdded")],
                 "journal", "headers are informative; the value's fingerprint says the type")
    with_headers("enormous", [("trace", b"z" * 500_000)], "journal", "large, valid UTF-8")
    with_headers("many", [(f"h{i}", b"v") for i in range(2000)], "journal", "many small headers")
    with_headers("json-breaking", [('"]}', b'\\"}]'), ("\u202e", "\u200b".encode())], "journal",
                 "storable text")
    return out


def send_records(bootstrap: str, topic: str, records: Iterable[HostileRecord],
                 partition: int | None = None) -> list[tuple[HostileRecord, int, int]]:
    """Produce ``records`` as they are (no validation) and return (record, partition, offset)."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", max_request_size=4 * 1024 * 1024)
    try:
        futures = [(r, producer.send(topic, key=r.key, value=r.value, headers=list(r.headers),
                                     partition=partition)) for r in records]
        producer.flush(timeout=60)
        sent = []
        for r, future in futures:
            md = future.get(timeout=60)
            sent.append((r, md.partition, md.offset))
        return sent
    finally:
        producer.close(timeout=10)
