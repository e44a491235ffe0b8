"""The cryptographic checks of an audit export (docs/export-format.md), pure and streaming.

An export holds, per partition, the leaves ``[a, b)`` of the partition's RFC 6962 tree
between two signed checkpoints. This module checks what makes it evidence, with nothing
but the standard library and ``cryptography``: the manifest's signed note, the
checkpoints at both ends under the pinned trust, the consistency proof between them, and
**completeness**: the compact range of ``[0, a)`` folds to root(a) and, with the export's
leaves appended in order, gives root(b), so no leaf can be added, dropped or moved. A
subset export (filters) instead proves each of its leaves into root(b).

Reading the Avro container is not done here (``protocolo.attestation.export_read`` does
it, with fastavro): the checks take each record's leaf fields as they are read, one at a
time, so memory stays bounded whatever the export's size.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from protocolo.evidence.checkpoint import Checkpoint
from protocolo.evidence.errors import EvidenceError
from protocolo.evidence.leaf import partition_leaf_hasher
from protocolo.evidence.merkle import EMPTY_ROOT, CompactRange, fold
from protocolo.evidence.note import NoteSigner, open_note, sign_note
from protocolo.evidence.policy import Policy
from protocolo.evidence.proof import verify_consistency, verify_inclusion

FORMAT = "protocolo/export/v1"
MANIFEST = "manifest.json"
MANIFEST_SIGNATURE = "manifest.sig"
SUMS = "SHA256SUMS"


class ExportFailure(Exception):
    """One failed check: ``reason`` is a stable name, ``subject`` the file or partition."""

    def __init__(self, reason: str, subject: str, detail: str) -> None:
        super().__init__(f"{subject}: {detail} [{reason}]")
        self.reason = reason
        self.subject = subject
        self.detail = detail


def export_sync_marker(export_id: str) -> bytes:
    """The 16-byte Avro sync marker of every ``data.avro`` of an export: derived from the
    export id (not random) so that the same export written twice is the same bytes."""
    return hashlib.sha256(f"{FORMAT}/sync\n{export_id}".encode()).digest()[:16]


def manifest_note_text(manifest: bytes) -> str:
    """The text ``manifest.sig`` signs: the format line and the manifest's SHA-256 (hex)."""
    return f"{FORMAT}\n{hashlib.sha256(manifest).hexdigest()}\n"


def sign_manifest(manifest: bytes, signer: NoteSigner) -> bytes:
    return sign_note(manifest_note_text(manifest), [signer])


def check_manifest_signature(manifest: bytes, signature: bytes, policy: Policy,
                             origins: Sequence[str]) -> str:
    """The manifest's note must be signed by a trusted log key of one of the export's
    partitions and state the manifest's hash; returns the signer's name."""
    verifiers = [log.verifier for log in policy.logs if log.key.name in origins]
    if not verifiers:
        raise ExportFailure("no-trusted-key", MANIFEST_SIGNATURE,
                            "no trusted key is named for any of the export's logs")
    try:
        opened = open_note(signature, verifiers)
    except EvidenceError as exc:
        raise ExportFailure("manifest-signature", MANIFEST_SIGNATURE,
                            f"not signed by a trusted log key ({exc.detail})") from None
    if opened.text != manifest_note_text(manifest):
        raise ExportFailure("manifest-hash", MANIFEST_SIGNATURE,
                            "the signed text does not name this manifest.json's SHA-256")
    return opened.verified[0].name


@dataclass(frozen=True)
class Head:
    """A verified tree head: size and root (size 0 is the empty tree, no note needed)."""

    size: int
    root: bytes

    @classmethod
    def empty(cls) -> Head:
        return cls(0, EMPTY_ROOT)


def open_head(note: bytes, policy: Policy, origin: str, subject: str) -> Head:
    """A checkpoint note verified under the pinned policy for ``origin``."""
    try:
        checkpoint: Checkpoint = policy.verify_checkpoint(note, origin).signed.checkpoint
    except EvidenceError as exc:
        raise ExportFailure(f"checkpoint-{exc.reason}", subject, exc.detail) from None
    return Head(checkpoint.size, checkpoint.root)


