"""RFC 3161 timestamps of checkpoints: ask a Time-Stamp Authority, verify its token offline.

What is stamped is given by the caller as bytes (for Protocolo: the exact text of a signed
checkpoint note). Two operations:

``request_timestamp(url, data, timeout)``
    Builds a ``TimeStampReq`` over SHA-256(data) with a random nonce and ``certReq`` set, POSTs
    it as ``application/timestamp-query`` (RFC 3161 §3.4) and returns the TSA's
    ``TimeStampResp`` as DER in a :class:`TimestampToken`, after checking that the reply is
    granted and answers *this* request (same nonce, same imprint). Every failure is a
    :class:`TimestampRequestError` naming the URL and what went wrong.

``verify_timestamp(token_der, data, trust, request_der=None)``
    Offline: no network, no clock other than the token's own ``genTime``. The signature and
    chain are checked against a PINNED trust (:class:`TsaTrust`: the TSA certificate, its
    intermediates, the root) with validity evaluated at ``genTime``, the TSA certificate's
    extended key usage must be critical and exactly ``id-kp-timeStamping`` (RFC 3161 §2.3), the
    imprint must be the hash of ``data``, and, when the request is known, nonce and policy must
    match it. Failures are :class:`TimestampVerificationError` with a :class:`Reason`.

The CMS and certificate work is done by ``rfc3161-client`` (Trail of Bits; OpenSSL underneath).
Two gaps are covered here with a few lines of stdlib DER walking:

* OpenSSL's ``ts -reply -chain`` writes the CMS ``certificates`` SET OF in insertion order, not
  in DER order, and ``rfc3161-client``'s strict DER parser refuses such tokens
  (``InvalidSetOrdering``) although ``openssl ts -verify`` accepts them. The certificate set is
  not covered by any signature, so :func:`sort_certificate_set` re-encodes it sorted (X.690
  §11.6); requested tokens are stored sorted, and the verifier sorts before parsing.
* The reply's ``PKIStatusInfo`` is read here, so a rejection is reported with its status text
  and ``failInfo`` instead of a parse error.

This module is part of the offline verifier: it imports only the standard library,
``cryptography`` and ``rfc3161_client``.
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import http.client
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID
from rfc3161_client import (
    HashAlgorithm,
    TimestampRequestBuilder,
    TimeStampResponse,
    VerificationError,
    VerifierBuilder,
    decode_timestamp_response,
)

__all__ = [
    "Reason",
    "TimestampError",
    "TimestampRequestError",
    "TimestampToken",
    "TimestampVerificationError",
    "TsaTrust",
    "VerifiedTimestamp",
    "load_certificates",
    "request_timestamp",
    "sort_certificate_set",
    "verify_timestamp",
]

QUERY_MEDIA_TYPE = "application/timestamp-query"
REPLY_MEDIA_TYPES = frozenset({"application/timestamp-reply", "application/timestamp-response"})
"""RFC 3161 §3.4 names ``application/timestamp-reply``; a few servers send ``-response``."""

MAX_REPLY_BYTES = 1 << 20
"""A timestamp reply is a few KiB; anything past this is not one."""

HASH_NAMES = {
    "2.16.840.1.101.3.4.2.1": "sha256",
    "2.16.840.1.101.3.4.2.2": "sha384",
    "2.16.840.1.101.3.4.2.3": "sha512",
}
"""Imprint hash algorithms accepted (those rfc3161-client verifies)."""

_PKI_STATUS = {
    0: "granted",
    1: "grantedWithMods",
    2: "rejection",
    3: "waiting",
    4: "revocationWarning",
    5: "revocationNotification",
}
_FAIL_INFO = {
    0: "badAlg",
    2: "badRequest",
    5: "badDataFormat",
    14: "timeNotAvailable",
    15: "unacceptedPolicy",
    16: "unacceptedExtension",
    17: "addInfoNotAvailable",
    25: "systemFailure",
}


class Reason(enum.StrEnum):
    """Why a timestamp could not be obtained or did not verify (stable, machine-readable)."""

    # obtaining a token
    BAD_URL = "bad-url"
    BAD_REQUEST = "bad-request"
    TSA_UNREACHABLE = "tsa-unreachable"
    TSA_TIMEOUT = "tsa-timeout"
    TSA_HTTP_STATUS = "tsa-http-status"
    NOT_A_TIMESTAMP_REPLY = "not-a-timestamp-reply"
    REPLY_MISMATCH = "reply-mismatch"
    # both
    NOT_GRANTED = "not-granted"
    # verifying a token
    MALFORMED = "malformed"
    BAD_TRUST = "bad-trust"
    UNSUPPORTED_HASH = "unsupported-hash"
    MESSAGE_MISMATCH = "message-mismatch"
    NONCE_MISMATCH = "nonce-mismatch"
    POLICY_MISMATCH = "policy-mismatch"
    SIGNATURE_OR_CHAIN = "signature-or-chain"
    TSA_CERTIFICATE = "tsa-certificate"
    TSA_EKU = "tsa-eku"
    VERIFICATION_FAILED = "verification-failed"


class TimestampError(Exception):
    """Base of every timestamp failure; ``reason`` says which rule, ``detail`` says how."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class TimestampRequestError(TimestampError):
    """A TSA could not give us a usable token; ``url`` is the TSA that was asked."""

    def __init__(self, url: str, reason: Reason, detail: str) -> None:
        super().__init__(reason, f"TSA {url}: {detail}")
        self.url = url


