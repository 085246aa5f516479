"""The financial application: PBOC/UnionPay RMB debit, EMV-compatible (docs/decisions.md §6).

Selection (`A000000333010101`, listed by the PSE and PPSE in chip.apps.directory),
GET PROCESSING OPTIONS (format 2), READ RECORD over the AFL, GET DATA, the
plaintext offline PIN, GENERATE AC with card risk management, issuer
authentication (ARPC method 1) and MAC-protected issuer scripts, with 3DES or
SM4 chosen per transaction by the terminal's `DF69`.

Everything about the application's data is declared here as data (PDOL,
CDOLs, AFL, records); the keys, PIN, records and MAC mechanisms are the
shared ones of `chip/`.
"""

from hmac import compare_digest

from chip.iso.ber import ber_tlv, parse_dol
from chip.iso.ins import (
    APPLICATION_BLOCK,
    APPLICATION_UNBLOCK,
    CARD_BLOCK,
    EXTERNAL_AUTHENTICATE,
    GENERATE_AC,
    GET_DATA,
    GET_PROCESSING_OPTIONS,
    PIN_CHANGE_UNBLOCK,
    PUT_DATA_SCRIPT,
    VERIFY,
)
from chip.iso.sw import (
    SW_AUTHENTICATION_FAILED,
    SW_CONDITIONS_NOT_SATISFIED,
    SW_OK,
    SW_REFERENCED_DATA_NOT_FOUND,
    SW_WARNING_SELECTED_FILE_INVALIDATED,
    SW_WRONG_DATA,
    SW_WRONG_LENGTH,
    SW_WRONG_P1P2,
    CardError,
)
from chip.kernel import lifecycle
from chip.kernel.applet import Applet
from chip.kernel.crypto import SM4, TDES
from chip.kernel.cryptograms import cryptogram_input, script_mac_input
from chip.kernel.fs import DF, LinearEF
from chip.kernel.pin import Key, Pin
from chip.kernel.records import Records
from chip.kernel.secure import check_mac4, split_mac
from chip.kernel.store import Vars

AID = bytes.fromhex("A000000333010101")
CNY = b"\x01\x56"  # ISO 4217 / 3166 numeric 156
LANGUAGE = b"zh"

# Data object lists the card asks the terminal for.
PDOL = bytes.fromhex("9F0206" "5F2A02" "DF6901")  # amount, transaction currency, SM-algorithm indicator
CDOL1 = bytes.fromhex("9F0206" "9F0306" "9F1A02" "9505" "5F2A02" "9A03" "9C01" "9F3704")
CDOL2 = bytes.fromhex("8A02") + CDOL1  # authorisation response code, then the CDOL1 data again


def _offset(dol: bytes, tag: int) -> int:
    """Where the value of `tag` starts in the data a terminal sends for `dol` (EMV Book 3 §5.4)."""
    offset = 0
    for listed, length in parse_dol(dol):
        if listed == tag:
            return offset
        offset += length
    raise ValueError(f"{tag:X} is not in the data object list")


PDOL_LENGTH = sum(n for _, n in parse_dol(PDOL))
CDOL1_LENGTH = sum(n for _, n in parse_dol(CDOL1))  # 29: exactly the cryptogram's terminal data (docs/decisions.md §6)
CURRENCY_IN_CDOL = _offset(CDOL1, 0x5F2A)  # the transaction currency in the CDOL1 data

AIP = bytes.fromhex("1C00")  # cardholder verification, terminal risk management, issuer authentication
AFL = bytes.fromhex("08010300")  # SFI 1, records 1-3, none for offline data authentication
CVM_LIST = bytes.fromhex("00000000" "00000000" "4203" "4103" "1F03")  # online PIN, offline plaintext PIN, no CVM
IAC_DEFAULT = bytes.fromhex("D84000A800")
IAC_DENIAL = bytes.fromhex("0010000000")
IAC_ONLINE = bytes.fromhex("D84004F800")
LOG_FORMAT = bytes.fromhex("9A03" "9F2103" "9F0206" "9F0306" "9F1A02" "5F2A02" "9F4E14" "9C01" "9F3602")

# Cryptogram information data (9F27) and the request in GENERATE AC P1
AAC, TC, ARQC = 0x00, 0x40, 0x80
ARC_APPROVED = (b"00", b"10", b"11")  # authorisation response codes that approve

