"""C2SP tlog-cosignature: a witness's timestamped signature over a checkpoint.

A cosignature is an ordinary signed-note line whose signature bytes are
``u64 timestamp (big-endian POSIX seconds, <= 2^63-1) || signature``:

* **cosignature/v1, Ed25519, type 0x04** — 8 + 64 bytes; signed message::

      cosignature/v1\\n
      time <timestamp in decimal>\\n
      <the whole checkpoint text, extension lines and final \\n included>

* **subtree/v1, ML-DSA-44, type 0x06** — 8 + 2420 bytes; signed message (binary)::

      "subtree/v1\\n\\0" || u8 len || cosigner name || u64 timestamp
      || u8 len || origin || u64 start (0 for a checkpoint) || u64 end (= size) || 32-byte root

  Extension lines are not covered. Verification needs ``cryptography`` built with ML-DSA
  (pyca/cryptography >= 48 on OpenSSL >= 3.5); :func:`mldsa44_supported` says whether it is.

Key IDs follow signed-note: ``SHA-256(name || 0x0A || type || public key)[:4]``. A cosignature
means "as of this time, the largest consistent tree this cosigner saw for this origin has
this root"; the same key must not serve two cosigners (the message lacks the cosigner name).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocolo.evidence.checkpoint import parse_checkpoint
from protocolo.evidence.errors import CheckpointError, NoteError
from protocolo.evidence.note import (
    SIG_COSIGNATURE_V1,
    SIG_SUBTREE_MLDSA44,
    KeyedVerifier,
    VerifierKey,
    ed25519_public_key,
    is_valid_key_name,
)

MAX_TIMESTAMP = (1 << 63) - 1
ED25519_PAYLOAD = 8 + 64
MLDSA44_PUBLIC_KEY = 1312
MLDSA44_SIGNATURE = 2420
MLDSA44_PAYLOAD = 8 + MLDSA44_SIGNATURE


def cosignature_v1_message(text: bytes, timestamp: int) -> bytes:
    """The bytes an Ed25519 cosigner signs for checkpoint ``text`` at ``timestamp``."""
    return b"cosignature/v1\ntime " + str(timestamp).encode("ascii") + b"\n" + text


def subtree_v1_message(
    cosigner: str, timestamp: int, origin: str, start: int, end: int, root: bytes
) -> bytes:
    """The bytes an ML-DSA-44 cosigner signs for the subtree ``[start, end)`` of ``origin``."""
    name = cosigner.encode("utf-8")
    log = origin.encode("utf-8")
    if len(name) > 255 or len(log) > 255:
        raise NoteError("bad-key-name", "subtree/v1 names and origins are at most 255 bytes")
    return b"".join(
        [
            b"subtree/v1\n\x00",
            bytes([len(name)]),
            name,
            timestamp.to_bytes(8, "big"),
            bytes([len(log)]),
            log,
            start.to_bytes(8, "big"),
            end.to_bytes(8, "big"),
            root,
        ]
    )


def cosignature_timestamp(signature: bytes) -> int:
    """The timestamp of a cosignature line's signature bytes (after the key ID)."""
    if len(signature) < 8:
        raise NoteError("bad-cosignature", "a cosignature starts with an 8-byte timestamp")
    return int.from_bytes(signature[:8], "big")


class CosignatureV1Verifier(KeyedVerifier):
    """A witness's Ed25519 cosignature key (type 0x04)."""

    def __init__(self, name: str, public_key: bytes) -> None:
        self._public = ed25519_public_key(public_key)
        self.key = VerifierKey.of(name, SIG_COSIGNATURE_V1, public_key)

    def verify(self, text: bytes, signature: bytes) -> bool:
        if len(signature) != ED25519_PAYLOAD:
            return False
        timestamp = int.from_bytes(signature[:8], "big")
        if timestamp > MAX_TIMESTAMP:
            return False
        try:
            self._public.verify(signature[8:], cosignature_v1_message(text, timestamp))
        except InvalidSignature:
            return False
        return True

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CosignatureV1Verifier) and other.key == self.key

    def __hash__(self) -> int:
        return hash(self.key)

    def __str__(self) -> str:
        return str(self.key)


