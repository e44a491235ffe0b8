"""Offline verification of proof-of-service bundles built from a synthetic log.

The oracle for "valid" is construction (every proof made from the real tree by the
evidence primitives); for "invalid", each test changes exactly one thing, re-signing the
manifest with the real key where the point is that the *content* is caught, not the hash.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import random
import re
import struct
from pathlib import Path

import pytest
import synthetic_bundle as synthetic
from local_tsa import LocalTsa

from protocolo.attestation.bundle_pack import BundleContents
from protocolo.evidence.bundle import BundleReport, BundleTrust, verify_bundle
from protocolo.evidence.bundle_zip import read_zip, write_zip
from protocolo.evidence.tlog_proof import make_tlog_proof, parse_tlog_proof

REASON = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")


@pytest.fixture(scope="module")
def tsa(tmp_path_factory: pytest.TempPathFactory) -> LocalTsa:
    with LocalTsa(tmp_path_factory.mktemp("tsa")) as running:
        yield running


def chain_of(tsa: LocalTsa) -> bytes:
    return tsa.tsa_pem_path.read_bytes() + tsa.root_pem_path.read_bytes()


@pytest.fixture(scope="module")
def bundle(tsa: LocalTsa) -> bytes:
    return synthetic.build(tsa.url, chain_of(tsa))


def trust(tsa: LocalTsa, policies: tuple[bytes, ...] = ()) -> BundleTrust:
    return synthetic.pinned(tsa.root_pem_path.read_bytes(), policies)


def assert_fails(report: BundleReport, reason: str) -> None:
    assert not report.ok
    assert reason in report.reasons, report.render()


def test_a_bundle_verifies_offline_with_a_verdict_per_record(bundle: bytes, tsa: LocalTsa) -> None:
    report = verify_bundle(bundle, trust(tsa))
    assert report.ok, report.render()
    assert [(r.partition, r.offset, r.leaf_index) for r in report.records] == [
        (0, 1, 1), (0, 4, 3), (0, 5, 4), (1, 2, 2)]
    assert all(r.ok for r in report.records)
    stamped = [f for f in report.findings if f.subject.endswith(".tsr")]
    assert len(stamped) == 2 and all(f.ok and "timestamped" in f.detail for f in stamped)
    assert "consistency/p0/4-6.proof" in {f.subject for f in report.findings if f.ok}
    assert report.warnings == ["completeness not proven: the bundle carries no index lookup proof"]
    assert report.render().endswith("VERDICT: VALID (4 of 4 records verified)\n")


def test_same_inputs_same_bytes(tsa: LocalTsa) -> None:
    assert synthetic.build() == synthetic.build()


def test_the_witness_policy_is_enforced(bundle: bytes, tsa: LocalTsa) -> None:
    policy = (synthetic.policy(list(synthetic.LOG), witnessed=True),)
    report = verify_bundle(bundle, trust(tsa, policy))
    assert report.ok, report.render()
    assert "auditor" in report.records[0].detail
    unwitnessed = synthetic.build(tsa.url, chain_of(tsa), witnessed=False)
    assert verify_bundle(unwitnessed, trust(tsa)).ok  # no witness required
    assert_fails(verify_bundle(unwitnessed, trust(tsa, policy)), "quorum-not-met")


def test_keys_not_pinned_are_said(bundle: bytes) -> None:
    report = verify_bundle(bundle, BundleTrust())
    assert report.checks_passed, report.render()
    assert not report.ok and report.verdict == "UNPINNED" and report.exit_status == 3
    assert "VERDICT: UNPINNED" in report.render() and "VERDICT: VALID" not in report.render()
    assert any("keys NOT pinned" in w for w in report.warnings)
    assert any("TSA root NOT pinned" in w for w in report.warnings)


def test_a_policy_for_one_partition_only_fails_the_other(bundle: bytes, tsa: LocalTsa) -> None:
    report = verify_bundle(bundle, trust(tsa, (synthetic.policy([0], witnessed=True),)))
    assert_fails(report, "no-log-signature")
    assert [r.ok for r in report.records] == [True, True, True, False]


def test_a_foreign_log_key_fails(bundle: bytes, tsa: LocalTsa) -> None:
    other = synthetic.Ed25519NoteSigner.generate(synthetic.log_signer(0).name)
    report = verify_bundle(bundle, BundleTrust((str(other.verifier),)))
    assert not report.ok
    assert {"no-verifiable-signature"} <= set(report.reasons)


def _entries(data: bytes) -> dict[str, bytes]:
    return dict(read_zip(data))


def _rezip(files: dict[str, bytes]) -> bytes:
    return write_zip(sorted(files.items()))


def test_a_record_removed_fails(bundle: bytes, tsa: LocalTsa) -> None:
    files = _entries(bundle)
    for name in [n for n in files if n.startswith("records/p0-o4/")]:
        del files[name]
    assert_fails(verify_bundle(_rezip(files), trust(tsa)), "file-missing")
    # ... and taken out of the manifest too: the signature no longer covers it
    files = _entries(bundle)
    manifest = json.loads(files["manifest.json"])
    manifest["records"] = [r for r in manifest["records"] if r["dir"] != "records/p0-o4"]
    manifest["files"] = [f for f in manifest["files"] if not f["path"].startswith("records/p0-o4/")]
    files = {k: v for k, v in files.items() if not k.startswith("records/p0-o4/")}
    files["manifest.json"] = json.dumps(manifest).encode()
    assert_fails(verify_bundle(_rezip(files), trust(tsa)), "manifest-digest-mismatch")


def _swap_proof(c: BundleContents, index: int, proof: bytes) -> BundleContents:
    records = list(c.records)
    records[index] = dataclasses.replace(records[index], tlog_proof=proof)
    return dataclasses.replace(c, records=records)


def test_a_proof_for_another_index_fails_even_when_the_manifest_is_re_signed(tsa: LocalTsa) -> None:
    def other_leafs_proof(c: BundleContents) -> BundleContents:
        return _swap_proof(c, 0, c.records[1].tlog_proof)  # leaf 3's proof for leaf 1

    report = verify_bundle(synthetic.build(change=other_leafs_proof), synthetic.pinned())
    assert_fails(report, "leaf-index-mismatch")
    assert [r.ok for r in report.records] == [False, True, True, True]

    def index_edited(c: BundleContents) -> BundleContents:
        p = parse_tlog_proof(c.records[1].tlog_proof)
        return _swap_proof(c, 0, make_tlog_proof(1, p.path, p.checkpoint))

    assert_fails(verify_bundle(synthetic.build(change=index_edited), synthetic.pinned()), "root-mismatch")


def test_a_proof_for_another_tree_size_fails(tsa: LocalTsa) -> None:
    def newest_checkpoint(c: BundleContents) -> BundleContents:
        p = parse_tlog_proof(c.records[0].tlog_proof)  # leaf 1, path for size 4
        newest = next(x for x in c.checkpoints if x.partition == 0 and x.newest).note
        return _swap_proof(c, 0, make_tlog_proof(p.index, p.path, newest))

    report = verify_bundle(synthetic.build(change=newest_checkpoint), synthetic.pinned())
    assert not report.ok and report.records[0].reason in {"proof-length", "root-mismatch"}


def test_a_missing_consistency_proof_fails(tsa: LocalTsa) -> None:
    def drop(c: BundleContents) -> BundleContents:
        return dataclasses.replace(c, consistency=[])

    assert_fails(verify_bundle(synthetic.build(change=drop), synthetic.pinned()), "consistency-missing")


def test_a_foreign_tsa_token_fails(tsa: LocalTsa, tmp_path: Path) -> None:
    with LocalTsa(tmp_path / "foreign", organisation="foreign") as foreign:
        forged = synthetic.build(foreign.url, chain_of(foreign))
    report = verify_bundle(forged, trust(tsa))
    assert not report.ok
    failed = [f for f in report.findings if f.subject.endswith(".tsr") and not f.ok]
    assert failed and all(f.reason == "signature-or-chain" for f in failed), report.render()


def test_an_expired_tsa_certificate_fails(tmp_path: Path) -> None:
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=30)
    with LocalTsa(tmp_path / "expired", tsa_not_before=past - dt.timedelta(days=30),
                  tsa_not_after=past) as expired:
        data = synthetic.build(expired.url, chain_of(expired))
        report = verify_bundle(data, synthetic.pinned(expired.root_pem_path.read_bytes()))
    assert not report.ok
    failed = [f for f in report.findings if f.subject.endswith(".tsr") and not f.ok]
    assert failed and all(REASON.fullmatch(f.reason) for f in failed), report.render()
    assert {f.reason for f in failed} <= {"signature-or-chain", "tsa-certificate"}


def test_a_token_over_another_checkpoint_fails(tsa: LocalTsa) -> None:
    def swapped(c: BundleContents) -> BundleContents:
        cps = list(c.checkpoints)
        stamped = next(i for i, x in enumerate(cps) if x.timestamps and x.partition == 0)
        other = next(i for i, x in enumerate(cps) if x.timestamps and x.partition == 1)
        cps[stamped] = dataclasses.replace(cps[stamped], timestamps=cps[other].timestamps)
        return dataclasses.replace(c, checkpoints=cps)

    report = verify_bundle(synthetic.build(tsa.url, chain_of(tsa), change=swapped), trust(tsa))
    assert_fails(report, "message-mismatch")


def _positions(data: bytes, rng: random.Random) -> list[int]:
    """Every byte of the central directory's end, and ~30 positions per entry (header, name,
    data) plus its central-directory header: ≥ 1,000 positions touching every file."""
    positions: set[int] = set(range(len(data) - 22, len(data)))
    offset = 0
    for name, content in read_zip(data):
        header = 30 + len(name)
        span = header + len(content)
        positions.update(offset + i for i in range(min(header, 34)))
        positions.update(offset + header + rng.randrange(len(content)) for _ in range(min(len(content), 24)))
        offset += span
    central = len(data) - 22 - offset
    positions.update(offset + rng.randrange(central) for _ in range(300))
    return sorted(positions)


def test_every_flipped_byte_is_caught_with_a_named_reason(bundle: bytes, tsa: LocalTsa) -> None:
    rng = random.Random(6)
    positions = _positions(bundle, rng)
    assert len(positions) >= 1000
    pinned = trust(tsa)
    for position in positions:
        flipped = bytearray(bundle)
        flipped[position] ^= 1 << rng.randrange(8)
        report = verify_bundle(bytes(flipped), pinned)
        assert not report.ok, f"flip at byte {position} passed"
        assert report.reasons and all(REASON.fullmatch(r) for r in report.reasons), (position, report.reasons)


def test_truncated_and_garbage_input_fail_by_name(bundle: bytes, tsa: LocalTsa) -> None:
    for data in (b"", b"PK", bundle[:100], bundle[:-1], bundle + b"\0", b"x" * 5000):
        report = verify_bundle(data, trust(tsa))
        assert not report.ok and report.reasons and all(REASON.fullmatch(r) for r in report.reasons)


def test_an_edited_file_is_named(bundle: bytes, tsa: LocalTsa) -> None:
    files = _entries(bundle)
    files["summary.html"] = files["summary.html"].replace(b"resumo", b"RESUMO")
    report = verify_bundle(_rezip(files), trust(tsa))
    assert_fails(report, "file-hash-mismatch")
    assert_fails(report, "summary-mismatch")  # and the text is not what the records say
    assert {f.subject for f in report.findings if not f.ok} == {"summary.html"}
    files = _entries(bundle)
    files["extra.txt"] = b"planted"
    assert_fails(verify_bundle(_rezip(files), trust(tsa)), "file-not-in-manifest")


def test_the_container_is_a_plain_zip(bundle: bytes, tmp_path: Path) -> None:
    import zipfile

    path = tmp_path / "b.zip"
    path.write_bytes(bundle)
    with zipfile.ZipFile(path) as z:
        assert z.testzip() is None
        assert dict((n, z.read(n)) for n in z.namelist()) == _entries(bundle)
    assert struct.unpack_from("<I", bundle, len(bundle) - 22)[0] == 0x06054B50
