"""The Luhn check digit of a card number (ISO/IEC 7812-1 Annex B).

From the rightmost digit of the whole number (the check digit) leftwards, every second digit
is doubled and a product past 9 counts as the sum of its digits; the number is valid when the
total is a multiple of 10. A profile's PAN must pass it (chip.personalization.profile); a fleet
card's PAN gets its check digit from it (chip.fleet).
"""


def _total(digits: str, doubled: int) -> int:
    """The Luhn sum of `digits`, doubling the digits whose place from the right (0 the rightmost)
    has the parity `doubled`."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == doubled:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total


def is_valid(number: str) -> bool:
    """Whether `number`, its check digit last, passes the Luhn check."""
    return _total(number, 1) % 10 == 0


def check_digit(digits: str) -> str:
    """The check digit that makes `digits` + it pass the Luhn check."""
    return str(-_total(digits, 0) % 10)
