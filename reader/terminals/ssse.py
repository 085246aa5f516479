"""A social-security terminal: the SSSE operations as LD/T 32 part 7 sequences them.

A bank outlet, a hospital, a pharmacy or a service window drives the card
through a card `Reader` and a `Psam` (in its own reader, reached by APDUs).
Every operation goes through APDUs; nothing edits card state. Each exchange is
reported to `on_exchange` so tools can print it.

Card recognition (P7 §5): reset (the ATR's historical bytes give the card-level
diversification factor, P9 §7.3.3), SELECT the SSSE (the FCI's `9F0C` names
the algorithm, P3 §6.4), SELECT EF05 and READ RECORD item 01 (the region code
gives the province and city factors). Every keyed step then asks the PSAM with
those factors.
"""

import datetime
import os

from chip.apps.keys import BY_NAME
from chip.apps.purse import AMOUNT_MAX, KEY_INDEX, TYPE_PURCHASE
from chip.apps.ssse_files import DDF_NAME, DF04, IDENTIFICATION, MEDICAL_ITEMS
from chip.contacts.atr import parse_atr
from chip.iso.apdu import build
from chip.iso.ins import (
    APPLICATION_BLOCK,
    APPLICATION_UNBLOCK,
    CARD_BLOCK,
    CHANGE_PIN,
    DEBIT_FOR_PURCHASE,
    EXTERNAL_AUTHENTICATE,
    GET_CHALLENGE,
    INITIALIZE,
    INTERNAL_AUTHENTICATE,
    PIN_CHANGE_UNBLOCK,
    READ_RECORD,
    SELECT,
    UPDATE_RECORD,
    VERIFY,
    cla_ins,
)
from chip.iso.sw import SW_OK, sw_of
from chip.kernel.crypto import factors
from chip.kernel.cryptograms import command_mac_input
from chip.kernel.pin import pack as pack_pin
from reader.base import Reader, transmit_all
from reader.errors import InputError
from reader.terminals.psam import Psam

# The largest SSSE amount a terminal takes, in fen: the 8 BCD digits of DF04 EF06 item 92, the
# running total of the hospital settlements (V2 table 9).
SSSE_MAX_AMOUNT = 10 ** (2 * MEDICAL_ITEMS[0x92].length) - 1


class TerminalError(Exception):
    """The terminal cannot go on (the message says what to do)."""


