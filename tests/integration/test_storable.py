"""``schemas/storable.py`` against its oracle, the real PostgreSQL.

A string is storable exactly when PostgreSQL takes it, through ``COPY`` as the projector
writes its batches, into a ``text`` column and into ``jsonb`` both as the journal's payload
(JSON text, non-ASCII as is) and as its headers (JSON text, non-ASCII escaped), and gives
it back unchanged. Checked on the fuzz corpus's strings and on hypothesis text drawn from
every code point, surrogates included.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator

import psycopg
import pytest
from fuzz_corpus import hostile_strings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocolo.schemas.storable import headers_reason, unstorable, unstorable_reason


@pytest.fixture
def conn(database_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(database_url, autocommit=True) as c:
        c.execute("CREATE TABLE probe (t text, payload jsonb, headers jsonb)")
        yield c


def _postgres_stores(conn: psycopg.Connection, text: str) -> bool:
    """Whether COPY takes ``text`` in all three forms and reads it back unchanged."""
    payload = json.dumps({"text": text}, ensure_ascii=False)
    headers = json.dumps([["name", text]])
    try:
        with conn.transaction(), conn.cursor() as cur:
            with cur.copy("COPY probe (t, payload, headers) FROM STDIN") as copy:
                copy.write_row((text, payload, headers))
            back = cur.execute("SELECT t, payload->>'text', headers->0->>1 FROM probe").fetchone()
            cur.execute("DELETE FROM probe")
    except (psycopg.DataError, UnicodeEncodeError):
        return False
    assert back == (text, text, text), "stored, but not faithfully"
    return True


@pytest.mark.parametrize("case", [s for s in hostile_strings(seed=11) if not s.huge], ids=lambda s: s.name)
def test_the_corpus_strings_are_judged_as_postgresql_judges_them(conn, case):
    found = unstorable({"note": {"text": case.text}})
    assert (found is None) == _postgres_stores(conn, case.text)
    if found is not None:
        assert (found.field, found.rule) == ("note.text", case.rule)
        assert case.text not in str(found)


#: Any text; hypothesis leaves surrogates out of characters(), so half the examples mix them in.
ANY_TEXT = st.one_of(
    st.text(st.characters(codec=None), max_size=30),
    st.lists(st.one_of(st.characters(codec=None), st.integers(0xD800, 0xDFFF).map(chr), st.just("\x00")),
             max_size=30).map("".join),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=ANY_TEXT)
def test_any_text_is_judged_as_postgresql_judges_it(conn, text):
    assert (unstorable(text) is None) == _postgres_stores(conn, text)
    assert (headers_reason([("name", text)]) is None) == _postgres_stores(conn, text)


def test_non_finite_numbers_are_unstorable_in_jsonb(conn):
    for number in (math.nan, math.inf, -math.inf):
        with pytest.raises(psycopg.DataError), conn.transaction():
            conn.execute("INSERT INTO probe (payload) VALUES (%s::jsonb)", (json.dumps({"n": number}),))
        assert unstorable_reason({"n": [1.5, number]}).startswith("n[1]: ")
    assert unstorable({"n": 1e308}) is None


def test_header_bytes_that_are_not_utf8_are_named():
    assert "not UTF-8" in headers_reason([("event_type", b"NoteAdded"), ("x", b"\xff")])
    assert headers_reason([("event_type", b"NoteAdded"), ("x", None), ("x", b"\xe2\x80\xae")]) is None
