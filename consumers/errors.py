"""Why a projector stops. Each message says what happened and what to do about it."""

from __future__ import annotations


class ProjectorError(RuntimeError):
    pass


#: What to do when the log no longer holds what was projected (both errors below).
_REPLACED_LOG_REMEDY = (
    "Nothing was skipped or projected twice; the projector stopped. Restore the topic's data, "
    "or point the projector at a fresh database (PROTOCOLO_DATABASE_URL) or another topic "
    "(PROTOCOLO_TOPIC) to start a new ledger; the journal in PostgreSQL still holds everything "
    "projected so far."
)


class StoredOffsetBeyondLogEnd(ProjectorError):
    def __init__(self, topic: str, partition: int, stored: int, log_end: int | None) -> None:
        end = "out of range" if log_end is None else f"ends at offset {log_end}"
        super().__init__(
            f"{topic} partition {partition}: PostgreSQL says {stored} records of this partition were "
            f"already projected, but the broker's log {end}. The topic was deleted and recreated, or "
            "the broker lost data (the embedded tansu broker keeps its log in memory: restarting it "
            f"empties every topic). {_REPLACED_LOG_REMEDY}"
        )
        self.topic, self.partition, self.stored, self.log_end = topic, partition, stored, log_end


class LogReplaced(ProjectorError):
    def __init__(self, topic: str, partition: int, offset: int, found: str) -> None:
        super().__init__(
            f"{topic} partition {partition}: the record at offset {offset} is {found}, not the one "
            "projected there (its Merkle leaf differs from the journal's). The topic was deleted and "
            f"recreated, or the broker lost data and was written to again. {_REPLACED_LOG_REMEDY}"
        )
        self.topic, self.partition, self.offset = topic, partition, offset


class TreeDiverged(ProjectorError):
    """A partition's stored Merkle tree does not cover exactly the leaves projected so far."""

    def __init__(self, topic: str, partition: int, tree_size: int, next_leaf_index: int) -> None:
        super().__init__(
            f"{topic} partition {partition}: the stored Merkle tree has {tree_size} leaves but "
            f"{next_leaf_index} records were projected (projector_offsets.tree_size differs from "
            "next_leaf_index). Appending to it would leave records out of every proof, so the "
            "projector stopped and wrote nothing. The tree or the offsets were changed outside "
            "the projector: run `protocolo verify`, then restore the database from a backup or "
            "rebuild the ledger into a fresh database."
        )
        self.topic, self.partition = topic, partition
        self.tree_size, self.next_leaf_index = tree_size, next_leaf_index