class CosignatureV1Signer:
    """A witness's Ed25519 cosigning key; ``clock`` gives POSIX seconds (must be > 0)."""

    def __init__(self, name: str, seed: bytes, clock: Callable[[], float] = time.time) -> None:
        if not is_valid_key_name(name):
            raise NoteError("bad-key-name", f"{name!r} is not a valid key name")
        if len(seed) != 32:
            raise NoteError("bad-signer-key", f"Ed25519 seed must be 32 bytes, got {len(seed)}")
        self._private = Ed25519PrivateKey.from_private_bytes(seed)
        self._clock = clock
        self._verifier = CosignatureV1Verifier(name, self._private.public_key().public_bytes_raw())

    @classmethod
    def generate(cls, name: str, clock: Callable[[], float] = time.time) -> CosignatureV1Signer:
        return cls(name, Ed25519PrivateKey.generate().private_bytes_raw(), clock)

    @property
    def name(self) -> str:
        return self._verifier.name

    @property
    def key_id(self) -> int:
        return self._verifier.key_id

    @property
    def verifier(self) -> CosignatureV1Verifier:
        return self._verifier

    def sign_at(self, text: bytes, timestamp: int) -> bytes:
        if not 0 < timestamp <= MAX_TIMESTAMP:
            raise NoteError("bad-cosignature", f"cosignature timestamp {timestamp} out of range")
        parse_checkpoint(text.decode("utf-8"))  # a witness cosigns checkpoints only
        signature = self._private.sign(cosignature_v1_message(text, timestamp))
        return timestamp.to_bytes(8, "big") + signature

    def sign(self, text: bytes) -> bytes:
        return self.sign_at(text, int(self._clock()))

    def __repr__(self) -> str:
        return f"CosignatureV1Signer({self._verifier})"


def mldsa44_supported() -> bool:
    """Whether this ``cryptography`` build can verify ML-DSA-44."""
    try:
        from cryptography.hazmat.primitives.asymmetric import mldsa  # noqa: F401
    except ImportError:
        return False
    try:
        mldsa.MLDSA44PublicKey.from_public_bytes(bytes(MLDSA44_PUBLIC_KEY))
    except ValueError:
        return True  # the algorithm exists; all-zero bytes may simply be refused
    except Exception:  # UnsupportedAlgorithm: compiled without ML-DSA
        return False
    return True


class MLDSA44SubtreeVerifier(KeyedVerifier):
    """A witness's ML-DSA-44 subtree/v1 cosignature key (type 0x06)."""

    def __init__(self, name: str, public_key: bytes) -> None:
        if len(public_key) != MLDSA44_PUBLIC_KEY:
            raise NoteError(
                "bad-verifier-key",
                f"ML-DSA-44 public key must be {MLDSA44_PUBLIC_KEY} bytes, got {len(public_key)}",
            )
        if not mldsa44_supported():
            raise NoteError(
                "unsupported-algorithm",
                "this cryptography build cannot verify ML-DSA-44 (needs pyca/cryptography >= 48 "
                "with OpenSSL >= 3.5)",
            )
        from cryptography.hazmat.primitives.asymmetric import mldsa

        self.key = VerifierKey.of(name, SIG_SUBTREE_MLDSA44, public_key)
        try:
            self._public = mldsa.MLDSA44PublicKey.from_public_bytes(public_key)
        except ValueError as failure:
            raise NoteError("bad-verifier-key", f"not an ML-DSA-44 public key: {failure}") from None

    def verify(self, text: bytes, signature: bytes) -> bool:
        if len(signature) != MLDSA44_PAYLOAD:
            return False
        timestamp = int.from_bytes(signature[:8], "big")
        if timestamp > MAX_TIMESTAMP:
            return False
        try:
            checkpoint = parse_checkpoint(text.decode("utf-8"))
            message = subtree_v1_message(
                self.name, timestamp, checkpoint.origin, 0, checkpoint.size, checkpoint.root
            )
        except (CheckpointError, NoteError, UnicodeDecodeError):
            return False
        try:
            self._public.verify(signature[8:], message)
        except InvalidSignature:
            return False
        return True

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MLDSA44SubtreeVerifier) and other.key == self.key

    def __hash__(self) -> int:
        return hash(self.key)

    def __str__(self) -> str:
        return str(self.key)
