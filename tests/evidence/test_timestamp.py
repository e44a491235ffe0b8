"""RFC 3161 timestamps: the public vectors, a real local TSA, and what must be refused.

Vectors are read from ``tests/evidence/vectors/rfc3161`` (:mod:`evidence_vectors`; override
with ``PROTOCOLO_EVIDENCE_VECTORS``); a missing folder fails the run. The live tests use
``local_tsa.LocalTsa`` (OpenSSL ``ts -reply`` behind an HTTP server on 127.0.0.1) and check
its tokens with ``openssl ts -verify`` as an independent oracle.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import evidence_vectors
import pytest
from cryptography import x509
from local_tsa import LocalTsa, fixed_reply_server
from rfc3161_client import TimestampRequestBuilder, decode_timestamp_response

from protocolo.evidence.timestamp import (
    Reason,
    TimestampError,
    TimestampRequestError,
    TimestampVerificationError,
    TsaTrust,
    load_certificates,
    request_timestamp,
    sort_certificate_set,
    verify_timestamp,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
NOTE = b"protocolo/demo/protocolo.ledger/0\n42\nq6xbQmLvUo2dKF9CqNw2xWmKk6aPZtGJ6Vb1UhV6tBQ=\n"
"""Stands for a checkpoint body: the bytes stamped are exactly these."""


def _vectors_dir() -> Path:
    override = os.environ.get("PROTOCOLO_EVIDENCE_VECTORS")
    base = Path(override) if override else evidence_vectors.VECTORS
    folder = base / "rfc3161"
    if not (folder / "expected.json").is_file():
        pytest.fail(
            f"RFC 3161 vectors not found at {folder} (set PROTOCOLO_EVIDENCE_VECTORS to the "
            "evidence-vectors folder)",
            pytrace=False,
        )
    return folder


VECTORS = _vectors_dir()
EXPECTED: dict[str, Any] = json.loads((VECTORS / "expected.json").read_text())
FIXTURES = VECTORS / "rfc3161-client-fixtures"
LOCAL = VECTORS / "local-openssl"

# rfc3161-client's recorded rejection text → the reason our verifier must give.
RECORDED_REASONS = {
    "Nonce mismatch": Reason.NONCE_MISMATCH,
    "Mismatch between messages": Reason.MESSAGE_MISMATCH,
    "Error while verifying certificates": Reason.SIGNATURE_OR_CHAIN,
    "The name provided in the opts": Reason.TSA_CERTIFICATE,
}


def _recorded_reason(outcome: str) -> Reason:
    text = outcome.removeprefix("REJECT: ")
    return next(r for prefix, r in RECORDED_REASONS.items() if text.startswith(prefix))


# ------------------------------------------------------------------------- public vectors


@pytest.mark.parametrize("case", EXPECTED["fixtures"], ids=lambda c: c["desc"])
def test_rfc3161_client_fixture(case: dict[str, Any]) -> None:
    token = (FIXTURES / case["tsr"]).read_bytes()
    folder = (FIXTURES / case["tsr"]).parent
    # sigstore.mock's message is the binary file `payload` (message_utf8 is lossy there).
    payload = folder / "payload"
    message = payload.read_bytes() if payload.exists() else case["message_utf8"].encode()
    trust = TsaTrust.from_chain(
        (FIXTURES / case["chain"]).read_bytes(), pin_tsa=case["pin_tsa_cert"]
    )
    if case["common_name"]:
        trust = TsaTrust(
            roots=trust.roots,
            intermediates=trust.intermediates,
            tsa_certificate=trust.tsa_certificate,
            tsa_name=case["common_name"],
        )
    request = (FIXTURES / case["request"]).read_bytes() if case["request"] else None
    outcome: str = case["rfc3161_client_1_0_9"]

    if outcome == "ok":
        verified = verify_timestamp(token, message, trust, request_der=request)
        assert verified.gen_time == dt.datetime.fromisoformat(case["gen_time"])
        assert verified.policy == case["policy"]
        assert verified.nonce == case["nonce"]
        assert (
            verified.hash_alg
            == {
                "2.16.840.1.101.3.4.2.1": "sha256",
                "2.16.840.1.101.3.4.2.2": "sha384",
                "2.16.840.1.101.3.4.2.3": "sha512",
            }[case["hash_oid"]]
        )
        assert verified.tsa_name  # the signer, identified by SignerInfo
    else:
        with pytest.raises(TimestampVerificationError) as caught:
            verify_timestamp(token, message, trust, request_der=request)
        assert caught.value.reason == _recorded_reason(outcome)


def _local_trust() -> TsaTrust:
    return TsaTrust.from_pem(
        tsa_pem=(LOCAL / "good-tsa.pem").read_bytes(),
        root_pem=(LOCAL / "good-root.pem").read_bytes(),
    )


@pytest.mark.parametrize("case", EXPECTED["local_openssl"], ids=lambda c: c["tsr"])
def test_local_openssl_vector_agrees_with_openssl(case: dict[str, Any]) -> None:
    """Our verdict equals `openssl ts -verify`'s recorded one, including the unsorted set."""
    token = (LOCAL / case["tsr"]).read_bytes()
    data = (LOCAL / "data.txt").read_bytes()
    request = (LOCAL / "req.tsq").read_bytes()
    if case["openssl_3_0_ts_verify_vs_good_root"] == "Verification: OK":
        verified = verify_timestamp(token, data, _local_trust(), request_der=request)
        assert verified.tsa_name == "CN=good Test TSA,O=good"
        assert verified.policy == "1.3.6.1.4.1.99999.1"
    else:
        with pytest.raises(TimestampVerificationError) as caught:
            verify_timestamp(token, data, _local_trust(), request_der=request)
        assert caught.value.reason == Reason.SIGNATURE_OR_CHAIN


