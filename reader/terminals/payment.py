"""A PBOC/EMV terminal kernel: a purchase against any `Reader`, as a POS or bank
counter terminal runs it (select -> GPO -> read records -> offline PIN ->
GENERATE AC -> online -> EXTERNAL AUTHENTICATE -> scripts -> second GENERATE AC).

Kept deliberately plain: it is the host-side counterpart the simulator's
tests and flows drive, not a certified kernel. Every exchange is reported to
`on_exchange`.

All or nothing at the operation level: `purchase` checks its inputs (the
amount in fen, the PIN, the currency) before the first APDU and raises
InputError for a bad one. Issuer scripts run as EMV Book 3 §10.10 has it: the
commands of one script in order, and the rest of a script is not sent once
the card answers one of its commands with an error (SW1 other than 90, 62,
63); `Outcome.script_results` lists what the card ran, `scripts_not_sent`
what it never saw. `Outcome.summary` says what the card and the kernel did:
`PIN refused (63C1), purchase approved offline-PIN-failed (TC, ...)` when the
offline PIN failed and the transaction still went through (the card's CVM list
goes on to "no CVM required" after a failed offline PIN; the card's CVR tells
the issuer), `declined (AAC, ...): the financial application is not activated`.
"""

import datetime
from dataclasses import dataclass, field

from chip.apps.directory import PSE_NAME
from chip.apps.financial import (
    AAC,
    ALGORITHMS,
    ARQC,
    CDOL1,
    CNY,
    CVR_APPLICATION_BLOCKED,
    CVR_FOREIGN_CURRENCY,
    CVR_NOT_ACTIVATED,
    PDOL,
    TC,
    pin_block,
)
from chip.iso import ber
from chip.iso.apdu import build
from chip.iso.ins import (
    APPLICATION_BLOCK,
    APPLICATION_UNBLOCK,
    CARD_BLOCK,
    EXTERNAL_AUTHENTICATE,
    GENERATE_AC,
    GET_PROCESSING_OPTIONS,
    NAMES,
    PIN_CHANGE_UNBLOCK,
    PUT_DATA_SCRIPT,
    READ_RECORD,
    SELECT,
    VERIFY,
    cla_ins,
    code,
)
from chip.iso.sw import (
    SW1_OK,
    SW1_WARNING,
    SW1_WARNING_CHANGED,
    SW_AUTHENTICATION_METHOD_BLOCKED,
    SW_OK,
    SW_WARNING_SELECTED_FILE_INVALIDATED,
    sw_of,
)
from chip.kernel.crypto import SM4, TDES
from reader.base import Reader, transmit_all
from reader.errors import InputError
from reader.terminals.issuer import APPROVED, IssuerHost, check_pin

CID_NAMES = {AAC: "AAC", TC: "TC", ARQC: "ARQC"}
SM_INDICATOR = {algorithm: value for value, algorithm in ALGORITHMS.items()}  # the PDOL's DF69 for an algorithm
MAX_AMOUNT = 999_999_999_999  # fen: the amount is n12 (9F02)
# why a card answered an AAC, from its CVR (byte, bit) as chip.apps.financial sets them
AAC_REASONS = ((CVR_NOT_ACTIVATED, "the financial application is not activated"),
               (CVR_APPLICATION_BLOCKED, "the financial application is blocked"),
               (CVR_FOREIGN_CURRENCY, "a foreign currency, declined offline"))
NAMED_SCRIPTS = frozenset((APPLICATION_BLOCK, APPLICATION_UNBLOCK, CARD_BLOCK))  # named as chip.iso.ins names them


def check_amount(amount) -> int:
    """An amount in fen: a whole number 0 to 999999999999 (n12); else InputError."""
    if isinstance(amount, bool) or not isinstance(amount, int) or not 0 <= amount <= MAX_AMOUNT:
        raise InputError(f"an amount is a whole number of fen, 0 to {MAX_AMOUNT}, not {amount!r}")
    return amount


def script_name(command: bytes) -> str:
    """What an issuer script command is, by its header (docs/decisions.md §6)."""
    head = bytes(command[:2])
    kind = code(*head) if len(head) == 2 else None
    if kind == PIN_CHANGE_UNBLOCK:
        return "PIN CHANGE" if len(command) > 3 and command[3] == 0x02 else "PIN UNBLOCK"
    if kind == PUT_DATA_SCRIPT and len(command) >= 4:
        return f"PUT DATA {command[2]:02X}{command[3]:02X}"
    return NAMES[kind] if kind in NAMED_SCRIPTS else f"{head.hex().upper()}"


