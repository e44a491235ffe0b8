"""The error every contract rule raises: which field, which rule, what was wrong."""

from __future__ import annotations

import re
from collections.abc import Sized
from datetime import date, datetime


class EventRejected(ValueError):
    """An event (or an identifier in a query) breaks a rule of the wire contract.

    ``field`` is the dotted path of the offending field (``meta.protocol_number``,
    ``customer.cpf``), ``rule`` a short stable name of the rule (``check-digit``,
    ``required``, ``enum``), and the message says what to fix.
    """

    def __init__(self, field: str, rule: str, message: str) -> None:
        super().__init__(f"{field}: {message} [rule: {rule}]")
        self.field = field
        self.rule = rule
        self.detail = message


#: Words that read as a symbol or a name in code (FAX, ContactOpened, br-anatel-rgc): no
#: digits, no spaces, so never a CPF, a typical customer code or a full name.
_SYMBOL = re.compile(r"[A-Za-z][A-Za-z_]*|[a-z]+(?:-[a-z]+)+")
_MAX_SHOWN = 40


def shown_value(value: object) -> str:
    """How a rejected value may appear in a message: never enough to read personal data back.

    Rejections reach logs, terminals and API responses, and a CPF, a customer code or a
    name typed into the wrong field is personal data. Only what cannot be any of those is
    shown as is: ``None``, booleans, numbers of up to four digits, dates, and single words
    without digits that look like symbols (``FAX``, ``ContactOpend``, ``br-anatel-rgc``);
    a one-word name would pass, a CPF or a full name never does. Anything else keeps its
    shape with letters and digits masked but the last two (``'***.***.***-35'``), so the
    producer can still tell which of its values it was.
    """
    if value is None or isinstance(value, bool):
        return repr(value)
    if isinstance(value, int) and abs(value) < 10_000:
        return repr(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, int | float):
        return _masked(repr(value))
    if isinstance(value, str):
        if len(value) <= _MAX_SHOWN and _SYMBOL.fullmatch(value):
            return repr(value)
        shown = f"'{_masked(value[:_MAX_SHOWN])}'"
        return shown if len(value) <= _MAX_SHOWN else f"{shown[:-1]}...' ({len(value)} characters)"
    size = f" of {len(value)}" if isinstance(value, Sized) else ""
    return f"a {type(value).__name__}{size} (value withheld)"


_FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


def shown_field_name(name: object) -> str:
    """An unknown field's name for a field path: as is when it reads as a field name (an
    identifier with at most three digits), masked otherwise (a CPF passed as a key)."""
    text = str(name)
    if _FIELD_NAME.fullmatch(text) and sum(c.isdigit() for c in text) <= 3:
        return text
    return _masked(text[:_MAX_SHOWN])


def _masked(text: str) -> str:
    alnum = [i for i, c in enumerate(text) if c.isalnum()]
    keep = set(alnum[-2:]) if len(alnum) > 2 else set()
    return "".join(c if not c.isalnum() or i in keep else "*" for i, c in enumerate(text)
                   ).encode("ascii", "backslashreplace").decode("ascii")
