"""Signed notes against golang/mod's vectors, plus the C2SP rules they do not cover."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest
from evidence_vectors import load

from protocolo.evidence.errors import NoteError
from protocolo.evidence.keys import verifier_from_key
from protocolo.evidence.note import (
    MAX_SIGNATURES,
    Ed25519NoteSigner,
    Ed25519NoteVerifier,
    NoteSignature,
    VerifierKey,
    compute_key_id,
    open_note,
    parse_note,
    sign_note,
)

GOLANG = load("signed-note/golang-note.json")

# Go's error texts -> our failure kinds (the wording is Go's; the kind is what matters).
GO_ERROR_KIND = {
    "malformed note": "malformed-note",
    "note has no verifiable signatures": "no-verifiable-signature",
    "invalid signature for key": "invalid-signature",
    "ambiguous key": "ambiguous-key",
}


def _kind(go_error: str) -> str:
    for prefix, kind in GO_ERROR_KIND.items():
        if go_error.startswith(prefix):
            return kind
    raise AssertionError(f"unmapped Go error {go_error!r}")


def test_signing_reproduces_go_exactly() -> None:
    """Ed25519 is deterministic: Go's PeterNeumann test key gives exactly this note."""
    signer = Ed25519NoteSigner.parse(GOLANG["test_signer_key"])
    assert sign_note(GOLANG["text"], [signer]).decode("utf-8") == GOLANG["sign_expect"]
    assert signer.private_key_string() == GOLANG["test_signer_key"]
    assert str(signer.verifier) == GOLANG["vkeys"][0]["vkey"]


@pytest.mark.parametrize("case", GOLANG["open_cases"], ids=lambda c: c["desc"])
def test_open_case(case: dict[str, Any]) -> None:
    data = base64.b64decode(case["note_b64"])
    verifiers = [verifier_from_key(k) for k in case["verifier_keys"]]
    expect = case["expect"]
    if "error" in expect:
        with pytest.raises(NoteError) as failure:
            open_note(data, verifiers)
        assert failure.value.reason == _kind(expect["error"])
        return
    opened = open_note(data, verifiers)
    assert [s.key for s in opened.verified] == expect["verified"]
    assert [s.key for s in opened.unverified] == expect["unverified"]
    assert opened.text.encode("utf-8") == data[: data.rindex(b"\n\n") + 1]


@pytest.mark.parametrize("case", GOLANG["vkeys"], ids=lambda c: c["vkey"][:40])
def test_verifier_key_strings(case: dict[str, Any]) -> None:
    if case["valid"] is None:
        # Policy choice (documented in note.py): C2SP says lowercase hex, so refuse.
        with pytest.raises(NoteError) as failure:
            verifier_from_key(case["vkey"])
        assert failure.value.reason == "bad-verifier-key"
        return
    if not case["valid"]:
        with pytest.raises(NoteError):
            verifier_from_key(case["vkey"])
        return
    verifier = verifier_from_key(case["vkey"])
    assert verifier.name == case["name"]
    assert f"{verifier.key_id:08x}" == case["key_id"]
    key = VerifierKey.parse(case["vkey"])
    assert key.type == case["type"]
    assert str(key) == case["vkey"]  # formatting is the exact inverse
    if "pubkey_hex" in case:
        assert key.public_key.hex() == case["pubkey_hex"]


def test_c2sp_example_key_verifies_its_message() -> None:
    """signed-note.md: example.com/foo's key verifies "This is an example message.\\n"."""
    case = next(k for k in GOLANG["vkeys"] if k["name"] == "example.com/foo")
    key = VerifierKey.parse(case["vkey"])
    expected = hashlib.sha256(b"example.com/foo\n\x01" + key.public_key).digest()[:4]
    assert compute_key_id("example.com/foo", b"\x01" + key.public_key) == int.from_bytes(
        expected, "big"
    )


def test_key_id_is_sha256_of_name_newline_type_key() -> None:
    signer = Ed25519NoteSigner.generate("protocolo/dev/ledger/0")
    public = signer.verifier.key.public_key
    digest = hashlib.sha256(b"protocolo/dev/ledger/0\n\x01" + public).digest()
    assert signer.key_id == int.from_bytes(digest[:4], "big")


