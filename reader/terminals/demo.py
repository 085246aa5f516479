"""`sscard demo`: a short scripted session on a fresh default card, printed readably.

The session follows LD/T 32 part 7: card recognition (P7 §5: reset, SELECT the
SSSE, EF05 item 01), free reads of EF05, the PIN (P7 §5.6-§5.8), EF06 read
after external authentication with RKSSSE (P7 §6; a 3.00 card protects EF06
with RKSSSE, the PIN alone does not open it), and CHANGE PIN (P7 §9). The
external authentication is computed by a PSAM in its own reader, as a terminal
does (docs/card/commands.md §5).
"""

from chip import Card

from reader.terminals.psam import Psam
from reader.report import exchange
from reader.sim import SimReader
from reader.terminals.ssse import SsseTerminal

AUTHENTICATE = "authenticate"  # a step the terminal and its PSAM do (several APDUs)

STEPS = (
    ("EF05 record 01 with Le 00: 6C12 gives its length, the terminal asks again with Le 12", "00B2012C00"),
    ("EF05 record 07: card number", "00B2072C0B"),
    ("EF05 record 05: issue date (EF05 is free to read)", "00B2052C06"),
    ("EF06 item 09: holder name - protected (RKSSSE on a 3.00 card)", "00B2093020"),
    ("VERIFY with a wrong PIN (000000)", "0020000003000000"),
    ("VERIFY with the initial PIN 123456", "0020000003123456"),
    ("EF06 item 09 after the PIN: still protected (EF06 needs RKSSSE)", "00B2093020"),
    ("external authentication with RKSSSE: two GET CHALLENGEs, the PSAM's answer", AUTHENTICATE),
    ("EF06 item 08: social security number", "00B2083014"),
    ("EF06 item 09: holder name (GBK)", "00B2093020"),
    ("CHANGE PIN 123456 -> 246810 (activates the social-security application)", "805E010007123456FF246810"),
    ("VERIFY with the old PIN now fails", "0020000003123456"),
    ("VERIFY with the new PIN", "0020000003246810"),
)


def run(out=print, date=None) -> int:
    card = Card.from_profile(date=date)
    reader = SimReader(card)
    psam = Psam(SimReader(Card.psam(card.config.profile)))
    out("sscard demo: a fresh card from the shipped 'default' profile, in memory, over an in-process reader")
    out(f"ATR {reader.reset().hex(' ').upper()}")
    notes = []

    def show(command: bytes, response: bytes) -> None:
        out("")
        out(exchange(command, response, notes.pop(0) if notes else ""))

    terminal = SsseTerminal(reader, psam, on_exchange=show)
    notes.append("card recognition (P7 §5): select the social-security application (sx1.sh.社会保障)")
    terminal.start()
    for note, command in STEPS:
        notes[:] = [note]
        if command == AUTHENTICATE:
            terminal.external_authenticate("ssse_rk")
        else:
            terminal.send(bytes.fromhex(command))
    out("")
    out("Next: 'sscard personalize --state card.img' makes a card image; 'sscard apdu --state card.img HEX...' talks to it.")
    return 0
