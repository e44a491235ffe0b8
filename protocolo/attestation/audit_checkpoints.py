"""The auditor's checks of one partition's stored checkpoints, in tree-size order.

For each row of ``checkpoints`` (the signed note is the statement; the other columns are
conveniences that must agree with it):

* the note verifies with a pinned log key named after its origin (C2SP: the log's key
  name is the origin), and that origin is this topic's and this partition's log;
* the row's ``tree_size``, ``root_hash``, ``origin``, key columns and ``compact_range``
  say what the signed note says (the compact range must fold to the signed root);
* the signed root is the root recomputed from the journal and quarantine rows at that
  size (:class:`~protocolo.attestation.ledger_audit.PartitionWalk` hands it over);
* it names the checkpoint before it (``consistency_from``) and its stored consistency
  proof from that one verifies between the two signed roots (RFC 9162 §2.1.4.2). Both
  roots equal to the recomputed roots of one leaf sequence is the recomputed half of the
  consistency check: prefixes of one sequence are consistent by construction.

Pinned keys: the log signs each partition's checkpoints with a key of its own, named after
the origin (docs/checkpoints.md), so a pinned verifier key verifies the checkpoints of the
origin it is named after, and no other.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from protocolo.attestation.audit_findings import (
    CHECKPOINT_FORGED,
    CHECKPOINT_INCONSISTENT,
    CHECKPOINT_MISMATCH,
    Finding,
    FindingLog,
)
from protocolo.evidence.checkpoint import open_checkpoint, parse_checkpoint, parse_log_origin
from protocolo.evidence.errors import EvidenceError
from protocolo.evidence.merkle import CompactRange, fold
from protocolo.evidence.note import (
    SIG_ED25519,
    Ed25519NoteVerifier,
    NoteVerifier,
    VerifierKey,
    parse_note,
)
from protocolo.evidence.proof import verify_consistency


@dataclass(frozen=True, slots=True)
class CheckpointRow:
    """A row of ``checkpoints``, as stored (nothing here is trusted until checked)."""

    tree_size: int
    root_hash: bytes
    origin: str
    note: str
    key_name: str
    key_id: str
    compact_range: tuple[bytes, ...]
    consistency_from: int | None
    consistency_proof: tuple[bytes, ...] | None


CHECKPOINT_COLUMNS = (
    "tree_size, root_hash, origin, note, key_name, key_id, compact_range, consistency_from,"
    " consistency_proof"
)


def checkpoint_from_row(row: Sequence[Any]) -> CheckpointRow:
    size, root, origin, note, key_name, key_id, compact, since, proof = row
    return CheckpointRow(
        int(size), bytes(root), str(origin), str(note), str(key_name), str(key_id),
        tuple(bytes(h) for h in compact or ()),
        None if since is None else int(since),
        None if proof is None else tuple(bytes(h) for h in proof),
    )


class LogKeys:
    """The pinned log keys (Ed25519 verifier keys) and the verifier each origin gets."""

    def __init__(self, keys: Sequence[VerifierKey]) -> None:
        for key in keys:
            if key.type != SIG_ED25519:
                raise ValueError(f"verifier key {key.name}+{key.key_id:08x} is not an Ed25519 log key "
                                 f"(type 0x{key.type:02x}); a log signs with type 0x01")
        self.keys = tuple(keys)

    def for_origin(self, origin: str) -> list[NoteVerifier]:
        return [Ed25519NoteVerifier(origin, key.public_key) for key in self.keys if key.name == origin]


@dataclass(frozen=True, slots=True)
class _Signed:
    size: int
    root: bytes
    reproduced: bool


class CheckpointAudit:
    """Checks one partition's checkpoints, each when the walk reaches its size."""

    def __init__(self, topic: str, partition: int, keys: LogKeys, findings: FindingLog) -> None:
        self.topic = topic
        self.partition = partition
        self.keys = keys
        self.findings = findings
        self.summary = findings.summary(partition)
        self._previous: _Signed | None = None
        self._predecessor_forged = False  # then the next one's consistency cannot be checked

    def _add(self, kind: str, cp: CheckpointRow, detail: str) -> None:
        self.findings.add(Finding(kind, self.partition, None, None, "checkpoint", detail,
                                  tree_size=cp.tree_size))

    def check(self, cp: CheckpointRow, recomputed: CompactRange | None, reproduced: bool) -> None:
        """``recomputed``: the compact range of the rows' tree at ``cp.tree_size`` (None when
        the rows do not reach that size); ``reproduced``: no leaf finding below that size."""
        self.summary.checkpoints += 1
        signed = self._signed(cp)
        previous, self._previous = self._previous, None
        if signed is None:
            self._predecessor_forged = True
            return
        recomputed_root = recomputed.root() if recomputed is not None else None
        matches = recomputed_root == signed.root and reproduced
        if not matches:
            why = ("the rows do not reach this size" if recomputed_root is None else
                   "the root recomputed from the rows differs" if recomputed_root != signed.root else
                   "leaves below this size differ from the rows (see the leaf findings)")
            self._add(CHECKPOINT_MISMATCH, cp, f"signed root {signed.root.hex()[:16]}... at size "
                      f"{cp.tree_size} is not reproduced by the ledger: {why}")
        signed = _Signed(signed.size, signed.root, matches)
        self._previous = signed
        if previous is not None or not self._predecessor_forged:
            self._check_consistency(cp, previous, signed)
        self._predecessor_forged = False
        if matches:
            self.summary.checkpoints_verified += 1

    def _signed(self, cp: CheckpointRow) -> _Signed | None:
        """The size and root the note signs, if a pinned key signed it; findings otherwise."""
        try:
            body = parse_checkpoint(parse_note(cp.note.encode("utf-8")).text)
        except EvidenceError as exc:
            self._add(CHECKPOINT_FORGED, cp, f"the stored note is not a checkpoint: {exc}")
            return None
        origin = body.origin
        try:
            _, topic, partition = parse_log_origin(origin)
        except EvidenceError as exc:
            self._add(CHECKPOINT_FORGED, cp, str(exc))
            return None
        if (topic, partition) != (self.topic, self.partition):
            self._add(CHECKPOINT_FORGED, cp, f"the note is a checkpoint of {origin}, not of "
                      f"{self.topic} partition {self.partition}")
            return None
        verifiers = self.keys.for_origin(origin)
        if not verifiers:
            self._add(CHECKPOINT_FORGED, cp, f"no pinned log key verifies origin {origin}")
            return None
        try:
            opened = open_checkpoint(cp.note.encode("utf-8"), verifiers, origin=origin)
        except EvidenceError as exc:
            self._add(CHECKPOINT_FORGED, cp, f"signature does not verify with the pinned key(s): {exc}")
            return None
        signer = next((s for s in opened.note.verified if s.name == origin), None)
        if signer is None:
            self._add(CHECKPOINT_FORGED, cp, f"not signed by the log key named {origin}")
            return None
        checkpoint = opened.checkpoint
        edits = [name for name, stored, signed in (
            ("tree_size", cp.tree_size, checkpoint.size),
            ("root_hash", cp.root_hash, checkpoint.root),
            ("origin", cp.origin, origin),
            ("key_name", cp.key_name, signer.name),
            ("key_id", cp.key_id, f"{signer.key_id:08x}"),
        ) if stored != signed]
        if fold(cp.compact_range) != checkpoint.root or len(cp.compact_range) != checkpoint.size.bit_count():
            edits.append("compact_range")
        if edits:
            self._add(CHECKPOINT_FORGED, cp, "the row's " + ", ".join(edits) + " differ(s) from its "
                      "signed note (the row was edited after signing)")
            return None
        return _Signed(checkpoint.size, checkpoint.root, True)

    def _check_consistency(self, cp: CheckpointRow, previous: _Signed | None, signed: _Signed) -> None:
        if previous is None:
            if cp.consistency_from is not None:
                self._add(CHECKPOINT_INCONSISTENT, cp, f"names size {cp.consistency_from} as the checkpoint "
                          "before it, but there is no earlier checkpoint")
            return
        if cp.consistency_from != previous.size:
            self._add(CHECKPOINT_INCONSISTENT, cp, f"names size {cp.consistency_from} as the checkpoint "
                      f"before it; the one before is size {previous.size}")
            return
        if previous.size == 0:
            return  # nothing to prove from the empty tree (C2SP tlog-witness: empty proof)
        if cp.consistency_proof is None:
            self._add(CHECKPOINT_INCONSISTENT, cp, f"no consistency proof from size {previous.size} is stored")
            return
        try:
            verify_consistency(previous.size, signed.size, previous.root, signed.root,
                               list(cp.consistency_proof))
        except EvidenceError as exc:
            recomputed = " (both roots are the rows' roots: the stored proof was altered)" \
                if previous.reproduced and signed.reproduced else ""
            self._add(CHECKPOINT_INCONSISTENT, cp, f"consistency from size {previous.size} does not "
                      f"verify: {exc}{recomputed}")