def check_consistency(start: Head, end: Head, proof: Sequence[bytes], subject: str) -> None:
    if end.size < start.size:
        raise ExportFailure("period-reversed", subject,
                            f"the end checkpoint (size {end.size}) is older than the start "
                            f"(size {start.size})")
    if start.size == 0:
        if proof:
            raise ExportFailure("consistency", subject, "no proof is needed from the empty tree")
        return
    try:
        verify_consistency(start.size, end.size, start.root, end.root, proof)
    except EvidenceError as exc:
        raise ExportFailure("consistency", subject, exc.detail) from None


class PartitionLeaves:
    """Streaming check of one partition's records against its two tree heads.

    Full export: the records must be leaves ``[a, b)`` exactly, in order; ``prefix`` (the
    compact range of ``[0, a)``) must fold to root(a), and appending every leaf hash must
    give root(b). Subset export: leaf indexes strictly increase inside ``[a, b)`` and each
    record's inclusion proof leads to root(b).
    """

    def __init__(self, topic: str, partition: int, start: Head, end: Head,
                 prefix: Sequence[bytes], *, subset: bool, subject: str) -> None:
        self.subject = subject
        self.start, self.end, self.subset = start, end, subset
        self._leaf = partition_leaf_hasher(topic, partition)
        self._next = start.size
        self._last_offset = -1
        self.count = 0
        self._tree: CompactRange | None = None
        if subset:
            return
        try:
            tree = CompactRange(start.size, prefix)
        except EvidenceError as exc:
            raise ExportFailure("completeness-range", subject, exc.detail) from None
        if fold(tree.hashes) != start.root:
            raise ExportFailure("completeness-range", subject,
                                f"the compact range of [0, {start.size}) does not give the "
                                "signed root at the period's start")
        self._tree = tree

    def add(self, offset: int, leaf_index: int, key: bytes | None, value: bytes,
            inclusion: Sequence[bytes] = ()) -> bytes:
        where = f"record {self.count} (offset {offset}, leaf {leaf_index})"
        if offset <= self._last_offset:
            raise ExportFailure("record-order", self.subject,
                                f"{where}: offsets must increase (previous {self._last_offset})")
        self._check_index(leaf_index, where)
        try:
            leaf = self._leaf(offset, key, value)
            if self._tree is not None:
                self._tree.append(leaf)
            else:
                verify_inclusion(leaf, leaf_index, self.end.size, inclusion, self.end.root)
        except EvidenceError as exc:
            raise ExportFailure("inclusion", self.subject, f"{where}: {exc.detail}") from None
        self._last_offset = offset
        self._next = leaf_index + 1
        self.count += 1
        return leaf

    def _check_index(self, leaf_index: int, where: str) -> None:
        if self.subset:
            if not self._next <= leaf_index < self.end.size:
                raise ExportFailure("record-order", self.subject,
                                    f"{where}: leaf index outside [{self._next}, {self.end.size})")
        elif leaf_index != self._next:
            raise ExportFailure("record-order", self.subject,
                                f"{where}: expected leaf {self._next} (records are leaves "
                                f"[{self.start.size}, {self.end.size}) in order)")
        if leaf_index >= self.end.size:
            raise ExportFailure("completeness", self.subject,
                                f"{where}: more records than leaves up to the end checkpoint "
                                f"(size {self.end.size})")

    def finish(self) -> None:
        if self._tree is None:
            return
        if self._tree.size != self.end.size:
            raise ExportFailure("completeness", self.subject,
                                f"{self._tree.size - self.start.size} records, the period holds "
                                f"leaves [{self.start.size}, {self.end.size})")
        if self._tree.root() != self.end.root:
            raise ExportFailure("completeness", self.subject,
                                f"leaves [{self.start.size}, {self.end.size}) appended to the "
                                "start tree do not give the signed root at the period's end")
