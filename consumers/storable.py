"""How the projector keeps what PostgreSQL's ``text`` and ``jsonb`` cannot hold.

The rules of what they hold are the contract's (:mod:`protocolo.schemas.storable`, also
applied by the publisher); this module renders a refused record's headers and error so
that its quarantine row is itself storable.

PostgreSQL text cannot hold the NUL character (U+0000): a ``text`` value refuses it, and
``jsonb`` refuses the JSON escape ``\\u0000`` (22P05, "unsupported Unicode escape
sequence"). Kafka record headers are raw bytes, so they may also be invalid UTF-8. A record
holding such content cannot be journalled; it is quarantined, and its quarantine row must
itself be storable:

- headers are kept as JSON ``[[key, value], ...]``; a key or value that is UTF-8 text
  without NUL is a JSON string, anything else is ``{"hex": "<its bytes in hex>"}``, so
  the raw bytes can always be recovered;
- an error message loses nothing readable: NUL becomes the four characters ``\\x00``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from protocolo.schemas.storable import string_problem

NUL = "\x00"
#: An error text longer than this is cut (a message quoting a huge field is no better).
MAX_ERROR_CHARS = 4000


def _header_text(raw: bytes) -> str | None:
    """The header bytes as text PostgreSQL can store (the contract's rule), or None."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return None if string_problem(text) is not None else text


@dataclass(frozen=True, slots=True)
class StoredHeaders:
    json: str  # always storable in jsonb
    problems: tuple[str, ...]  # why the headers are not plain text, one line each


def _text_headers(headers: Iterable[tuple[str | bytes, bytes | None]]) -> str | None:
    """The JSON of headers that are all plain text (ASCII keys as str, UTF-8 values, no NUL
    anywhere), as nearly every record's are; None for anything else, which
    :func:`stored_headers` then renders field by field. Same JSON value either way."""
    entries = []
    for key, value in headers:
        if not isinstance(key, str) or not key.isascii() or NUL in key or not isinstance(value, bytes):
            return None
        try:
            text = value.decode("utf-8")  # strict: never yields a lone surrogate
        except UnicodeDecodeError:
            return None
        if NUL in text:
            return None
        entries.append((key, text))
    return orjson.dumps(entries).decode("utf-8")


def stored_headers(headers: Iterable[tuple[str | bytes, bytes | None]] | None) -> StoredHeaders:
    """Record headers as storable JSON, and what (if anything) keeps them from being text."""
    plain = _text_headers(headers or ())
    if plain is not None:
        return StoredHeaders(plain, ())
    entries: list[list[Any]] = []
    problems: list[str] = []
    for key, value in headers or ():
        key_bytes = key.encode("utf-8", "surrogatepass") if isinstance(key, str) else bytes(key)
        key_text = _header_text(key_bytes)
        name = repr(key_text if key_text is not None else key)
        if key_text is None:
            problems.append(f"header key {name} is not text PostgreSQL can store (NUL or not UTF-8)")
        raw = bytes(value) if value is not None else b""
        text = _header_text(raw)
        if text is None:
            what = "holds a NUL character (U+0000)" if b"\x00" in raw else "is not valid UTF-8"
            problems.append(f"header {name}: its value {what}")
        entries.append([
            key_text if key_text is not None else {"hex": key_bytes.hex()},
            text if text is not None else {"hex": raw.hex()},
        ])
    return StoredHeaders(json.dumps(entries, separators=(", ", ": ")), tuple(problems))


def storable_json(text: str) -> str:
    """JSON text made storable in jsonb: every string holding a NUL (or a lone surrogate)
    becomes ``{"hex": <its UTF-8 bytes>}``. For JSON that came from this project's own
    rendering and was refused anyway."""

    def unstorable(value: str) -> bool:
        return string_problem(value) is not None

    def fix(value: Any) -> Any:
        if isinstance(value, str):
            return {"hex": value.encode("utf-8", "surrogatepass").hex()} if unstorable(value) else value
        if isinstance(value, list):
            return [fix(v) for v in value]
        if isinstance(value, dict):
            # an object key cannot be an object: an unstorable one is spelled with escapes
            return {(k.encode("unicode_escape").decode("ascii") if unstorable(k) else k): fix(v)
                    for k, v in value.items()}
        return value

    return json.dumps(fix(json.loads(text)))


def clean_error(text: str) -> str:
    """An error message PostgreSQL text can store, readable, at most :data:`MAX_ERROR_CHARS`."""
    cleaned = text.replace(NUL, "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")
    if len(cleaned) > MAX_ERROR_CHARS:
        cleaned = cleaned[:MAX_ERROR_CHARS] + f"... ({len(cleaned) - MAX_ERROR_CHARS} more characters)"
    return cleaned
