"""Verify an RFC 3161 timestamp token offline against a pinned trust.

No network and no clock other than the token's own ``genTime``: the signature and chain are
checked by rfc3161-client against :class:`TsaTrust` with validity at ``genTime``; the
signing certificate is the one SignerInfo names, its extended key usage must be critical and
exactly ``id-kp-timeStamping`` (RFC 3161 §2.3), the imprint must be the hash of the data and,
when the request is known, nonce and policy must match it. Failures are
:class:`TimestampVerificationError` with a :class:`Reason`.
"""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID
from rfc3161_client import (
    TimeStampResponse,
    VerificationError,
    VerifierBuilder,
    decode_timestamp_response,
)

from protocolo.evidence.timestamp_der import (
    DerError,
    as_response,
    check_signed_data_profile,
    read_request,
    read_status,
    sort_certificate_set,
)
from protocolo.evidence.timestamp_errors import Reason, TimestampError, TimestampVerificationError
from protocolo.evidence.tsa_trust import TsaTrust

__all__ = ["HASH_NAMES", "VerifiedTimestamp", "verify_timestamp"]

HASH_NAMES = {
    "2.16.840.1.101.3.4.2.1": "sha256",
    "2.16.840.1.101.3.4.2.2": "sha384",
    "2.16.840.1.101.3.4.2.3": "sha512",
}
"""Imprint hash algorithms accepted (those rfc3161-client verifies)."""

@dataclass(frozen=True)
class VerifiedTimestamp:
    """What a verified token asserts: ``data`` existed at ``gen_time`` (UTC) per ``tsa_name``."""

    gen_time: datetime
    policy: str
    serial: int
    tsa_name: str
    hash_alg: str
    nonce: int | None


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
    response, hash_alg = _read_token(token_der)
    nonce, policy = _sent_request(request_der, data) if request_der is not None else (None, None)
    _verify_signature(response, data, trust, nonce, policy)
    if trust.tsa_certificate is not None:
        _check_only_pinned_certificates(response, trust.tsa_certificate, trust)
    signer = _signer_certificate(response, trust)
    _check_eku(signer)
    tst_info = response.tst_info
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


def _read_token(token_der: bytes) -> tuple[TimeStampResponse, str]:
    """The granted reply, parsed, and its imprint's hash name; MALFORMED or NOT_GRANTED."""
    try:
        response_der = as_response(token_der)
        status = read_status(response_der)
    except DerError as error:
        raise TimestampVerificationError(
            Reason.MALFORMED, f"not a timestamp token ({error})"
        ) from None
    if status.code != 0:
        raise TimestampVerificationError(Reason.NOT_GRANTED, f"the TSA did not grant it: {status}")
    try:
        check_signed_data_profile(response_der)
        response = decode_timestamp_response(sort_certificate_set(response_der))
        hash_oid = response.tst_info.message_imprint.hash_algorithm.dotted_string
    except Exception as error:  # the parser's errors are not one type; all mean "malformed"
        raise TimestampVerificationError(
            Reason.MALFORMED, f"not a timestamp token ({error})"
        ) from None
    hash_alg = HASH_NAMES.get(hash_oid)
    if hash_alg is None:
        raise TimestampVerificationError(
            Reason.UNSUPPORTED_HASH, f"imprint hash {hash_oid} is not SHA-256/384/512"
        )
    return response, hash_alg


def _sent_request(request_der: bytes, data: bytes) -> tuple[int | None, str | None]:
    """The nonce and policy of the request that was sent, after checking it was for ``data``."""
    try:
        sent = read_request(request_der)
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
    return sent.nonce, sent.policy


def _verify_signature(
    response: TimeStampResponse, data: bytes, trust: TsaTrust, nonce: int | None, policy: str | None
) -> None:
    """rfc3161-client's check: CMS signature, chain to the pinned roots at genTime, imprint."""
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


def _check_only_pinned_certificates(
    response: TimeStampResponse, tsa_certificate: x509.Certificate, trust: TsaTrust
) -> None:
    """With a pinned TSA certificate, the token may carry no certificate outside the chain."""
    pinned = {
        c.public_bytes(serialization.Encoding.DER)
        for c in (tsa_certificate, *trust.intermediates, *trust.roots)
    }
    foreign = [c for c in response.signed_data.certificates if c not in pinned]
    if foreign:
        raise TimestampVerificationError(
            Reason.TSA_CERTIFICATE,
            f"the token carries {len(foreign)} certificate(s) outside the pinned chain",
        )


def _check_eku(signer: x509.Certificate) -> None:
    """RFC 3161 §2.3: the TSA certificate's extended key usage is timeStamping only."""
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
