"""C2SP tlog-proof: one entry's offline proof of logging (a ``.tlog-proof`` file).

Format (c2sp.org/tlog-proof@v1), lines separated by ``\\n``::

    c2sp.org/tlog-proof@v1
    [extra <base64 opaque data, NOT authenticated>]
    index <0-based decimal, no leading zeros>
    <base64 hash>*               inclusion path, leaf's sibling first, root's child last
    <empty line>
    <the checkpoint note, verbatim, with log and witness signature lines>

Verifying it: compute the entry's leaf hash (application-specific; for Protocolo see
docs/evidence-format.md), verify the checkpoint under a tlog-policy (log signature, origin,
witness quorum), then the inclusion path against the checkpoint's size and root.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from protocolo.evidence.errors import EvidenceError, ProofError
from protocolo.evidence.merkle import HASH_SIZE, MAX_TREE_SIZE
from protocolo.evidence.note import decode_base64, encode_base64
from protocolo.evidence.policy import Policy, VerifiedCheckpoint
from protocolo.evidence.proof import verify_inclusion

HEADER = "c2sp.org/tlog-proof@v1"
_DECIMAL = re.compile(r"0|[1-9][0-9]*", re.ASCII)


@dataclass(frozen=True)
class TlogProof:
    index: int
    path: tuple[bytes, ...]
    checkpoint: bytes
    extra: bytes | None = None

    def encode(self) -> bytes:
        if not 0 <= self.index <= MAX_TREE_SIZE:
            raise ProofError("bad-size", f"index {self.index} is not a uint64")
        lines = [HEADER]
        if self.extra is not None:
            if not self.extra:
                raise ProofError("malformed-tlog-proof", "extra data, when present, is non-empty")
            lines.append("extra " + encode_base64(self.extra))
        lines.append(f"index {self.index}")
        lines.extend(encode_base64(h) for h in self.path)
        head = "".join(line + "\n" for line in lines) + "\n"
        return head.encode("ascii") + self.checkpoint


def _malformed(message: str) -> ProofError:
    return ProofError("malformed-tlog-proof", message)


def parse_tlog_proof(data: bytes) -> TlogProof:
    """Parse a tlog-proof; the checkpoint note is kept as bytes, verbatim."""
    split = data.find(b"\n\n")
    if split < 0:
        raise _malformed("no empty line between the proof and the checkpoint")
    try:
        head = data[:split].decode("ascii")
    except UnicodeDecodeError:
        raise _malformed("proof lines must be ASCII") from None
    checkpoint = data[split + 2 :]
    if not checkpoint:
        raise _malformed("no checkpoint after the empty line")
    lines = head.split("\n")
    if lines[0] != HEADER:
        raise _malformed(f"first line must be {HEADER!r}")
    position = 1
    extra: bytes | None = None
    if position < len(lines) and lines[position].startswith("extra "):
        try:
            extra = decode_base64(lines[position][len("extra ") :], "extra data", ProofError)
        except EvidenceError as failure:
            raise _malformed(failure.detail) from None
        if not extra:
            raise _malformed("extra line carries no data")
        position += 1
    if position >= len(lines) or not lines[position].startswith("index "):
        raise _malformed("missing 'index <n>' line")
    index_text = lines[position][len("index ") :]
    if not _DECIMAL.fullmatch(index_text) or int(index_text) > MAX_TREE_SIZE:
        raise _malformed(f"index {index_text[:40]!r} is not a uint64 decimal without leading zeros")
    path: list[bytes] = []
    for number, line in enumerate(lines[position + 1 :], start=position + 2):
        try:
            value = decode_base64(line, f"proof line {number}", ProofError)
        except EvidenceError as failure:
            raise _malformed(failure.detail) from None
        if len(value) != HASH_SIZE:
            raise _malformed(f"proof line {number} is {len(value)} bytes, not {HASH_SIZE}")
        path.append(value)
    if len(path) > 64:
        raise _malformed(f"{len(path)} proof hashes: no uint64 tree needs more than 64")
    return TlogProof(int(index_text), tuple(path), checkpoint, extra)


def make_tlog_proof(
    index: int, path: Sequence[bytes], checkpoint: bytes, extra: bytes | None = None
) -> bytes:
    return TlogProof(index, tuple(path), checkpoint, extra).encode()


def verify_tlog_proof(
    data: bytes, leaf: bytes, policy: Policy, origin: str | None = None
) -> VerifiedCheckpoint:
    """Check that ``leaf`` (a leaf hash) is in the log, as a checkpoint the policy trusts says.

    Returns the verified checkpoint; raises an :class:`EvidenceError` subclass naming the
    failed step (malformed proof, signature, quorum, inclusion).
    """
    proof = parse_tlog_proof(data)
    verified = policy.verify_checkpoint(proof.checkpoint, origin)
    checkpoint = verified.signed.checkpoint
    verify_inclusion(leaf, proof.index, checkpoint.size, proof.path, checkpoint.root)
    return verified
