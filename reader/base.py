"""The `Reader` interface every reader implements: in-process, PC/SC, wire.

Tools, flows and tests are written against this interface only, so the same
script runs on the simulator and on a real card in a real reader.
"""

from abc import ABC, abstractmethod

from chip.iso.sw import SW1_MORE_DATA, SW1_WRONG_LE
from chip.kernel.delivery import get_response


class Reader(ABC):
    @abstractmethod
    def reset(self) -> bytes:
        """Power the card (or warm-reset it) and return its ATR."""

    @abstractmethod
    def transmit(self, apdu: bytes) -> bytes:
        """Send one command APDU; return response data followed by SW1 SW2."""

    @abstractmethod
    def power_off(self) -> None:
        """Remove power from the card."""


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
