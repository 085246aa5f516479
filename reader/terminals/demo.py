"""`sscard demo`: a short scripted session on a fresh default card, printed readably.

The session follows LD/T 32 part 7: card recognition (P7 §5: reset, SELECT the
SSSE, EF05 item 01), free reads of EF05, the PIN (P7 §5.6-§5.8), EF06 read
after external authentication with RKSSSE (P7 §6; a 3.00 card protects EF06
with RKSSSE, the PIN alone does not open it), and CHANGE PIN (P7 §9). The
external authentication is computed by a PSAM in its own reader, as a terminal
does (docs/card/commands.md §5).
"""

from chip import Card
from chip.iso.apdu import build
from chip.iso.ins import CHANGE_PIN, READ_RECORD, VERIFY, cla_ins
from reader.report import exchange
from reader.sim import SimReader
from reader.terminals.psam import Psam
from reader.terminals.ssse import SsseTerminal

AUTHENTICATE = None  # a step the terminal and its PSAM do (several APDUs)
EF05_RECORD = 5 << 3 | 4  # READ RECORD P2: SFI 5, the record numbered P1 (P5 §6.10)
EF06_ITEM = 6 << 3  # READ RECORD P2: SFI 6, the first record with the identifier P1


def _read(p1: int, p2: int, le: int) -> bytes:
    return build(*cla_ins(READ_RECORD), p1, p2, le=le)


def _pin(command: int, p1: int, digits: str) -> bytes:
    return build(*cla_ins(command), p1, 0x00, bytes.fromhex(digits))


STEPS = (
    ("EF05 record 01 with Le 00: 6C12 gives its length, the terminal asks again with Le 12", _read(0x01, EF05_RECORD, 256)),
    ("EF05 record 07: card number", _read(0x07, EF05_RECORD, 0x0B)),
    ("EF05 record 05: issue date (EF05 is free to read)", _read(0x05, EF05_RECORD, 0x06)),
    ("EF06 item 09: holder name - protected (RKSSSE on a 3.00 card)", _read(0x09, EF06_ITEM, 0x20)),
    ("VERIFY with a wrong PIN (000000)", _pin(VERIFY, 0x00, "000000")),
    ("VERIFY with the initial PIN 123456", _pin(VERIFY, 0x00, "123456")),
    ("EF06 item 09 after the PIN: still protected (EF06 needs RKSSSE)", _read(0x09, EF06_ITEM, 0x20)),
    ("external authentication with RKSSSE: two GET CHALLENGEs, the PSAM's answer", AUTHENTICATE),
    ("EF06 item 08: social security number", _read(0x08, EF06_ITEM, 0x14)),
    ("EF06 item 09: holder name (GBK)", _read(0x09, EF06_ITEM, 0x20)),
    ("CHANGE PIN 123456 -> 246810 (activates the social-security application)", _pin(CHANGE_PIN, 0x01, "123456FF246810")),
    ("VERIFY with the old PIN now fails", _pin(VERIFY, 0x00, "123456")),
    ("VERIFY with the new PIN", _pin(VERIFY, 0x00, "246810")),
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
        if command is AUTHENTICATE:
            terminal.external_authenticate("ssse_rk")
        else:
            terminal.send(command)
    out("")
    out("Next: 'sscard personalize --state card.img' makes a card image; 'sscard apdu --state card.img HEX...' talks to it.")
    return 0
