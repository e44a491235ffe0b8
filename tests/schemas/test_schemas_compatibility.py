"""The resolution-rule checker, on hand-made evolutions and on the real schema folder."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from protocolo.schemas.catalogue import BUNDLED_ROOT, SchemaCatalogue
from protocolo.schemas.compatibility import can_read, check_catalogue, check_full_transitive


def raw(event_type: str, version: int) -> dict[str, Any]:
    return json.loads((BUNDLED_ROOT / event_type / f"v{version}.avsc").read_text())


def field(schema: dict[str, Any], name: str) -> dict[str, Any]:
    return next(f for f in schema["fields"] if f["name"] == name)


@pytest.fixture
def v2() -> dict[str, Any]:
    return raw("ContactOpened", 2)


def record(fields: list[dict[str, Any]], name: str = "R") -> dict[str, Any]:
    return {"type": "record", "name": name, "namespace": "t", "fields": fields}


def one(type_: Any) -> dict[str, Any]:
    return record([{"name": "f", "type": type_}])


# --- the real folder: this is the CI guard for every future schema file ------------------


def test_the_schema_folder_is_full_transitive_and_meta_is_canonical() -> None:
    assert check_catalogue(SchemaCatalogue.load()) == []


def test_contact_opened_versions_read_each_other() -> None:
    assert can_read(raw("ContactOpened", 2), raw("ContactOpened", 1)) == []
    assert can_read(raw("ContactOpened", 1), raw("ContactOpened", 2)) == []


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "avro"
    shutil.copytree(BUNDLED_ROOT, root)
    return root


def test_check_catalogue_fails_on_an_incompatible_new_version(folder: Path) -> None:
    bad = raw("ContactOpened", 2)
    bad["fields"].append({"name": "priority", "type": "int"})
    (folder / "ContactOpened" / "v3.avsc").write_text(json.dumps(bad))
    problems = check_catalogue(SchemaCatalogue.load(folder))
    assert problems == [
        "ContactOpened v3 cannot read ContactOpened v1: ContactOpened.priority: the reader has "
        "this field, the writer does not, and the reader gives it no default",
        "ContactOpened v3 cannot read ContactOpened v2: ContactOpened.priority: the reader has "
        "this field, the writer does not, and the reader gives it no default",
    ]


def test_check_catalogue_compares_current_meta_with_meta_avsc(folder: Path) -> None:
    meta = json.loads((folder / "Meta.avsc").read_text())
    meta["fields"].append({"name": "tenant", "type": ["null", "string"], "default": None})
    meta["fields"][3]["doc"] = "docs do not matter"
    (folder / "Meta.avsc").write_text(json.dumps(meta))
    problems = check_catalogue(SchemaCatalogue.load(folder))
    assert len(problems) == len(SchemaCatalogue.load(folder).event_types())  # one per event type
    assert "ContactOpened v3: meta differs from Meta.avsc: meta.tenant: field is missing" in problems


def test_check_catalogue_reports_a_changed_meta_default(folder: Path) -> None:
    meta = json.loads((folder / "Meta.avsc").read_text())
    meta["fields"][3]["default"] = "unknown-service"
    problems = check_catalogue(SchemaCatalogue.load(folder), meta)
    assert any(p.startswith("ContactClosed v1: meta differs from Meta.avsc: meta.producer") for p in problems)


def test_check_catalogue_reports_a_missing_meta_file(folder: Path) -> None:
    (folder / "Meta.avsc").unlink()
    assert check_catalogue(SchemaCatalogue.load(folder))[0].startswith(
        "cannot read the canonical Meta record")


def test_check_catalogue_reports_a_removed_version(folder: Path) -> None:
    (folder / "ContactOpened" / "v2.avsc").rename(folder / "ContactOpened" / "v3.avsc")
    problems = check_catalogue(SchemaCatalogue.load(folder))
    assert problems == [
        "ContactOpened: versions are [1, 3], expected 1..2 without gaps "
        "(a published schema file must never be removed)"
    ]


# --- known-bad evolutions --------------------------------------------------------------


def test_field_added_without_default(v2: dict[str, Any]) -> None:
    new = copy.deepcopy(v2)
    new["fields"].append({"name": "priority", "type": "int"})
    assert can_read(new, v2) == [
        "ContactOpened.priority: the reader has this field, the writer does not, "
        "and the reader gives it no default"
    ]
    assert can_read(v2, new) == []  # old readers skip it; only one direction breaks
    assert len(check_full_transitive([v2, new])) == 1


def test_field_type_changed_string_to_int(v2: dict[str, Any]) -> None:
    new = copy.deepcopy(v2)
    field(new, "subject")["type"] = "int"
    assert can_read(new, v2) == [
        "ContactOpened.subject: writer type string cannot be read as int"]
    assert can_read(v2, new) == [
        "ContactOpened.subject: writer type int cannot be read as string"]


def test_nested_path_names_the_field(v2: dict[str, Any]) -> None:
    new = copy.deepcopy(v2)
    field(field(new, "customer")["type"], "cpf_index")["type"] = ["null", "int"]
    assert can_read(new, v2) == [
        "ContactOpened.customer.cpf_index: the writer's union branch string matches no branch "
        "of the reader's union [null, int]"
    ]


def test_enum_symbol_removed_without_default(v2: dict[str, Any]) -> None:
    new = copy.deepcopy(v2)
    channel = field(new, "channel")["type"]
    channel["symbols"].remove("APP")
    del channel["default"]
    assert can_read(new, v2) == [
        "ContactOpened.channel: writer symbols ['APP'] are not in the reader's enum "
        "protocolo.events.Channel and it has no default symbol"
    ]
    assert can_read(v2, new) == []


def test_enum_symbol_removed_or_added_with_reader_default_is_fine(v2: dict[str, Any]) -> None:
    removed = copy.deepcopy(v2)
    field(removed, "channel")["type"]["symbols"].remove("APP")
    added = copy.deepcopy(v2)
    field(added, "channel")["type"]["symbols"].insert(5, "WHATSAPP")
    assert check_full_transitive([v2, removed, added]) == []


def test_record_renamed(v2: dict[str, Any]) -> None:
    renamed = copy.deepcopy(v2)
    renamed["name"] = "ContactStarted"
    expected = ("ContactStarted: writer type record protocolo.events.ContactOpened cannot be "
                "read as record protocolo.events.ContactStarted (names differ and the reader has "
                "no alias for the writer's name)")
    assert can_read(renamed, v2) == [expected]
    renamed["aliases"] = ["ContactOpened"]  # the reader may name the old name as an alias
    assert can_read(renamed, v2) == []
    assert len(can_read(v2, renamed)) == 1  # but old readers know nothing of the new name
    assert len(check_full_transitive([v2, renamed])) == 1


def test_nested_record_renamed(v2: dict[str, Any]) -> None:
    new = copy.deepcopy(v2)
    field(new, "customer")["type"]["name"] = "CustomerReference"
    problems = can_read(new, v2)
    assert len(problems) == 1 and problems[0].startswith("ContactOpened.customer: writer type "
                                                         "record protocolo.events.CustomerRef")


def test_array_items_changed() -> None:
    v1 = raw("RetrievalLocated", 1)
    new = copy.deepcopy(v1)
    field(new, "recording_ids")["type"]["items"] = "long"
    assert can_read(new, v1) == [
        "RetrievalLocated.recording_ids[]: writer type string cannot be read as long"]


def test_fixed_size_and_name() -> None:
    writer = one({"type": "fixed", "name": "Digest", "size": 32})
    assert can_read(one({"type": "fixed", "name": "Digest", "size": 32}), writer) == []
    assert can_read(one({"type": "fixed", "name": "Digest", "size": 16}), writer) == [
        "R.f: writer type fixed t.Digest cannot be read as fixed t.Digest "
        "(sizes differ: writer 32, reader 16)"]
    assert len(can_read(one({"type": "fixed", "name": "Hash", "size": 32}), writer)) == 1


def test_maps_recurse() -> None:
    assert can_read(one({"type": "map", "values": "long"}), one({"type": "map", "values": "int"})) == []
    assert can_read(one({"type": "map", "values": "int"}), one({"type": "map", "values": "long"})) == [
        "R.f{}: writer type long cannot be read as int"]


# --- the rules themselves --------------------------------------------------------------


@pytest.mark.parametrize(("writer", "reader"), [
    ("int", "long"), ("int", "float"), ("int", "double"), ("long", "float"),
    ("long", "double"), ("float", "double"), ("string", "bytes"), ("bytes", "string"),
])
def test_promotions(writer: str, reader: str) -> None:
    assert can_read(one(reader), one(writer)) == []


@pytest.mark.parametrize(("writer", "reader"), [
    ("long", "int"), ("double", "float"), ("float", "long"), ("boolean", "int"), ("int", "string"),
])
def test_no_narrowing(writer: str, reader: str) -> None:
    assert can_read(one(reader), one(writer)) == [
        f"R.f: writer type {writer} cannot be read as {reader}"]


def test_unions() -> None:
    optional = one(["null", "string"])
    required = one("string")
    assert can_read(optional, required) == []  # making a field optional: readers fine
    assert can_read(required, optional) == [
        "R.f: the writer's union branch null cannot be read as string"]
    assert can_read(one(["null", "string", "long"]), one(["null", "int"])) == []  # int -> long
    assert can_read(one(["null", "int"]), one("string")) == [
        "R.f: writer type string matches no branch of the reader's union [null, int]"]


def test_field_alias_renames_a_field() -> None:
    writer = record([{"name": "old", "type": "string"}])
    reader = record([{"name": "new", "type": "string", "aliases": ["old"]}])
    assert can_read(reader, writer) == []
    assert can_read(record([{"name": "new", "type": "string"}]), writer) == [
        "R.new: the reader has this field, the writer does not, and the reader gives it no "
        "default"]


def test_logical_types_ride_on_their_underlying_type() -> None:
    micros = {"type": "long", "logicalType": "timestamp-micros"}
    uuid_ = {"type": "string", "logicalType": "uuid"}
    assert can_read(one("long"), one(micros)) == []
    assert can_read(one(micros), one("long")) == []
    assert can_read(one("string"), one(uuid_)) == []
    assert can_read(one("int"), one(micros)) == ["R.f: writer type long (timestamp-micros) cannot be read as int"]


def test_recursive_types_terminate() -> None:
    node = {"type": "record", "name": "Node", "fields": [
        {"name": "value", "type": "int"},
        {"name": "next", "type": ["null", "Node"], "default": None},
    ]}
    wider = copy.deepcopy(node)
    wider["fields"][0]["type"] = "long"
    assert can_read(wider, node) == []
    assert can_read(node, wider) == ["Node.value: writer type long cannot be read as int"]


def test_accepts_json_text() -> None:
    assert can_read('"long"', '"int"') == []
    assert can_read('"int"', '"long"') == ["<root>: writer type long cannot be read as int"]


def test_full_transitive_labels_and_checks_every_pair() -> None:
    a = record([{"name": "x", "type": "int"}])
    b = record([{"name": "x", "type": "int"}, {"name": "y", "type": "int", "default": 0}])
    c = record([{"name": "x", "type": "long"}, {"name": "y", "type": "int", "default": 0}])
    # a-b and b-c are fine both ways in one direction each; a and c are not adjacent
    problems = check_full_transitive([a, b, c], ["v1", "v2", "v3"])
    assert problems == [
        "v1 cannot read v3: R.x: writer type long cannot be read as int",
        "v2 cannot read v3: R.x: writer type long cannot be read as int",
    ]
