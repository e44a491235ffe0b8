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
    logs: list[PolicyLog] = []
    witnesses: dict[str, PolicyWitness] = {}
    groups: dict[str, PolicyGroup] = {}
    log_keys: set[tuple[int, bytes]] = set()
    witness_keys: set[tuple[int, bytes]] = set()
    quorum: str | None = None
    for number, raw_line in enumerate(text.split("\n"), start=1):
        items = raw_line.replace("\t", " ").split()
        if not items or items[0].startswith("#"):
            continue
        keyword, args = items[0], items[1:]
        if keyword == "log":
            if len(args) not in (1, 2):
                raise _fail(number, "expected: log <vkey> [<url>]")
            key, verifier = _key(number, args[0], LOG_TYPES, "log")
            if (key.type, key.public_key) in log_keys:
                raise _fail(number, "duplicate log key")
            log_keys.add((key.type, key.public_key))
            logs.append(PolicyLog(key, verifier, args[1] if len(args) == 2 else None))
        elif keyword == "witness":
            if len(args) not in (2, 3):
                raise _fail(number, "expected: witness <name> <vkey> [<url>]")
            name = args[0]
            if name == NONE or name in witnesses or name in groups:
                raise _fail(number, f"name {name!r} is reserved or already defined")
            key, verifier = _key(number, args[1], WITNESS_TYPES, "witness")
            if (key.type, key.public_key) in witness_keys:
                raise _fail(number, "duplicate witness key")
            witness_keys.add((key.type, key.public_key))
            witnesses[name] = PolicyWitness(
                name, key, verifier, args[2] if len(args) == 3 else None
            )
        elif keyword == "group":
            if len(args) < 3:
                raise _fail(number, "expected: group <name> <k|all|any> <member>...")
            name, k, members = args[0], args[1], tuple(args[2:])
            if name == NONE or name in witnesses or name in groups:
                raise _fail(number, f"name {name!r} is reserved or already defined")
            for member in members:
                if member not in witnesses and member not in groups:
                    raise _fail(number, f"member {member!r} is not defined on an earlier line")
            if len(set(members)) != len(members):
                raise _fail(number, "a member is listed twice")
            if k == "all":
                threshold = len(members)
            elif k == "any":
                threshold = 1
            elif _THRESHOLD.fullmatch(k) and int(k) <= len(members):
                threshold = int(k)
            else:
                raise _fail(number, f"threshold {k!r} must be all, any or 1..{len(members)}")
            groups[name] = PolicyGroup(name, threshold, members)
        elif keyword == "quorum":
            if len(args) != 1:
                raise _fail(number, "expected: quorum <name|none>")
            if quorum is not None:
                raise _fail(number, "a policy has exactly one quorum line")
            if args[0] != NONE and args[0] not in witnesses and args[0] not in groups:
                raise _fail(number, f"quorum {args[0]!r} is not defined on an earlier line")
            quorum = args[0]
        else:
            raise _fail(number, f"unknown keyword {keyword!r}")
    if quorum is None:
        raise PolicyError("malformed-policy", "policy has no quorum line")
    return Policy(tuple(logs), witnesses, groups, quorum)
