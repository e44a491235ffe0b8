"""UUIDs: the spellings the contract accepts, and the one canonical form it puts on the wire.

A UUID has many spellings (``6F96...`` in upper case, ``{6f96...}`` braced, a
``urn:uuid:6f96...`` URN, 32 hex digits without hyphens) but the ledger needs exactly one:
the Kafka key of an event keyed by its own id, the event id used as AES-GCM associated
data and the ids in the journal are compared byte for byte, and fastavro reads every
``uuid`` field back as :class:`uuid.UUID`, whose ``str`` is the RFC 9562 form (36
characters, lowercase, hyphens at 8-4-4-4-12). So every UUID is made canonical at the
edge, before it is keyed, sealed or encoded.

The accepted spellings are deliberately narrower than :class:`uuid.UUID`'s parser, which
also takes ``uuid:`` prefixes, hyphens anywhere and unbalanced braces: the contract says
what a UUID is once, here, and both validators use it.
"""

from __future__ import annotations

import re
import uuid

from .errors import EventRejected

__all__ = ["canonical_uuid", "is_uuid_spelling"]

_HEX32 = r"[0-9a-fA-F]{32}"
_HYPHENATED = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_BARE = rf"(?:{_HYPHENATED}|{_HEX32})"
_CANONICAL = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_SPELLING = re.compile(rf"(?:urn:uuid:)?(?:(?P<bare>{_BARE})|\{{(?P<braced>{_BARE})\}})", re.IGNORECASE)


def is_uuid_spelling(value: object) -> bool:
    """Whether ``value`` is a :class:`uuid.UUID` or a string in an accepted spelling:
    hyphenated 8-4-4-4-12 or 32 hex digits, any case, optionally braced, optionally
    prefixed ``urn:uuid:``. Nothing else (no surrounding spaces, no ``uuid:`` prefix)."""
    if isinstance(value, uuid.UUID):
        return True
    return isinstance(value, str) and _SPELLING.fullmatch(value) is not None


def canonical_uuid(value: object, field: str) -> str:
    """The canonical text of a UUID (``6f96e0c4-...``, lowercase, hyphenated), or
    :class:`EventRejected` naming ``field`` with rule ``uuid``.

    The rejected value is not echoed: a wrong-field UUID could be anything a caller typed,
    personal data included; its length and type are enough to find it.
    """
    if isinstance(value, uuid.UUID):
        return str(value)
    if type(value) is str and _CANONICAL.fullmatch(value) is not None:
        return value  # already canonical, the usual case: no UUID object to build and print
    match = _SPELLING.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        what = f"a string of {len(value)} characters" if isinstance(value, str) else type(value).__name__
        raise EventRejected(field, "uuid",
                            f"expected a UUID (e.g. 6f96e0c4-1b2a-4c3d-8e9f-0a1b2c3d4e5f), got {what}")
    digits = (match.group("bare") or match.group("braced")).replace("-", "")
    return str(uuid.UUID(hex=digits))