def test_generated_keys_round_trip_and_sign() -> None:
    signer = Ed25519NoteSigner.generate("example.com/log")
    again = Ed25519NoteSigner.parse(signer.private_key_string())
    assert again.key_id == signer.key_id
    vkey = str(signer.verifier)
    note = sign_note("hello\n", [again])
    opened = open_note(note, [verifier_from_key(vkey)])
    assert opened.text == "hello\n"
    assert "PRIVATE" not in repr(signer)


def test_wrong_length_key_with_matching_id_is_refused() -> None:
    raw = b"\x01" + bytes(31)
    vkey = f"short+{compute_key_id('short', raw):08x}+{base64.b64encode(raw).decode()}"
    with pytest.raises(NoteError) as failure:
        verifier_from_key(vkey)
    assert failure.value.reason == "bad-verifier-key"


def test_signer_key_with_wrong_id_or_type_is_refused() -> None:
    good = Ed25519NoteSigner.parse(GOLANG["test_signer_key"]).private_key_string()
    bad_id = good.replace("+c74f20a3+", "+c74f20a4+")
    for bad in (bad_id, good.replace("PRIVATE+KEY", "PRIVATE+KEX"), "PRIVATE+KEY+x+00000000+AQ=="):
        with pytest.raises(NoteError) as failure:
            Ed25519NoteSigner.parse(bad)
        assert failure.value.reason == "bad-signer-key"


def _signed(text: str = "text\n") -> tuple[bytes, Ed25519NoteSigner]:
    signer = Ed25519NoteSigner.parse(GOLANG["test_signer_key"])
    return sign_note(text, [signer]), signer


def test_separator_is_the_last_blank_line() -> None:
    data, signer = _signed("a\n\nb\n")
    opened = open_note(data, [signer.verifier])
    assert opened.text == "a\n\nb\n"


def test_at_least_sixteen_distinct_signatures_are_accepted_and_over_a_hundred_refused() -> None:
    signers = [Ed25519NoteSigner.generate(f"witness{i}.example") for i in range(16)]
    data = sign_note("text\n", signers)
    opened = open_note(data, [s.verifier for s in signers])
    assert len(opened.verified) == 16
    many = [NoteSignature(f"w{i}", i, b"\x00" * 64) for i in range(MAX_SIGNATURES)]
    body = data + "".join(s.line() for s in many).encode()
    with pytest.raises(NoteError) as failure:
        parse_note(body)
    assert failure.value.reason == "malformed-note"


def test_ascii_del_and_other_controls_are_malformed() -> None:
    data, signer = _signed()
    for bad in (b"te\x7fxt\n", b"te\ttxt\n", b"te\x00xt\n"):
        with pytest.raises(NoteError) as failure:
            open_note(bad + data[len(b"text\n") :], [signer.verifier])
        assert failure.value.reason == "malformed-note"


def test_signature_lines_need_canonical_base64_and_an_em_dash() -> None:
    data, signer = _signed()
    text, line = data.split(b"\n\n")
    for bad_line in (
        line.replace("\u2014".encode(), b"-"),
        line.rstrip(b"\n").replace(b"=", b"") + b"\n",  # unpadded
        line.replace(b" ", b"  ", 1),
    ):
        with pytest.raises(NoteError) as failure:
            open_note(text + b"\n\n" + bad_line, [signer.verifier])
        assert failure.value.reason == "malformed-note"


def test_sign_refuses_text_without_final_newline_and_replaces_own_line() -> None:
    signer = Ed25519NoteSigner.generate("log.example")
    with pytest.raises(NoteError):
        sign_note("no newline", [signer])
    first = parse_note(sign_note("t\n", [signer]))
    other = NoteSignature("other.example", 7, b"\x01" * 64)
    again = sign_note("t\n", [signer], keep=[*first.signatures, other])
    assert [s.name for s in parse_note(again).signatures] == ["other.example", "log.example"]


def test_ed25519_verifier_refuses_wrong_length_signature() -> None:
    signer = Ed25519NoteSigner.generate("log.example")
    sig = signer.sign(b"t\n")
    verifier: Ed25519NoteVerifier = signer.verifier
    assert verifier.verify(b"t\n", sig)
    assert not verifier.verify(b"t\n", sig + b"\x00")
    assert not verifier.verify(b"t\n", sig[:-1])
