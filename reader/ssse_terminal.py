"""A social-security terminal: the SSSE operations as a bank outlet, a hospital,
a pharmacy or a service window performs them, through a card `Reader` and a
`Psam` (in its own reader). Every operation goes through APDUs; nothing edits
card state. Each exchange is reported to `on_exchange` so tools can print it.
"""

import datetime
import os

from chip.apdu import build
from chip.crypto import BY_FLAG
from chip.ssse import DDF_NAME, PURCHASE, RK_ID, VISIT, diversification_data

from chip.pin import pack as pack_pin

from .base import Reader, transmit_all
from .psam import Psam

OK = 0x9000
MEDICAL_DF = 0xDF04


def sw_of(response: bytes) -> int:
    return int.from_bytes(response[-2:], "big")


class TerminalError(Exception):
    """The terminal cannot go on (the message says what to do)."""


class SsseTerminal:
    """`identification`: the card identification code from the issuer's back office, for
    a card whose EF05 cannot be read (a locked SSSE answers 6985 to READ RECORD)."""

    random = staticmethod(os.urandom)  # the terminal's random source (INTERNAL AUTHENTICATE)

    def __init__(self, reader: Reader, psam: Psam, on_exchange=None, identification: bytes | None = None):
        self.reader = reader
        self.psam = psam
        self.on_exchange = on_exchange
        self.algorithm_flag = None
        self.identification = identification

    def send(self, apdu: bytes) -> bytes:
        return transmit_all(self.reader, apdu, self.on_exchange)

    # -- session ------------------------------------------------------------------------
    def start(self) -> int:
        """Power up, select the SSSE, learn the algorithm (FCI 9F0C) and the card's
        diversification data (EF05 item 01, free to read). Returns the SELECT SW."""
        self.reader.reset()
        response = self.send(build(0x00, 0xA4, 0x04, 0x00, DDF_NAME))
        sw = sw_of(response)
        marker = response.find(b"\x9F\x0C\x03\x86\x01")
        if marker >= 0:
            self.algorithm_flag = response[marker + 5]
        if sw == OK:
            record = self.send(build(0x00, 0xB2, 0x01, (5 << 3) | 4, le=256))
            if sw_of(record) == OK:
                self.identification = record[2:-2]
        return sw

    @property
    def diversification(self) -> bytes:
        if self.identification is None:
            raise TerminalError("the card's identification code is unknown (EF05 unreadable): "
                                "give it from the issuer's records")
        return diversification_data(self.identification)

    @property
    def block(self) -> int:
        if self.algorithm_flag not in BY_FLAG:
            raise TerminalError("the card's algorithm is unknown: select the SSSE first")
        return BY_FLAG[self.algorithm_flag].block

    def challenge(self) -> bytes:
        response = self.send(build(0x00, 0x84, 0x00, 0x00, le=8))
        if sw_of(response) != OK:
            raise TerminalError(f"GET CHALLENGE answered {sw_of(response):04X}")
        return response[:-2]

    def external_authenticate(self) -> int:
        cryptogram = self.psam.external_auth_cryptogram(self.algorithm_flag, self.diversification, self.challenge())
        return sw_of(self.send(build(0x00, 0x82, 0x00, RK_ID, cryptogram)))

    def internal_authenticate(self, factor: bytes, random: bytes | None = None) -> bool:
        """Is the card genuine? Its answer to <factor><random> must equal what the PSAM computes."""
        random = random if random is not None else self.random(8)
        response = self.send(build(0x00, 0x88, 0x00, 0x00, factor + random))
        if sw_of(response) != OK:
            return False
        return response[:-2] == self.psam.internal_auth_expected(self.algorithm_flag, self.diversification,
                                                                  factor, random)

    def mac_command(self, cla: int, ins: int, p1: int, p2: int, body: bytes, key: str) -> int:
        """GET CHALLENGE, then the command with MAC4 over CLA INS P1 P2 Lc || body (SPEC §5.1)."""
        iv = self.challenge().ljust(self.block, b"\x00")
        lc = len(body) + 4
        mac = self.psam.mac4(key, self.algorithm_flag, self.diversification, iv, bytes((cla, ins, p1, p2, lc)) + body)
        return sw_of(self.send(build(cla, ins, p1, p2, body + mac)))

    # -- operations -----------------------------------------------------------------------
    def verify(self, pin: str) -> int:
        return sw_of(self.send(build(0x00, 0x20, 0x00, 0x00, pack_pin(pin))))

    def change_pin(self, old: str, new: str) -> int:
        return sw_of(self.send(build(0x80, 0x5E, 0x01, 0x00, pack_pin(old) + b"\xFF" + pack_pin(new))))

    def reload_pin(self, new: str) -> int:
        return self.mac_command(0x80, 0x5E, 0x00, 0x00, pack_pin(new), "stk")

    def unblock_pin(self) -> int:
        return self.mac_command(0x84, 0x24, 0x00, 0x00, b"", "puk")

    def lock(self, permanent: bool = False) -> int:
        return self.mac_command(0x84, 0x1E, 0x00, 0x01 if permanent else 0x00, b"", "stk")

    def unlock(self) -> int:
        return self.mac_command(0x84, 0x18, 0x00, 0x00, b"", "stk")

    def card_block(self) -> int:
        return self.mac_command(0x84, 0x16, 0x00, 0x00, b"", "stk")

    def _medical_write(self, item, sfi: int, value: dict) -> int:
        """Select DF04 (medical insurance), authenticate the terminal, append the business record.

        The record is built first: a value that does not fit its field is a ValueError
        naming it, before any APDU is sent."""
        record = item.encode(value)
        sw = sw_of(self.send(build(0x00, 0xA4, 0x01, 0x0C, MEDICAL_DF.to_bytes(2, "big"))))
        if sw != OK:
            return sw
        sw = self.external_authenticate()
        if sw != OK:
            return sw
        return sw_of(self.send(build(0x00, 0xE2, 0x00, sfi << 3, record)))

    def register(self, institution: str = "H11010100001", kind: int = 1, amount: int = 0,
                 date: datetime.date | None = None) -> int:
        """A hospital registration (kind 1), outpatient (2) or inpatient (3) visit in DF04 EF15."""
        value = {"institution": institution, "kind": kind, "date": date or datetime.date.today(), "amount": amount}
        return self._medical_write(VISIT, 0x15, value)

    def pharmacy_purchase(self, pharmacy: str = "P11010100001", items: int = 1, amount: int = 0,
                          date: datetime.date | None = None) -> int:
        """A designated-pharmacy purchase in DF04 EF16."""
        value = {"pharmacy": pharmacy, "items": items, "date": date or datetime.date.today(), "amount": amount}
        return self._medical_write(PURCHASE, 0x16, value)


