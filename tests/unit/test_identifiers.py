"""CPF and protocol-number rules (DOMAIN.md, "Identifiers")."""

import random

import pytest

from protocolo.core.cpf import format_cpf, mask_cpf, normalise_cpf
from protocolo.core.errors import EventRejected
from protocolo.core.protocol_number import (
    damm_digit,
    format_protocol_number,
    make_protocol_number,
    normalise_protocol_number,
)


@pytest.mark.parametrize("cpf", ["111.444.777-35", "123.456.789-09", "11144477735", " 123 456 789 09 "])
def test_valid_cpfs_normalise_to_eleven_digits(cpf):
    digits = normalise_cpf(cpf)
    assert len(digits) == 11 and digits.isdigit()
    assert format_cpf(digits).replace(".", "").replace("-", "") == digits


@pytest.mark.parametrize(
    ("cpf", "rule"),
    [
        ("111.444.777-36", "check-digit"),
        ("111.444.777-25", "check-digit"),
        ("111.111.111-11", "repeated-digits"),
        ("000.000.000-00", "repeated-digits"),
        ("111.444.777-3", "length"),
        ("111.444.777-3A", "format"),
        ("", "format"),
    ],
)
def test_invalid_cpfs_are_rejected_with_the_rule(cpf, rule):
    with pytest.raises(EventRejected) as err:
        normalise_cpf(cpf, "customer.cpf")
    assert err.value.rule == rule
    assert err.value.field == "customer.cpf"


def test_cpf_mask_hides_the_first_and_check_digits():
    assert mask_cpf("11144477735") == "***.444.777-**"


def test_protocol_number_round_trip_and_grouping():
    p = make_protocol_number(2026, 12345)
    assert p == "202600000123457"
    assert len(p) == 15
    assert format_protocol_number(p) == "2026 00000 12345 7"
    assert normalise_protocol_number("2026 00000 12345 7") == p
    assert normalise_protocol_number("2026.00000.12345-7") == p


def test_damm_catches_every_single_digit_error_and_adjacent_swap():
    rng = random.Random(1)
    for _ in range(300):
        p = make_protocol_number(rng.randrange(2000, 2100), rng.randrange(1, 10**10))
        for i in range(15):
            for d in "0123456789":
                if d != p[i]:
                    typo = p[:i] + d + p[i + 1:]
                    assert damm_digit(typo) != 0, typo
        for i in range(14):
            if p[i] != p[i + 1]:
                swapped = p[:i] + p[i + 1] + p[i] + p[i + 2:]
                assert damm_digit(swapped) != 0, swapped


@pytest.mark.parametrize(
    ("value", "rule"),
    [("202600000123458", "check-digit"), ("20260000012345", "length"), ("2026x0000123457", "format"),
     ("199900000000010", "year")],
)
def test_malformed_protocol_numbers_are_rejected(value, rule):
    if rule == "year":
        body = "19990000000001"
        value = body + str(damm_digit(body))
    with pytest.raises(EventRejected) as err:
        normalise_protocol_number(value)
    assert err.value.rule == rule


# --------------------------------------------------------------------------- independent oracles

# The Damm quasigroup of order 10 as published (H. M. Damm, "Total anti-symmetrische
# Quasigruppen", 2004; the table reproduced in the literature and on Wikipedia's "Damm
# algorithm" page), transcribed row by row as text, not taken from the code under test.
PUBLISHED_DAMM = (
    "0317598642",
    "7092154863",
    "4206871359",
    "1750983426",
    "6123045978",
    "3674209581",
    "5869720134",
    "8945362017",
    "9438617205",
    "2581436790",
)


def oracle_damm(digits: str) -> int:
    interim = 0
    for d in digits:
        interim = int(PUBLISHED_DAMM[interim][int(d)])
    return interim


def test_the_transcribed_table_is_a_totally_antisymmetric_quasigroup():
    """Checks the transcription itself: a typo in it would break these properties."""
    table = [[int(c) for c in row] for row in PUBLISHED_DAMM]
    assert all(sorted(row) == list(range(10)) for row in table)  # Latin square: rows
    assert all(sorted(col) == list(range(10)) for col in zip(*table, strict=True))  # and columns
    assert all(table[i][i] == 0 for i in range(10))  # zero diagonal
    for c in range(10):  # (c*x)*y == (c*y)*x  implies  x == y
        for x in range(10):
            for y in range(10):
                if x != y:
                    assert table[table[c][x]][y] != table[table[c][y]][x]


def test_damm_worked_example():
    assert oracle_damm("572") == 4 and oracle_damm("5724") == 0  # the published example
    assert damm_digit("572") == 4 and damm_digit("5724") == 0


@pytest.mark.parametrize(("year", "sequence", "expected"), [
    (2026, 1, "202600000000016"),
    (2026, 12345, "202600000123457"),
    (2000, 1, "200000000000015"),
    (2031, 9_999_999_999, "203199999999991"),
])
def test_protocol_numbers_carry_the_published_damm_digit(year, sequence, expected):
    body = f"{year:04d}{sequence:010d}"
    assert expected == body + str(oracle_damm(body))  # the vector itself checked by the oracle
    assert make_protocol_number(year, sequence) == expected


def test_every_issued_number_has_the_check_digit_of_the_published_table():
    rng = random.Random(20260)
    for _ in range(2000):
        year, sequence = rng.randrange(2000, 10000), rng.randrange(1, 10**10)
        number = make_protocol_number(year, sequence)
        assert number[:14] == f"{year:04d}{sequence:010d}"
        assert int(number[14]) == oracle_damm(number[:14]), number


def oracle_cpf_digits(nine: str) -> str:
    """DOMAIN rule, written out: weights 10..2, r = sum mod 11, digit = 0 if r < 2 else 11 - r;
    then the same over ten digits with weights 11..2."""
    def digit(body: str) -> int:
        r = sum(int(d) * w for d, w in zip(body, range(len(body) + 1, 1, -1), strict=True)) % 11
        return 0 if r < 2 else 11 - r
    first = digit(nine)
    return f"{first}{digit(nine + str(first))}"


@pytest.mark.parametrize("cpf", ["111.444.777-35", "123.456.789-09", "529.982.247-25", "935.411.347-80"])
def test_known_valid_cpfs(cpf):
    digits = cpf.replace(".", "").replace("-", "")
    assert oracle_cpf_digits(digits[:9]) == digits[9:]
    assert normalise_cpf(cpf) == digits


def test_cpf_check_digits_against_the_rule_written_out():
    rng = random.Random(11034)
    for _ in range(500):
        nine = f"{rng.randrange(10**9):09d}"
        if len(set(nine)) == 1:
            continue
        good = oracle_cpf_digits(nine)
        assert normalise_cpf(nine + good) == nine + good
        for wrong in {f"{rng.randrange(100):02d}", f"{(int(good) + 1) % 100:02d}"} - {good}:
            with pytest.raises(EventRejected) as err:
                normalise_cpf(nine + wrong)
            assert err.value.rule == "check-digit", (nine, wrong)
