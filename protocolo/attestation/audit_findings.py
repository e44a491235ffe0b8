"""What an audit of the ledger found: differences, each located and named by kind.

A finding says where (partition, leaf index, Kafka offset; a tree node or a checkpoint
size when that is where it is) and what (its *kind*). The log of findings keeps counts of
everything but the details of at most ``limit`` findings per kind, so that a ledger
altered everywhere still yields a report of bounded size; it also remembers, per
partition, the first difference in leaf order (where an investigation starts).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

#: A row's content (topic, partition, offset, key, value) does not give the leaf the tree
#: holds at its index, or the row's stored ``leaf_hash`` is not its content's hash.
MODIFIED = "modified"
#: A leaf of the tree (or, with ``--against-kafka``, a record of the topic) has no row.
MISSING = "missing"
#: A row that is no leaf of the tree: beyond its size, a second row for one index, a row
#: of a partition with no tree; or (``--against-kafka``) an offset the topic does not hold.
INSERTED = "inserted"
#: A row whose content is intact but that sits at another leaf index than the tree says,
#: or whose offset is not above the offset of the leaf before it.
REORDERED = "reordered"
#: A stored tree node, the stored tree size or compact range is not what the rows give,
#: and no leaf finding explains it.
TREE_MISMATCH = "tree-mismatch"
#: A checkpoint row whose note is not signed by a pinned log key, or whose columns are not
#: what its signed note says.
CHECKPOINT_FORGED = "checkpoint-forged"
#: A validly signed checkpoint whose root is not the root of the rows at its size.
CHECKPOINT_MISMATCH = "checkpoint-mismatch"
#: Two consecutive checkpoints whose stored consistency proof does not verify, or that
#: do not name each other.
CHECKPOINT_INCONSISTENT = "checkpoint-inconsistent"

#: A journal row's decoded copy (``payload`` or a column decoded from the record:
#: ``event_type``, ``occurred_at``, ``protocol_number``...) is not what its bytes decode to.
PAYLOAD_MISMATCH = "payload-mismatch"
#: A view's row is not what the projector's own view code computes from the journal.
VIEW_MISMATCH = "view-mismatch"
#: The verifiable index differs from the map rebuilt from the rows: a signed map root, a
#: key's stored list of leaf indexes, or a stored map node (protocolo.attestation.audit_index).
INDEX_MISMATCH = "index-mismatch"
#: An index checkpoint not signed by a pinned log key, or whose columns are not what it says.
INDEX_FORGED = "index-forged"

KINDS = (MODIFIED, MISSING, INSERTED, REORDERED, TREE_MISMATCH, CHECKPOINT_FORGED,
         CHECKPOINT_MISMATCH, CHECKPOINT_INCONSISTENT, PAYLOAD_MISMATCH, VIEW_MISMATCH,
         INDEX_MISMATCH, INDEX_FORGED)


@dataclass(frozen=True, slots=True)
class Finding:
    """One difference. ``leaf_index``/``kafka_offset`` are None when not determined (a
    missing leaf between offsets with gaps; a checkpoint). ``source`` says what was
    compared: ``journal``, ``quarantine``, ``tree``, ``checkpoint`` or ``kafka``."""

    kind: str
    partition: int
    leaf_index: int | None
    kafka_offset: int | None
    source: str
    detail: str
    level: int | None = None  # tree findings: the node (level, index)
    node_index: int | None = None
    tree_size: int | None = None  # checkpoint findings: the checkpoint's size
    table: str | None = None  # view findings: the table, the row's key, the column
    key: str | None = None
    column: str | None = None

    @property
    def position(self) -> tuple[int, int]:
        """Order within a partition: by the first leaf it concerns."""
        if self.leaf_index is not None:
            return (self.leaf_index, 0)
        if self.level is not None and self.node_index is not None:
            return (self.node_index << self.level, 1)
        if self.tree_size is not None:
            return (self.tree_size, 2)
        return (1 << 64, 3)

    def as_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if v is not None}
        if self.table is not None:
            del out["partition"]  # a view row is no partition's
        return out

    def describe(self) -> str:
        if self.table is not None:
            at = [f"table {self.table}"] + [f"{name} {value}" for name, value in
                                             (("key", self.key), ("column", self.column)) if value]
            return f"{self.kind:<24} {', '.join(at)} [{self.source}]: {self.detail}"
        where = [f"partition {self.partition}"]
        if self.leaf_index is not None:
            where.append(f"leaf {self.leaf_index}")
        if self.kafka_offset is not None:
            where.append(f"offset {self.kafka_offset}")
        if self.level is not None:
            where.append(f"node ({self.level}, {self.node_index})")
        if self.tree_size is not None:
            where.append(f"checkpoint size {self.tree_size}")
        return f"{self.kind:<24} {', '.join(where)} [{self.source}]: {self.detail}"


@dataclass
class PartitionSummary:
    """What the audit saw of one partition."""

    partition: int
    leaves: int = 0  # leaf positions walked (the tree's size, or more when rows exceed it)
    rows: int = 0  # journal and quarantine rows read
    quarantined: int = 0
    tree_size: int | None = None  # as stored in projector_offsets
    root: str | None = None  # hex of the root recomputed from the rows at the stored size
    checkpoints: int = 0
    checkpoints_verified: int = 0
    kafka_records: int | None = None  # --against-kafka: records compared
    kafka_unverifiable: int | None = None  # --against-kafka: rows below the log start (retention)
    first: Finding | None = None

    def as_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k != "first"}
        out["first_difference"] = self.first.as_dict() if self.first else None
        return out


@dataclass
class FindingLog:
    """Every finding counted; at most ``limit`` per kind kept with its details."""

    limit: int = 100
    counts: Counter[str] = field(default_factory=Counter)
    kept: list[Finding] = field(default_factory=list)
    partitions: dict[int, PartitionSummary] = field(default_factory=dict)

    def summary(self, partition: int) -> PartitionSummary:
        if partition not in self.partitions:
            self.partitions[partition] = PartitionSummary(partition)
        return self.partitions[partition]

    def add(self, finding: Finding) -> None:
        self.counts[finding.kind] += 1
        if self.counts[finding.kind] <= self.limit:
            self.kept.append(finding)
        if finding.table is not None:
            return
        summary = self.summary(finding.partition)
        if summary.first is None or finding.position < summary.first.position:
            summary.first = finding

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def sorted(self) -> list[Finding]:
        return sorted(self.kept, key=lambda f: (f.table is not None, f.partition, f.position, f.kind,
                                                f.table or "", f.key or "", f.column or ""))
