"""The `Reader` interface every reader implements: in-process, PC/SC, wire.

Tools, flows and tests are written against this interface only, so the same
script runs on the simulator and on a real card in a real reader.

A reader may have a PIN pad (`pin_entry`, PC/SC part 10's FEATURE_VERIFY_PIN_DIRECT and
FEATURE_MODIFY_PIN_DIRECT): the holder types the PIN on the reader's keys and the reader puts it
into the host's APDU template, so the PIN never crosses the host. An in-process reader (SimReader,
WireReader) has one when its `keypad` is set: the simulated GemPC PinPad of reader/ccid/pinpad.py,
the same template filling as the CCID firmware's, in front of the reader's own `transmit`.
PcscReader asks the PC/SC reader's own pad.
"""

from abc import ABC, abstractmethod

from chip.iso.sw import SW1_MORE_DATA, SW1_WRONG_LE
from chip.kernel.delivery import get_response
from reader.ccid import pinpad


class PinPadError(Exception):
    """A PIN entry the reader cannot run: it has no PIN pad, or its pad (or driver) refused the
    structure. The message is one line naming the reader and what went wrong."""


class Reader(ABC):
    keypad: pinpad.Keypad | None = None  # the keys of a simulated PIN pad: with them this reader has one

    @abstractmethod
    def reset(self) -> bytes:
        """Power the card (or warm-reset it) and return its ATR."""

    @abstractmethod
    def transmit(self, apdu: bytes) -> bytes:
        """Send one command APDU; return response data followed by SW1 SW2."""

    @abstractmethod
    def power_off(self) -> None:
        """Remove power from the card."""

    def pin_entry(self, feature: int, structure: bytes) -> bytes:
        """A PIN entry on the reader's PIN pad: `feature` FEATURE_VERIFY_PIN_DIRECT or
        FEATURE_MODIFY_PIN_DIRECT, `structure` the PC/SC part 10 PIN_VERIFY_STRUCTURE or
        PIN_MODIFY_STRUCTURE with the APDU template. Returns the card's response to the APDU the pad
        built, or the pad's own SW (6400 timeout, 6401 cancelled, 6402 new PINs differ, 6403 wrong
        length). PinPadError when the reader has no PIN pad or the pad refuses the structure.

        This default is the simulated pad of an in-process reader, from `keypad`, sending over
        `transmit`; a reader with a pad of its own (PcscReader) overrides it."""
        if self.keypad is None:
            raise PinPadError(f"{type(self).__name__} has no PIN pad (no keypad)")
        try:
            return pinpad.pin_entry(feature, structure, self.keypad, self.transmit)
        except pinpad.StructureError as exc:
            raise PinPadError(f"the PIN pad refuses the structure: {exc}") from None


def transmit_all(reader: Reader, apdu: bytes, on_exchange=None) -> bytes:
    """Send `apdu` as a terminal does: fetch `61xx` data with GET RESPONSE and
    re-issue a case 2/4 command with the Le a `6Cxx` names. Returns all the
    data and the final SW; `on_exchange(command, response)` sees every exchange."""
    def send(command: bytes) -> bytes:
        response = reader.transmit(command)
        if on_exchange is not None:
            on_exchange(command, response)
        return response

    response = send(apdu)
    if len(response) == 2 and response[0] == SW1_WRONG_LE and len(apdu) >= 5:
        response = send(apdu[:4] + (apdu[4:-1] + bytes((response[1],)) if len(apdu) > 5 else bytes((response[1],))))
    data = b""
    while len(response) >= 2 and response[-2] == SW1_MORE_DATA:
        data += response[:-2]
        response = send(get_response(response[-1]))
    return data + response