# CVR (4 bytes, PBOC/VIS layout; byte 0 is its length 03). Bits of bytes 1-3:
CVR_SECOND_AC_NOT_REQUESTED = (1, 0x80)
CVR_SECOND_AC_TC = (1, 0x40)
CVR_FIRST_AC_ARQC = (1, 0x20)
CVR_FIRST_AC_TC = (1, 0x10)
CVR_ISSUER_AUTH_FAILED = (1, 0x08)
CVR_OFFLINE_PIN_PERFORMED = (1, 0x04)
CVR_OFFLINE_PIN_FAILED = (1, 0x02)
CVR_PIN_TRY_LIMIT_EXCEEDED = (2, 0x40)
CVR_VELOCITY_EXCEEDED = (2, 0x20)
CVR_NEW_CARD = (2, 0x10)
CVR_ISSUER_AUTH_NOT_PERFORMED = (2, 0x04)
CVR_SCRIPT_FAILED = (3, 0x08)
CVR_NOT_ACTIVATED = (3, 0x04)  # model
CVR_APPLICATION_BLOCKED = (3, 0x02)  # model
CVR_FOREIGN_CURRENCY = (3, 0x01)  # model: foreign currency, declined offline

ALGORITHMS = {0x00: TDES, 0x01: SM4}  # DF69 value -> algorithm
CVN = {TDES: 0x0A, SM4: 0x4A}
ALGORITHM_ID = {TDES: 0x01, SM4: 0x04}

RECORDS_EF = LinearEF(None, 1, "fin.records", "application records")
ADF = DF(None, "PBOC debit", name=AID, children=[RECORDS_EF])

ACTIVATION_TAG = 0xDF7F
LOWER_OFFLINE_LIMIT_TAG = 0x9F14
UPPER_OFFLINE_LIMIT_TAG = 0x9F23
PUT_DATA_FIELDS = {ACTIVATION_TAG: "activation", LOWER_OFFLINE_LIMIT_TAG: "lower_limit",
                   UPPER_OFFLINE_LIMIT_TAG: "upper_limit"}
KEY_NAMES = ("ac", "smi", "smc")


def pin_block(digits: str) -> bytes:
    """Plaintext PIN block, format 2: `2N` then the digits, F-filled to 8 bytes."""
    return bytes.fromhex(f"2{len(digits):X}{digits}".ljust(16, "F"))


def pin_block_ok(block: bytes) -> bool:
    """Whether `block` is a format-2 block of a 4-12 digit PIN."""
    text = block.hex().upper()
    if len(block) != 8 or text[0] != "2":
        return False
    n = int(text[1], 16)
    return 4 <= n <= 12 and text[2:2 + n].isdigit() and set(text[2 + n:]) <= {"F"}


def track2(pan: str, expiry, service_code: str = "220") -> bytes:
    text = f"{pan}D{expiry:%y%m}{service_code}0000000"
    return bytes.fromhex(text + ("F" if len(text) % 2 else ""))


class Transaction:
    """The volatile state of one transaction, from GET PROCESSING OPTIONS to the end."""

    __slots__ = ("ac", "algorithm", "atc", "cvr", "first_cid", "issuer_auth", "scripts", "second_done")

    def __init__(self, algorithm, cvr: bytearray):
        self.algorithm = algorithm
        self.cvr = cvr
        self.atc = None
        self.first_cid = None
        self.ac = None
        self.issuer_auth = None  # None not performed, True ok, False failed
        self.second_done = False
        self.scripts = 0


