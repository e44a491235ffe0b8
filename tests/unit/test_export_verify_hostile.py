"""``verify_export`` on hostile directories: every malformed input is a named INVALID, never
an exception, and nothing is VALID without a signature under a pinned key. Pure: no backend."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from protocolo.attestation.export_verify import ExportTrust, verify_export
from protocolo.evidence.export import FORMAT, sign_manifest
from protocolo.evidence.note import Ed25519NoteSigner

ORIGIN = "protocolo/dev/protocolo.interactions/0"


def _manifest(**over: object) -> dict[str, object]:
    doc: dict[str, object] = {
        "format": FORMAT, "export_id": "exp-x", "log": {"deployment": "dev", "topic": "protocolo.interactions"},
        "period": {"from": "a", "to": "b"}, "partitions": [], "files": [], "schemas": [],
        "previous": {}, "request": {"regulator": "anatel"}, "counts": {}, "records": 0}
    doc.update(over)
    return doc


def _write(d: Path, manifest: object, signer: Ed25519NoteSigner | None = None) -> Path:
    d.mkdir()
    data = (manifest if isinstance(manifest, bytes) else json.dumps(manifest).encode())
    (d / "manifest.json").write_bytes(data)
    if signer is not None:
        (d / "manifest.sig").write_bytes(sign_manifest(data, signer))
    return d


@pytest.mark.parametrize(("name", "manifest", "reason"), [
    ("not-json", b"{", "manifest-malformed"),
    ("deep", b"[" * 100_000 + b"]" * 100_000, "manifest-malformed"),
    ("list", [], "manifest-malformed"),
    ("other-format", _manifest(format="protocolo/bundle/v2"), "manifest-malformed"),
    ("partitions-not-list", _manifest(partitions={}), "manifest-malformed"),
    ("bad-partition", _manifest(partitions=[{"partition": "zero"}]), "export-malformed"),
])
def test_malformed_manifests_are_named(tmp_path: Path, name: str, manifest: object, reason: str) -> None:
    signer = Ed25519NoteSigner.generate(ORIGIN)
    report = verify_export(_write(tmp_path / name, manifest), ExportTrust((str(signer.verifier),)))
    assert report.verdict == "INVALID" and report.reason == reason, report.render()
    assert "VERDICT: INVALID" in report.render()


def test_no_manifest_and_not_a_directory(tmp_path: Path) -> None:
    assert verify_export(tmp_path, ExportTrust()).reason == "file-missing"
    assert verify_export(tmp_path / "nowhere", ExportTrust()).reason == "not-an-export"


def test_a_signature_by_an_unpinned_key_is_refused_and_a_pinned_one_is_needed(tmp_path: Path) -> None:
    pinned, other = Ed25519NoteSigner.generate(ORIGIN), Ed25519NoteSigner.generate(ORIGIN)
    d = _write(tmp_path / "e", _manifest(), other)
    (d / "SHA256SUMS").write_text("")
    report = verify_export(d, ExportTrust((str(pinned.verifier),)))
    assert report.reason in ("no-trusted-key", "manifest-signature"), report.render()
    # an empty export signed by the pinned key: its files must still be listed
    d2 = _write(tmp_path / "e2", _manifest(partitions=[]), pinned)
    assert verify_export(d2, ExportTrust((str(pinned.verifier),))).verdict == "INVALID"


def test_a_malformed_pinned_key_is_a_named_trust_failure(tmp_path: Path) -> None:
    d = _write(tmp_path / "e", _manifest())
    report = verify_export(d, ExportTrust(("not a key",)))
    assert report.verdict == "INVALID" and report.reason and report.reason.startswith("trust-")


def test_names_printed_from_an_export_are_escaped(tmp_path: Path) -> None:
    d = _write(tmp_path / "e", _manifest(export_id="x\nVERDICT: VALID"))
    report = verify_export(d, ExportTrust())
    lines = report.render().splitlines()
    assert [line for line in lines if line.startswith("VERDICT:")] == ["VERDICT: INVALID [file-missing]"]
    assert "x\\x0aVERDICT" in lines[0]  # the newline is shown escaped, inside the first line
