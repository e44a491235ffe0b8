"""The few DER structures of RFC 3161 that are read here rather than by rfc3161-client.

A minimal DER walker (definite lengths, low tag numbers) and, on it: the reply's
``PKIStatusInfo`` (so a refusal is reported with its status text and ``failInfo`` instead of
a parse error), a bare ``TimeStampToken`` wrapped as a granted reply, the CMS
``certificates`` SET OF re-sorted into DER order (OpenSSL's ``ts -reply -chain`` writes it
unsorted and rfc3161-client's strict parser refuses it), the SignedData fields OpenSSL's CMS
verification does not look at, and the fields of the ``TimeStampReq`` that was sent.
Standard library only.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = [
    "SHA256",
    "SHA384",
    "SHA512",
    "DerError",
    "PkiStatus",
    "SentRequest",
    "as_response",
    "check_signed_data_profile",
    "read_request",
    "read_status",
    "sort_certificate_set",
]

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


class DerError(ValueError):
    """The bytes are not the DER structure expected; the message says where."""


class _Tlv(NamedTuple):
    tag: int
    start: int  # first byte of the tag
    body: int  # first byte of the contents
    end: int  # one past the last byte of the contents


def _tlv_at(buf: bytes, pos: int, limit: int) -> _Tlv:
    if pos + 2 > limit:
        raise DerError("truncated")
    tag = buf[pos]
    if tag & 0x1F == 0x1F:
        raise DerError("unexpected high tag number")
    first = buf[pos + 1]
    if first < 0x80:
        length, body = first, pos + 2
    else:
        count = first & 0x7F
        if count == 0 or count > 4 or pos + 2 + count > limit:
            raise DerError("bad length")
        length = int.from_bytes(buf[pos + 2 : pos + 2 + count], "big")
        if length < 0x80 or buf[pos + 2] == 0:
            raise DerError("length not in minimal DER form")
        body = pos + 2 + count
    if body + length > limit:
        raise DerError("truncated")
    return _Tlv(tag, pos, body, body + length)


def _whole(buf: bytes, tag: int) -> _Tlv:
    node = _tlv_at(buf, 0, len(buf))
    if node.tag != tag:
        raise DerError(f"expected tag 0x{tag:02x}, found 0x{node.tag:02x}")
    if node.end != len(buf):
        raise DerError(f"{len(buf) - node.end} trailing bytes")
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
        raise DerError(f"expected one element with tag 0x{tag:02x}")
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
        raise DerError("expected an INTEGER")
    return int.from_bytes(buf[node.body : node.end], "big", signed=True)


def _oid(buf: bytes, node: _Tlv) -> str:
    if node.tag != 0x06 or node.end == node.body:
        raise DerError("expected an OBJECT IDENTIFIER")
    arcs: list[int] = []
    value = 0
    for byte in buf[node.body : node.end]:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    if buf[node.end - 1] & 0x80:
        raise DerError("truncated OBJECT IDENTIFIER")
    first = min(arcs[0] // 40, 2)
    return ".".join(str(a) for a in [first, arcs[0] - 40 * first, *arcs[1:]])


_GRANTED_STATUS = bytes.fromhex("3003020100")


def as_response(der: bytes) -> bytes:
    """A TimeStampResp as is; a bare TimeStampToken (ContentInfo) wrapped as a granted reply."""
    outer = _whole(der, 0x30)
    kids = _children(der, outer)
    if not kids:
        raise DerError("empty SEQUENCE")
    if kids[0].tag == 0x06:  # ContentInfo: contentType OID first
        return _encode(0x30, _GRANTED_STATUS + der)
    return der


class PkiStatus(NamedTuple):
    code: int
    texts: tuple[str, ...]
    failures: tuple[str, ...]

    def __str__(self) -> str:
        name = _PKI_STATUS.get(self.code, f"unknown status {self.code}")
        parts = [name, *(f"failInfo {f}" for f in self.failures), *(repr(t) for t in self.texts)]
        return ", ".join(parts)


def read_status(response_der: bytes) -> PkiStatus:
    response = _whole(response_der, 0x30)
    kids = _children(response_der, response)
    if not kids or kids[0].tag != 0x30:
        raise DerError("no PKIStatusInfo")
    fields = _children(response_der, kids[0])
    if not fields:
        raise DerError("empty PKIStatusInfo")
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
        raise DerError("granted without a timeStampToken")
    return PkiStatus(code, tuple(texts), tuple(failures))


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
        raise DerError("timeStampToken is not a ContentInfo")
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


SHA256, SHA384, SHA512 = (f"2.16.840.1.101.3.4.2.{n}" for n in (1, 2, 3))
_SIGNATURE_ALGORITHMS: dict[str, str | None] = {
    # signatureAlgorithm OID → the SignerInfo digestAlgorithm it implies (None: any)
    "1.2.840.113549.1.1.1": None,  # rsaEncryption (what many TSAs write)
    "1.2.840.113549.1.1.10": None,  # RSASSA-PSS (hash in its parameters)
    "1.2.840.113549.1.1.11": SHA256,  # sha256WithRSAEncryption
    "1.2.840.113549.1.1.12": SHA384,  # sha384WithRSAEncryption
    "1.2.840.113549.1.1.13": SHA512,  # sha512WithRSAEncryption
    "1.2.840.10045.2.1": None,  # id-ecPublicKey
    "1.2.840.10045.4.3.2": SHA256,  # ecdsa-with-SHA256
    "1.2.840.10045.4.3.3": SHA384,  # ecdsa-with-SHA384
    "1.2.840.10045.4.3.4": SHA512,  # ecdsa-with-SHA512
    "1.3.101.112": None,  # Ed25519
}


def check_signed_data_profile(response_der: bytes) -> None:
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
        raise DerError("the token is not a CMS SignedData")
    fields = _children(response_der, _only_child(response_der, explicit, 0x30))
    if _integer(response_der, fields[0]) != 3:
        raise DerError("SignedData version must be 3 (RFC 5652 §5.1)")
    signer_infos = _children(response_der, fields[-1])
    if fields[-1].tag != 0x31 or len(signer_infos) != 1:
        raise DerError("a timestamp token has exactly one SignerInfo")
    signer = _children(response_der, signer_infos[0])
    version, sid = _integer(response_der, signer[0]), signer[1]
    if (sid.tag, version) not in ((0x30, 1), (0x80, 3)):
        raise DerError(f"SignerInfo version {version} does not match its sid (RFC 5652 §5.3)")
    digest_oid = _oid(response_der, _children(response_der, signer[2])[0])
    algorithm = next(f for f in signer[3:] if f.tag == 0x30)
    algorithm_oid = _oid(response_der, _children(response_der, algorithm)[0])
    if algorithm_oid not in _SIGNATURE_ALGORITHMS:
        raise DerError(f"unknown SignerInfo signatureAlgorithm {algorithm_oid}")
    implied = _SIGNATURE_ALGORITHMS[algorithm_oid]
    if implied is not None and implied != digest_oid:
        raise DerError(
            f"signatureAlgorithm {algorithm_oid} does not match digestAlgorithm {digest_oid}"
        )


class SentRequest(NamedTuple):
    hash_oid: str
    digest: bytes
    policy: str | None
    nonce: int | None


def read_request(request_der: bytes) -> SentRequest:
    """TimeStampReq ::= SEQUENCE { version, messageImprint, reqPolicy?, nonce?, certReq?, [0]? }."""
    request = _whole(request_der, 0x30)
    kids = _children(request_der, request)
    if len(kids) < 2 or kids[1].tag != 0x30:
        raise DerError("no messageImprint")
    algorithm, digest = _children(request_der, kids[1])
    hash_oid = _oid(request_der, _children(request_der, algorithm)[0])
    if digest.tag != 0x04:
        raise DerError("messageImprint digest is not an OCTET STRING")
    policy: str | None = None
    nonce: int | None = None
    for field in kids[2:]:
        if field.tag == 0x06:
            policy = _oid(request_der, field)
        elif field.tag == 0x02:
            nonce = _integer(request_der, field)
    return SentRequest(hash_oid, request_der[digest.body : digest.end], policy, nonce)
