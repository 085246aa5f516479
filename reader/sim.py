"""`SimReader`: the card in-process, no driver, no wire."""

from chip import Card

from .base import Reader

PROTOCOLS = {"T=0": 0, "T=1": 1, 0: 0, 1: 1}


class SimReader(Reader):
    """An in-process reader holding one `chip.Card`.

    `protocol` ("T=1" default, or "T=0") is what the card is told at reset:
    with T=0 behaviour, commands that carry data answer `61xx` and the data is
    fetched with GET RESPONSE, exactly as on a T=0 contact.
    """

    def __init__(self, card: Card, protocol="T=1"):
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be 'T=0' or 'T=1', not {protocol!r}")
        self.card = card
        self.protocol = PROTOCOLS[protocol]

    def reset(self) -> bytes:
        return self.card.power_on(self.protocol)

    def transmit(self, apdu: bytes) -> bytes:
        return self.card.transmit(bytes(apdu))

    def power_off(self) -> None:
        self.card.power_off()
