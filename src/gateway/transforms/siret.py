"""SIREN / SIRET checks (domain.md §5): 9 / 14 digits with a Luhn checksum.

Exception (domain.md §5): La Poste's establishments share the SIREN 356000000 and are too many for a
Luhn-checked 5-digit NIC; INSEE accepts their SIRETs when the sum of the 14 digits is a multiple of 5
(e.g. 35600000049837). The head office 35600000000048 and the SIREN 356000000 are ordinary Luhn numbers.
"""

from __future__ import annotations

LA_POSTE_SIREN = "356000000"


def luhn_ok(digits: str) -> bool:
    """True when the Luhn checksum of a string of digits is 0 (every second digit from the right doubled)."""
    if not digits or not digits.isascii() or not digits.isdigit():
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 == 1 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def siren_error(value: str) -> str | None:
    """Why `value` is not a SIREN, or None when it is one."""
    if len(value) != 9 or not value.isascii() or not value.isdigit():
        return f"SIREN {value!r} is not 9 digits"
    if not luhn_ok(value):
        return f"SIREN {value} fails the Luhn check"
    return None


def siret_error(value: str) -> str | None:
    """Why `value` is not a SIRET, or None when it is one (La Poste: Luhn or digit sum multiple of 5)."""
    if len(value) != 14 or not value.isascii() or not value.isdigit():
        return f"SIRET {value!r} is not 14 digits"
    if not luhn_ok(value):
        if not value.startswith(LA_POSTE_SIREN):
            return f"SIRET {value} fails the Luhn check"
        if sum(int(c) for c in value) % 5 != 0:
            return f"SIRET {value} (La Poste) fails both the Luhn and the digit-sum check"
    if siren_error(value[:9]) is not None:
        return f"SIRET {value} does not start with a valid SIREN"
    return None


def is_siren(value: str) -> bool:
    return siren_error(value) is None


def is_siret(value: str) -> bool:
    return siret_error(value) is None
