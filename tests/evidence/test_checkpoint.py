"""Checkpoints and cosignatures against real signed tree heads and the C2SP parse rules."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from evidence_vectors import load

from protocolo.evidence.checkpoint import (
    Checkpoint,
    log_origin,
    open_checkpoint,
    parse_checkpoint,
    parse_log_origin,
    sign_checkpoint,
)
from protocolo.evidence.cosignature import (
    CosignatureV1Signer,
    cosignature_timestamp,
    cosignature_v1_message,
    mldsa44_supported,
)
from protocolo.evidence.errors import CheckpointError, EvidenceError, NoteError
from protocolo.evidence.keys import verifier_from_key
from protocolo.evidence.merkle import EMPTY_ROOT
from protocolo.evidence.note import Ed25519NoteSigner, parse_note, sign_note

SUMDB = load("checkpoint/sum-golang-org.json")
WITNESSED = load("checkpoint/witnessed-ed25519.json")
MLDSA = load("checkpoint/witnessed-mldsa44.json")
BODIES = load("checkpoint/body-parse.json")


def _bump_size(note: str) -> str:
    origin, size, rest = note.split("\n", 2)
    return f"{origin}\n{int(size) + 1}\n{rest}"


@pytest.mark.parametrize("case", SUMDB["notes"], ids=lambda c: str(c["parsed"]["size"]))
def test_sum_golang_org_tree_heads(case: dict[str, Any]) -> None:
    log = verifier_from_key(SUMDB["vkey"])  # its base64 contains '+'
    signed = open_checkpoint(case["note"].encode(), [log], log_key=log)
    cp = signed.checkpoint
    assert (cp.origin, cp.size, cp.root.hex()) == (
        case["parsed"]["origin"],
        case["parsed"]["size"],
        case["parsed"]["root_hex"],
    )
    assert cp.origin != log.name  # legacy origin line: still verifies (origin is SHOULD)
    assert cp.body() == signed.note.text
    with pytest.raises(NoteError) as failure:
        open_checkpoint(_bump_size(case["note"]).encode(), [log])
    assert failure.value.reason == "invalid-signature"


def _line_keys(opened: Any) -> tuple[list[str], list[str]]:
    return [s.key for s in opened.verified], [s.key for s in opened.unverified]


def test_witnessed_checkpoint_with_four_cosignatures_and_an_ignored_0x05_line() -> None:
    log = verifier_from_key(WITNESSED["vkeys"]["log"])
    witnesses = [verifier_from_key(v) for v in WITNESSED["vkeys"]["witnesses"]]
    signed = open_checkpoint(
        WITNESSED["note"].encode(), witnesses, origin=WITNESSED["parsed"]["origin"], log_key=log
    )
    verified, unverified = _line_keys(signed.note)
    expected_ok = [e["line_key"] for e in WITNESSED["expect"] if e["result"].startswith("ok")]
    expected_unknown = [e["line_key"] for e in WITNESSED["expect"] if "unknown" in e["result"]]
    assert verified == expected_ok
    assert unverified == expected_unknown == ["arche2025h1.staging.ct.transparency.dev+cd333cb1"]
    for line in signed.note.verified[1:]:
        assert cosignature_timestamp(line.signature) == 1779573024
    assert signed.checkpoint.root.hex() == WITNESSED["parsed"]["root_hex"]
    assert signed.checkpoint.size == WITNESSED["parsed"]["size"]
    # size + 1: every known signature fails, the note is refused
    with pytest.raises(NoteError) as failure:
        open_checkpoint(WITNESSED["derived_negative"]["note"].encode(), [log, *witnesses])
    assert failure.value.reason == "invalid-signature"
    # witnesses vouch, but the log key we pin (another key, same name) did not sign
    impostor = Ed25519NoteSigner.generate(log.name).verifier
    with pytest.raises(NoteError) as failure:
        open_checkpoint(WITNESSED["note"].encode(), witnesses, log_key=impostor)
    assert failure.value.reason == "no-log-signature"
    with pytest.raises(CheckpointError) as wrong:
        open_checkpoint(WITNESSED["note"].encode(), witnesses, origin="protocolo/x/y/0")
    assert wrong.value.reason == "wrong-origin"


def test_each_cosignature_alone_verifies_and_a_moved_timestamp_does_not() -> None:
    note = parse_note(WITNESSED["note"].encode())
    text = note.text.encode()
    for vkey in WITNESSED["vkeys"]["witnesses"]:
        witness = verifier_from_key(vkey)
        line = next(s for s in note.signatures if s.name == witness.name)
        assert witness.verify(text, line.signature)
        later = (cosignature_timestamp(line.signature) + 1).to_bytes(8, "big")
        assert not witness.verify(text, later + line.signature[8:])
        assert not witness.verify(text + b"ext\n", line.signature)


def test_mldsa44_and_ed25519_cosignatures_of_one_witness() -> None:
    assert mldsa44_supported(), "this cryptography build lacks ML-DSA-44 (needs >= 48, OpenSSL 3.5)"
    verifiers = [verifier_from_key(v) for v in MLDSA["vkeys"].values()]
    signed = open_checkpoint(MLDSA["note"].encode(), verifiers, origin=MLDSA["parsed"]["origin"])
    verified, unverified = _line_keys(signed.note)
    assert verified == [e["line_key"] for e in MLDSA["expect"] if e["result"].startswith("ok")]
    assert unverified == [e["line_key"] for e in MLDSA["expect"] if "unknown" in e["result"]]
    sizes = {s.key: len(s.signature) + 4 for s in signed.note.verified + signed.note.unverified}
    assert sizes == {e["line_key"]: e["sig_bytes"] for e in MLDSA["expect"]}
    assert {cosignature_timestamp(s.signature) for s in signed.note.verified} == {1785704691}
    with pytest.raises(NoteError) as failure:
        open_checkpoint(_bump_size(MLDSA["note"]).encode(), verifiers)
    assert failure.value.reason == "invalid-signature"


@pytest.mark.parametrize("case", BODIES["cases"], ids=lambda c: c["desc"])
def test_strict_body_parse(case: dict[str, Any]) -> None:
    if case["c2sp_strict_accepts"]:
        cp = parse_checkpoint(case["body"])
        assert cp.body() == case["body"]
    else:
        with pytest.raises(CheckpointError):
            parse_checkpoint(case["body"])


def test_size_zero_must_carry_the_empty_root() -> None:
    assert parse_checkpoint(f"log\n0\n{_b64(EMPTY_ROOT)}\n").root == EMPTY_ROOT
    with pytest.raises(CheckpointError) as failure:
        parse_checkpoint(f"log\n0\n{_b64(bytes(32))}\n")
    assert failure.value.reason == "bad-root"


def _b64(raw: bytes) -> str:
    import base64

    return base64.b64encode(raw).decode()


def test_size_above_uint64_and_non_ascii_digits_are_refused() -> None:
    root = _b64(bytes(32))
    for size in (str(2**64), "\u0661\u0662", "1_000", " 1", "1 "):
        with pytest.raises(CheckpointError):
            parse_checkpoint(f"log\n{size}\n{root}\n")
    assert parse_checkpoint(f"log\n{2**64 - 1}\n{root}\n").size == 2**64 - 1


def test_sign_and_open_a_protocolo_checkpoint_with_a_witness() -> None:
    origin = log_origin("acme", "protocolo.ledger", 3)
    assert origin == "protocolo/acme/protocolo.ledger/3"
    assert parse_log_origin(origin) == ("acme", "protocolo.ledger", 3)
    log = Ed25519NoteSigner.generate(origin)
    cp = Checkpoint(origin, 5, hashlib.sha256(b"r").digest())
    note = sign_checkpoint(cp, [log])
    witness = CosignatureV1Signer.generate("auditor.example", clock=lambda: 1_800_000_000.7)
    cosigned = sign_note(cp.body(), [witness], keep=parse_note(note).signatures)
    signed = open_checkpoint(cosigned, [witness.verifier], origin=origin, log_key=log.verifier)
    assert signed.checkpoint == cp
    assert [s.name for s in signed.note.verified] == [origin, "auditor.example"]
    assert cosignature_timestamp(signed.note.verified[1].signature) == 1_800_000_000
    with pytest.raises(CheckpointError) as failure:
        open_checkpoint(note, [], origin="protocolo/acme/other/3", log_key=log.verifier)
    assert failure.value.reason == "wrong-origin"


def test_cosignature_v1_message_layout() -> None:
    assert cosignature_v1_message(b"o\n1\nR=\n", 42) == b"cosignature/v1\ntime 42\no\n1\nR=\n"


def test_a_witness_cosigns_only_checkpoints_with_a_valid_timestamp() -> None:
    witness = CosignatureV1Signer.generate("auditor.example")
    with pytest.raises(EvidenceError):
        witness.sign_at(b"not a checkpoint\n", 1)
    body = Checkpoint("o", 1, bytes(32)).body().encode()
    for timestamp in (0, 2**63):
        with pytest.raises(NoteError):
            witness.sign_at(body, timestamp)
    assert witness.verifier.verify(body, witness.sign_at(body, 2**63 - 1))


@pytest.mark.parametrize(
    "parts",
    [("", "t", 0), ("a b", "t", 0), ("a", "t/x", 0), ("a", "t", -1), ("a+b", "t", 0)],
)
def test_log_origin_refuses_what_would_not_be_a_key_name(parts: tuple[str, str, int]) -> None:
    with pytest.raises(CheckpointError):
        log_origin(*parts)


def test_parse_log_origin_refuses_foreign_origins() -> None:
    for origin in ("go.sum database tree", "protocolo/a/b/01", "protocolo/a/b", "x/a/b/1"):
        with pytest.raises(CheckpointError):
            parse_log_origin(origin)


def test_pinning_a_log_key_that_is_also_in_the_list_is_not_ambiguous() -> None:
    log = verifier_from_key(SUMDB["vkey"])
    same = verifier_from_key(SUMDB["vkey"])  # an equal key, another object
    assert log == same and hash(log) == hash(same)
    signed = open_checkpoint(SUMDB["notes"][0]["note"].encode(), [log], log_key=same)
    assert signed.checkpoint.size == SUMDB["notes"][0]["parsed"]["size"]
