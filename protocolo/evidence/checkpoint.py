"""C2SP tlog-checkpoint: the signed statement "the tree of this log has this size and root".

Body (the signed note's text), parsed strictly::

    <origin>\\n          non-empty; Protocolo's origins are protocolo/<deployment>/<topic>/<partition>
    <tree size>\\n       ASCII decimal, no leading zeros ("0" for the empty tree), < 2^64
    <root hash>\\n       standard padded base64 of the 32-byte RFC 6962 root
    [<extension>\\n]*    each non-empty (Protocolo writes none)

A size-0 checkpoint must carry ``SHA-256("")`` as its root (C2SP tlog-witness answers 422
otherwise). transparency-dev/formats' parser is lenient (any root length, empty trailing
lines); this one is not, and ``tests/evidence/vectors/checkpoint/body-parse.json`` tells the two
apart.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from protocolo.evidence.errors import CheckpointError, NoteError
from protocolo.evidence.merkle import EMPTY_ROOT, HASH_SIZE, MAX_TREE_SIZE
from protocolo.evidence.note import (
    NoteSigner,
    NoteVerifier,
    OpenedNote,
    decode_base64,
    encode_base64,
    open_note,
    sign_note,
)

_DECIMAL = re.compile(r"0|[1-9][0-9]*", re.ASCII)
_ORIGIN_PART = re.compile(r"[A-Za-z0-9._-]+", re.ASCII)
ORIGIN_PREFIX = "protocolo"


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.origin or "\n" in self.origin:
            raise CheckpointError("bad-origin", "checkpoint origin must be one non-empty line")
        if isinstance(self.size, bool) or not 0 <= self.size <= MAX_TREE_SIZE:
            raise CheckpointError("bad-size", f"checkpoint size {self.size!r} is not a uint64")
        if len(self.root) != HASH_SIZE:
            raise CheckpointError(
                "bad-root", f"checkpoint root must be {HASH_SIZE} bytes, got {len(self.root)}"
            )
        if self.size == 0 and self.root != EMPTY_ROOT:
            raise CheckpointError("bad-root", 'a checkpoint of size 0 must carry SHA-256("")')
        for number, line in enumerate(self.extensions, start=1):
            if not line or "\n" in line:
                raise CheckpointError(
                    "bad-extension", f"extension line {number} must be one non-empty line"
                )

    def body(self) -> str:
        """The note text: origin, size, root and extension lines, each ending in ``\\n``."""
        lines = [self.origin, str(self.size), encode_base64(self.root), *self.extensions]
        return "".join(line + "\n" for line in lines)


def parse_checkpoint(body: str) -> Checkpoint:
    """Parse a checkpoint body (the text of its note), enforcing every C2SP rule."""
    if not body.endswith("\n"):
        raise CheckpointError("malformed-checkpoint", "checkpoint body must end with a newline")
    lines = body[:-1].split("\n")
    if len(lines) < 3:
        raise CheckpointError(
            "malformed-checkpoint", "checkpoint body needs origin, size and root lines"
        )
    origin, size_text, root_text, *extensions = lines
    if not origin:
        raise CheckpointError("bad-origin", "checkpoint origin line is empty")
    if not _DECIMAL.fullmatch(size_text):
        raise CheckpointError(
            "bad-size", f"checkpoint size {size_text[:40]!r} is not a decimal without leading zeros"
        )
    size = int(size_text)
    if size > MAX_TREE_SIZE:
        raise CheckpointError("bad-size", f"checkpoint size {size_text} exceeds 2^64-1")
    try:
        root = decode_base64(root_text, "checkpoint root", CheckpointError)
    except CheckpointError as failure:
        raise CheckpointError("bad-root", failure.detail) from None
    return Checkpoint(origin, size, root, tuple(extensions))


def sign_checkpoint(checkpoint: Checkpoint, signers: Sequence[NoteSigner]) -> bytes:
    """The checkpoint as a signed note (the log's key first; its name SHOULD be the origin)."""
    return sign_note(checkpoint.body(), signers)


@dataclass(frozen=True)
class SignedCheckpoint:
    checkpoint: Checkpoint
    note: OpenedNote


def open_checkpoint(
    data: bytes,
    verifiers: Iterable[NoteVerifier],
    *,
    origin: str | None = None,
    log_key: NoteVerifier | None = None,
) -> SignedCheckpoint:
    """Verify a signed checkpoint note and parse its body.

    ``origin`` (if given) must match the body's origin line; ``log_key`` (if given) must be
    among the verified signatures: a checkpoint vouched for only by witnesses is not the
    log's statement. Raises :class:`NoteError` or :class:`CheckpointError`.
    """
    keys = list(verifiers)
    if log_key is not None and log_key not in keys:
        keys.append(log_key)
    note = open_note(data, keys)
    checkpoint = parse_checkpoint(note.text)
    if origin is not None and checkpoint.origin != origin:
        raise CheckpointError(
            "wrong-origin", f"checkpoint is for {checkpoint.origin!r}, expected {origin!r}"
        )
    if log_key is not None and not note.verified_by(log_key.name, log_key.key_id):
        raise NoteError(
            "no-log-signature", f"checkpoint is not signed by the log key {log_key.name}"
        )
    return SignedCheckpoint(checkpoint, note)


def log_origin(deployment: str, topic: str, partition: int) -> str:
    """Protocolo's origin for one partition's log: ``protocolo/<deployment>/<topic>/<partition>``.

    ``deployment`` and ``topic`` use Kafka's topic alphabet (``[A-Za-z0-9._-]``), so the
    origin is also a valid signed-note key name (no space, no ``+``) and the log key can be
    named after it.
    """
    for what, value in (("deployment", deployment), ("topic", topic)):
        if not _ORIGIN_PART.fullmatch(value):
            raise CheckpointError("bad-origin", f"{what} {value!r} must match [A-Za-z0-9._-]+")
    if isinstance(partition, bool) or not isinstance(partition, int) or partition < 0:
        raise CheckpointError(
            "bad-origin", f"partition {partition!r} must be a non-negative integer"
        )
    return f"{ORIGIN_PREFIX}/{deployment}/{topic}/{partition}"


def parse_log_origin(origin: str) -> tuple[str, str, int]:
    """``(deployment, topic, partition)`` of a Protocolo origin; the inverse of :func:`log_origin`."""
    parts = origin.split("/")
    if (
        len(parts) != 4
        or parts[0] != ORIGIN_PREFIX
        or not _ORIGIN_PART.fullmatch(parts[1])
        or not _ORIGIN_PART.fullmatch(parts[2])
        or not _DECIMAL.fullmatch(parts[3])
    ):
        raise CheckpointError(
            "bad-origin", f"{origin!r} is not protocolo/<deployment>/<topic>/<partition>"
        )
    return parts[1], parts[2], int(parts[3])