class TimestampVerificationError(TimestampError):
    """A token does not prove that ``data`` existed at its ``genTime`` under the pinned trust."""


@dataclass(frozen=True)
class TimestampToken:
    """A granted reply from a TSA, as stored beside the checkpoint it stamps.

    ``der`` is the whole DER ``TimeStampResp`` (a ``.tsr`` file: ``openssl ts -verify -in``
    reads it), with its certificate set in DER order. ``request_der`` is the query that was
    sent; keeping it lets a verifier check the nonce.
    """

    der: bytes
    request_der: bytes
    nonce: int
    gen_time: datetime
    tsa_url: str


@dataclass(frozen=True)
class VerifiedTimestamp:
    """What a verified token asserts: ``data`` existed at ``gen_time`` (UTC) per ``tsa_name``."""

    gen_time: datetime
    policy: str
    serial: int
    tsa_name: str
    hash_alg: str
    nonce: int | None


@dataclass(frozen=True)
class TsaTrust:
    """The pinned trust a token is verified against; nothing is fetched or taken from the token.

    ``roots`` are the trust anchors. ``tsa_certificate`` pins the signing certificate (strongly
    recommended: EVIDENCE.md §4.2); ``intermediates`` complete the chain when the token does not
    carry them; ``tsa_name`` optionally pins the TSA subject (RFC 4514 string).
    """

    roots: tuple[x509.Certificate, ...]
    tsa_certificate: x509.Certificate | None = None
    intermediates: tuple[x509.Certificate, ...] = ()
    tsa_name: str | None = None

    def __post_init__(self) -> None:
        if not self.roots:
            raise TimestampError(Reason.BAD_TRUST, "at least one root certificate is required")

    @classmethod
    def from_pem(
        cls,
        *,
        tsa_pem: bytes,
        root_pem: bytes,
        intermediates_pem: bytes = b"",
        tsa_name: str | None = None,
    ) -> TsaTrust:
        """Trust built from the TSA certificate, the root(s) and any intermediates, as PEM."""
        tsa = load_certificates(tsa_pem, what="TSA certificate")
        if len(tsa) != 1:
            raise TimestampError(
                Reason.BAD_TRUST, f"TSA certificate: expected exactly 1 certificate, got {len(tsa)}"
            )
        intermediates = (
            load_certificates(intermediates_pem, what="intermediates") if intermediates_pem else ()
        )
        return cls(
            roots=load_certificates(root_pem, what="root"),
            tsa_certificate=tsa[0],
            intermediates=intermediates,
            tsa_name=tsa_name,
        )

    @classmethod
    def from_chain(cls, chain: bytes, *, pin_tsa: bool = True) -> TsaTrust:
        """Trust from one chain file ordered TSA certificate → intermediates → root.

        With ``pin_tsa=False`` the first certificate is taken as the TSA's and NOT used: the
        token must carry its own signing certificate, which must chain to the root (a
        one-certificate file is then just the root). Only for tokens whose TSA certificate is
        not known in advance.
        """
        certs = load_certificates(chain, what="chain")
        if not pin_tsa:
            return cls(roots=certs[-1:], intermediates=certs[1:-1])
        if len(certs) < 2:
            raise TimestampError(
                Reason.BAD_TRUST,
                "chain: a pinned chain needs the TSA certificate first and the root last",
            )
        return cls(roots=certs[-1:], tsa_certificate=certs[0], intermediates=certs[1:-1])


