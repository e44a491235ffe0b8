"""POST /v1/events documents one body per event type, with the real shape of ``fields``.

The oracle is the wire contract itself, read straight from the ``.avsc`` files with ``json``
(not through the code that builds the document), and the committed docs/openapi.json is what
is checked: an outside team reads that file. Bodies are validated with ``jsonschema_rs``
(an independent JSON Schema 2020-12 implementation, installed with schemathesis).
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
from api_world import CPF_A, RunningApi

from protocolo.api.event_bodies import fields_from_json
from protocolo.core.errors import EventRejected

REPO = Path(__file__).resolve().parents[2]
DOCUMENT = json.loads((REPO / "docs" / "openapi.json").read_text(encoding="utf-8"))
#: What a service may publish (docs/api.md, "Who acted, and what services may publish"):
#: the facts a contact-centre system reports; decisions and the audit have their routes.
SERVICE_PUBLISHES = {"ContactOpened", "ContactClosed", "DisclosureMade", "NoteAdded", "RecordingCaptured",
                     "RetrievalRequested"}


def _current_avro() -> dict[str, dict[str, Any]]:
    found = {}
    for folder in sorted((REPO / "schemas" / "avro").iterdir()):
        if folder.is_dir():
            latest = max(folder.glob("v*.avsc"), key=lambda p: int(p.stem[1:]))
            found[folder.name] = json.loads(latest.read_text(encoding="utf-8"))
    return found


AVRO = _current_avro()


def _body_schema() -> dict[str, Any]:
    operation = DOCUMENT["paths"]["/v1/events"]["post"]
    ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    return DOCUMENT["components"]["schemas"][ref.rsplit("/", 1)[-1]]


def _validator() -> Any:
    schema = {**_body_schema(), "components": DOCUMENT["components"]}
    return jsonschema_rs.Draft202012Validator(schema)


def test_every_publishable_event_type_has_its_own_body() -> None:
    bodies = {b["properties"]["event_type"]["const"]: b for b in _body_schema()["oneOf"]}
    assert set(bodies) == SERVICE_PUBLISHES and set(AVRO) >= SERVICE_PUBLISHES
    for event_type, body in bodies.items():
        own = [f for f in AVRO[event_type]["fields"] if f["name"] != "meta"]
        fields = body["properties"]["fields"]
        assert set(fields["properties"]) == {f["name"] for f in own}, event_type
        assert set(fields["required"]) == {f["name"] for f in own if "default" not in f}, event_type
        assert fields["additionalProperties"] is False


def test_a_customer_is_written_in_clear() -> None:
    bodies = {b["properties"]["event_type"]["const"]: b for b in _body_schema()["oneOf"]}
    customer = bodies["ContactOpened"]["properties"]["fields"]["properties"]["customer"]
    assert set(customer["properties"]) == {"cpf", "customer_code", "name"}


def test_documented_bodies_accept_real_events_and_refuse_wrong_shapes() -> None:
    validator = _validator()
    opened = {"event_type": "ContactOpened", "protocol_number": "2026 00000 00001 6", "fields": {
        "channel": "PHONE", "direction": "INBOUND", "service_type": "MOBILE",
        "customer": {"cpf": CPF_A, "customer_code": None, "name": "Maria"}, "agent_id": "a-1",
        "subject": "refund", "recorded": True, "language": "pt-BR"}}
    assert validator.is_valid(opened)
    wrong_customer = json.loads(json.dumps(opened))
    wrong_customer["fields"]["customer"] = {"cpf_index": "00" * 32}
    assert not validator.is_valid(wrong_customer)
    unknown_channel = json.loads(json.dumps(opened))
    unknown_channel["fields"]["channel"] = "UNKNOWN"  # the reader's fallback, never sent
    assert not validator.is_valid(unknown_channel)
    wrong_type = {**opened, "event_type": "ContactClosed"}  # ContactOpened's fields
    assert not validator.is_valid(wrong_type)
    assert not validator.is_valid({"event_type": "AccessRecorded", "fields": {}})


def test_timestamps_in_fields_are_rfc3339() -> None:
    schema = AVRO["RetrievalRequested"]
    fields = fields_from_json(schema, {"window_from": "2026-03-01T00:00:00-03:00", "window_to": None,
                                       "kind": "RECORDING"})
    assert fields["window_from"].isoformat() == "2026-03-01T00:00:00-03:00"
    assert fields["window_to"] is None and fields["kind"] == "RECORDING"
    with pytest.raises(EventRejected) as rejected:
        fields_from_json(schema, {"window_from": "yesterday"})
    assert (rejected.value.field, rejected.value.rule) == ("window_from", "timestamp")
    with pytest.raises(EventRejected) as rejected:
        fields_from_json(schema, {"window_from": "2026-03-01T00:00:00"})
    assert rejected.value.field == "window_from"


def test_a_service_publishes_a_request_with_a_window_over_http(api: RunningApi) -> None:
    body = {"event_type": "RetrievalRequested", "fields": {
        "request_id": str(uuid.uuid4()), "kind": "HISTORY",
        "customer": {"cpf": CPF_A, "customer_code": None, "name": None},
        "window_from": "2026-01-01T00:00:00Z", "window_to": "2026-02-01T00:00:00Z",
        "requested_via": "APP", "delivery_channel": "EMAIL"}}
    assert _validator().is_valid(body)
    with api.client("service") as c:
        answer = c.post("/v1/events", json=body)
    assert answer.status_code == 201, answer.text
