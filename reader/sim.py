"""`SimReader`: the card in-process, no driver, no wire."""

from chip import Card
from chip.contacts.atr import parse_atr
from chip.iso.sw import SW1_MORE_DATA
from chip.kernel.delivery import get_response
from reader.base import Reader
from reader.ccid.pinpad import Keypad

PROTOCOLS = {"T=0": 0, "T=1": 1, 0: 0, 1: 1}


class SimReader(Reader):
    """An in-process reader holding one `chip.Card`.

    `protocol` is what the card is told at reset: by default the card's own, the first protocol
    its ATR offers (T=0 on the default card: without PPS the first offered protocol runs,
    LD/T 32 P2 §8.7); "T=0" or "T=1" overrides it. With T=0 behaviour a command that has data
    for the reader but cannot send it in the same exchange (case 1, 3, 4) answers `61xx`, and the
    data is fetched with GET RESPONSE, exactly as on a T=0 contact.

    `get_response` (T=0): `transmit` does that fetching, as the terminal's transport layer does
    (P2 §9.3: `61xx` never reaches the application), so every response is the one the card gives
    on T=1. A `6Cxx` - the card's own answer to a case 2 Le that does not fit, on T=1 too - is
    returned as it is (`reader.base.transmit_all` re-issues the command, as terminals do).
    `get_response=False` shows every raw exchange (one card answer per `transmit`).

    `keypad`: a PIN pad's keys (reader/ccid/pinpad.py). With them `pin_entry` runs the GemPC
    PinPad's PIN entry in-process: the PC/SC part 10 structure as libccid hands it to the reader,
    the PIN from the keys into the template by the firmware's own code, and the APDU to this card
    (`reader.base.Reader.pin_entry`). None: no PIN pad.
    """

    def __init__(self, card: Card, protocol=None, get_response: bool = True, keypad: Keypad | None = None):
        if protocol is None:
            protocol = parse_atr(card.atr).default_protocol
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be 'T=0' or 'T=1', not {protocol!r}")
        self.card = card
        self.protocol = PROTOCOLS[protocol]
        self.get_response = get_response
        self.keypad = keypad

    def reset(self) -> bytes:
        return self.card.power_on(self.protocol)

    def transmit(self, apdu: bytes) -> bytes:
        card = self.card
        response = card.transmit(bytes(apdu))
        if not self.get_response or card.protocol != 0:
            return response
        data = b""
        while len(response) >= 2 and response[-2] == SW1_MORE_DATA:  # T=0: the data waits for GET RESPONSE
            data += response[:-2]
            response = card.transmit(get_response(response[-1]))
        return data + response

    def power_off(self) -> None:
        self.card.power_off()