class SsseTerminal:
    """`identification`: the card identification code from the issuer's back office, for a card
    whose EF05 cannot be read (a loss-locked SSSE answers 6985 to READ RECORD)."""

    random = staticmethod(os.urandom)  # the terminal's random source (original data, INTERNAL AUTHENTICATE)

    def __init__(self, reader: Reader, psam: Psam, on_exchange=None, identification: bytes | None = None):
        self.reader = reader
        self.psam = psam
        self.on_exchange = on_exchange
        self.algorithm_flag = None
        self.identification = identification
        self.historical = b""

    def send(self, apdu: bytes) -> bytes:
        return transmit_all(self.reader, apdu, self.on_exchange)

    def _ok(self, apdu: bytes, what: str) -> bytes:
        response = self.send(apdu)
        if sw_of(response) != SW_OK:
            raise TerminalError(f"{what} answered {sw_of(response):04X}")
        return response[:-2]

    # -- card recognition (P7 §5) -----------------------------------------------------------------
    def start(self) -> int:
        """Reset, select the SSSE, learn the algorithm and the diversification factors; the SELECT SW."""
        self.historical = parse_atr(self.reader.reset()).historical
        sw = self.select_ssse()
        if self.algorithm_flag is not None:
            self.psam.select(self.algorithm_flag)
        if sw == SW_OK:
            if sw_of(self.send(build(*cla_ins(SELECT), 0x02, 0x00, b"\xEF\x05"))) == SW_OK:
                record = self.send(build(*cla_ins(READ_RECORD), 0x01, 0x00, le=0x12))  # item 01 by identifier
                if sw_of(record) == SW_OK:
                    self.identification = record[2:-2]
            self.select_ssse()
        return sw

    def select_ssse(self) -> int:
        response = self.send(build(*cla_ins(SELECT), 0x04, 0x00, DDF_NAME, le=256))
        marker = response.find(b"\x9F\x0C\x03\x86\x01")
        if marker >= 0:
            self.algorithm_flag = response[marker + 5]
        return sw_of(response)

    @property
    def factors(self) -> tuple[bytes, bytes, bytes]:
        if self.identification is None:
            raise TerminalError("the card's identification code is unknown (EF05 unreadable): "
                                "give it from the issuer's records")
        return factors(IDENTIFICATION.parse(self.identification).region.hex(), self.historical)

    def challenge(self, length: int = 8) -> bytes:
        return self._ok(build(*cla_ins(GET_CHALLENGE), 0x00, 0x00, le=length), "GET CHALLENGE")

    # -- authentication (P7 §5.4, §6) -------------------------------------------------------------
    def external_authenticate(self, key: str = "ssse_rk") -> int:
        """P7 §6: original data from a first GET CHALLENGE (as the real traces do), the process
        factor from a second; the PSAM computes the authentication data."""
        original = self.challenge()
        challenge = self.challenge()
        auth = self.psam.external_auth(key, self.factors, challenge, original)
        return sw_of(self.send(build(*cla_ins(EXTERNAL_AUTHENTICATE), 0x00, BY_NAME[key].card_id, auth + original)))

    def internal_authenticate(self, r1: bytes | None = None, r2: bytes | None = None) -> bool:
        """Is the card genuine? Its answer to R1 || R2 must equal what the PSAM computes (P7 §5.4)."""
        r1 = r1 if r1 is not None else self.random(8)
        r2 = r2 if r2 is not None else self.random(8)
        response = self.send(build(*cla_ins(INTERNAL_AUTHENTICATE), 0x00, 0x00, r1 + r2))
        if sw_of(response) != SW_OK:
            return False
        return response[:-2] == self.psam.internal_auth_expected(self.factors, r1, r2)

    def mac_command(self, cla: int, ins: int, p1: int, p2: int, body: bytes = b"", key: str = "ssse_stk") -> int:
        """GET CHALLENGE, then the command with MAC4 over CLA INS P1 P2 Lc || body (P4 §8.2, P7 §13)."""
        challenge = self.challenge(4)
        mac = self.psam.mac(key, self.factors, challenge, command_mac_input(cla, ins, p1, p2, body))
        return sw_of(self.send(build(cla, ins, p1, p2, body + mac)))

    def _after(self, key: str, then) -> int:
        sw = self.external_authenticate(key)
        return sw if sw != SW_OK else then()

    # -- PIN (P7 §5.6-§5.8, §9, §13.3) ------------------------------------------------------------
    def verify(self, pin: str) -> int:
        return sw_of(self.send(build(*cla_ins(VERIFY), 0x00, 0x00, pack_pin(pin))))

    def change_pin(self, old: str, new: str) -> int:
        return sw_of(self.send(build(*cla_ins(CHANGE_PIN), 0x01, 0x00, pack_pin(old) + b"\xFF" + pack_pin(new))))

    def reset_pin(self, new: str) -> int:
        """PIN reset at a window: external authentication with PUK, then `84 24 00 01` with the
        new PIN enciphered and MACed under the STK process key of one challenge."""
        def reset():
            challenge = self.challenge(4)
            header = bytes((*cla_ins(PIN_CHANGE_UNBLOCK), 0x00, 0x01))
            data = self.psam.pin_reset_data(self.factors, challenge, pack_pin(new), header)
            return sw_of(self.send(build(*header, data)))
        return self._after("ssse_puk", reset)

    def unblock_pin(self) -> int:
        return self._after("ssse_puk", lambda: self.mac_command(*cla_ins(PIN_CHANGE_UNBLOCK), 0x00, 0x00))

    # -- maintenance (P7 §13) ---------------------------------------------------------------------------
    def lock(self, permanent: bool = False) -> int:
        return self._after("ssse_bk", lambda: self.mac_command(*cla_ins(APPLICATION_BLOCK), 0x00,
                                                               0x01 if permanent else 0x00))

    def unlock(self) -> int:
        return self._after("ssse_bk", lambda: self.mac_command(*cla_ins(APPLICATION_UNBLOCK), 0x00, 0x00))

    def card_block(self) -> int:
        return self._after("ssse_bk", lambda: self.mac_command(*cla_ins(CARD_BLOCK), 0x00, 0x00))

    # -- medical insurance (DF04) ---------------------------------------------------------------------------
    def select_medical(self) -> int:
        return sw_of(self.send(build(*cla_ins(SELECT), 0x04, 0x00, DF04.name, le=256)))

    def register(self, pin: str, amount: int = 0) -> int:
        """A hospital settlement in temporary-offline mode (DF04 EF06, V2 §8.5; the project's model of
        a registration): the holder's PIN and RK1DF04 to read the running total and count, UK2DF04 to
        write them back one settlement further. The first such write activates an issued SSSE."""
        if not 0 <= amount <= SSSE_MAX_AMOUNT:
            raise InputError(f"amount must be 0-{SSSE_MAX_AMOUNT} fen, not {amount}")
        sw = self.select_medical()
        for step in (lambda: self.verify(pin), lambda: self.external_authenticate("df04_rk1")):
            if sw == SW_OK:
                sw = step()
        if sw != SW_OK:
            return sw
        total = self.send(build(*cla_ins(READ_RECORD), 0x92, 6 << 3, le=6))
        count = self.send(build(*cla_ins(READ_RECORD), 0x93, 6 << 3, le=4))
        if sw_of(total) != SW_OK or sw_of(count) != SW_OK:
            return sw_of(total) if sw_of(total) != SW_OK else sw_of(count)
        settled = int(MEDICAL_ITEMS[0x92].value(total[:-2]) or 0) + amount
        visits = int(MEDICAL_ITEMS[0x93].value(count[:-2]) or 0) + 1
        sw = self.external_authenticate("df04_uk2")
        for tag, value in ((0x92, str(settled % (SSSE_MAX_AMOUNT + 1))), (0x93, f"{visits % 100:02d}")):
            if sw == SW_OK:
                sw = sw_of(self.send(build(*cla_ins(UPDATE_RECORD), tag, 6 << 3, MEDICAL_ITEMS[tag].encode(value))))
        return sw

    def pharmacy_purchase(self, pin: str, amount: int, when: datetime.datetime, self_pay: int = 0,
                          fund: int = 0) -> dict:
        """A designated pharmacy's offline purchase (P7 §12): INITIALIZE FOR PURCHASE, the PSAM's
        INIT SAM FOR PURCHASE (MAC1), DEBIT FOR PURCHASE (TAC, MAC2), CREDIT SAM FOR PURCHASE.

        Returns what the pharmacy keeps for settlement: the SWs, the card's counter, the
        terminal transaction number, the TAC."""
        for name, value in (("amount", amount), ("self_pay", self_pay), ("fund", fund)):
            if not 0 <= value <= AMOUNT_MAX:
                raise InputError(f"{name} must be 0-{AMOUNT_MAX} fen, not {value}")
        sw = self.select_medical()
        if sw == SW_OK:
            sw = self.verify(pin)
        if sw != SW_OK:
            return {"sw": sw}
        amounts = amount.to_bytes(4, "big") + self_pay.to_bytes(4, "big") + fund.to_bytes(4, "big")
        terminal = self.psam.terminal_number  # the PSAM's EF 0016 (P9 §5)
        init = self.send(build(*cla_ins(INITIALIZE), 0x01, 0x01, bytes((KEY_INDEX,)) + amounts + terminal, le=0x16))
        if sw_of(init) != SW_OK:
            return {"sw": sw_of(init)}
        counter, version, algorithm, random = init[14:16], init[16], init[17], init[18:22]
        stamp = bytes.fromhex(when.strftime("%Y%m%d%H%M%S"))
        tx_number, mac1 = self.psam.init_purchase(
            random=random, counter=counter, amounts=amounts, kind=TYPE_PURCHASE, when=stamp,
            key_version=version, key_algorithm=algorithm, factors=self.factors)
        debit = self.send(build(*cla_ins(DEBIT_FOR_PURCHASE), 0x01, 0x00, tx_number + stamp + mac1, le=8))
        if sw_of(debit) != SW_OK:
            return {"sw": sw_of(debit), "counter": counter, "terminal_tx": tx_number}
        tac, mac2 = debit[:4], debit[4:8]
        self.psam.credit_purchase(mac2)
        return {"sw": SW_OK, "counter": counter, "terminal_tx": tx_number, "tac": tac, "mac2": mac2}
