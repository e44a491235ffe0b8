"""The one exception family of the evidence core: what failed, under which rule."""

from __future__ import annotations


class EvidenceError(ValueError):
    """Evidence that does not verify or does not parse.

    ``reason`` is a short stable name of the rule that failed (``root-mismatch``,
    ``proof-length``, ``malformed-note``...), meant for machines and tests; the message
    says, for a person, what was wrong and where.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{message} [{reason}]")
        self.reason = reason
        self.detail = message


class ProofError(EvidenceError):
    """A Merkle proof (inclusion, consistency, range) is malformed or does not verify."""


class NoteError(EvidenceError):
    """A signed note or a key string is malformed, or its signatures do not verify."""


class CheckpointError(EvidenceError):
    """A checkpoint body breaks a rule of C2SP tlog-checkpoint."""


class PolicyError(EvidenceError):
    """A tlog-policy file is malformed, or a checkpoint does not satisfy it."""