def load_certificates(data: bytes, *, what: str) -> tuple[x509.Certificate, ...]:
    """Certificates from PEM (one or more) or from one DER certificate."""
    try:
        if b"-----BEGIN" in data:
            return tuple(x509.load_pem_x509_certificates(data))
        return (x509.load_der_x509_certificate(data),)
    except ValueError as error:
        raise TimestampError(Reason.BAD_TRUST, f"{what}: not a certificate ({error})") from None


# --------------------------------------------------------------------------- obtaining a token


def request_timestamp(url: str, data: bytes, timeout: float = 10.0) -> TimestampToken:
    """Ask the TSA at ``url`` to timestamp SHA-256(``data``); at most ``timeout`` s per step."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TimestampRequestError(url, Reason.BAD_URL, "the TSA URL must be http:// or https://")
    if not timeout > 0:
        raise TimestampRequestError(url, Reason.BAD_REQUEST, f"timeout must be > 0, got {timeout}")
    if not data:
        raise TimestampRequestError(url, Reason.BAD_REQUEST, "nothing to timestamp (empty data)")
    request = (
        TimestampRequestBuilder()
        .data(data)
        .hash_algorithm(HashAlgorithm.SHA256)
        .nonce(nonce=True)
        .cert_request(cert_request=True)
        .build()
    )
    request_der = request.as_bytes()
    reply = _post_query(url, request_der, timeout)
    der, answer = _granted_reply(url, reply)
    if request.nonce is None or answer.nonce != request.nonce:
        raise TimestampRequestError(
            url, Reason.REPLY_MISMATCH, "the reply's nonce is not the one sent (a replayed reply?)"
        )
    if answer.hash_oid != _SHA256 or answer.digest != hashlib.sha256(data).digest():
        raise TimestampRequestError(
            url, Reason.REPLY_MISMATCH, "the reply stamps another digest than the one sent"
        )
    return TimestampToken(
        der=der,
        request_der=request_der,
        nonce=request.nonce,
        gen_time=answer.gen_time,
        tsa_url=url,
    )


def _post_query(url: str, query: bytes, timeout: float) -> bytes:
    http_request = urllib.request.Request(
        url,
        data=query,
        method="POST",
        headers={"Content-Type": QUERY_MEDIA_TYPE, "Accept": "application/timestamp-reply"},
    )
    try:
        with urllib.request.urlopen(http_request, timeout=timeout) as response:
            status: int = response.status
            content_type: str = response.headers.get_content_type()
            body: bytes = response.read(MAX_REPLY_BYTES + 1)
    except urllib.error.HTTPError as error:
        raise TimestampRequestError(
            url, Reason.TSA_HTTP_STATUS, f"answered HTTP {error.code} {error.reason}"
        ) from None
    except urllib.error.URLError as error:
        if isinstance(error.reason, TimeoutError):
            raise TimestampRequestError(
                url, Reason.TSA_TIMEOUT, f"no answer within {timeout} s"
            ) from None
        raise TimestampRequestError(
            url, Reason.TSA_UNREACHABLE, f"unreachable ({error.reason})"
        ) from None
    except TimeoutError:
        raise TimestampRequestError(
            url, Reason.TSA_TIMEOUT, f"no answer within {timeout} s"
        ) from None
    except http.client.HTTPException as error:
        raise TimestampRequestError(
            url, Reason.NOT_A_TIMESTAMP_REPLY, f"did not answer in HTTP ({error!r})"
        ) from None
    except OSError as error:
        raise TimestampRequestError(
            url, Reason.TSA_UNREACHABLE, f"connection failed ({error})"
        ) from None
    if status != 200:
        raise TimestampRequestError(url, Reason.TSA_HTTP_STATUS, f"answered HTTP {status}")
    if content_type not in REPLY_MEDIA_TYPES:
        raise TimestampRequestError(
            url,
            Reason.NOT_A_TIMESTAMP_REPLY,
            f"answered Content-Type {content_type}, expected application/timestamp-reply",
        )
    if len(body) > MAX_REPLY_BYTES:
        raise TimestampRequestError(
            url, Reason.NOT_A_TIMESTAMP_REPLY, f"reply larger than {MAX_REPLY_BYTES} bytes"
        )
    return body


class _Answer(NamedTuple):
    nonce: int | None
    hash_oid: str
    digest: bytes
    gen_time: datetime


def _granted_reply(url: str, reply: bytes) -> tuple[bytes, _Answer]:
    try:
        status = _read_status(reply)
    except _DerError as error:
        raise TimestampRequestError(
            url, Reason.NOT_A_TIMESTAMP_REPLY, f"the reply is not a TimeStampResp ({error})"
        ) from None
    if status.code != 0:
        raise TimestampRequestError(url, Reason.NOT_GRANTED, f"refused: {status}")
    try:
        der = sort_certificate_set(reply)
        tst_info = decode_timestamp_response(der).tst_info
        imprint = tst_info.message_imprint
        return der, _Answer(
            tst_info.nonce, imprint.hash_algorithm.dotted_string, imprint.message, tst_info.gen_time
        )
    except Exception as error:  # the parser's errors are not one type
        raise TimestampRequestError(
            url, Reason.NOT_A_TIMESTAMP_REPLY, f"the reply is not a valid timestamp ({error})"
        ) from None


# --------------------------------------------------------------------------- verifying a token

_LIBRARY_REASONS = (
    ("PKIStatus is not GRANTED", Reason.NOT_GRANTED),
    ("Nonce mismatch", Reason.NONCE_MISMATCH),
    ("Policy ID mismatch", Reason.POLICY_MISMATCH),
    ("Mismatch between messages", Reason.MESSAGE_MISMATCH),
    ("Error while verifying certificates", Reason.SIGNATURE_OR_CHAIN),
    ("EKU", Reason.TSA_EKU),
    ("Embedded certificate does not match", Reason.TSA_CERTIFICATE),
    ("certificate details does not match", Reason.TSA_CERTIFICATE),
    ("name provided in the opts", Reason.TSA_CERTIFICATE),
    ("No leaf certificate found", Reason.TSA_CERTIFICATE),
    ("Certificates neither found", Reason.TSA_CERTIFICATE),
    ("SignerInfo", Reason.MALFORMED),
)
"""rfc3161-client's error texts (1.0.x) → our reasons; anything else is VERIFICATION_FAILED."""


