"""SIREN / SIRET checks (domain.md §5): length, Luhn, and La Poste's digit-sum exception."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.samples import BUYER_SIRET, SELLER_SIRET, luhn_complete
from gateway.transforms.siret import is_siren, is_siret, luhn_ok, siren_error, siret_error


@pytest.mark.parametrize(
    "value",
    ["732829320", "552081317", "356000000", "123456782", "987654324", BUYER_SIRET[:9], SELLER_SIRET[:9]],
)
def test_good_sirens(value: str) -> None:
    assert siren_error(value) is None and is_siren(value)


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("123456789", "Luhn"),
        ("73282932", "not 9 digits"),
        ("7328293200", "not 9 digits"),
        ("73282932A", "not 9 digits"),
        ("٧٣٢٨٢٩٣٢٠", "not 9 digits"),  # Arabic-Indic digits are digits to str.isdigit, not to INSEE
        ("", "not 9 digits"),
    ],
)
def test_bad_sirens(value: str, why: str) -> None:
    error = siren_error(value)
    assert error is not None and why in error and not is_siren(value)


@pytest.mark.parametrize("value", ["73282932000074", "55208131766522", BUYER_SIRET, SELLER_SIRET])
def test_good_sirets(value: str) -> None:
    assert siret_error(value) is None and is_siret(value)


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("12345678912345", "Luhn"),
        ("3624679471379", "not 14 digits"),
        ("123456ABC12345", "not 14 digits"),
        ("73282932000075", "Luhn"),
    ],
)
def test_bad_sirets(value: str, why: str) -> None:
    error = siret_error(value)
    assert error is not None and why in error


def test_la_poste() -> None:
    # head office: an ordinary Luhn number
    assert luhn_ok("35600000000048") and is_siret("35600000000048")
    # establishments: Luhn fails, the digit sum (45) is a multiple of 5 -> valid
    assert not luhn_ok("35600000049837") and is_siret("35600000049837")
    # neither rule
    assert not luhn_ok("35600000049838")
    error = siret_error("35600000049838")
    assert error is not None and "La Poste" in error
    # the digit-sum rule is La Poste's alone: another SIREN with a multiple-of-5 sum and a bad Luhn fails
    assert sum(int(c) for c in "73282932000004") % 5 == 0 and not is_siret("73282932000004")


def test_siret_needs_a_valid_siren() -> None:
    # 14 digits passing Luhn as a whole, but whose first 9 digits fail it
    bad_siren = "123456789"
    siret = luhn_complete(bad_siren + "0000")
    assert luhn_ok(siret)
    error = siret_error(siret)
    assert error is not None and "SIREN" in error


@given(st.text(alphabet="0123456789", min_size=8, max_size=8))
def test_luhn_complete_always_valid(prefix: str) -> None:
    siren = luhn_complete(prefix)
    assert is_siren(siren)
    assert is_siret(luhn_complete(siren + "0001"))
    # one changed digit breaks it
    changed = siren[:-1] + str((int(siren[-1]) + 1) % 10)
    assert not is_siren(changed)