def test_sorting_openssl_certificate_set_reproduces_the_saved_sorted_token() -> None:
    unsorted = (LOCAL / "good-with-chain-unsorted-set.tsr").read_bytes()
    saved_sorted = (LOCAL / "good-with-chain-sorted-set.tsr").read_bytes()
    with pytest.raises(ValueError, match="InvalidSetOrdering"):
        decode_timestamp_response(unsorted)  # why the workaround exists
    assert sort_certificate_set(unsorted) == saved_sorted
    assert sort_certificate_set(saved_sorted) is saved_sorted


def test_one_der_root_loads_like_pem() -> None:
    (root,) = load_certificates((FIXTURES / "identrust/ts_chain.pem").read_bytes(), what="root")
    assert isinstance(root, x509.Certificate)


# ------------------------------------------------------------------------- local TSA


@pytest.fixture(scope="module")
def tsa(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalTsa]:
    with LocalTsa(tmp_path_factory.mktemp("tsa")) as running:
        yield running


def _openssl_verify(token: bytes, data: bytes, tsa: LocalTsa, tmp_path: Path, *extra: str) -> str:
    (tmp_path / "note.txt").write_bytes(data)
    (tmp_path / "token.tsr").write_bytes(token)
    untrusted = tmp_path / "untrusted.pem"
    untrusted.write_bytes(tsa.tsa_pem_path.read_bytes() + tsa.intermediates_pem_path.read_bytes())
    result = subprocess.run(
        ["openssl", "ts", "-verify", "-data", str(tmp_path / "note.txt"),
         "-in", str(tmp_path / "token.tsr"), "-CAfile", str(tsa.root_pem_path),
         "-untrusted", str(untrusted), *extra],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    return result.stdout.strip()


def test_round_trip_through_a_real_tsa(tsa: LocalTsa, tmp_path: Path) -> None:
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    token = request_timestamp(tsa.url, NOTE, timeout=10)
    after = dt.datetime.now(dt.UTC)

    verified = verify_timestamp(token.der, NOTE, tsa.trust(), request_der=token.request_der)

    assert before <= verified.gen_time <= after
    assert verified.gen_time == token.gen_time
    assert verified.nonce == token.nonce
    assert verified.policy == tsa.policy
    assert verified.hash_alg == "sha256"
    assert verified.tsa_name == tsa.tsa_certificate.subject.rfc4514_string()
    assert _openssl_verify(token.der, NOTE, tsa, tmp_path) == "Verification: OK"
    # The same check from PEM files, as a verifier given the files would build it.
    from_files = TsaTrust.from_pem(
        tsa_pem=tsa.tsa_pem_path.read_bytes(), root_pem=tsa.root_pem_path.read_bytes()
    )
    assert verify_timestamp(token.der, NOTE, from_files) == verified


def test_bare_timestamp_token_verifies_like_the_reply(tsa: LocalTsa) -> None:
    token = request_timestamp(tsa.url, NOTE, timeout=10)
    bare = decode_timestamp_response(token.der).time_stamp_token()
    assert verify_timestamp(bare, NOTE, tsa.trust()) == verify_timestamp(
        token.der, NOTE, tsa.trust()
    )


def test_chain_in_reply_is_stored_sorted_and_verifies(tmp_path: Path) -> None:
    with LocalTsa(tmp_path / "tsa", intermediate=True, chain=True) as tsa:
        query = TimestampRequestBuilder().data(NOTE).build().as_bytes()
        with pytest.raises(ValueError, match="InvalidSetOrdering"):
            decode_timestamp_response(tsa.reply(query))  # OpenSSL's own output, unsorted

        token = request_timestamp(tsa.url, NOTE, timeout=10)

        assert len(decode_timestamp_response(token.der).signed_data.certificates) == 3
        verified = verify_timestamp(token.der, NOTE, tsa.trust(), request_der=token.request_der)
        assert verified.tsa_name == tsa.tsa_certificate.subject.rfc4514_string()
        assert _openssl_verify(token.der, NOTE, tsa, tmp_path) == "Verification: OK"


def test_wrong_message_is_refused(tsa: LocalTsa) -> None:
    token = request_timestamp(tsa.url, NOTE, timeout=10)
    with pytest.raises(TimestampVerificationError) as caught:
        verify_timestamp(token.der, NOTE + b" ", tsa.trust())
    assert caught.value.reason == Reason.MESSAGE_MISMATCH
    with pytest.raises(TimestampVerificationError) as caught:
        verify_timestamp(token.der, NOTE + b" ", tsa.trust(), request_der=token.request_der)
    assert caught.value.reason == Reason.MESSAGE_MISMATCH


def test_foreign_root_is_refused(tsa: LocalTsa, tmp_path: Path) -> None:
    other = LocalTsa(tmp_path / "other", organisation="other")
    token = request_timestamp(tsa.url, NOTE, timeout=10)
    pinned_tsa_foreign_root = TsaTrust(roots=(other.root,), tsa_certificate=tsa.tsa_certificate)
    unpinned_foreign_root = TsaTrust(roots=(other.root,))
    for trust in (pinned_tsa_foreign_root, unpinned_foreign_root):
        with pytest.raises(TimestampVerificationError) as caught:
            verify_timestamp(token.der, NOTE, trust)
        assert caught.value.reason == Reason.SIGNATURE_OR_CHAIN


@pytest.mark.parametrize(
    ("impostor", "options"),
    [
        ("evil TSA under its own root", {"organisation": "evil"}),
        ("same names as ours, other keys", {"organisation": "good"}),
        ("self-signed TSA certificate", {"organisation": "good", "self_signed": True}),
        ("evil TSA embedding its CA chain", {"organisation": "evil", "chain": True}),
    ],
)
def test_token_from_another_tsa_is_refused(
    tsa: LocalTsa, tmp_path: Path, impostor: str, options: dict[str, Any]
) -> None:
    with LocalTsa(tmp_path / "impostor", **options) as evil:
        token = request_timestamp(evil.url, NOTE, timeout=10)
        assert verify_timestamp(token.der, NOTE, evil.trust())  # a valid token, for its own PKI
    for trust in (tsa.trust(), TsaTrust(roots=(tsa.root,))):
        with pytest.raises(TimestampVerificationError) as caught:
            verify_timestamp(token.der, NOTE, trust)
        assert caught.value.reason in (Reason.SIGNATURE_OR_CHAIN, Reason.TSA_CERTIFICATE), impostor


def test_tsa_certificate_expired_today_but_valid_at_gen_time_is_accepted(tmp_path: Path) -> None:
    expires = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(seconds=3)
    with LocalTsa(tmp_path / "tsa", tsa_not_after=expires) as tsa:
        token = request_timestamp(tsa.url, NOTE, timeout=10)
    while dt.datetime.now(dt.UTC) <= expires + dt.timedelta(seconds=1):
        time.sleep(0.25)  # bounded: the certificate expires 3 s after it was made
    assert tsa.tsa_certificate.not_valid_after_utc < dt.datetime.now(dt.UTC)

    verified = verify_timestamp(token.der, NOTE, tsa.trust())

    assert verified.gen_time <= expires
    # OpenSSL agrees once told to judge the chain at genTime instead of now.
    at_gen_time = str(int(verified.gen_time.timestamp()))
    assert _openssl_verify(token.der, NOTE, tsa, tmp_path) == "Verification: FAILED"
    assert _openssl_verify(token.der, NOTE, tsa, tmp_path, "-attime", at_gen_time) == (
        "Verification: OK"
    )


def test_tsa_certificate_not_yet_valid_at_gen_time_is_refused(tmp_path: Path) -> None:
    tomorrow = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    with LocalTsa(tmp_path / "tsa", tsa_not_before=tomorrow) as tsa:
        token = request_timestamp(tsa.url, NOTE, timeout=10)
        with pytest.raises(TimestampVerificationError) as caught:
            verify_timestamp(token.der, NOTE, tsa.trust())
    assert caught.value.reason == Reason.SIGNATURE_OR_CHAIN


def test_nonce_of_another_request_is_refused(tsa: LocalTsa) -> None:
    first = request_timestamp(tsa.url, NOTE, timeout=10)
    second = request_timestamp(tsa.url, NOTE, timeout=10)
    assert first.nonce != second.nonce
    with pytest.raises(TimestampVerificationError) as caught:
        verify_timestamp(first.der, NOTE, tsa.trust(), request_der=second.request_der)
    assert caught.value.reason == Reason.NONCE_MISMATCH


def test_tsa_refusal_is_reported_with_its_reason(tmp_path: Path) -> None:
    with LocalTsa(tmp_path / "tsa", digests="sha512") as picky:  # refuses our SHA-256 query
        url = picky.url
        with pytest.raises(TimestampRequestError) as caught:
            request_timestamp(url, NOTE, timeout=10)
    assert caught.value.reason == Reason.NOT_GRANTED
    assert "rejection" in str(caught.value) and "badAlg" in str(caught.value)
    assert url in str(caught.value)


# ------------------------------------------------------------------------- TSA failures


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_tsa_that_is_down_gives_a_clear_error() -> None:
    url = f"http://127.0.0.1:{_free_port()}/tsa"
    with pytest.raises(TimestampRequestError) as caught:
        request_timestamp(url, NOTE, timeout=5)
    assert caught.value.reason == Reason.TSA_UNREACHABLE
    assert url in str(caught.value)


def test_tsa_that_never_answers_times_out() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)  # accepts the connection in the kernel, never replies
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/tsa"
        with pytest.raises(TimestampRequestError) as caught:
            request_timestamp(url, NOTE, timeout=0.5)
    assert caught.value.reason == Reason.TSA_TIMEOUT
    assert url in str(caught.value)


