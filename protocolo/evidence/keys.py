"""A verifier for any verifier-key string this package supports, chosen by its type byte."""

from __future__ import annotations

from protocolo.evidence.cosignature import CosignatureV1Verifier, MLDSA44SubtreeVerifier
from protocolo.evidence.errors import NoteError
from protocolo.evidence.note import (
    SIG_COSIGNATURE_V1,
    SIG_ED25519,
    SIG_SUBTREE_MLDSA44,
    Ed25519NoteVerifier,
    NoteVerifier,
    VerifierKey,
)

SUPPORTED_TYPES = {
    SIG_ED25519: "Ed25519 (log signature)",
    SIG_COSIGNATURE_V1: "Ed25519 cosignature/v1",
    SIG_SUBTREE_MLDSA44: "ML-DSA-44 subtree/v1 cosignature",
}


def verifier_from_key(vkey: str) -> NoteVerifier:
    """Parse ``<name>+<key id>+<base64(type || key)>`` and return its verifier.

    Raises :class:`NoteError` (``bad-verifier-key``, ``unknown-algorithm`` or
    ``unsupported-algorithm``) for anything else.
    """
    key = VerifierKey.parse(vkey)
    if key.type == SIG_ED25519:
        return Ed25519NoteVerifier(key.name, key.public_key)
    if key.type == SIG_COSIGNATURE_V1:
        return CosignatureV1Verifier(key.name, key.public_key)
    if key.type == SIG_SUBTREE_MLDSA44:
        return MLDSA44SubtreeVerifier(key.name, key.public_key)
    raise NoteError(
        "unknown-algorithm",
        f"verifier key {key.name}+{key.key_id:08x} has signature type 0x{key.type:02x}; "
        f"supported: " + ", ".join(f"0x{t:02x} {n}" for t, n in SUPPORTED_TYPES.items()),
    )
