"""C2SP signed-note: a text and the signature lines that vouch for it.

Format (c2sp.org/signed-note v1.0.0; reference implementation golang.org/x/mod/sumdb/note,
whose ``Open`` this module follows rule by rule)::

    <text, ending in \\n>
    \\n
    — <key name> <base64(4-byte key ID, big-endian || signature)>\\n     (one or more)

The separator is the *last* ``\\n\\n``. The whole note is valid UTF-8 with no ASCII control
character but ``\\n`` (so CRLF is malformed). Opening a note with a set of verifiers:

* a line whose (key name, key ID) is unknown is kept as *unverified* and never checked
  (this is what lets witnesses add cosignatures and logs rotate keys); identical unknown
  lines are kept once;
* a line from a known key must verify, or the whole note is refused (C2SP: SHOULD);
  repeated lines of one known key are checked once;
* two configured verifiers with the same name and key ID make the key ambiguous;
* no verified signature at all: refused; more than 100 signature lines: malformed (Go's
  cap; C2SP requires accepting at least 16).

Keys: key ID = ``SHA-256(name || 0x0A || type byte || public key)[:4]``; a verifier key
string is ``<name>+<8 lowercase hex key ID>+<base64(type byte || public key)>`` (split on
the first two ``+`` only: base64 contains ``+``); the signer key string is Go's
``PRIVATE+KEY+<name>+<key ID>+<base64(0x01 || 32-byte Ed25519 seed)>``.

Stricter than Go, on purpose: the key ID in key strings must be lowercase hex (C2SP's
wording), base64 must be canonical (re-encoding gives the same text), and DEL (0x7F),
an ASCII control character, is refused like the others.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from protocolo.evidence.errors import EvidenceError, NoteError

SIG_ED25519 = 0x01
"""Ed25519 signature over the note text (logs' checkpoint signatures)."""
SIG_COSIGNATURE_V1 = 0x04
"""Timestamped Ed25519 cosignature (C2SP tlog-cosignature, witnesses)."""
SIG_RFC6962_STH = 0x05
"""RFC 6962 TreeHeadSignature (static-ct-api); not supported here, so always unknown."""
SIG_SUBTREE_MLDSA44 = 0x06
"""Timestamped ML-DSA-44 subtree cosignature (C2SP tlog-cosignature)."""

MAX_SIGNATURES = 100
SIGNATURE_PREFIX = "\u2014 "  # EM DASH, SPACE
_KEY_ID_HEX = re.compile(r"[0-9a-f]{8}")


def decode_base64(text: str, what: str, error: type[EvidenceError] = NoteError) -> bytes:
    """Standard padded base64 (RFC 4648 §4), canonical only; ``error`` names ``what`` if not."""
    try:
        raw = binascii.a2b_base64(text.encode("ascii"), strict_mode=True)
    except (UnicodeEncodeError, binascii.Error, ValueError):
        raise error("bad-base64", f"{what} is not standard padded base64: {text[:80]!r}") from None
    if base64.b64encode(raw).decode("ascii") != text:
        raise error("bad-base64", f"{what} is not canonical base64: {text[:80]!r}")
    return raw


def encode_base64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def is_valid_key_name(name: str) -> bool:
    """Non-empty, no Unicode space, no ``+`` (signed-note key names)."""
    return (
        bool(name)
        and "+" not in name
        and not any(ch.isspace() for ch in name)
        and not any(_is_control(ch) for ch in name)
    )


def _is_control(ch: str) -> bool:
    return (ch < " " and ch != "\n") or ch == "\x7f"


def compute_key_id(name: str, type_and_key: bytes) -> int:
    """``SHA-256(name || 0x0A || type byte || public key)[:4]`` as a big-endian integer."""
    digest = hashlib.sha256(name.encode("utf-8") + b"\n" + type_and_key).digest()
    return int.from_bytes(digest[:4], "big")


class NoteVerifier(Protocol):
    """Checks the signature lines of one key (name, key ID) on a note's text."""

    @property
    def name(self) -> str: ...

    @property
    def key_id(self) -> int: ...

    def verify(self, text: bytes, signature: bytes) -> bool:
        """``signature`` is the line's bytes after the 4-byte key ID."""
        ...


class NoteSigner(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def key_id(self) -> int: ...

    def sign(self, text: bytes) -> bytes: ...


@dataclass(frozen=True)
class VerifierKey:
    """A parsed verifier key string: ``<name>+<hex key ID>+<base64(type || public key)>``."""

    name: str
    key_id: int
    type: int
    public_key: bytes

    @classmethod
    def parse(cls, vkey: str) -> VerifierKey:
        name, sep1, rest = vkey.partition("+")
        key_id_hex, sep2, key64 = rest.partition("+")
        if not (sep1 and sep2):
            raise NoteError(
                "bad-verifier-key", f"verifier key needs <name>+<key id>+<key>: {vkey!r}"
            )
        if not is_valid_key_name(name):
            raise NoteError(
                "bad-verifier-key", f"verifier key name {name!r} is not a valid key name"
            )
        if not _KEY_ID_HEX.fullmatch(key_id_hex):
            raise NoteError(
                "bad-verifier-key", f"verifier key ID {key_id_hex!r} is not 8 lowercase hex digits"
            )
        raw = decode_base64(key64, "verifier key")
        if len(raw) < 2:
            raise NoteError(
                "bad-verifier-key", "verifier key has no public key after the type byte"
            )
        key_id = int(key_id_hex, 16)
        if compute_key_id(name, raw) != key_id:
            raise NoteError(
                "bad-verifier-key",
                f"verifier key ID {key_id_hex} does not match SHA-256(name, key) "
                f"{compute_key_id(name, raw):08x}",
            )
        return cls(name, key_id, raw[0], raw[1:])

    @classmethod
    def of(cls, name: str, type_byte: int, public_key: bytes) -> VerifierKey:
        if not is_valid_key_name(name):
            raise NoteError("bad-key-name", f"{name!r} is not a valid key name")
        return cls(
            name, compute_key_id(name, bytes([type_byte]) + public_key), type_byte, public_key
        )

    def __str__(self) -> str:
        key64 = encode_base64(bytes([self.type]) + self.public_key)
        return f"{self.name}+{self.key_id:08x}+{key64}"


class KeyedVerifier:
    """What every verifier of a note signature has: its verifier key (name, key ID)."""

    key: VerifierKey

    @property
    def name(self) -> str:
        return self.key.name

    @property
    def key_id(self) -> int:
        return self.key.key_id


def ed25519_public_key(public_key: bytes) -> Ed25519PublicKey:
    """An Ed25519 verifying key from its 32 raw bytes (NoteError ``bad-verifier-key``)."""
    if len(public_key) != 32:
        raise NoteError(
            "bad-verifier-key", f"Ed25519 public key must be 32 bytes, got {len(public_key)}"
        )
    try:
        return Ed25519PublicKey.from_public_bytes(public_key)
    except ValueError as failure:
        raise NoteError("bad-verifier-key", f"not an Ed25519 public key: {failure}") from None


class Ed25519NoteVerifier(KeyedVerifier):
    """A log's Ed25519 key (signature type 0x01): signs the note text itself."""

    def __init__(self, name: str, public_key: bytes) -> None:
        self._public = ed25519_public_key(public_key)
        self.key = VerifierKey.of(name, SIG_ED25519, public_key)

    def verify(self, text: bytes, signature: bytes) -> bool:
        if len(signature) != 64:
            return False
        try:
            self._public.verify(signature, text)
        except InvalidSignature:
            return False
        return True

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Ed25519NoteVerifier) and other.key == self.key

    def __hash__(self) -> int:
        return hash(self.key)

    def __str__(self) -> str:
        return str(self.key)


class Ed25519NoteSigner:
    """An Ed25519 signing key (type 0x01), from and to Go's private key string."""

    def __init__(self, name: str, seed: bytes) -> None:
        if not is_valid_key_name(name):
            raise NoteError("bad-key-name", f"{name!r} is not a valid key name")
        if len(seed) != 32:
            raise NoteError("bad-signer-key", f"Ed25519 seed must be 32 bytes, got {len(seed)}")
        self._private = Ed25519PrivateKey.from_private_bytes(seed)
        self._seed = bytes(seed)
        self._name = name
        public = self._private.public_key().public_bytes_raw()
        self._verifier = Ed25519NoteVerifier(name, public)

    @classmethod
    def generate(cls, name: str) -> Ed25519NoteSigner:
        return cls(name, Ed25519PrivateKey.generate().private_bytes_raw())

    @classmethod
    def parse(cls, skey: str) -> Ed25519NoteSigner:
        """Go's ``PRIVATE+KEY+<name>+<hex key ID>+<base64(0x01 || seed)>``."""
        parts = skey.split("+", 4)
        if len(parts) != 5 or parts[0] != "PRIVATE" or parts[1] != "KEY":
            raise NoteError(
                "bad-signer-key", "signer key must look like PRIVATE+KEY+<name>+<id>+<key>"
            )
        _, _, name, key_id_hex, key64 = parts
        if not _KEY_ID_HEX.fullmatch(key_id_hex):
            raise NoteError("bad-signer-key", "signer key ID is not 8 lowercase hex digits")
        try:
            raw = decode_base64(key64, "signer key")
        except NoteError as failure:
            raise NoteError("bad-signer-key", failure.detail) from None
        if len(raw) != 33 or raw[0] != SIG_ED25519:
            raise NoteError(
                "bad-signer-key", "signer key must be type 0x01 (Ed25519) with a 32-byte seed"
            )
        signer = cls(name, raw[1:])
        if signer.key_id != int(key_id_hex, 16):
            raise NoteError(
                "bad-signer-key", f"signer key ID {key_id_hex} does not match its public key"
            )
        return signer

    @property
    def name(self) -> str:
        return self._name

    @property
    def key_id(self) -> int:
        return self._verifier.key_id

    @property
    def verifier(self) -> Ed25519NoteVerifier:
        return self._verifier

    def sign(self, text: bytes) -> bytes:
        return self._private.sign(text)

    def private_key_string(self) -> str:
        seed64 = encode_base64(bytes([SIG_ED25519]) + self._seed)
        return f"PRIVATE+KEY+{self._name}+{self.key_id:08x}+{seed64}"

    def __repr__(self) -> str:  # never print the seed
        return f"Ed25519NoteSigner({self._verifier})"


@dataclass(frozen=True)
class NoteSignature:
    """One signature line: key name, key ID and the signature bytes after the key ID."""

    name: str
    key_id: int
    signature: bytes

    @property
    def key(self) -> str:
        """``<name>+<hex key ID>``, how Go names a key in messages."""
        return f"{self.name}+{self.key_id:08x}"

    def line(self) -> str:
        payload = self.key_id.to_bytes(4, "big") + self.signature
        return f"{SIGNATURE_PREFIX}{self.name} {encode_base64(payload)}\n"


@dataclass(frozen=True)
class Note:
    """A parsed, not yet verified, note."""

    text: str
    signatures: tuple[NoteSignature, ...]

    def encode(self) -> bytes:
        return (self.text + "\n" + "".join(s.line() for s in self.signatures)).encode("utf-8")


@dataclass(frozen=True)
class OpenedNote:
    """A note whose known signatures all verified (at least one)."""

    text: str
    verified: tuple[NoteSignature, ...]
    unverified: tuple[NoteSignature, ...]

    def verified_by(self, name: str, key_id: int) -> bool:
        return any(s.name == name and s.key_id == key_id for s in self.verified)


def _malformed(message: str) -> NoteError:
    return NoteError("malformed-note", message)


def _check_text(text: str, what: str) -> None:
    for position, ch in enumerate(text):
        if _is_control(ch):
            raise _malformed(f"{what} has control character {ch!r} at character {position}")


def parse_note(data: bytes) -> Note:
    """Split a note into text and signature lines, enforcing every syntax rule."""
    if not isinstance(data, bytes | bytearray):
        raise TypeError("a note is bytes")
    try:
        message = bytes(data).decode("utf-8")
    except UnicodeDecodeError as failure:
        raise _malformed(f"note is not valid UTF-8 (byte {failure.start})") from None
    _check_text(message, "note")
    split = message.rfind("\n\n")
    if split < 0:
        raise _malformed("note has no blank line before its signatures")
    text, block = message[: split + 1], message[split + 2 :]
    if not block or not block.endswith("\n"):
        raise _malformed("note's signature block is empty or does not end with a newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise _malformed(f"note has {len(lines)} signature lines, more than {MAX_SIGNATURES}")
    signatures = []
    for number, line in enumerate(lines, start=1):
        if not line.startswith(SIGNATURE_PREFIX):
            raise _malformed(f"signature line {number} does not start with an em dash and a space")
        name, _, sig64 = line[len(SIGNATURE_PREFIX) :].partition(" ")
        if not is_valid_key_name(name):
            raise _malformed(f"signature line {number} has an invalid key name {name!r}")
        try:
            raw = decode_base64(sig64, f"signature line {number}")
        except NoteError as failure:
            raise _malformed(failure.detail) from None
        if len(raw) < 5:
            raise _malformed(f"signature line {number} is shorter than a key ID and a signature")
        signatures.append(NoteSignature(name, int.from_bytes(raw[:4], "big"), raw[4:]))
    return Note(text, tuple(signatures))


def open_note(data: bytes, verifiers: Iterable[NoteVerifier]) -> OpenedNote:
    """Parse ``data`` and verify it with the known keys (rules in the module docstring)."""
    known: dict[tuple[str, int], list[NoteVerifier]] = {}
    for verifier in verifiers:
        known.setdefault((verifier.name, verifier.key_id), []).append(verifier)
    note = parse_note(data)
    text = note.text.encode("utf-8")
    verified: list[NoteSignature] = []
    unverified: list[NoteSignature] = []
    seen_known: set[tuple[str, int]] = set()
    for signature in note.signatures:
        candidates = known.get((signature.name, signature.key_id))
        if not candidates:
            if signature not in unverified:
                unverified.append(signature)
            continue
        if len(candidates) > 1:
            raise NoteError("ambiguous-key", f"ambiguous key {signature.key}: configured twice")
        if (signature.name, signature.key_id) in seen_known:
            continue
        seen_known.add((signature.name, signature.key_id))
        if not candidates[0].verify(text, signature.signature):
            raise NoteError("invalid-signature", f"invalid signature for key {signature.key}")
        verified.append(signature)
    if not verified:
        keys = ", ".join(s.key for s in unverified) or "none"
        raise NoteError(
            "no-verifiable-signature",
            f"note has no verifiable signatures (signed by: {keys})",
        )
    return OpenedNote(note.text, tuple(verified), tuple(unverified))


def sign_note(
    text: str, signers: Sequence[NoteSigner], keep: Sequence[NoteSignature] = ()
) -> bytes:
    """The note ``text`` with the signatures in ``keep`` then one line per signer.

    A kept signature by the same key as a signer is replaced (as Go's ``Sign`` does).
    """
    if not text.endswith("\n"):
        raise _malformed("note text must end with a newline")
    _check_text(text, "note text")
    raw = text.encode("utf-8")
    fresh: list[NoteSignature] = []
    for signer in signers:
        if not is_valid_key_name(signer.name):
            raise NoteError("bad-key-name", f"signer name {signer.name!r} is not a valid key name")
        fresh.append(NoteSignature(signer.name, signer.key_id, signer.sign(raw)))
    replaced = {(s.name, s.key_id) for s in fresh}
    lines = [s for s in keep if (s.name, s.key_id) not in replaced] + fresh
    if not lines:
        raise _malformed("a note needs at least one signature")
    if len(lines) > MAX_SIGNATURES:
        raise _malformed(f"a note carries at most {MAX_SIGNATURES} signatures")
    return Note(text, tuple(lines)).encode()