@pytest.mark.parametrize(
    ("status", "content_type", "body", "reason", "said"),
    [
        (500, "text/plain", b"internal error", Reason.TSA_HTTP_STATUS, "HTTP 500"),
        (200, "text/html", b"<html>login</html>", Reason.NOT_A_TIMESTAMP_REPLY, "text/html"),
        (
            200,
            "application/timestamp-reply",
            os.urandom(300),
            Reason.NOT_A_TIMESTAMP_REPLY,
            "not a",
        ),
        (200, "application/timestamp-reply", b"", Reason.NOT_A_TIMESTAMP_REPLY, "not a"),
    ],
    ids=["http-500", "html-page", "garbage", "empty"],
)
def test_broken_tsa_reply_gives_a_clear_error(
    status: int, content_type: str, body: bytes, reason: Reason, said: str
) -> None:
    with (
        fixed_reply_server(status, content_type, body) as url,
        pytest.raises(TimestampRequestError) as caught,
    ):
        request_timestamp(url, NOTE, timeout=5)
    assert caught.value.reason == reason
    assert url in str(caught.value) and said in str(caught.value)


def test_replayed_token_is_not_accepted_as_the_reply() -> None:
    replayed = (LOCAL / "good-signer-only.tsr").read_bytes()  # granted, real, for other data
    with (
        fixed_reply_server(200, "application/timestamp-reply", replayed) as url,
        pytest.raises(TimestampRequestError) as caught,
    ):
        request_timestamp(url, NOTE, timeout=5)
    assert caught.value.reason == Reason.REPLY_MISMATCH


