"""The argument types of the `sscard` options: each turns one word of the command line into its
value, or refuses it with one line that argparse prints after the option's name."""

import argparse
import datetime
import math

from reader.terminals.payment import MAX_AMOUNT
from reader.terminals.ssse import SSSE_MAX_AMOUNT
from reader.traces.format import date_problem

AMOUNT_UNIT = "fen, a whole number (1234 = 12.34 yuan)"  # the one unit of every amount on the command line


def date(text: str) -> datetime.date:
    """The simulated date, YYYY-MM-DD, within the dates a trace can carry."""
    try:
        day = datetime.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date YYYY-MM-DD: {text!r}") from None
    problem = date_problem(day)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return day


def seed(text: str) -> int:
    """A seed of the card's random source: a whole number that fits in 64 bits."""
    if not (text.isascii() and text.isdigit()) or int(text) >= 1 << 64:
        raise argparse.ArgumentTypeError(f"a seed is a whole number from 0 to 2^64-1, not {text!r}")
    return int(text)


def clock(text: str) -> float:
    """The card clock in MHz: ISO/IEC 7816-3 cards run at 1-20 MHz; anything in (0, 100] is simulated."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and 0 < value <= 100 and int(value * 1_000_000) > 0):
        raise argparse.ArgumentTypeError(f"a clock frequency in MHz, more than 0 and at most 100, not {text!r}")
    return value


def pps_byte(text: str) -> int:
    """The TA1 (Fi/Di, ISO/IEC 7816-3 §8.3) to ask for by PPS: one byte in hex."""
    if len(text) != 2 or any(c not in "0123456789abcdefABCDEF" for c in text):
        raise argparse.ArgumentTypeError(f"the TA1 to ask for is one byte in hex like 96, not {text!r}")
    return int(text, 16)


def pin(text: str) -> str:
    """A PIN the holder can type: 4 to 12 digits (the PIN pad, P8 §6.2.4; the card takes 2-8 bytes cn,
    P5 §6.14)."""
    if not (text.isascii() and text.isdigit() and 4 <= len(text) <= 12):
        raise argparse.ArgumentTypeError(f"a PIN is 4 to 12 digits, not {text!r}")
    return text


def _amount_in_fen(text: str, maximum: int) -> int:
    """One amount as the CLI takes it everywhere: whole fen, ASCII digits only, 0 to `maximum`.

    Yuan with decimals (`12.34`) get a one-line hint with the fen value; a sign, an exponent,
    `inf`, `NaN`/`sNaN`, underscores or anything else are one line too (never a traceback)."""
    if text.isascii() and text.isdigit():
        value = int(text)
        if value > maximum:
            raise argparse.ArgumentTypeError(f"an amount in fen is 0 to {maximum}, not {value}")
        return value
    whole, dot, cents = text.partition(".")
    if dot and whole.isascii() and whole.isdigit() and cents.isascii() and cents.isdigit() and len(cents) <= 2:
        fen = int(whole) * 100 + int(cents.ljust(2, "0"))
        raise argparse.ArgumentTypeError(f"amounts are in fen (whole numbers): {text} yuan is {fen} fen, "
                                         f"not {text!r}")
    if text.startswith("-") and text[1:].replace(".", "", 1).isdigit():
        raise argparse.ArgumentTypeError(f"an amount cannot be negative: {text!r}")
    raise argparse.ArgumentTypeError(f"not an amount in {AMOUNT_UNIT}: {text!r}")


def ssse_amount(text: str) -> int:
    """An SSSE amount in fen: 0 to SSSE_MAX_AMOUNT (the 8 digits of DF04 EF06 item 92)."""
    return _amount_in_fen(text, SSSE_MAX_AMOUNT)


def fin_amount(text: str) -> int:
    """A financial amount in fen: 0 to 999999999999 (the 12 digits of 9F02, n12)."""
    return _amount_in_fen(text, MAX_AMOUNT)
