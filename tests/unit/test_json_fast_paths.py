"""The projector's fast JSON (orjson for payloads, a plain-text path for headers) writes
what the stdlib rendering writes, checked on every committed event vector.

The oracle is the stdlib ``json`` rendering the journal was written with before: the
payload column is compared byte for byte, the headers as JSON values (jsonb keeps values,
not spacing)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from protocolo.consumers import storable
from protocolo.consumers.storable import stored_headers
from protocolo.schemas.catalogue import SchemaCatalogue
from protocolo.schemas.json_form import to_json

VECTORS = sorted((Path(__file__).resolve().parents[2] / "schemas" / "vectors").glob("*.v*.json"))
CATALOGUE = SchemaCatalogue.load()


@pytest.mark.parametrize("path", VECTORS, ids=lambda p: p.stem)
def test_a_decoded_vector_renders_the_same_json_either_way(path: Path) -> None:
    vector = json.loads(path.read_text())
    record = CATALOGUE.decode(bytes.fromhex(vector["single_object_hex"])).record
    assert to_json(record, judged_storable=True) == to_json(record)


@pytest.mark.parametrize("path", VECTORS, ids=lambda p: p.stem)
def test_a_vectors_headers_render_the_same_value_either_way(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    headers = [(k, v.encode()) for k, v in json.loads(path.read_text())["kafka_headers"]]
    fast = stored_headers(headers)
    monkeypatch.setattr(storable, "_text_headers", lambda _: None)  # the field-by-field path
    slow = stored_headers(headers)
    assert fast.problems == slow.problems == ()
    assert json.loads(fast.json) == json.loads(slow.json) == [[k, v.decode()] for k, v in headers]


@pytest.mark.parametrize("headers", [
    [("x", None)], [("x", b"\xff")], [("x", b"a\x00")], [("a\x00", b"v")], [("ç", b"v")],
    [("ok", b"fine"), ("x", b"\xc3")],
])
def test_headers_that_are_not_plain_text_keep_their_field_by_field_rendering(
        headers: list, monkeypatch: pytest.MonkeyPatch) -> None:
    rendered = stored_headers(headers)
    monkeypatch.setattr(storable, "_text_headers", lambda _: None)
    slow = stored_headers(headers)
    assert json.loads(rendered.json) == json.loads(slow.json)
    assert rendered.problems == slow.problems
    assert "\\u0000" not in rendered.json
