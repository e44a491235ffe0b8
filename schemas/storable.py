"""What the ledger's PostgreSQL can store: the rules a record must meet before it is published,
and that the projector checks again before it writes one.

The projector copies every record into ``text`` and ``jsonb`` columns in one ``COPY`` per
batch; one value PostgreSQL refuses fails the whole batch, and since the record is read
again after a restart, it would stop projection for good. Measured against PostgreSQL
(tests/integration/test_storable.py keeps that measurement as the test's oracle):

* ``U+0000`` (NUL): ``text`` refuses it ("cannot contain NUL (0x00) bytes") and ``jsonb``
  refuses the escape ``\\u0000`` ("unsupported Unicode escape sequence");
* a lone surrogate (``U+D800``..``U+DFFF``, e.g. bytes smuggled in with Python's
  ``surrogateescape``): not encodable as UTF-8 at all, and ``jsonb`` refuses its escaped
  form ("Unicode low surrogate must follow a high surrogate");
* a non-finite number (NaN, infinity): not JSON, ``jsonb`` refuses the token.

Everything else that is valid Unicode is stored faithfully (tested): right-to-left and
zero-width characters, noncharacters such as ``U+FFFF``, C0/C1 controls other than NUL,
quotes and backslashes. Kafka headers are kept as JSON text too, so the same rules apply
to their names and values, which must also be UTF-8. Kafka keys are kept as ``bytea`` and
can hold anything; :func:`key_reason` says when a key cannot be any event's key.

Messages name the place and the rule, never the value (it may be personal data).
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from protocolo.core.errors import EventRejected

__all__ = [
    "MAX_RECORD_BYTES", "check_storable", "headers_reason", "key_reason", "largest_field",
    "string_problem", "unstorable", "unstorable_reason",
]

#: The largest record value the publisher sends. kafka-python refuses a request above
#: ``max_request_size`` (1 MiB) and brokers a batch above ``message.max.bytes``
#: (1 048 588 by default); the rest of the megabyte is left for key, headers and framing.
MAX_RECORD_BYTES = 1_000_000

_SURROGATE = re.compile("[\ud800-\udfff]")


def string_problem(text: str) -> tuple[str, str] | None:
    """``(rule, explanation)`` when PostgreSQL text/jsonb cannot hold ``text``, else None."""
    if "\x00" in text:
        return "nul-character", (f"contains a NUL character (U+0000) at position {text.index(chr(0))}, "
                                 "which PostgreSQL text and jsonb cannot store")
    if not text.isascii():
        found = _SURROGATE.search(text)
        if found is not None:
            return "lone-surrogate", (f"contains a lone surrogate (U+{ord(found.group()):04X}) at position "
                                      f"{found.start()}: not Unicode text (undecoded bytes?); encode binary data")
    return None


def _fits(value: Any) -> bool:
    """True when ``value`` is certainly storable, checked without building field paths:
    every record the publisher and the projector handle goes through here, and nearly all
    of them fit. False means "look closer" (:func:`unstorable` then names the place), not
    "unstorable": a type this fast path does not know is left to the full walk."""
    kind = type(value)
    if kind is str:
        return "\x00" not in value and (value.isascii() or _SURROGATE.search(value) is None)
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str or not _fits(key) or not _fits(item):
                return False
        return True
    if kind is list:
        return all(_fits(item) for item in value)
    if kind is float:
        return math.isfinite(value)
    return kind in _PLAIN


#: Types with nothing inside that PostgreSQL could refuse.
_PLAIN = frozenset({int, bool, type(None), bytes, datetime, date, uuid.UUID, Decimal})


def unstorable(record: Any, path: str = "") -> EventRejected | None:
    """The first place in ``record`` (a decoded or about-to-be-encoded event: mappings,
    lists, strings, numbers, bytes, datetimes, UUIDs) that PostgreSQL cannot store, as an
    :class:`EventRejected` naming the field path and the rule; None when all of it fits."""
    if _fits(record):
        return None
    return _first_unstorable(record, path)


def _first_unstorable(record: Any, path: str) -> EventRejected | None:
    if isinstance(record, str):
        problem = string_problem(record)
        return EventRejected(path or "event", *problem) if problem else None
    if isinstance(record, float):
        if not math.isfinite(record):
            return EventRejected(path or "event", "non-finite-number",
                                 "is NaN or infinite, which JSON and jsonb cannot hold")
        return None
    if isinstance(record, Mapping):
        for key, value in record.items():
            name = key if isinstance(key, str) else repr(key)
            sub = f"{path}.{name}" if path else name
            if isinstance(key, str) and (problem := string_problem(key)):
                return EventRejected(f"{path or 'event'} (a field name)", problem[0], problem[1])
            found = _first_unstorable(value, sub)
            if found is not None:
                return found
        return None
    if isinstance(record, list | tuple):
        for i, item in enumerate(record):
            found = _first_unstorable(item, f"{path or 'event'}[{i}]")
            if found is not None:
                return found
    return None


def unstorable_reason(record: Any) -> str | None:
    """:func:`unstorable` as one line (``field: what is wrong [rule: name]``), for a
    quarantine row's error; None when the record can be stored."""
    found = unstorable(record)
    return None if found is None else str(found)


def check_storable(record: Any, path: str = "") -> None:
    """Raise :func:`unstorable`'s :class:`EventRejected`, if any."""
    found = unstorable(record, path)
    if found is not None:
        raise found


def headers_reason(headers: Iterable[tuple[str | bytes, bytes | None]] | None) -> str | None:
    """Why these Kafka headers cannot be kept as the journal's JSON text, or None.

    Names and values must be UTF-8 without NUL or lone surrogates. Repeated names are
    storable (the journal keeps headers as a list of pairs) and are not judged here.
    """
    for i, (name, value) in enumerate(headers or ()):
        for part, raw in (("name", name), ("value", value)):
            if raw is None:
                continue
            if isinstance(raw, bytes | bytearray | memoryview):
                try:
                    text = bytes(raw).decode("utf-8")
                except UnicodeDecodeError as exc:
                    return f"header {i}: its {part} is not UTF-8 (byte {exc.start}) [rule: header-encoding]"
            else:
                text = raw
            problem = string_problem(text)
            if problem is not None:
                return f"header {i}: its {part} {problem[1]} [rule: {problem[0]}]"
    return None


def key_reason(key: bytes | None) -> str | None:
    """Why a Kafka key cannot be an event's key (a protocol number or a canonical id, both
    printable ASCII), or None. Such keys are storable (``bytea``), just never right."""
    if key is None:
        return "the record has no key; every event is keyed by its protocol number or its own id [rule: key]"
    if not key or not key.isascii() or not key.decode("ascii").isprintable():
        return (f"the key ({len(key)} bytes) is not printable ASCII, so it is no protocol number "
                "or id [rule: key]")
    return None


def largest_field(record: Any, path: str = "") -> tuple[str, int]:
    """The path and size (characters or bytes) of the biggest string or bytes value, to
    name the culprit when a whole record is too large."""
    best = (path or "event", 0)
    if isinstance(record, str | bytes | bytearray):
        return best[0], len(record)
    if isinstance(record, Mapping):
        items: Iterable[tuple[str, Any]] = ((f"{path}.{k}" if path else str(k), v) for k, v in record.items())
    elif isinstance(record, list | tuple):
        items = ((f"{path or 'event'}[{i}]", v) for i, v in enumerate(record))
    else:
        return best
    for sub, value in items:
        found = largest_field(value, sub)
        if found[1] > best[1]:
            best = found
    return best