def verify_timestamp(
    token_der: bytes,
    data: bytes,
    trust: TsaTrust,
    *,
    request_der: bytes | None = None,
) -> VerifiedTimestamp:
    """Check offline that ``token_der`` proves ``data`` existed at its genTime.

    ``token_der`` is a DER ``TimeStampResp`` (``.tsr``) or a bare ``TimeStampToken``; when
    ``request_der`` (the ``TimeStampReq`` that was sent) is given, its nonce and policy must
    match the token's and its imprint must be the hash of ``data``.

    A malformed token is always a :class:`TimestampVerificationError`, never a crash:
    rfc3161-client's Rust core panics on some malformed certificates, and pyo3 raises
    that as ``PanicException``, a ``BaseException``.
    """
    try:
        return _verify_timestamp(token_der, data, trust, request_der=request_der)
    except (TimestampError, KeyboardInterrupt, SystemExit, GeneratorExit):
        raise
    except BaseException as error:  # noqa: BLE001 - see the docstring (pyo3 PanicException)
        raise TimestampVerificationError(
            Reason.MALFORMED, f"unreadable token: the parser failed ({type(error).__name__})"
        ) from None


def _verify_timestamp(
    token_der: bytes,
    data: bytes,
    trust: TsaTrust,
    *,
    request_der: bytes | None = None,
) -> VerifiedTimestamp:
    try:
        response_der = _as_response(token_der)
        status = _read_status(response_der)
    except _DerError as error:
        raise TimestampVerificationError(
            Reason.MALFORMED, f"not a timestamp token ({error})"
        ) from None
    if status.code != 0:
        raise TimestampVerificationError(Reason.NOT_GRANTED, f"the TSA did not grant it: {status}")
    try:
        _check_signed_data_profile(response_der)
        response = decode_timestamp_response(sort_certificate_set(response_der))
        tst_info = response.tst_info
        hash_oid = tst_info.message_imprint.hash_algorithm.dotted_string
    except Exception as error:  # the parser's errors are not one type; all mean "malformed"
        raise TimestampVerificationError(
            Reason.MALFORMED, f"not a timestamp token ({error})"
        ) from None
    hash_alg = HASH_NAMES.get(hash_oid)
    if hash_alg is None:
        raise TimestampVerificationError(
            Reason.UNSUPPORTED_HASH, f"imprint hash {hash_oid} is not SHA-256/384/512"
        )

    nonce: int | None = None
    policy: str | None = None
    if request_der is not None:
        try:
            sent = _read_request(request_der)
        except (ValueError, IndexError) as error:
            raise TimestampVerificationError(
                Reason.BAD_REQUEST, f"request: not a TimeStampReq ({error})"
            ) from None
        sent_hash = HASH_NAMES.get(sent.hash_oid)
        if sent_hash is None:
            raise TimestampVerificationError(
                Reason.UNSUPPORTED_HASH, f"request: imprint hash {sent.hash_oid} not supported"
            )
        if sent.digest != hashlib.new(sent_hash, data).digest():
            raise TimestampVerificationError(
                Reason.MESSAGE_MISMATCH, "the request was made for other data"
            )
        nonce, policy = sent.nonce, sent.policy

    verifier = VerifierBuilder(
        policy_id=x509.ObjectIdentifier(policy) if policy else None,
        tsa_certificate=trust.tsa_certificate,
        intermediates=list(trust.intermediates),
        roots=list(trust.roots),
        nonce=nonce,
        common_name=trust.tsa_name,
    ).build()
    try:
        verifier.verify_message(response, data)
    except VerificationError as error:
        text = str(error)
        reason = next(
            (r for fragment, r in _LIBRARY_REASONS if fragment in text), Reason.VERIFICATION_FAILED
        )
        raise TimestampVerificationError(reason, text[:300]) from None
    except Exception as error:  # e.g. an embedded certificate cryptography cannot load
        raise TimestampVerificationError(
            Reason.MALFORMED, f"unreadable content in the token ({error!r})"[:300]
        ) from None

    if trust.tsa_certificate is not None:
        pinned = {
            c.public_bytes(serialization.Encoding.DER)
            for c in (trust.tsa_certificate, *trust.intermediates, *trust.roots)
        }
        foreign = [c for c in response.signed_data.certificates if c not in pinned]
        if foreign:
            raise TimestampVerificationError(
                Reason.TSA_CERTIFICATE,
                f"the token carries {len(foreign)} certificate(s) outside the pinned chain",
            )
    signer = _signer_certificate(response, trust)
    try:
        eku = signer.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except (x509.ExtensionNotFound, ValueError):
        raise TimestampVerificationError(
            Reason.TSA_EKU, "the TSA certificate has no readable extended key usage"
        ) from None
    if list(eku) != [ExtendedKeyUsageOID.TIME_STAMPING]:
        raise TimestampVerificationError(
            Reason.TSA_EKU,
            "the TSA certificate's extended key usage must be timeStamping only (RFC 3161 §2.3)",
        )
    try:
        tsa_field = tst_info.name
    except Exception as error:  # a GeneralName form the parser does not support
        raise TimestampVerificationError(
            Reason.MALFORMED, f"unreadable TSTInfo tsa name ({error!r})"
        ) from None
    _check_tsa_name(tsa_field, signer)
    token_nonce = tst_info.nonce
    return VerifiedTimestamp(
        gen_time=tst_info.gen_time,
        policy=tst_info.policy.dotted_string,
        serial=tst_info.serial_number,
        tsa_name=signer.subject.rfc4514_string(),
        hash_alg=hash_alg,
        nonce=token_nonce if isinstance(token_nonce, int) else None,
    )


