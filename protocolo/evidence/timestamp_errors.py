"""Why a timestamp could not be obtained or did not verify: one reason code per rule."""

from __future__ import annotations

import enum

__all__ = ["Reason", "TimestampError", "TimestampRequestError", "TimestampVerificationError"]


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
