"""`sscard demo`: a short scripted session on a fresh default card, printed readably."""

from chip import Card

from .report import exchange
from .sim import SimReader

SSSE = "00A404000F7378312E73682EC9E7BBE1B1A3D5CF"

STEPS = (
    ("select the social-security application (sx1.sh.社会保障)", SSSE),
    ("EF05 record 01: card identification code", "00B2012C00"),
    ("EF05 record 07: card number", "00B2072C00"),
    ("EF05 record 05: issue date - protected, no PIN yet", "00B2052C00"),
    ("EF06 item 09: holder name - protected", "00B2093000"),
    ("VERIFY with a wrong PIN (000000)", "0020000003000000"),
    ("VERIFY with the initial PIN 123456", "0020000003123456"),
    ("EF05 record 05: issue date", "00B2052C00"),
    ("EF05 record 06: expiry date", "00B2062C00"),
    ("EF06 item 08: social security number", "00B2083000"),
    ("EF06 item 09: holder name (GBK)", "00B2093000"),
    ("CHANGE PIN 123456 -> 246810", "805E010007123456FF246810"),
    ("VERIFY with the old PIN now fails", "0020000003123456"),
    ("VERIFY with the new PIN", "0020000003246810"),
)


def run(out=print, date=None) -> int:
    card = Card.from_profile(date=date)
    reader = SimReader(card)
    out("sscard demo: a fresh card from the shipped 'default' profile, in memory, over an in-process reader")
    out(f"ATR {reader.reset().hex(' ').upper()}")
    for note, command in STEPS:
        apdu = bytes.fromhex(command)
        out("")
        out(exchange(apdu, reader.transmit(apdu), note))
    out("")
    out("Next: 'sscard personalize --state card.img' makes a card image; 'sscard apdu --state card.img HEX...' talks to it.")
    return 0
