"""Protocol numbers: the identifier a customer is told at the start of every contact.

Format (documented for customers, agents and other-language producers)::

    YYYY SSSSSSSSSS D        e.g. 2026 0000012345 7  ->  canonical "202600000123457"

* ``YYYY``: the year the number was issued (São Paulo time), so an old number is
  recognisable at a glance;
* ``SSSSSSSSSS``: ten digits from one global sequence shared by every process (issued in
  blocks from PostgreSQL by ``protocolo.producers.protocol_issuer``), never reused, not
  reset each year;
* ``D``: a Damm check digit over the 14 digits before it. Damm catches every single-digit
  error and every swap of two adjacent digits, the two mistakes people make reading a
  number over the phone, so a mistyped number is refused before any lookup.

The canonical form (Kafka key, database column) is the 15 digits. People may write it with
spaces, dots or dashes; :func:`normalise_protocol_number` accepts those.
"""

from __future__ import annotations

import re

from .errors import EventRejected, shown_value

SEQUENCE_DIGITS = 10
LENGTH = 4 + SEQUENCE_DIGITS + 1
MAX_SEQUENCE = 10**SEQUENCE_DIGITS - 1
FIRST_YEAR = 2000

# The Damm quasigroup of order 10 (weakly totally anti-symmetric).
_DAMM = (
    (0, 3, 1, 7, 5, 9, 8, 6, 4, 2),
    (7, 0, 9, 2, 1, 5, 4, 8, 6, 3),
    (4, 2, 0, 6, 8, 7, 1, 3, 5, 9),
    (1, 7, 5, 0, 9, 8, 3, 4, 2, 6),
    (6, 1, 2, 3, 0, 4, 5, 9, 7, 8),
    (3, 6, 7, 4, 2, 0, 9, 5, 8, 1),
    (5, 8, 6, 9, 7, 2, 0, 1, 3, 4),
    (8, 9, 4, 5, 3, 6, 2, 0, 1, 7),
    (9, 4, 3, 8, 6, 1, 7, 2, 0, 5),
    (2, 5, 8, 1, 4, 3, 6, 7, 9, 0),
)
# What people put between the groups: dots, dashes, slashes and any spacing, including the
# no-break and zero-width spaces that copying from a PDF or a chat brings along.
_SEPARATORS = re.compile(r"[.\-\s/\u200b\u200c\u200d\u2060\ufeff]")


def damm_digit(digits: str) -> int:
    """The Damm check digit of a string of decimal digits."""
    interim = 0
    for d in digits:
        interim = _DAMM[interim][ord(d) - 48]
    return interim


def make_protocol_number(year: int, sequence: int) -> str:
    """Build the canonical protocol number for ``sequence`` issued in ``year``."""
    if not FIRST_YEAR <= year <= 9999:
        raise ValueError(f"year {year} is outside {FIRST_YEAR}..9999")
    if not 1 <= sequence <= MAX_SEQUENCE:
        raise ValueError(f"sequence {sequence} is outside 1..{MAX_SEQUENCE}")
    body = f"{year:04d}{sequence:0{SEQUENCE_DIGITS}d}"
    return body + str(damm_digit(body))


def normalise_protocol_number(value: object, field: str = "protocol_number") -> str:
    """Return the canonical 15 digits of a valid protocol number or raise :class:`EventRejected`."""
    if not isinstance(value, str):
        raise EventRejected(field, "type", f"expected a string, got {type(value).__name__}")
    digits = _SEPARATORS.sub("", value)
    if not digits.isdigit() or not digits.isascii():
        raise EventRejected(field, "format", f"{shown_value(value)} is not a protocol number: digits only (YYYY SSSSSSSSSS D)")
    if len(digits) != LENGTH:
        raise EventRejected(field, "length", f"{shown_value(value)} has {len(digits)} digits; a protocol number has {LENGTH}")
    if damm_digit(digits) != 0:
        raise EventRejected(field, "check-digit", f"{shown_value(value)} has a wrong check digit (mistyped?)")
    if int(digits[:4]) < FIRST_YEAR:
        raise EventRejected(field, "year", f"{shown_value(value)} starts with year {digits[:4]}, before {FIRST_YEAR}")
    return digits


def format_protocol_number(canonical: str) -> str:
    """Group for reading aloud: ``2026 00000 12345 7``."""
    return f"{canonical[:4]} {canonical[4:9]} {canonical[9:14]} {canonical[14:]}"
