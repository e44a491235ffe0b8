"""The readable parts of a bundle are what the records' bytes say (docs/evidence-format.md §9.5).

Oracles independent of the project's code: plain fastavro over the schemas' Parsing
Canonical Form (the decoder the verifier uses is the project's own, stdlib-only), and the
committed vectors' ``record`` (schemas/vectors, written from the specification).
"""

from __future__ import annotations

import dataclasses
import io
import json
import random
from pathlib import Path
from typing import Any

import fastavro
import pytest
import synthetic_bundle as synthetic

from protocolo.attestation.bundle_pack import BundleContents, BundleRecord
from protocolo.evidence.avro import AvroError, decode, parse_schema
from protocolo.evidence.bundle import BundleTrust, Expected, verify_bundle
from protocolo.evidence.bundle_zip import read_zip, write_zip
from protocolo.evidence.leaf import record_leaf_input

VECTORS = sorted(p for p in (Path(__file__).resolve().parents[2] / "schemas" / "vectors").glob("*.json")
                 if "single_object_hex" in p.read_text())
V1_BUNDLE = Path(__file__).parent / "data" / "bundle-v1.zip"


def _plain(value: Any) -> Any:
    """fastavro's datum in the vectors' convention (bytes as lowercase hex)."""
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _fastavro(canonical: str, body: bytes) -> Any:
    schema = fastavro.parse_schema(json.loads(canonical))
    return _plain(fastavro.schemaless_reader(io.BytesIO(body), schema))


@pytest.mark.parametrize("vector", VECTORS, ids=lambda p: p.stem)
def test_the_decoder_agrees_with_fastavro_and_the_vector(vector: Path) -> None:
    v = json.loads(vector.read_text())
    value = bytes.fromhex(v["single_object_hex"])
    ours = decode(parse_schema(v["schema_canonical_form"]), value[10:])
    assert ours == v["record"]
    assert ours == _fastavro(v["schema_canonical_form"], value[10:])


@pytest.mark.parametrize("vector", VECTORS, ids=lambda p: p.stem)
def test_damaged_bodies_decode_alike_or_are_named_errors(vector: Path) -> None:
    v = json.loads(vector.read_text())
    body = bytes.fromhex(v["single_object_hex"])[10:]
    schema = parse_schema(v["schema_canonical_form"])
    rng = random.Random(vector.stem)
    for _ in range(60):
        damaged = bytearray(body)
        for _ in range(rng.randint(1, 3)):
            damaged[rng.randrange(len(damaged))] = rng.randrange(256)
        damaged = damaged[: rng.randint(len(damaged) - 3, len(damaged))]
        try:
            ours = decode(schema, bytes(damaged))
        except AvroError:
            continue  # a named error, never another exception
        assert ours == _fastavro(v["schema_canonical_form"], bytes(damaged))


def test_hostile_schemas_are_named_errors() -> None:
    deep: Any = "long"
    for i in range(200):
        deep = {"type": "record", "name": f"R{i}", "fields": [{"name": "f", "type": deep}]}
    for schema, body in ((deep, b"\x02"), ({"type": "mystery"}, b""), (["null"], b"\x04"),
                         ({"type": "enum", "name": "E", "symbols": ["A"]}, b"\x02"),
                         ("string", b"\x04\xff\xfe"), ("long", b"\xff" * 11), ("string", b"\x7f")):
        with pytest.raises(AvroError):
            decode(schema, body)
    with pytest.raises(AvroError):
        parse_schema("[" * 100_000)
    # nested arrays of nulls: a few bytes per inner array, a million items each
    nested = {"type": "array", "items": {"type": "array", "items": "null"}}
    inner = b"\x80\x89\x7a\x00"  # 1,000,000 nulls (zig-zag varint), end of array
    with pytest.raises(AvroError, match="items"):
        decode(nested, b"\x08" + inner * 4 + b"\x00")


def _files(data: bytes) -> dict[str, bytes]:
    return dict(read_zip(data))


def test_record_json_is_the_value_decoded_by_plain_fastavro_over_the_bundled_schema() -> None:
    files = _files(synthetic.build())
    manifest = json.loads(files["manifest.json"])
    assert manifest["format"] == "protocolo/bundle/v2" and manifest["format_version"] == 2
    for entry in manifest["records"]:
        record = json.loads(files[f"{entry['dir']}/record.json"])
        value = files[f"{entry['dir']}/value.bin"]
        schema = files[f"schemas/{value[2:10].hex()}.avsc"].decode()
        assert record["fields"] == _fastavro(schema, value[10:])
        assert (record["partition"], record["offset"], record["leaf_index"]) == (
            entry["partition"], entry["offset"], entry["leaf_index"])
        assert record["fields"]["meta"]["protocol_number"] == synthetic.PROTOCOL


def _resigned(change: Any) -> bytes:
    """A bundle whose writer lied about something, signed with the real key."""
    return synthetic.build(change=change)