@pytest.mark.parametrize(
    ("url", "data", "timeout", "reason"),
    [
        ("ftp://127.0.0.1/tsa", NOTE, 5.0, Reason.BAD_URL),
        ("not a url", NOTE, 5.0, Reason.BAD_URL),
        ("http://127.0.0.1:9/tsa", b"", 5.0, Reason.BAD_REQUEST),
        ("http://127.0.0.1:9/tsa", NOTE, 0.0, Reason.BAD_REQUEST),
    ],
)
def test_bad_request_arguments_are_named(
    url: str, data: bytes, timeout: float, reason: Reason
) -> None:
    with pytest.raises(TimestampRequestError) as caught:
        request_timestamp(url, data, timeout=timeout)
    assert caught.value.reason == reason


def test_bad_trust_material_is_named() -> None:
    with pytest.raises(TimestampError) as caught:
        TsaTrust.from_pem(tsa_pem=b"-----BEGIN CERTIFICATE-----\nAAAA\n", root_pem=b"x")
    assert caught.value.reason == Reason.BAD_TRUST and "TSA certificate" in str(caught.value)
    with pytest.raises(TimestampError) as caught:
        TsaTrust(roots=())
    assert caught.value.reason == Reason.BAD_TRUST


# ------------------------------------------------------------------------- tampering


@pytest.mark.filterwarnings("ignore:Parsed a serial number:UserWarning")
@pytest.mark.parametrize("chain", [False, True], ids=["signer-only", "with-chain"])
def test_every_flipped_byte_of_a_token_is_refused_with_a_reason(
    tmp_path: Path, chain: bool
) -> None:
    with LocalTsa(tmp_path / "tsa", intermediate=chain, chain=chain) as tsa:
        token = request_timestamp(tsa.url, NOTE, timeout=10)
    trust = tsa.trust()
    assert verify_timestamp(token.der, NOTE, trust, request_der=token.request_der)
    reasons: set[Reason] = set()
    accepted: list[tuple[int, int]] = []
    for position in range(len(token.der)):
        for mask in (0x01, 0x80):
            tampered = bytearray(token.der)
            tampered[position] ^= mask
            try:
                verify_timestamp(bytes(tampered), NOTE, trust, request_der=token.request_der)
            except TimestampVerificationError as error:
                reasons.add(error.reason)
            else:
                accepted.append((position, mask))
    assert accepted == []
    assert Reason.MALFORMED in reasons and Reason.SIGNATURE_OR_CHAIN in reasons
