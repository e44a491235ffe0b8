"""CPF, the Brazilian taxpayer number: parsing, check digits, masking.

A CPF is personal data: this module only validates and normalises it. It never reaches
Kafka in clear (see ``protocolo.core.personal_data``).
"""

from __future__ import annotations

import re

from .errors import EventRejected, shown_value

_SEPARATORS = re.compile(r"[.\-\s]")


def _check_digit(digits: str) -> int:
    weight = len(digits) + 1
    total = sum(int(d) * (weight - i) for i, d in enumerate(digits))
    r = total % 11
    return 0 if r < 2 else 11 - r


def normalise_cpf(value: str, field: str = "cpf") -> str:
    """Return the 11 digits of a valid CPF, or raise :class:`EventRejected`.

    Accepts ``NNN.NNN.NNN-DD`` or the bare 11 digits. Rejects wrong length, non-digits,
    wrong check digits and the all-equal numbers (``111.111.111-11``) that pass the
    checksum but are not valid CPFs.
    """
    if not isinstance(value, str):
        raise EventRejected(field, "type", f"expected a string, got {type(value).__name__}")
    digits = _SEPARATORS.sub("", value)
    if not digits.isdigit() or not digits.isascii():
        raise EventRejected(field, "format", f"{shown_value(value)} is not a CPF: use NNN.NNN.NNN-DD or 11 digits")
    if len(digits) != 11:
        raise EventRejected(field, "length", f"{shown_value(value)} has {len(digits)} digits; a CPF has 11")
    if digits == digits[0] * 11:
        raise EventRejected(field, "repeated-digits", f"{shown_value(value)} has all digits equal, which is not a valid CPF")
    if int(digits[9]) != _check_digit(digits[:9]) or int(digits[10]) != _check_digit(digits[:10]):
        raise EventRejected(field, "check-digit", f"{shown_value(value)} has a wrong check digit")
    return digits


def format_cpf(digits: str) -> str:
    """``11144477735`` -> ``111.444.777-35``."""
    return f"{digits[:3]}.{digits[3:6]}.{digits[6:9]}-{digits[9:]}"


def mask_cpf(digits: str) -> str:
    """Show only the middle digits, as Brazilian services print CPFs: ``***.444.777-**``."""
    return f"***.{digits[3:6]}.{digits[6:9]}-**"