def test_an_edited_record_json_is_named_by_file_and_field() -> None:
    files = _files(synthetic.build())
    path = "records/p0-o4/record.json"
    doc = json.loads(files[path])
    doc["fields"]["n"] = 999
    files[path] = (json.dumps(doc, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode()
    report = verify_bundle(write_zip(sorted(files.items())), synthetic.pinned())
    mismatch = [f for f in report.findings if f.reason == "readable-mismatch"]
    assert [(f.subject, f.detail) for f in mismatch] == [
        (path, "field fields.n is not what the record's bytes say")]
    assert report.verdict == "INVALID"


def test_a_signed_but_false_record_json_and_summary_are_caught() -> None:
    """The maker signs a manifest over a record.json and a summary that lie: the hashes
    match, the re-derivation does not."""
    from protocolo.attestation import bundle_pack

    original = bundle_pack.readable_files

    def lying(contents: BundleContents) -> dict[str, bytes]:
        files = original(contents)
        path = "records/p0-o5/record.json"
        files[path] = files[path].replace(b'"n": 5', b'"n": 6')
        files["summary.html"] = files["summary.html"].replace(b"Cliente", b"Client")
        return files

    bundle_pack.readable_files = lying
    try:
        data = synthetic.build()
    finally:
        bundle_pack.readable_files = original
    report = verify_bundle(data, synthetic.pinned())
    assert not [f for f in report.findings if f.reason.startswith("file-")]  # hashes agree
    named = {(f.subject, f.reason) for f in report.findings if not f.ok}
    assert named == {("records/p0-o5/record.json", "readable-mismatch"),
                     ("summary.html", "summary-mismatch")}


def test_a_record_of_another_contact_is_named() -> None:
    def foreign(contents: BundleContents) -> BundleContents:
        r = contents.records[0]
        value = synthetic.value(r.partition, r.offset, protocol="202600000000024")
        leaf = record_leaf_input(r.topic, r.partition, r.offset, r.key, value)
        return dataclasses.replace(contents, records=[
            dataclasses.replace(r, value=value, leaf_input=leaf), *contents.records[1:]])

    report = verify_bundle(_resigned(foreign), synthetic.pinned())
    assert "record-outside-subject" in report.reasons
    assert any(f.subject == "records/p0-o1" and "202600000000024" in f.detail
               for f in report.findings if f.reason == "record-outside-subject")


def test_a_genuine_bundle_of_another_contact_is_rejected_when_a_contact_is_expected() -> None:
    data = synthetic.build()
    assert verify_bundle(data, synthetic.pinned(), Expected(synthetic.PROTOCOL)).ok
    report = verify_bundle(data, synthetic.pinned(), Expected("202600000000024"))
    assert report.verdict == "INVALID" and "subject-mismatch" in report.reasons
    assert "202600000000016" in report.render() and "not 202600000000024" in report.render()


def test_the_verdict_names_the_contact_and_the_checkpoints() -> None:
    text = verify_bundle(synthetic.build(), synthetic.pinned()).render()
    proven = next(line for line in text.splitlines() if line.startswith("PROVEN"))
    assert synthetic.PROTOCOL in proven
    assert "protocolo/acme-test/protocolo.ledger/0 size 6" in proven
    assert "protocolo/acme-test/protocolo.ledger/1 size 3" in proven


def test_a_v1_bundle_made_before_still_verifies_as_it_is() -> None:
    data = V1_BUNDLE.read_bytes()
    assert json.loads(_files(data)["manifest.json"])["format"] == "protocolo/bundle/v1"
    report = verify_bundle(data, synthetic.pinned())
    assert report.ok, report.render()
    assert any("format v1" in w for w in report.warnings)
    assert verify_bundle(data, BundleTrust()).verdict == "UNPINNED"


def test_a_v2_manifest_cannot_pass_with_a_v1_signature_line() -> None:
    files = _files(synthetic.build())
    files["manifest.json"] = files["manifest.json"].replace(b'"protocolo/bundle/v2"', b'"protocolo/bundle/v1"')
    report = verify_bundle(write_zip(sorted(files.items())), synthetic.pinned())
    assert "manifest-digest-mismatch" in report.reasons


def test_pending_records_are_listed_and_shown_not_proven() -> None:
    def late(contents: BundleContents) -> BundleContents:
        from protocolo.attestation.bundle_pack import PendingRecord

        return dataclasses.replace(contents, pending=[PendingRecord(synthetic.TOPIC, 0, 9, 6)])

    data = _resigned(late)
    report = verify_bundle(data, synthetic.pinned())
    assert report.ok, report.render()
    files = _files(data)
    assert json.loads(files["manifest.json"])["pending"] == [
        {"topic": synthetic.TOPIC, "partition": 0, "offset": 9, "leaf_index": 6}]
    assert "Not yet checkpointed (not proven here)" in files["summary.html"].decode()


def test_bundle_record_has_no_decoded_copy_to_lie_with() -> None:
    assert "decoded" not in {f.name for f in dataclasses.fields(BundleRecord)}