def _check_tsa_name(name: x509.GeneralName | None, signer: x509.Certificate) -> None:
    """RFC 3161 §2.4.2: the TSTInfo ``tsa`` field, if present, names the signing certificate."""
    if name is None:
        return
    names: list[x509.GeneralName] = [x509.DirectoryName(signer.subject)]
    with contextlib.suppress(x509.ExtensionNotFound):
        names += signer.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    if name not in names:
        raise TimestampVerificationError(
            Reason.TSA_CERTIFICATE,
            f"the token names its TSA {name.value!s} but is signed by "
            f"{signer.subject.rfc4514_string()}",
        )


def _signer_certificate(response: TimeStampResponse, trust: TsaTrust) -> x509.Certificate:
    """The certificate SignerInfo names (issuer + serial), never "the first in the bag"."""
    (signer_info,) = response.signed_data.signer_infos  # rfc3161-client checked: exactly one
    try:
        candidates = [x509.load_der_x509_certificate(c) for c in response.signed_data.certificates]
    except Exception as error:  # cryptography raises ValueError or InvalidVersion
        raise TimestampVerificationError(
            Reason.MALFORMED, f"unreadable certificate in the token ({error!r})"
        ) from None
    if trust.tsa_certificate is not None:
        candidates.append(trust.tsa_certificate)
    for cert in candidates:
        if cert.issuer == signer_info.issuer and cert.serial_number == signer_info.serial_number:
            return cert
    raise TimestampVerificationError(
        Reason.TSA_CERTIFICATE, "no certificate matches the SignerInfo"
    )


