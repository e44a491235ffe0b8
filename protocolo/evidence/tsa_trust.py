"""The pinned trust a timestamp token is verified against: TSA certificate, chain, root."""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509

from protocolo.evidence.timestamp_errors import Reason, TimestampError

__all__ = ["TsaTrust", "load_certificates"]


@dataclass(frozen=True)
class TsaTrust:
    """The pinned trust a token is verified against; nothing is fetched or taken from the token.

    ``roots`` are the trust anchors. ``tsa_certificate`` pins the signing certificate (strongly
    recommended: docs/timestamping.md); ``intermediates`` complete the chain when the token does not
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
