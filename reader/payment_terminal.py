"""A PBOC/EMV terminal kernel: a purchase against any `Reader`, as a POS or bank
counter terminal runs it (select -> GPO -> read records -> offline PIN ->
GENERATE AC -> online -> EXTERNAL AUTHENTICATE -> scripts -> second GENERATE AC).

Kept deliberately plain: it is the host-side counterpart the simulator's
tests and flows drive, not a certified kernel. Every exchange is reported to
`on_exchange`.
"""

import datetime
from dataclasses import dataclass, field

from chip import ber
from chip.apdu import build
from chip.crypto import SM4, TDES
from chip.directory import PSE_NAME
from chip.financial import AAC, ARQC, TC, pin_block

from .base import Reader, transmit_all
from .issuer import IssuerHost

CNY = b"\x01\x56"
CID_NAMES = {AAC: "AAC", TC: "TC", ARQC: "ARQC"}


class KernelError(Exception):
    """The card answered something a terminal cannot go on with."""


def sw_of(response: bytes) -> int:
    return int.from_bytes(response[-2:], "big")


def find(data: bytes, tag: int) -> bytes | None:
    """The first data object `tag` anywhere in nested BER-TLV `data`."""
    try:
        objects = ber.parse(data)
    except ValueError:
        return None
    for t, value in objects:
        if t == tag:
            return value
        if (t >> (8 * ((t.bit_length() - 1) // 8))) & 0x20:  # constructed: look inside
            found = find(value, tag)
            if found is not None:
                return found
    return None


@dataclass
class Outcome:
    approved: bool
    cid: int | None = None  # of the final cryptogram
    atc: int | None = None
    cvr: bytes = b""
    arc: bytes | None = None
    select_sw: int = 0
    pin_sw: int | None = None
    issuer_auth_sw: int | None = None
    second_ac_sw: int | None = None
    script_results: list = field(default_factory=list)  # (command, SW)

    @property
    def summary(self) -> str:
        verdict = "approved" if self.approved else "declined"
        cid = CID_NAMES.get(self.cid, "none") if self.cid is not None else "none"
        return f"{verdict} ({cid}, ATC {self.atc}, CVR {self.cvr.hex().upper()})"


class PaymentTerminal:
    def __init__(self, reader: Reader, on_exchange=None, country: bytes = CNY, date: datetime.date | None = None):
        self.reader = reader
        self.on_exchange = on_exchange
        self.country = country
        self.date = date or datetime.date.today()
        self.unpredictable = 0x11223344

    def send(self, apdu: bytes) -> bytes:
        return transmit_all(self.reader, apdu, self.on_exchange)

    def _ok(self, response: bytes, what: str) -> bytes:
        if sw_of(response) not in (0x9000, 0x6283):
            raise KernelError(f"{what} answered {sw_of(response):04X}")
        return response[:-2]

    def select_application(self) -> tuple[bytes, int]:
        """Power up, read the PSE directory, select the application it lists."""
        self.reader.reset()
        self._ok(self.send(build(0x00, 0xA4, 0x04, 0x00, PSE_NAME, le=256)), "SELECT PSE")
        record = self._ok(self.send(build(0x00, 0xB2, 0x01, (1 << 3) | 4, le=256)), "READ RECORD PSE")
        aid = find(record, 0x4F)
        if aid is None:
            raise KernelError("the PSE lists no application")
        response = self.send(build(0x00, 0xA4, 0x04, 0x00, aid, le=256))
        return self._ok(response, "SELECT AID"), sw_of(response)

    def terminal_data(self, amount: int, currency: bytes, tvr: bytes = bytes(5), tx_type: int = 0x00) -> bytes:
        """The CDOL1 data (29 bytes, SPEC §5.2 order): amount (n12), other amount, country, TVR,
        currency, date (YYMMDD), type, unpredictable number."""
        return (bytes.fromhex(f"{amount:012d}") + bytes(6) + self.country + tvr + currency
                + bytes.fromhex(f"{self.date:%y%m%d}") + bytes((tx_type,)) + self.unpredictable.to_bytes(4, "big"))

    def purchase(self, amount: int, pin: str | None = None, sm4: bool = False, currency: bytes = CNY,
                 host: IssuerHost | None = None, request: int = ARQC) -> Outcome:
        """Run a purchase of `amount` fen; with `host`, go online when the card asks."""
        fci, select_sw = self.select_application()
        outcome = Outcome(False, select_sw=select_sw)
        pdol_data = bytes.fromhex(f"{amount:012d}") + currency + (b"\x01" if sm4 else b"\x00")
        gpo = self._ok(self.send(build(0x80, 0xA8, 0x00, 0x00, ber.ber_tlv(0x83, pdol_data), le=256)), "GPO")
        afl = find(gpo, 0x94) or b""
        records = b""
        for i in range(0, len(afl), 4):
            sfi, first, last = afl[i] >> 3, afl[i + 1], afl[i + 2]
            for number in range(first, last + 1):
                records += self._ok(self.send(build(0x00, 0xB2, number, (sfi << 3) | 4, le=256)), "READ RECORD")
        pan = find(records, 0x5A).hex().upper().rstrip("F")
        psn = find(records, 0x5F34).hex()
        if pin is not None:
            outcome.pin_sw = sw_of(self.send(build(0x00, 0x20, 0x00, 0x80, pin_block(pin))))
        data = self.terminal_data(amount, currency)
        first = self._ok(self.send(build(0x80, 0xAE, request, 0x00, data, le=256)), "GENERATE AC")
        cid, atc, ac, iad = self._ac_fields(first)
        outcome.cid, outcome.atc, outcome.cvr = cid, atc, iad[3:7]
        algorithm = SM4 if sm4 else TDES
        if host is None or cid == TC:
            outcome.approved = cid == TC
            return outcome
        # online: an ARQC for authorisation, or an AAC as an advice that may carry scripts back
        answer = host.authorise(pan, psn, algorithm, atc, data, iad[3:7], ac, amount, cid)
        outcome.arc = answer.arc
        if cid == ARQC and answer.arpc is not None:
            outcome.issuer_auth_sw = sw_of(self.send(build(0x00, 0x82, 0x00, 0x00, answer.arpc + answer.arc)))
        for script in answer.scripts:
            outcome.script_results.append((script, sw_of(self.send(script))))
        if cid == ARQC:
            decision = TC if answer.approved else AAC
            second = self.send(build(0x80, 0xAE, decision, 0x00, answer.arc + data, le=256))
            outcome.second_ac_sw = sw_of(second)
            if outcome.second_ac_sw != 0x9000:  # e.g. 6A81 after a CARD BLOCK script: declined
                outcome.cid = None
                return outcome
            cid, atc, _, iad = self._ac_fields(second[:-2])
            outcome.cid, outcome.cvr = cid, iad[3:7]
            outcome.approved = cid == TC
        return outcome

    @staticmethod
    def _ac_fields(response: bytes):
        cid = find(response, 0x9F27)
        atc = find(response, 0x9F36)
        ac = find(response, 0x9F26)
        iad = find(response, 0x9F10)
        if None in (cid, atc, ac, iad):
            raise KernelError("GENERATE AC response lacks 9F27, 9F36, 9F26 or 9F10")
        return cid[0], int.from_bytes(atc, "big"), ac, iad
