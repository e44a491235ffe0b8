"""The schema catalogue: loading rules, encode/decode, resolution into the current version."""

from __future__ import annotations

import copy
import io
import json
import shutil
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastavro import schemaless_reader

from protocolo.schemas.catalogue import (
    BUNDLED_ROOT,
    EncodeError,
    SchemaCatalogue,
    SchemaCatalogueError,
    UnknownEventType,
    UnknownSchemaVersion,
)
from protocolo.schemas.codec import HEADER_SIZE, MalformedRecord, UnknownFingerprint
from protocolo.schemas.vectors_tool import SAMPLES

EXPECTED_EVENT_TYPES = {
    "ContactOpened", "DisclosureMade", "RecordingCaptured", "ContactClosed", "NoteAdded",
    "RetrievalRequested", "RetrievalLocated", "RetrievalFulfilled", "RetrievalRejected",
    "RecordingDeleted", "LegalHoldPlaced", "LegalHoldReleased", "CustomerDataErased",
    "AccessRecorded", "ApprovalRequested", "ApprovalGranted", "ApprovalDenied",
}


@pytest.fixture(scope="module")
def catalogue() -> SchemaCatalogue:
    return SchemaCatalogue.load()


def contact_opened_v2() -> dict[str, Any]:
    return copy.deepcopy(SAMPLES[("ContactOpened", 2)])


def test_loads_every_event_type_and_version(catalogue: SchemaCatalogue) -> None:
    assert set(catalogue.event_types()) == EXPECTED_EVENT_TYPES
    assert [v.version for v in catalogue.versions("ContactOpened")] == [1, 2, 3]
    assert catalogue.current("ContactOpened").version == 3
    assert catalogue.current("NoteAdded").version == 1
    v1 = catalogue.version("ContactOpened", 1)
    assert v1.path == BUNDLED_ROOT / "ContactOpened" / "v1.avsc"
    assert catalogue.by_fingerprint(v1.fingerprint) is v1


def test_every_schema_version_has_a_sample(catalogue: SchemaCatalogue) -> None:
    versions = {(et, v.version) for et in catalogue.event_types() for v in catalogue.versions(et)}
    assert versions == set(SAMPLES)


@pytest.mark.parametrize(("event_type", "version"), sorted(SAMPLES))
def test_round_trip(catalogue: SchemaCatalogue, event_type: str, version: int) -> None:
    sample = SAMPLES[(event_type, version)]
    data = catalogue.encode(event_type, sample, version)
    sv = catalogue.version(event_type, version)
    assert data[:2] == b"\xc3\x01" and data[2:HEADER_SIZE] == sv.fingerprint
    decoded = catalogue.decode(data)
    assert (decoded.event_type, decoded.writer_version, decoded.fingerprint) == (
        event_type, version, sv.fingerprint)
    if version == catalogue.current(event_type).version:
        assert decoded.record == sample
    # memoryview and bytearray inputs (as Kafka clients may hand them over) decode the same
    assert catalogue.decode(memoryview(data)).record == decoded.record
    assert catalogue.decode(bytearray(data)).record == decoded.record


def test_encode_uses_the_current_version_by_default(catalogue: SchemaCatalogue) -> None:
    data = catalogue.encode("ContactOpened", contact_opened_v2())
    assert catalogue.decode(data).writer_version == 3


def test_decoded_types(catalogue: SchemaCatalogue) -> None:
    record = catalogue.decode(catalogue.encode("ContactOpened", contact_opened_v2())).record
    meta = record["meta"]
    assert isinstance(meta["event_id"], uuid.UUID)
    assert meta["occurred_at"] == datetime(2025, 3, 5, 12, 4, 31, 250_118, tzinfo=UTC)
    assert meta["occurred_at"].tzinfo is not None
    requested = catalogue.decode(
        catalogue.encode("RetrievalRequested", SAMPLES[("RetrievalRequested", 1)])).record
    assert isinstance(requested["customer"]["sealed"]["nonce"], bytes)


