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

The work is split by job: :mod:`timestamp_request` (asking a TSA), :mod:`timestamp_verify`
(checking a token), :mod:`tsa_trust` (the pinned trust), :mod:`timestamp_errors` (reasons),
:mod:`timestamp_der` (the DER read here). This module is their public face.
"""

from __future__ import annotations

from protocolo.evidence.timestamp_der import sort_certificate_set
from protocolo.evidence.timestamp_errors import (
    Reason,
    TimestampError,
    TimestampRequestError,
    TimestampVerificationError,
)
from protocolo.evidence.timestamp_request import (
    MAX_REPLY_BYTES,
    QUERY_MEDIA_TYPE,
    REPLY_MEDIA_TYPES,
    TimestampToken,
    request_timestamp,
)
from protocolo.evidence.timestamp_verify import HASH_NAMES, VerifiedTimestamp, verify_timestamp
from protocolo.evidence.tsa_trust import TsaTrust, load_certificates

__all__ = [
    "HASH_NAMES",
    "MAX_REPLY_BYTES",
    "QUERY_MEDIA_TYPE",
    "REPLY_MEDIA_TYPES",
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