# --------------------------------------------------------------------------- minimal DER


class _DerError(ValueError):
    pass


class _Tlv(NamedTuple):
    tag: int
    start: int  # first byte of the tag
    body: int  # first byte of the contents
    end: int  # one past the last byte of the contents


def _tlv_at(buf: bytes, pos: int, limit: int) -> _Tlv:
    if pos + 2 > limit:
        raise _DerError("truncated")
    tag = buf[pos]
    if tag & 0x1F == 0x1F:
        raise _DerError("unexpected high tag number")
    first = buf[pos + 1]
    if first < 0x80:
        length, body = first, pos + 2
    else:
        count = first & 0x7F
        if count == 0 or count > 4 or pos + 2 + count > limit:
            raise _DerError("bad length")
        length = int.from_bytes(buf[pos + 2 : pos + 2 + count], "big")
        if length < 0x80 or buf[pos + 2] == 0:
            raise _DerError("length not in minimal DER form")
        body = pos + 2 + count
    if body + length > limit:
        raise _DerError("truncated")
    return _Tlv(tag, pos, body, body + length)


def _whole(buf: bytes, tag: int) -> _Tlv:
    node = _tlv_at(buf, 0, len(buf))
    if node.tag != tag:
        raise _DerError(f"expected tag 0x{tag:02x}, found 0x{node.tag:02x}")
    if node.end != len(buf):
        raise _DerError(f"{len(buf) - node.end} trailing bytes")
    return node


def _children(buf: bytes, parent: _Tlv) -> list[_Tlv]:
    out: list[_Tlv] = []
    pos = parent.body
    while pos < parent.end:
        child = _tlv_at(buf, pos, parent.end)
        out.append(child)
        pos = child.end
    return out


def _only_child(buf: bytes, parent: _Tlv, tag: int) -> _Tlv:
    kids = _children(buf, parent)
    if len(kids) != 1 or kids[0].tag != tag:
        raise _DerError(f"expected one element with tag 0x{tag:02x}")
    return kids[0]