def test_old_bytes_are_read_into_the_current_schema(catalogue: SchemaCatalogue) -> None:
    v1_sample = SAMPLES[("ContactOpened", 1)]
    assert "language" not in v1_sample
    decoded = catalogue.decode(catalogue.encode("ContactOpened", v1_sample, version=1))
    assert decoded.writer_version == 1
    assert decoded.record["language"] == "pt-BR"
    assert decoded.record == {**v1_sample, "language": "pt-BR", "policy_profile": None}


def test_new_bytes_are_readable_by_the_old_reader_schema(catalogue: SchemaCatalogue) -> None:
    sample = contact_opened_v2()
    data = catalogue.encode("ContactOpened", sample)
    old_reader = catalogue.version("ContactOpened", 1).schema
    writer = catalogue.version("ContactOpened", 3).schema
    record = schemaless_reader(io.BytesIO(data[HEADER_SIZE:]), writer, old_reader)
    assert "language" not in record and "policy_profile" not in record
    assert record == {k: v for k, v in sample.items() if k != "language"}


def test_encode_errors(catalogue: SchemaCatalogue) -> None:
    with pytest.raises(UnknownEventType, match="unknown event type 'ContactOpend'") as caught:
        catalogue.encode("ContactOpend", {})
    assert isinstance(caught.value, KeyError)
    assert "ContactOpened" in str(caught.value)  # lists the known ones
    with pytest.raises(UnknownSchemaVersion, match=r"ContactOpened has no version 4 \(known: \[1, 2, 3\]\)"):
        catalogue.encode("ContactOpened", contact_opened_v2(), version=4)
    with pytest.raises(EncodeError, match="ContactOpened v1.*more fields"):
        catalogue.encode("ContactOpened", contact_opened_v2(), version=1)  # has language
    broken = contact_opened_v2()
    del broken["subject"]
    with pytest.raises(EncodeError, match="subject"):
        catalogue.encode("ContactOpened", broken)


# --- strict decoding --------------------------------------------------------------------


@pytest.fixture(scope="module")
def valid(catalogue: SchemaCatalogue) -> bytes:
    return catalogue.encode("ContactOpened", SAMPLES[("ContactOpened", 2)])


def test_bad_magic(catalogue: SchemaCatalogue, valid: bytes) -> None:
    with pytest.raises(MalformedRecord, match="magic"):
        catalogue.decode(b"\xc3\x02" + valid[2:])


def test_shorter_than_header(catalogue: SchemaCatalogue, valid: bytes) -> None:
    with pytest.raises(MalformedRecord, match="too short"):
        catalogue.decode(valid[:9])


def test_every_truncation_is_reported_as_truncated(catalogue: SchemaCatalogue, valid: bytes) -> None:
    for cut in range(HEADER_SIZE, len(valid)):
        with pytest.raises(MalformedRecord, match="ContactOpened v3 .*truncated"):
            catalogue.decode(valid[:cut])


def test_trailing_bytes(catalogue: SchemaCatalogue, valid: bytes) -> None:
    with pytest.raises(MalformedRecord, match="3 trailing bytes"):
        catalogue.decode(valid + b"\x00\x00\x00")


def test_unknown_fingerprint(catalogue: SchemaCatalogue, valid: bytes) -> None:
    data = valid[:2] + bytes(range(8)) + valid[HEADER_SIZE:]
    with pytest.raises(UnknownFingerprint, match="0001020304050607") as caught:
        catalogue.decode(data)
    assert caught.value.fingerprint == bytes(range(8))
    with pytest.raises(UnknownFingerprint):
        catalogue.by_fingerprint(bytes(range(8)))


