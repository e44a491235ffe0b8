"""C2SP tlog-policy: which logs and witnesses a verifier trusts, and the witness quorum.

File format (c2sp.org/tlog-policy)::

    log <vkey> [<url>]
    witness <name> <vkey> [<url>]
    group <name> <k|all|any> <member> ...
    quorum <name|none>

Items are separated by runs of ASCII space or tab; blank lines and ``#`` comment lines are
ignored; allowed octets are tab, newline, 0x20-0x7E and 0x80-0xFF (names are opaque
octets). Groups and the quorum refer only to names defined on earlier lines; witnesses
and groups share one namespace where ``none`` is reserved; a group lists each member at
most once and needs ``1 <= k <= n``; exactly one quorum line; no two logs (or two
witnesses) may wrap the same public key.

A checkpoint satisfies the policy when one listed log signed it, that log's key name is
the checkpoint's origin, and the witnesses whose cosignatures verified satisfy the quorum.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from protocolo.evidence.checkpoint import SignedCheckpoint, open_checkpoint
from protocolo.evidence.errors import NoteError, PolicyError
from protocolo.evidence.keys import verifier_from_key
from protocolo.evidence.note import (
    SIG_COSIGNATURE_V1,
    SIG_ED25519,
    SIG_SUBTREE_MLDSA44,
    NoteVerifier,
    VerifierKey,
)

NONE = "none"
LOG_TYPES = frozenset({SIG_ED25519, SIG_SUBTREE_MLDSA44})
WITNESS_TYPES = frozenset({SIG_COSIGNATURE_V1, SIG_SUBTREE_MLDSA44})
_BAD_OCTET = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_THRESHOLD = re.compile(r"[1-9][0-9]*", re.ASCII)


@dataclass(frozen=True)
class PolicyLog:
    key: VerifierKey
    verifier: NoteVerifier
    url: str | None = None


@dataclass(frozen=True)
class PolicyWitness:
    name: str
    key: VerifierKey
    verifier: NoteVerifier
    url: str | None = None


@dataclass(frozen=True)
class PolicyGroup:
    name: str
    threshold: int
    members: tuple[str, ...]


@dataclass(frozen=True)
class Policy:
    logs: tuple[PolicyLog, ...]
    witnesses: dict[str, PolicyWitness] = field(default_factory=dict)
    groups: dict[str, PolicyGroup] = field(default_factory=dict)
    quorum: str = NONE

    def satisfied_by(self, witnessed: Iterable[str]) -> bool:
        """Whether the witnesses named in ``witnessed`` (those that cosigned) meet the quorum."""
        cosigned = set(witnessed)
        if self.quorum == NONE:
            return True
        return self._witnessed(self.quorum, cosigned)

    def _witnessed(self, name: str, cosigned: set[str]) -> bool:
        if name in self.witnesses:
            return name in cosigned
        group = self.groups[name]
        count = sum(1 for member in group.members if self._witnessed(member, cosigned))
        return count >= group.threshold

    def verify_checkpoint(self, data: bytes, origin: str | None = None) -> VerifiedCheckpoint:
        """Open a signed checkpoint under this policy; raise :class:`PolicyError` if it fails.

        Signature failures raise :class:`NoteError`, body errors :class:`CheckpointError`.
        """
        verifiers = [log.verifier for log in self.logs] + [
            w.verifier for w in self.witnesses.values()
        ]
        signed = open_checkpoint(data, verifiers, origin=origin)
        checkpoint = signed.checkpoint
        logs = [
            log
            for log in self.logs
            if log.key.name == checkpoint.origin
            and signed.note.verified_by(log.key.name, log.key.key_id)
        ]
        if not logs:
            raise PolicyError(
                "no-log-signature",
                f"no log of the policy named {checkpoint.origin!r} signed this checkpoint",
            )
        witnessed = tuple(
            name
            for name, w in self.witnesses.items()
            if signed.note.verified_by(w.key.name, w.key.key_id)
        )
        if not self.satisfied_by(witnessed):
            raise PolicyError(
                "quorum-not-met",
                f"witness quorum {self.quorum!r} not met; cosigned by: "
                + (", ".join(witnessed) or "nobody"),
            )
        return VerifiedCheckpoint(signed, logs[0], witnessed)


@dataclass(frozen=True)
class VerifiedCheckpoint:
    signed: SignedCheckpoint
    log: PolicyLog
    witnesses: tuple[str, ...]


def _fail(number: int, message: str) -> PolicyError:
    return PolicyError("malformed-policy", f"policy line {number}: {message}")


def _key(
    number: int, vkey: str, allowed: frozenset[int], role: str
) -> tuple[VerifierKey, NoteVerifier]:
    try:
        key = VerifierKey.parse(vkey)
        verifier = verifier_from_key(vkey)
    except NoteError as failure:
        raise _fail(number, f"{role} key: {failure.detail}") from None
    if key.type not in allowed:
        raise _fail(number, f"a {role} key cannot have signature type 0x{key.type:02x}")
    return key, verifier


def parse_policy(data: bytes) -> Policy:
    """Parse a tlog-policy file; every rule broken is named with its line number."""
    text = data.decode("utf-8", errors="surrogateescape")
    bad = _BAD_OCTET.search(text)
    if bad:
        line = text.count("\n", 0, bad.start()) + 1
        raise _fail(line, f"control character 0x{ord(bad.group()):02x} is not allowed")
    reader = _PolicyReader()
    for number, raw_line in enumerate(text.split("\n"), start=1):
        items = raw_line.replace("\t", " ").split()
        if items and not items[0].startswith("#"):
            reader.line(number, items[0], items[1:])
    return reader.policy()


class _PolicyReader:
    """The policy read so far, one line at a time: each keyword checks its own rules against
    the names and keys defined on earlier lines."""

    def __init__(self) -> None:
        self.logs: list[PolicyLog] = []
        self.witnesses: dict[str, PolicyWitness] = {}
        self.groups: dict[str, PolicyGroup] = {}
        self.log_keys: set[tuple[int, bytes]] = set()
        self.witness_keys: set[tuple[int, bytes]] = set()
        self.quorum: str | None = None

    def line(self, number: int, keyword: str, args: list[str]) -> None:
        if keyword == "log":
            self._log(number, args)
        elif keyword == "witness":
            self._witness(number, args)
        elif keyword == "group":
            self._group(number, args)
        elif keyword == "quorum":
            self._quorum(number, args)
        else:
            raise _fail(number, f"unknown keyword {keyword!r}")

    def policy(self) -> Policy:
        if self.quorum is None:
            raise PolicyError("malformed-policy", "policy has no quorum line")
        return Policy(tuple(self.logs), self.witnesses, self.groups, self.quorum)

    def _defined(self, name: str) -> bool:
        return name in self.witnesses or name in self.groups

    def _new_name(self, number: int, name: str) -> None:
        if name == NONE or self._defined(name):
            raise _fail(number, f"name {name!r} is reserved or already defined")

    def _log(self, number: int, args: list[str]) -> None:
        if len(args) not in (1, 2):
            raise _fail(number, "expected: log <vkey> [<url>]")
        key, verifier = _key(number, args[0], LOG_TYPES, "log")
        if (key.type, key.public_key) in self.log_keys:
            raise _fail(number, "duplicate log key")
        self.log_keys.add((key.type, key.public_key))
        self.logs.append(PolicyLog(key, verifier, args[1] if len(args) == 2 else None))

    def _witness(self, number: int, args: list[str]) -> None:
        if len(args) not in (2, 3):
            raise _fail(number, "expected: witness <name> <vkey> [<url>]")
        name = args[0]
        self._new_name(number, name)
        key, verifier = _key(number, args[1], WITNESS_TYPES, "witness")
        if (key.type, key.public_key) in self.witness_keys:
            raise _fail(number, "duplicate witness key")
        self.witness_keys.add((key.type, key.public_key))
        self.witnesses[name] = PolicyWitness(name, key, verifier, args[2] if len(args) == 3 else None)

    def _group(self, number: int, args: list[str]) -> None:
        if len(args) < 3:
            raise _fail(number, "expected: group <name> <k|all|any> <member>...")
        name, k, members = args[0], args[1], tuple(args[2:])
        self._new_name(number, name)
        for member in members:
            if not self._defined(member):
                raise _fail(number, f"member {member!r} is not defined on an earlier line")
        if len(set(members)) != len(members):
            raise _fail(number, "a member is listed twice")
        self.groups[name] = PolicyGroup(name, _threshold(number, k, len(members)), members)

    def _quorum(self, number: int, args: list[str]) -> None:
        if len(args) != 1:
            raise _fail(number, "expected: quorum <name|none>")
        if self.quorum is not None:
            raise _fail(number, "a policy has exactly one quorum line")
        if args[0] != NONE and not self._defined(args[0]):
            raise _fail(number, f"quorum {args[0]!r} is not defined on an earlier line")
        self.quorum = args[0]


def _threshold(number: int, k: str, members: int) -> int:
    """A group's ``k``: ``all``, ``any`` or a count from 1 to the number of members."""
    if k == "all":
        return members
    if k == "any":
        return 1
    if _THRESHOLD.fullmatch(k) and int(k) <= members:
        return int(k)
    raise _fail(number, f"threshold {k!r} must be all, any or 1..{members}")