def _encode(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        return bytes((tag, n)) + content
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((tag, 0x80 | len(size))) + size + content


def _raw(buf: bytes, node: _Tlv) -> bytes:
    return buf[node.start : node.end]


def _integer(buf: bytes, node: _Tlv) -> int:
    if node.tag != 0x02 or node.end == node.body:
        raise _DerError("expected an INTEGER")
    return int.from_bytes(buf[node.body : node.end], "big", signed=True)


def _oid(buf: bytes, node: _Tlv) -> str:
    if node.tag != 0x06 or node.end == node.body:
        raise _DerError("expected an OBJECT IDENTIFIER")
    arcs: list[int] = []
    value = 0
    for byte in buf[node.body : node.end]:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    if buf[node.end - 1] & 0x80:
        raise _DerError("truncated OBJECT IDENTIFIER")
    first = min(arcs[0] // 40, 2)
    return ".".join(str(a) for a in [first, arcs[0] - 40 * first, *arcs[1:]])


_GRANTED_STATUS = bytes.fromhex("3003020100")


def _as_response(der: bytes) -> bytes:
    """A TimeStampResp as is; a bare TimeStampToken (ContentInfo) wrapped as a granted reply."""
    outer = _whole(der, 0x30)
    kids = _children(der, outer)
    if not kids:
        raise _DerError("empty SEQUENCE")
    if kids[0].tag == 0x06:  # ContentInfo: contentType OID first
        return _encode(0x30, _GRANTED_STATUS + der)
    return der


class _Status(NamedTuple):
    code: int
    texts: tuple[str, ...]
    failures: tuple[str, ...]

    def __str__(self) -> str:
        name = _PKI_STATUS.get(self.code, f"unknown status {self.code}")
        parts = [name, *(f"failInfo {f}" for f in self.failures), *(repr(t) for t in self.texts)]
        return ", ".join(parts)


def _read_status(response_der: bytes) -> _Status:
    response = _whole(response_der, 0x30)
    kids = _children(response_der, response)
    if not kids or kids[0].tag != 0x30:
        raise _DerError("no PKIStatusInfo")
    fields = _children(response_der, kids[0])
    if not fields:
        raise _DerError("empty PKIStatusInfo")
    code = _integer(response_der, fields[0])
    texts: list[str] = []
    failures: list[str] = []
    for field in fields[1:]:
        if field.tag == 0x30:  # PKIFreeText
            for text in _children(response_der, field):
                texts.append(response_der[text.body : text.end].decode("utf-8", "replace"))
        elif field.tag == 0x03 and field.end > field.body:  # PKIFailureInfo
            bits = response_der[field.body + 1 : field.end]
            failures.extend(
                _FAIL_INFO.get(i, f"bit {i}")
                for i in range(len(bits) * 8)
                if bits[i // 8] & (0x80 >> (i % 8))
            )
    if code in (0, 1) and len(kids) != 2:
        raise _DerError("granted without a timeStampToken")
    return _Status(code, tuple(texts), tuple(failures))


def sort_certificate_set(response_der: bytes) -> bytes:
    """The same TimeStampResp with its CMS ``certificates`` SET OF in DER order (X.690 §11.6).

    The set is outside every signature, so this changes no meaning; it only makes OpenSSL's
    ``ts -reply -chain`` output acceptable to strict DER parsers. Already-sorted input and
    replies without certificates are returned unchanged (the same object).
    """
    response = _whole(response_der, 0x30)
    kids = _children(response_der, response)
    if len(kids) < 2:
        return response_der
    status, token, *rest = kids
    content_type, *explicit = _children(response_der, token)
    if len(explicit) != 1 or explicit[0].tag != 0xA0:
        raise _DerError("timeStampToken is not a ContentInfo")
    signed_data = _only_child(response_der, explicit[0], 0x30)
    fields = _children(response_der, signed_data)
    certificates = next((f for f in fields if f.tag == 0xA0), None)
    if certificates is None:
        return response_der
    members = [_raw(response_der, c) for c in _children(response_der, certificates)]
    ordered = sorted(members)
    if ordered == members:
        return response_der
    new_fields = b"".join(
        _encode(0xA0, b"".join(ordered)) if f is certificates else _raw(response_der, f)
        for f in fields
    )
    new_token = _encode(
        0x30, _raw(response_der, content_type) + _encode(0xA0, _encode(0x30, new_fields))
    )
    return _encode(
        0x30,
        _raw(response_der, status) + new_token + b"".join(_raw(response_der, r) for r in rest),
    )


_SHA256, _SHA384, _SHA512 = (f"2.16.840.1.101.3.4.2.{n}" for n in (1, 2, 3))
_SIGNATURE_ALGORITHMS: dict[str, str | None] = {
    # signatureAlgorithm OID → the SignerInfo digestAlgorithm it implies (None: any)
    "1.2.840.113549.1.1.1": None,  # rsaEncryption (what many TSAs write)
    "1.2.840.113549.1.1.10": None,  # RSASSA-PSS (hash in its parameters)
    "1.2.840.113549.1.1.11": _SHA256,  # sha256WithRSAEncryption
    "1.2.840.113549.1.1.12": _SHA384,  # sha384WithRSAEncryption
    "1.2.840.113549.1.1.13": _SHA512,  # sha512WithRSAEncryption
    "1.2.840.10045.2.1": None,  # id-ecPublicKey
    "1.2.840.10045.4.3.2": _SHA256,  # ecdsa-with-SHA256
    "1.2.840.10045.4.3.3": _SHA384,  # ecdsa-with-SHA384
    "1.2.840.10045.4.3.4": _SHA512,  # ecdsa-with-SHA512
    "1.3.101.112": None,  # Ed25519
}


def _check_signed_data_profile(response_der: bytes) -> None:
    """Fields OpenSSL's CMS verification does not look at, checked so none can be altered.

    RFC 5652 §5.1/§5.3: SignedData version 3 (eContentType is not id-data), exactly one
    SignerInfo whose version matches its sid (1 for issuerAndSerialNumber, 3 for a key
    identifier), and a known signatureAlgorithm consistent with the digestAlgorithm (OpenSSL
    verifies an ECDSA signature whatever OID is written there).
    """
    response = _whole(response_der, 0x30)
    token = _children(response_der, response)[1]
    content_type, explicit = _children(response_der, token)
    if _oid(response_der, content_type) != "1.2.840.113549.1.7.2":
        raise _DerError("the token is not a CMS SignedData")
    fields = _children(response_der, _only_child(response_der, explicit, 0x30))
    if _integer(response_der, fields[0]) != 3:
        raise _DerError("SignedData version must be 3 (RFC 5652 §5.1)")
    signer_infos = _children(response_der, fields[-1])
    if fields[-1].tag != 0x31 or len(signer_infos) != 1:
        raise _DerError("a timestamp token has exactly one SignerInfo")
    signer = _children(response_der, signer_infos[0])
    version, sid = _integer(response_der, signer[0]), signer[1]
    if (sid.tag, version) not in ((0x30, 1), (0x80, 3)):
        raise _DerError(f"SignerInfo version {version} does not match its sid (RFC 5652 §5.3)")
    digest_oid = _oid(response_der, _children(response_der, signer[2])[0])
    algorithm = next(f for f in signer[3:] if f.tag == 0x30)
    algorithm_oid = _oid(response_der, _children(response_der, algorithm)[0])
    if algorithm_oid not in _SIGNATURE_ALGORITHMS:
        raise _DerError(f"unknown SignerInfo signatureAlgorithm {algorithm_oid}")
    implied = _SIGNATURE_ALGORITHMS[algorithm_oid]
    if implied is not None and implied != digest_oid:
        raise _DerError(
            f"signatureAlgorithm {algorithm_oid} does not match digestAlgorithm {digest_oid}"
        )


class _SentRequest(NamedTuple):
    hash_oid: str
    digest: bytes
    policy: str | None
    nonce: int | None


def _read_request(request_der: bytes) -> _SentRequest:
    """TimeStampReq ::= SEQUENCE { version, messageImprint, reqPolicy?, nonce?, certReq?, [0]? }."""
    request = _whole(request_der, 0x30)
    kids = _children(request_der, request)
    if len(kids) < 2 or kids[1].tag != 0x30:
        raise _DerError("no messageImprint")
    algorithm, digest = _children(request_der, kids[1])
    hash_oid = _oid(request_der, _children(request_der, algorithm)[0])
    if digest.tag != 0x04:
        raise _DerError("messageImprint digest is not an OCTET STRING")
    policy: str | None = None
    nonce: int | None = None
    for field in kids[2:]:
        if field.tag == 0x06:
            policy = _oid(request_der, field)
        elif field.tag == 0x02:
            nonce = _integer(request_der, field)
    return _SentRequest(hash_oid, request_der[digest.body : digest.end], policy, nonce)