def test_body_not_matching_the_schema(catalogue: SchemaCatalogue) -> None:
    header = b"\xc3\x01" + catalogue.current("DisclosureMade").fingerprint
    # meta.event_id "a" (not a UUID), then null, 0, "", null, then enum indexes 0 and 0
    with pytest.raises(MalformedRecord, match="DisclosureMade v1 .*does not match") as caught:
        catalogue.decode(header + b"\x02a" + b"\x00" * 6)
    assert isinstance(caught.value.__cause__, ValueError)
    # a valid event_id, then union index 5 for protocol_number: [null, string] has 2 branches
    event_id = str(uuid.UUID(int=1)).encode()
    with pytest.raises(MalformedRecord, match="does not match"):
        catalogue.decode(header + b"\x48" + event_id + b"\x0a" + b"\x00" * 6)


def test_schema_json_is_the_committed_text(catalogue: SchemaCatalogue) -> None:
    text = catalogue.schema_json("ContactOpened", 2)
    assert text == (BUNDLED_ROOT / "ContactOpened" / "v2.avsc").read_text(encoding="utf-8")
    assert json.loads(text)["fields"][-1]["name"] == "language"


# --- load-time validation -----------------------------------------------------------------


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "avro"
    shutil.copytree(BUNDLED_ROOT, root)
    return root


def edit(path: Path, change: Callable[[dict[str, Any]], Any]) -> None:
    schema = json.loads(path.read_text())
    change(schema)
    path.write_text(json.dumps(schema))


def test_a_copy_of_the_bundled_folder_loads(folder: Path) -> None:
    assert SchemaCatalogue.load(folder).event_types() == SchemaCatalogue.load().event_types()


@pytest.mark.parametrize("name", ["2.avsc", "v02.avsc", "V2.avsc", "v2.schema.avsc", "v0.avsc"])
def test_rejects_badly_named_files(folder: Path, name: str) -> None:
    shutil.copy(folder / "NoteAdded" / "v1.avsc", folder / "NoteAdded" / name)
    with pytest.raises(SchemaCatalogueError, match="named v<N>.avsc"):
        SchemaCatalogue.load(folder)


def test_rejects_record_name_not_matching_the_folder(folder: Path) -> None:
    (folder / "NoteAdded").rename(folder / "NoteWritten")
    with pytest.raises(SchemaCatalogueError, match="expected 'protocolo.events.NoteWritten'"):
        SchemaCatalogue.load(folder)


def test_rejects_wrong_namespace(folder: Path) -> None:
    edit(folder / "NoteAdded" / "v1.avsc", lambda s: s.update(namespace="other.events"))
    with pytest.raises(SchemaCatalogueError, match="full name is 'other.events.NoteAdded'"):
        SchemaCatalogue.load(folder)


def test_rejects_meta_not_first(folder: Path) -> None:
    edit(folder / "NoteAdded" / "v1.avsc", lambda s: s["fields"].reverse())
    with pytest.raises(SchemaCatalogueError, match="first field must be 'meta'"):
        SchemaCatalogue.load(folder)


def test_rejects_meta_of_another_record_type(folder: Path) -> None:
    edit(folder / "NoteAdded" / "v1.avsc",
         lambda s: s["fields"][0]["type"].update(name="Envelope"))
    with pytest.raises(SchemaCatalogueError, match="record protocolo.events.Meta"):
        SchemaCatalogue.load(folder)


def test_rejects_two_files_with_one_fingerprint(folder: Path) -> None:
    # Same schema, only the docs differ: the same canonical form, hence the same fingerprint.
    edit(folder / "ContactOpened" / "v1.avsc", lambda s: s.update(doc="reworded"))
    shutil.copy(folder / "ContactOpened" / "v1.avsc", folder / "ContactOpened" / "v3.avsc")
    with pytest.raises(SchemaCatalogueError, match="same fingerprint"):
        SchemaCatalogue.load(folder)


def test_rejects_invalid_avro(folder: Path) -> None:
    edit(folder / "NoteAdded" / "v1.avsc", lambda s: s["fields"].append({"name": "x", "type": "nope"}))
    with pytest.raises(SchemaCatalogueError, match="NoteAdded/v1.avsc: not a valid Avro schema"):
        SchemaCatalogue.load(folder)
