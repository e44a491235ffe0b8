"""Protocol numbers as people read them (grouped 4-5-5-1) and as they type them (any spacing).

The check digits come from :mod:`test_identifiers`' independent Damm table; here the oracle
for grouping is the documented format itself, written out by hand.
"""

from __future__ import annotations

import pytest

from protocolo.console.render import environment, spoken_protocol
from protocolo.core.protocol_number import normalise_protocol_number

CANONICAL = "202600000000016"


def test_the_console_filter_groups_a_number_as_read_aloud() -> None:
    rendered = environment().from_string("{{ n|protocol }}").render(n=CANONICAL)
    assert rendered == "2026 00000 00001 6"


@pytest.mark.parametrize("value", [None, "", "2026", "20260000000001x", "２０２６００００００００００１６"])
def test_anything_else_is_shown_as_it_is(value: object) -> None:
    assert spoken_protocol(value) == value


@pytest.mark.parametrize("typed", [
    "2026 00000 00001 6", "2026  00000  00001  6", "2026\t00000\t00001\t6", " 202600000000016 ",
    "2026\u00a000000\u00a000001\u00a06",  # no-break spaces (a PDF)
    "2026\u202f00000\u202f00001\u202f6",  # narrow no-break spaces
    "2026\u200b00000\u200b00001\u200b6",  # zero-width spaces (a chat)
    "\ufeff2026 00000 00001 6",  # a byte-order mark pasted in front
    "2026.00000.00001-6", "2026/0000000001/6",
])
def test_any_spacing_is_accepted_on_input(typed: str) -> None:
    assert normalise_protocol_number(typed) == CANONICAL