def script_goes_on(sw: int) -> bool:
    """Whether a script's next command is sent after this answer (EMV Book 3 §10.10: SW1 90, 62, 63)."""
    return sw >> 8 in (SW1_OK, SW1_WARNING, SW1_WARNING_CHANGED)


class KernelError(Exception):
    """The card answered something a terminal cannot go on with."""


def _dol_tags(dol: bytes) -> tuple[int, ...]:
    """The tags of a card's data object list, in its order (EMV Book 3 §5.4)."""
    return tuple(tag for tag, _ in ber.parse_dol(dol))


PDOL_TAGS, CDOL1_TAGS = _dol_tags(PDOL), _dol_tags(CDOL1)  # what the card asks for, parsed once


def _dol_data(tags: tuple[int, ...], values: dict) -> bytes:
    """The data a terminal sends for a data object list: the value of each listed object, in order."""
    return b"".join([values[tag] for tag in tags])


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
    script_results: list = field(default_factory=list)  # (command, SW) of every script command the card ran
    scripts_not_sent: list = field(default_factory=list)  # commands not sent: an earlier one of their script failed
    first_cid: int | None = None  # of the first GENERATE AC
    first_cvr: bytes = b""
    host_verified: bool | None = None  # None: not online; else whether the host verified the cryptogram

    @property
    def pin_text(self) -> str | None:
        """What the offline PIN got: None (not asked), 'PIN verified', 'PIN refused (63C1)', 'PIN blocked (6983)'."""
        sw = self.pin_sw
        if sw is None:
            return None
        if sw == SW_OK:
            return "PIN verified"
        return f"PIN blocked ({sw:04X})" if sw == SW_AUTHENTICATION_METHOD_BLOCKED else f"PIN refused ({sw:04X})"

    @property
    def reason(self) -> str:
        """Why a declined transaction was declined, when the card or the host said so ('' otherwise)."""
        if self.approved:
            return ""
        if self.first_cid == AAC:
            for (index, bit), why in AAC_REASONS:
                if len(self.first_cvr) > index and self.first_cvr[index] & bit:
                    return why
            return ""
        if self.second_ac_sw is not None and self.second_ac_sw != SW_OK:
            return f"the second GENERATE AC answered {self.second_ac_sw:04X}"
        if self.host_verified is False:
            return "the issuer host did not verify the card's cryptogram"
        if self.arc is not None and self.arc != APPROVED:
            return f"the issuer declined (ARC {self.arc.decode('ascii', 'replace')})"
        if self.first_cid == ARQC and self.cid == AAC:
            return "the card declined at the second GENERATE AC"
        return ""

    @property
    def summary(self) -> str:
        verdict = "approved" if self.approved else "declined"
        cid = CID_NAMES.get(self.cid, "none") if self.cid is not None else "none"
        core = f"({cid}, ATC {self.atc}, CVR {self.cvr.hex().upper()})"
        reason = self.reason
        text = f"{verdict} {core}" + (f": {reason}" if reason else "")
        pin = self.pin_text
        if pin is None:
            return text
        if self.pin_sw == SW_OK:
            return f"{pin}, purchase {text}"
        if self.approved:  # the kernel went on without a verified PIN: say so
            return f"{pin}, purchase approved offline-PIN-failed {core}"
        return f"{pin}, purchase {text}"


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
        if sw_of(response) not in (SW_OK, SW_WARNING_SELECTED_FILE_INVALIDATED):
            raise KernelError(f"{what} answered {sw_of(response):04X}")
        return response[:-2]

    def select_application(self) -> tuple[bytes, int]:
        """Power up, read the PSE directory, select the application it lists."""
        self.reader.reset()
        self._ok(self.send(build(*cla_ins(SELECT), 0x04, 0x00, PSE_NAME, le=256)), "SELECT PSE")
        record = self._ok(self.send(build(*cla_ins(READ_RECORD), 0x01, (1 << 3) | 4, le=256)), "READ RECORD PSE")
        aid = find(record, 0x4F)
        if aid is None:
            raise KernelError("the PSE lists no application")
        response = self.send(build(*cla_ins(SELECT), 0x04, 0x00, aid, le=256))
        return self._ok(response, "SELECT AID"), sw_of(response)

    def terminal_data(self, amount: int, currency: bytes, tvr: bytes = bytes(5), tx_type: int = 0x00) -> bytes:
        """The CDOL1 data (29 bytes, in the card's CDOL1 order, docs/decisions.md §6): amount (n12), other
        amount, country, TVR, currency, date (YYMMDD), type, unpredictable number."""
        return _dol_data(CDOL1_TAGS, {
            0x9F02: bytes.fromhex(f"{amount:012d}"), 0x9F03: bytes(6), 0x9F1A: self.country, 0x95: tvr,
            0x5F2A: currency, 0x9A: bytes.fromhex(f"{self.date:%y%m%d}"), 0x9C: bytes((tx_type,)),
            0x9F37: self.unpredictable.to_bytes(4, "big"),
        })

    def purchase(self, amount: int, pin: str | None = None, sm4: bool = False, currency: bytes = CNY,
                 host: IssuerHost | None = None, request: int = ARQC) -> Outcome:
        """Run a purchase of `amount` fen; with `host`, go online when the card asks.

        Every input is checked first (InputError before any APDU)."""
        check_amount(amount)
        if pin is not None:
            check_pin(pin, "the offline PIN")
        if not (isinstance(currency, bytes) and len(currency) == 2):
            raise InputError(f"a currency is 2 bytes (n3, e.g. 01 56 for CNY), not {currency!r}")
        if request not in (AAC, TC, ARQC):
            raise InputError(f"the first GENERATE AC asks for an AAC, a TC or an ARQC, not {request!r}")
        _fci, select_sw = self.select_application()
        outcome = Outcome(False, select_sw=select_sw)
        algorithm = SM4 if sm4 else TDES
        pdol_data = _dol_data(PDOL_TAGS, {0x9F02: bytes.fromhex(f"{amount:012d}"), 0x5F2A: currency,
                                    0xDF69: bytes((SM_INDICATOR[algorithm],))})
        gpo = self._ok(self.send(build(*cla_ins(GET_PROCESSING_OPTIONS), 0x00, 0x00, ber.ber_tlv(0x83, pdol_data),
                                       le=256)), "GPO")
        afl = find(gpo, 0x94) or b""
        records = b""
        for i in range(0, len(afl), 4):
            sfi, first, last = afl[i] >> 3, afl[i + 1], afl[i + 2]
            for number in range(first, last + 1):
                records += self._ok(self.send(build(*cla_ins(READ_RECORD), number, (sfi << 3) | 4, le=256)),
                                    "READ RECORD")
        pan = find(records, 0x5A).hex().upper().rstrip("F")
        psn = find(records, 0x5F34).hex()
        if pin is not None:
            outcome.pin_sw = sw_of(self.send(build(*cla_ins(VERIFY), 0x00, 0x80, pin_block(pin))))
        data = self.terminal_data(amount, currency)
        first = self._ok(self.send(build(*cla_ins(GENERATE_AC), request, 0x00, data, le=256)), "GENERATE AC")
        cid, atc, ac, iad = self._ac_fields(first)
        outcome.cid, outcome.atc, outcome.cvr = cid, atc, iad[3:7]
        outcome.first_cid, outcome.first_cvr = cid, iad[3:7]
        if host is None or cid == TC:
            outcome.approved = cid == TC
            return outcome
        # online: an ARQC for authorisation, or an AAC as an advice that may carry scripts back
        answer = host.authorise(pan, psn, algorithm, atc, data, iad[3:7], ac, amount, cid)
        outcome.arc, outcome.host_verified = answer.arc, answer.arqc_valid
        if cid == ARQC and answer.arpc is not None:
            outcome.issuer_auth_sw = sw_of(self.send(build(*cla_ins(EXTERNAL_AUTHENTICATE), 0x00, 0x00,
                                                           answer.arpc + answer.arc)))
        for script in answer.scripts:
            for i, command in enumerate(script):
                sw = sw_of(self.send(command))
                outcome.script_results.append((command, sw))
                if not script_goes_on(sw):  # the rest of this script never reaches the card
                    outcome.scripts_not_sent += script[i + 1:]
                    break
        if cid == ARQC:
            decision = TC if answer.approved else AAC
            second = self.send(build(*cla_ins(GENERATE_AC), decision, 0x00, answer.arc + data, le=256))
            outcome.second_ac_sw = sw_of(second)
            if outcome.second_ac_sw != SW_OK:  # e.g. 6A81 after a CARD BLOCK script: declined
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
