"""The error every contract rule raises: which field, which rule, what was wrong."""

from __future__ import annotations


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
