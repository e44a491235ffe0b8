"""Obtain an RFC 3161 timestamp: ask a Time-Stamp Authority over HTTP, keep its granted reply.

The request is over SHA-256(data) with a random nonce and ``certReq`` set, POSTed as
``application/timestamp-query`` (RFC 3161 §3.4); the reply is accepted only when granted and
answering *this* request (same nonce, same imprint), and is stored with its certificate set
in DER order. Every failure is a :class:`TimestampRequestError` naming the URL.
"""

from __future__ import annotations

import hashlib
import http.client
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from rfc3161_client import HashAlgorithm, TimestampRequestBuilder, decode_timestamp_response

from protocolo.evidence.timestamp_der import SHA256, DerError, read_status, sort_certificate_set
from protocolo.evidence.timestamp_errors import Reason, TimestampRequestError

__all__ = ["MAX_REPLY_BYTES", "QUERY_MEDIA_TYPE", "REPLY_MEDIA_TYPES", "TimestampToken",
           "request_timestamp"]

QUERY_MEDIA_TYPE = "application/timestamp-query"
REPLY_MEDIA_TYPES = frozenset({"application/timestamp-reply", "application/timestamp-response"})
"""RFC 3161 §3.4 names ``application/timestamp-reply``; a few servers send ``-response``."""

MAX_REPLY_BYTES = 1 << 20
"""A timestamp reply is a few KiB; anything past this is not one."""


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
    if answer.hash_oid != SHA256 or answer.digest != hashlib.sha256(data).digest():
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
        status = read_status(reply)
    except DerError as error:
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