class FinancialApplet(Applet):
    NAME = "fin"
    RECORD_MODES = frozenset((4,))  # EMV: records by number only (EMV Book 1 §11.2)
    ROOT = ADF
    COMMANDS = {
        **Applet.COMMANDS,
        VERIFY: "verify",
        GET_PROCESSING_OPTIONS: "get_processing_options",
        GENERATE_AC: "generate_ac",
        GET_DATA: "get_data",
        EXTERNAL_AUTHENTICATE: "external_authenticate",
        APPLICATION_BLOCK: "script_application_block",  # the issuer scripts (docs/decisions.md §6)
        APPLICATION_UNBLOCK: "script_application_unblock",
        CARD_BLOCK: "script_card_block",
        PIN_CHANGE_UNBLOCK: "script_pin_change_unblock",
        PUT_DATA_SCRIPT: "script_put_data",
    }

    def __init__(self, card, store):
        super().__init__(card, store)
        self.state: Vars = store["fin.state"]
        self.pin: Pin = store["fin.pin"]
        self.keys = {(alg, name): store[f"fin.{alg.name.lower()}.{name}"] for alg in (TDES, SM4) for name in KEY_NAMES}
        self.tx = None
        self.session_cvr = bytearray(b"\x03\x00\x00\x00")  # flags set before GPO (offline PIN)

    @staticmethod
    def personalize(store, profile, today) -> None:
        issue, expiry = profile.dates(today)
        fin = profile.financial
        pan_bcd = bytes.fromhex(fin.pan + ("F" if len(fin.pan) % 2 else ""))
        psn = bytes.fromhex(fin.psn)
        records = (
            ber_tlv(0x70, ber_tlv(0x57, track2(fin.pan, expiry)) + ber_tlv(0x5F20, fin.holder_name.encode("ascii"))
                    + ber_tlv(0x9F1F, b"")),
            ber_tlv(0x70, ber_tlv(0x5A, pan_bcd) + ber_tlv(0x5F24, bytes.fromhex(f"{expiry:%y%m%d}"))
                    + ber_tlv(0x5F25, bytes.fromhex(f"{issue:%y%m%d}")) + ber_tlv(0x5F28, CNY)
                    + ber_tlv(0x5F34, psn) + ber_tlv(0x9F07, b"\xFF\x00") + ber_tlv(0x8E, CVM_LIST)
                    + ber_tlv(0x9F0D, IAC_DEFAULT) + ber_tlv(0x9F0E, IAC_DENIAL) + ber_tlv(0x9F0F, IAC_ONLINE)
                    + ber_tlv(0x8C, CDOL1) + ber_tlv(0x8D, CDOL2) + ber_tlv(0x9F08, b"\x00\x30")
                    + ber_tlv(0x9F42, CNY) + ber_tlv(0x9F44, b"\x02")),
            ber_tlv(0x70, ber_tlv(0x9F61, profile.id_number.encode("ascii")) + ber_tlv(0x9F62, b"\x00")),
        )
        store.add("fin.records", Records(records))
        store.add("fin.pin", Pin(pin_block(fin.initial_pin), fin.pin_tries))
        for algorithm in (TDES, SM4):
            for name in KEY_NAMES:
                imk = profile.keys[f"fin_imk_{name}"]
                store.add(f"fin.{algorithm.name.lower()}.{name}",
                          Key(algorithm.icc_master_key(imk, fin.pan, fin.psn), 0))
        store.add("fin.state", Vars(
            **lifecycle.initial("fin.state"),
            atc=0,
            last_online_atc=0,
            atc_limit=fin.atc_limit,
            lower_limit=0,
            upper_limit=0,
            label=fin.label,
        ))

    # -- selection --------------------------------------------------------------------------
    def select(self, node) -> int:
        return SW_OK if self.state.lock == lifecycle.NONE else SW_WARNING_SELECTED_FILE_INVALIDATED

    reselect = select

    def deselect(self) -> None:
        self.pin.validated = False
        self.tx = None
        self.session_cvr = bytearray(b"\x03\x00\x00\x00")

    def fci_proprietary(self, node) -> bytes:
        label = self.state.label.encode("ascii")
        return (ber_tlv(0x50, label) + ber_tlv(0x87, b"\x01") + ber_tlv(0x9F38, PDOL) + ber_tlv(0x5F2D, LANGUAGE)
                + ber_tlv(0x9F11, b"\x01") + ber_tlv(0x9F12, label))

    def activated(self) -> bool:
        return self.state.activation == lifecycle.ACTIVATED

    def describe(self) -> dict:
        return {
            "activation": self.state.activation.replace("_", " "),
            "lock": self.state.lock,
            "card": self.store["card"].state,
            "ATC": f"{self.state.atc} (limit {self.state.atc_limit}, last online {self.state.last_online_atc})",
            "PIN tries left": f"{self.pin.tries} of {self.pin.limit}" + (" (blocked)" if self.pin.blocked else ""),
            "offline limits": f"lower {self.state.lower_limit}, upper {self.state.upper_limit}",
        }

    # -- helpers -----------------------------------------------------------------------------
    def _flag(self, cvr: bytearray, bit) -> None:
        cvr[bit[0]] |= bit[1]

    def _cvr(self) -> bytearray:
        return self.tx.cvr if self.tx is not None else self.session_cvr

    # -- commands ------------------------------------------------------------------------------
    def verify(self, cmd):
        """VERIFY (00 20 00 80 08 <format-2 block>): the plaintext offline PIN."""
        if cmd.p1:
            raise CardError(SW_WRONG_P1P2)
        if cmd.p2 != 0x80:
            raise CardError(SW_REFERENCED_DATA_NOT_FOUND)
        pin = self.pin
        data = cmd.data
        cvr = self._cvr()
        if not data:
            pin.status()
            return b"", SW_OK
        if len(data) != 8:
            raise CardError(SW_WRONG_LENGTH)
        if not pin_block_ok(data):
            raise CardError(SW_WRONG_DATA)
        self._flag(cvr, CVR_OFFLINE_PIN_PERFORMED)
        try:
            pin.check(self.store, data)
        except CardError as refused:
            self._flag(cvr, CVR_OFFLINE_PIN_FAILED)
            if pin.tries == 0:
                self._flag(cvr, CVR_PIN_TRY_LIMIT_EXCEEDED)
            raise refused
        cvr[CVR_OFFLINE_PIN_FAILED[0]] &= ~CVR_OFFLINE_PIN_FAILED[1]
        return b"", SW_OK

    def get_processing_options(self, cmd):
        """GPO (80 A8 00 00 Lc 83 L <PDOL data>): starts a transaction; format 2 response (AIP, AFL)."""
        if cmd.p1 or cmd.p2:
            raise CardError(SW_WRONG_P1P2)
        data = cmd.data
        if len(data) < 2 or data[0] != 0x83:
            raise CardError(SW_WRONG_DATA)
        if data[1] != PDOL_LENGTH or len(data) != 2 + PDOL_LENGTH:
            raise CardError(SW_WRONG_LENGTH)
        if self.tx is not None:
            raise CardError(SW_CONDITIONS_NOT_SATISFIED)
        algorithm = ALGORITHMS.get(data[-1])
        if algorithm is None:
            raise CardError(SW_WRONG_DATA)
        self.tx = Transaction(algorithm, bytearray(self.session_cvr))
        return ber_tlv(0x77, ber_tlv(0x82, AIP) + ber_tlv(0x94, AFL)), SW_OK

    def get_data(self, cmd):
        """GET DATA (80 CA P1 P2): ATC, last online ATC, PIN tries, EC balance, log format, limits, activation."""
        tag = cmd.p1 << 8 | cmd.p2
        state = self.state
        values = {
            0x9F36: state.atc.to_bytes(2, "big"),
            0x9F13: state.last_online_atc.to_bytes(2, "big"),
            0x9F17: bytes((self.pin.tries,)),
            0x9F79: bytes(6),  # electronic cash balance: this debit card has no EC purse
            0x9F4F: LOG_FORMAT,
            LOWER_OFFLINE_LIMIT_TAG: bytes((state.lower_limit,)),
            UPPER_OFFLINE_LIMIT_TAG: bytes((state.upper_limit,)),
            ACTIVATION_TAG: b"\x01" if self.activated() else b"\x00",
        }
        value = values.get(tag)
        if value is None:
            raise CardError(SW_REFERENCED_DATA_NOT_FOUND)
        return ber_tlv(tag, value), SW_OK

    def generate_ac(self, cmd):
        """GENERATE AC (80 AE P1 00): first (CDOL1) or second (CDOL2) in the transaction."""
        requested = cmd.p1 & 0xC0
        if cmd.p1 & 0x3F or cmd.p2 or requested == 0xC0:
            raise CardError(SW_WRONG_P1P2)
        tx = self.tx
        if tx is None or tx.second_done:
            raise CardError(SW_CONDITIONS_NOT_SATISFIED)
        if tx.first_cid is None:
            return self._first_ac(cmd, tx, requested)
        return self._second_ac(cmd, tx, requested)

    def _first_ac(self, cmd, tx, requested):
        data = cmd.data
        if len(data) != CDOL1_LENGTH:
            raise CardError(SW_WRONG_LENGTH)
        state = self.state
        if state.atc >= state.atc_limit:
            raise CardError(SW_CONDITIONS_NOT_SATISFIED)
        atc = state.atc + 1
        self.store.write(state, "atc", atc)  # committed with the response: durable before it leaves
        cvr = tx.cvr
        decline = False
        if not self.activated():
            self._flag(cvr, CVR_NOT_ACTIVATED)
            decline = True
        if state.lock != lifecycle.NONE:
            self._flag(cvr, CVR_APPLICATION_BLOCKED)
            decline = True
        if state.last_online_atc == 0:
            self._flag(cvr, CVR_NEW_CARD)
        if self.pin.tries == 0:
            self._flag(cvr, CVR_PIN_TRY_LIMIT_EXCEEDED)
        foreign = data[CURRENCY_IN_CDOL:CURRENCY_IN_CDOL + 2] != CNY
        if decline or requested == AAC:
            cid = AAC
        elif requested == TC and foreign:
            self._flag(cvr, CVR_FOREIGN_CURRENCY)
            cid = AAC
        elif requested == TC and not self._offline_allowed(atc):
            self._flag(cvr, CVR_VELOCITY_EXCEEDED)
            cid = ARQC
        elif requested == TC and self.pin.tries == 0:
            cid = ARQC
        else:
            cid = requested
        if cid == ARQC:
            self._flag(cvr, CVR_FIRST_AC_ARQC)
        elif cid == TC:
            self._flag(cvr, CVR_FIRST_AC_TC)
        self._flag(cvr, CVR_SECOND_AC_NOT_REQUESTED)
        tx.atc, tx.first_cid = atc, cid
        tx.ac = self._cryptogram(tx, data)
        if cid != ARQC:
            tx.second_done = True  # an AAC or TC ends the transaction (scripts may still follow)
        return self._ac_response(tx, cid), SW_OK

    def _offline_allowed(self, atc: int) -> bool:
        """Consecutive offline transactions since the last online one stay under the lower limit."""
        return atc - self.state.last_online_atc <= self.state.lower_limit

    def _second_ac(self, cmd, tx, requested):
        data = cmd.data
        if len(data) != 2 + CDOL1_LENGTH:
            raise CardError(SW_WRONG_LENGTH)
        if requested == ARQC:
            raise CardError(SW_WRONG_P1P2)
        arc, terminal_data = data[:2], data[2:]
        cvr = tx.cvr
        cvr[CVR_SECOND_AC_NOT_REQUESTED[0]] &= ~CVR_SECOND_AC_NOT_REQUESTED[1]
        if tx.issuer_auth is None:
            self._flag(cvr, CVR_ISSUER_AUTH_NOT_PERFORMED)
        approve = (requested == TC and arc in ARC_APPROVED and tx.issuer_auth is not False
                   and self.activated() and self.state.lock == lifecycle.NONE)
        cid = TC if approve else AAC
        if approve:
            self._flag(cvr, CVR_SECOND_AC_TC)
        tx.second_done = True
        return self._ac_response(tx, cid, self._cryptogram(tx, terminal_data)), SW_OK

    def _session_key(self, tx, kind: str) -> bytes:
        """The transaction's session key from the ICC key `kind` (ac, smi, smc) and its ATC."""
        algorithm = tx.algorithm
        return algorithm.session_key(self.keys[algorithm, kind].value, tx.atc)

    def _cryptogram(self, tx, terminal_data: bytes) -> bytes:
        message = cryptogram_input(terminal_data, AIP, tx.atc, bytes(tx.cvr))
        return tx.algorithm.cryptogram(self._session_key(tx, "ac"), message)

    def _ac_response(self, tx, cid: int, ac: bytes | None = None) -> bytes:
        algorithm = tx.algorithm
        iad = bytes((0x07, 0x01, CVN[algorithm])) + bytes(tx.cvr) + bytes((ALGORITHM_ID[algorithm],))
        return ber_tlv(0x77, ber_tlv(0x9F27, bytes((cid,))) + ber_tlv(0x9F36, tx.atc.to_bytes(2, "big"))
                       + ber_tlv(0x9F26, ac or tx.ac) + ber_tlv(0x9F10, iad))

    def external_authenticate(self, cmd):
        """EXTERNAL AUTHENTICATE (00 82 00 00 0A <ARPC 8><ARC 2>): issuer authentication, method 1."""
        if cmd.p1 or cmd.p2:
            raise CardError(SW_WRONG_P1P2)
        if len(cmd.data) != 10:
            raise CardError(SW_WRONG_LENGTH)
        tx = self.tx
        if tx is None or tx.first_cid != ARQC or tx.second_done or tx.issuer_auth is not None:
            raise CardError(SW_CONDITIONS_NOT_SATISFIED)
        arpc, arc = cmd.data[:8], cmd.data[8:]
        if not compare_digest(arpc, tx.algorithm.arpc(self._session_key(tx, "ac"), tx.ac, arc)):
            tx.issuer_auth = False
            self._flag(tx.cvr, CVR_ISSUER_AUTH_FAILED)
            raise CardError(SW_AUTHENTICATION_FAILED)
        tx.issuer_auth = True
        self.store.write(self.state, "last_online_atc", tx.atc)
        return b"", SW_OK

    # -- issuer scripts ---------------------------------------------------------------------------
    def _script(self, cmd) -> bytes:
        """Check an issuer script command's MAC (docs/decisions.md §6) and return its data before the MAC.

        MAC4 over CLA INS P1 P2 Lc || ATC || AC || data, session key from the
        SMI ICC key and this transaction's ATC, AC from its first GENERATE AC.
        """
        tx = self.tx
        body, mac4 = split_mac(cmd.data)
        if tx is None or tx.ac is None:
            raise CardError(SW_CONDITIONS_NOT_SATISFIED)
        tx.scripts += 1
        message = script_mac_input(cmd.cla, cmd.ins, cmd.p1, cmd.p2, tx.atc, tx.ac, body)
        try:
            check_mac4(tx.algorithm, self._session_key(tx, "smi"), None, message, mac4)
        except CardError:
            self._flag(tx.cvr, CVR_SCRIPT_FAILED)
            raise
        return body

    def _no_params_script(self, cmd) -> None:
        if cmd.p1 or cmd.p2:
            raise CardError(SW_WRONG_P1P2)
        if self._script(cmd):
            raise CardError(SW_WRONG_LENGTH)

    def script_application_block(self, cmd):
        """APPLICATION BLOCK (84 1E 00 00 04 <MAC4>): SELECT then answers 6283, GENERATE AC only AAC."""
        self._no_params_script(cmd)
        lifecycle.fire(self.store, lifecycle.FIN_LOCK, lifecycle.LOCK)
        return b"", SW_OK

    def script_application_unblock(self, cmd):
        """APPLICATION UNBLOCK (84 18 00 00 04 <MAC4>)."""
        self._no_params_script(cmd)
        lifecycle.fire(self.store, lifecycle.FIN_LOCK, lifecycle.UNLOCK)
        return b"", SW_OK

    def script_card_block(self, cmd):
        """CARD BLOCK (84 16 00 00 04 <MAC4>): final, every SELECT then answers 6A81."""
        self._no_params_script(cmd)
        lifecycle.fire(self.store, lifecycle.CARD, lifecycle.CARD_BLOCK)
        return b"", SW_OK

    def script_pin_change_unblock(self, cmd):
        """PIN CHANGE/UNBLOCK (84 24 00 P2): P2 00 unblock (counter only); P2 02 new PIN enciphered
        under the SMC session key (format-2 block, method-2 padding) and a full counter."""
        if cmd.p1 or cmd.p2 not in (0x00, 0x02):
            raise CardError(SW_WRONG_P1P2)
        body = self._script(cmd)
        if cmd.p2 == 0x00:
            if body:
                raise CardError(SW_WRONG_LENGTH)
            self.pin.reset_and_unblock(self.store)
            return b"", SW_OK
        tx = self.tx
        block = tx.algorithm.decipher_pin_block(self._session_key(tx, "smc"), body)
        if block is None or not pin_block_ok(block):
            raise CardError(SW_WRONG_DATA)
        self.pin.update(self.store, block)
        return b"", SW_OK

    def script_put_data(self, cmd):
        """PUT DATA (04 DA P1 P2 Lc <value> <MAC4>): DF7F activation flag (00/01), 9F14/9F23 offline limits."""
        field = PUT_DATA_FIELDS.get(cmd.p1 << 8 | cmd.p2)
        if field is None:
            raise CardError(SW_REFERENCED_DATA_NOT_FOUND)
        value = self._script(cmd)
        if len(value) != 1:
            raise CardError(SW_WRONG_LENGTH)
        if field == "activation":
            if value[0] > 1:
                raise CardError(SW_WRONG_DATA)
            lifecycle.fire(self.store, lifecycle.FIN_ACTIVATION, lifecycle.ACTIVATE if value[0] else lifecycle.DEACTIVATE)
        else:
            self.store.write(self.state, field, value[0])
        return b"", SW_OK
