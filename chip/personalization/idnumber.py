"""Citizen identity numbers (GB 11643-1999): 6-digit region, 8-digit birth date,
3-digit sequence (odd = male), and a check character (ISO 7064 MOD 11-2)."""

import datetime

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"


def check_character(first17: str) -> str:
    return _CHECK[sum(int(d) * w for d, w in zip(first17, _WEIGHTS)) % 11]


def problem(number: str) -> str | None:
    """What is wrong with `number` as a citizen ID number, or None."""
    if len(number) != 18:
        return f"must be 18 characters, got {len(number)}"
    if not number.isascii() or not number[:17].isdigit() or not (number[17].isdigit() or number[17] == "X"):
        return "must be 17 digits and a check digit or X"
    expected = check_character(number[:17])
    if number[17] != expected:
        return f"check character is {number[17]}, GB 11643 gives {expected}"
    if birth_date(number) is None:
        return f"digits 7-14 ({number[6:14]}) are not a valid birth date"
    return None


def birth_date(number: str) -> datetime.date | None:
    try:
        return datetime.date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        return None


def is_male(number: str) -> bool:
    return int(number[16]) % 2 == 1
