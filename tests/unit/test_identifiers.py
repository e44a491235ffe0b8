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
