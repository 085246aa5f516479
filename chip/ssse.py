"""The social-security application (SSSE): files, PIN, authentication and lifecycle (SPEC §2).

The DDF `sx1.sh.社会保障` holds EF05 (card and issuer data), EF06 (holder
data), EF07/EF08 (fingerprint, photo) and the DFs DF01-DF04. Everything
about the files is declared here as data; the commands are the shared
mechanisms of `chip.applet` and `chip.pin` plus the SSSE's own PIN commands.
"""

import datetime
from hmac import compare_digest

from construct import Int32ub, Struct

from . import lifecycle
from .applet import VERIFY, Applet
from .ber import ber_tlv
from .crypto import BY_FLAG
from .fs import DF, EXTERNAL_AUTH, PIN, LinearEF, TransparentEF
from .items import BINARY, BYTE, Ascii, Bcd, BcdDate, Gbk, Item
from .lifecycle import ACTIVATE, CARD, CARD_BLOCK, LOCK, LOCK_PERMANENT, SSSE_LIFECYCLE, SSSE_LOCK, UNLOCK
from .pin import Key, Pin, pack, well_formed
from .records import Records
from .secure import Challenge, check_mac4, split_mac
from .store import Binary, Vars
from .sw import (
    SW_AUTHENTICATION_METHOD_BLOCKED,
    SW_CONDITIONS_NOT_SATISFIED,
    SW_OK,
    SW_REFERENCED_DATA_NOT_FOUND,
    SW_SECURITY_STATUS_NOT_SATISFIED,
    SW_WARNING_SELECTED_FILE_INVALIDATED,
    SW_WRONG_DATA,
    SW_WRONG_LENGTH,
    SW_WRONG_P1P2,
    CardError,
)

DDF_NAME = b"sx1.sh." + "社会保障".encode("gbk")  # 7378312E73682EC9E7BBE1B1A3D5CF
RID = bytes.fromhex("D156000005")
PROTECTED = PIN | EXTERNAL_AUTH

EF05_ITEMS = (
    Item(0x01, "card identification code", BINARY(16)),
    Item(0x02, "card type", Ascii(1)),
    Item(0x03, "specification version", Ascii(4)),
    Item(0x04, "initialising institution", BINARY(12)),
    Item(0x05, "issue date", BcdDate()),
    Item(0x06, "expiry date", BcdDate()),
    Item(0x07, "card number", Ascii(9)),
)
EF06_ITEMS = (
    Item(0x08, "social security number", Ascii(18)),
    Item(0x09, "name", Gbk(30)),
    Item(0x4E, "name extension", Gbk(20)),
    Item(0x0A, "gender", Ascii(1)),
    Item(0x0B, "ethnicity", BYTE),
    Item(0x0C, "birthplace", Bcd(3)),
    Item(0x0D, "birth date", BcdDate()),
)
ITEMS = {item.tag: item for item in EF05_ITEMS + EF06_ITEMS}

# DF04 medical insurance: business records written by externally authenticated medical terminals.
VISIT = Item(0x51, "medical visit", Struct(
    "institution" / Ascii(12),  # hospital code
    "kind" / BYTE,  # 01 registration, 02 outpatient, 03 inpatient
    "date" / BcdDate(),
    "amount" / Int32ub,  # fen
))
PURCHASE = Item(0x52, "pharmacy purchase", Struct(
    "pharmacy" / Ascii(12),  # designated pharmacy code
    "items" / BYTE,
    "date" / BcdDate(),
    "amount" / Int32ub,  # fen
))
VISIT_KINDS = {1: "registration", 2: "outpatient", 3: "inpatient"}
MEDICAL_CAPACITY = 30

EF05 = LinearEF(0xEF05, 5, "ssse.ef05", "card data", read_records={5: PROTECTED, 6: PROTECTED})
EF06 = LinearEF(0xEF06, 6, "ssse.ef06", "holder data", read=PROTECTED)
EF07 = TransparentEF(0xEF07, 7, "ssse.ef07", "fingerprint", read=PROTECTED)
EF08 = TransparentEF(0xEF08, 8, "ssse.ef08", "photo", read=PROTECTED)

DDF = DF(0xDDF1, "SSSE", name=DDF_NAME, children=[
    EF05, EF06, EF07, EF08,
    DF(0xDF01, "DF01 public", name=RID + b"\x01"),
    DF(0xDF02, "DF02 employment", name=RID + b"\x02"),
    DF(0xDF03, "DF03 social insurance", name=RID + b"\x03"),
    DF(0xDF04, "DF04 medical insurance", name=RID + b"\x04", children=[
        LinearEF(0xEF15, 0x15, "ssse.visits", "medical visits", read=PROTECTED, update=EXTERNAL_AUTH,
                 record=VISIT, capacity=MEDICAL_CAPACITY),
        LinearEF(0xEF16, 0x16, "ssse.purchases", "pharmacy purchases", read=PROTECTED, update=EXTERNAL_AUTH,
                 record=PURCHASE, capacity=MEDICAL_CAPACITY),
    ]),
])
MEDICAL_EFS = frozenset(("ssse.visits", "ssse.purchases"))

# key references (P2 of EXTERNAL AUTHENTICATE) and the keys a card holds
RK_ID = 0x0A
EXTERNAL_AUTH_TRIES = 3
KEYS = ("rk", "irk", "stk", "puk")


def diversification_data(identification: bytes) -> bytes:
    """SPEC §5.1: the first 8 bytes of the card identification code (EF05 item 01 value)."""
    return identification[:8]


def identification_code(profile) -> bytes:
    """EF05 item 01 (16 bytes): region code (3, BCD) || card serial (5) || RID D156000005 (5) || FF FF FF.

    The serial sits in bytes 4-8 so that the first 8 bytes, the key
    diversification data of SPEC §5.1, differ from card to card.
    """
    return bytes.fromhex(profile.region_code) + profile.serial + RID + b"\xFF\xFF\xFF"


GET_CHALLENGE = 0x0084
EXTERNAL_AUTHENTICATE = 0x0082
INTERNAL_AUTHENTICATE = 0x0088
CHANGE_OR_RELOAD_PIN = 0x805E
APPLICATION_BLOCK = 0x841E
APPLICATION_UNBLOCK = 0x8418
CARD_BLOCK_INS = 0x8416
PIN_UNBLOCK = 0x8424

# What a loss-locked or blocked SSSE still answers (SPEC §2.4); every other command gets 6985.
WHILE_LOCKED = frozenset((GET_CHALLENGE, APPLICATION_UNBLOCK, CARD_BLOCK_INS))


class SsseApplet(Applet):
    NAME = "ssse"
    ROOT = DDF
    COMMANDS = {
        **Applet.COMMANDS,
        VERIFY: "verify",
        CHANGE_OR_RELOAD_PIN: "change_or_reload_pin",
        GET_CHALLENGE: "get_challenge",
        EXTERNAL_AUTHENTICATE: "external_authenticate",
        INTERNAL_AUTHENTICATE: "internal_authenticate",
        APPLICATION_BLOCK: "application_block",
        APPLICATION_UNBLOCK: "application_unblock",
        CARD_BLOCK_INS: "card_block",
        PIN_UNBLOCK: "pin_unblock",
    }

    def __init__(self, card, store):
        super().__init__(card, store)
        self.pin: Pin = store["ssse.pin"]
        self.state: Vars = store["ssse.state"]
        self.keys = {name: store[f"ssse.{name}"] for name in KEYS}
        self.algorithm = BY_FLAG[self.state.algorithm]
        self.challenge = Challenge()
        self.authenticated = False  # external authentication with RK in this session
        self._proprietary = ber_tlv(0x9F0C, bytes((0x86, 0x01, self.state.algorithm)))
        self._apply_lock()

    @staticmethod
    def personalize(store, profile, today) -> None:
        """Create the SSSE's persistent objects from a profile (card keys diversified from the masters)."""
        issue, expiry = profile.dates(today)
        head, tail = profile.name_fields()
        identification = identification_code(profile)
        ef05 = {
            0x01: identification, 0x02: profile.card_type, 0x03: profile.spec_version,
            0x04: profile.institution, 0x05: issue, 0x06: expiry, 0x07: profile.card_number,
        }
        ef06 = {
            0x08: profile.id_number, 0x09: head.decode("gbk"), 0x4E: tail.decode("gbk"), 0x0A: profile.gender,
            0x0B: profile.ethnicity, 0x0C: profile.birthplace, 0x0D: profile.birth_date,
        }
        store.add("ssse.ef05", Records(item.record(ef05[item.tag]) for item in EF05_ITEMS))
        store.add("ssse.ef06", Records(item.record(ef06[item.tag]) for item in EF06_ITEMS))
        store.add("ssse.ef07", Binary())
        store.add("ssse.ef08", Binary())
        store.add("ssse.visits", Records())
        store.add("ssse.purchases", Records())
        store.add("ssse.pin", Pin(pack(profile.initial_pin), profile.pin_tries))
        algorithm = BY_FLAG[profile.algorithm_flag]
        d = diversification_data(identification)
        for name in KEYS:
            limit = EXTERNAL_AUTH_TRIES if name == "rk" else 0
            store.add(f"ssse.{name}", Key(algorithm.diversify(profile.keys[f"ssse_{name}"], d), limit))
        store.add("ssse.state", Vars(
            lifecycle=lifecycle.INITIAL[SSSE_LIFECYCLE],
            lock=lifecycle.INITIAL[SSSE_LOCK],
            lock_reason="",
            algorithm=profile.algorithm_flag,
            initial_pin=pack(profile.initial_pin),
            deadline_days=profile.activation_deadline_days,
        ))

    # -- lifecycle -----------------------------------------------------------------
    @classmethod
    def _make_tables(cls) -> None:
        """The open table, and the one a locked SSSE answers with (shared by every card, like the open one)."""
        super()._make_tables()
        cls.open_commands = cls.commands
        cls.locked_commands = {key: (handler if key in WHILE_LOCKED else cls._refuse_locked)
                               for key, handler in cls.commands.items()}

    def _apply_lock(self) -> None:
        """Swap the command table by lock state, so the hot path pays nothing for the check."""
        locked = self.state.lock != "none"
        self.commands = self.locked_commands if locked else self.open_commands

    def _refuse_locked(self, cmd):
        raise CardError(SW_CONDITIONS_NOT_SATISFIED)

    def issue_date(self):
        return EF05_ITEMS[4].value(self.store["ssse.ef05"].records[4])

    def power_up(self) -> None:
        """The activation-deadline rule (SPEC §2.4), as terminals see it once pushed to the card."""
        if lifecycle.apply_deadline(self.store, self.card.today, self.issue_date(), self.state.deadline_days,
                                    self.card.financial_activated()):
            self.store.commit()
        self._apply_lock()

    def select(self, node) -> int:
        self._apply_lock()
        return SW_OK if self.state.lock == "none" else SW_WARNING_SELECTED_FILE_INVALIDATED

    reselect = select

    # -- session -------------------------------------------------------------
    def deselect(self) -> None:
        self.pin.validated = False
        self.authenticated = False
        self.challenge.clear()

    def satisfies(self, rule: int) -> bool:
        return bool(rule & PIN and self.pin.validated or rule & EXTERNAL_AUTH and self.authenticated)

    def check_write(self, ef) -> None:
        """Medical business writes need external authentication; before activation they give 6985."""
        if not self.satisfies(ef.update):
            issued = self.state.lifecycle == "issued"
            raise CardError(SW_CONDITIONS_NOT_SATISFIED if issued else SW_SECURITY_STATUS_NOT_SATISFIED)

    def after_write(self, ef) -> None:
        """The first business write of an externally authenticated medical terminal activates the SSSE."""
        if ef.key in MEDICAL_EFS:
            lifecycle.fire(self.store, SSSE_LIFECYCLE, ACTIVATE)

    def fci_proprietary(self, node) -> bytes:
        return self._proprietary if node is DDF else b""

    # -- inspection (host tools, not an APDU path) ------------------------------
    def describe(self) -> dict:
        """Decoded records, PIN, keys and state, for `sscard info`."""
        fields = {}
        for key in ("ssse.ef05", "ssse.ef06"):
            for record in self.store[key].records:
                item = ITEMS.get(record[0])
                if item is not None:
                    value = item.value(record)
                    fields[item.name] = value.hex().upper() if isinstance(value, bytes) else value
        rk = self.keys["rk"]
        lock = self.state.lock + (f" ({self.state.lock_reason})" if self.state.lock_reason else "")
        deadline = self.issue_date() + datetime.timedelta(days=self.state.deadline_days)
        if self.card.financial_activated():
            deadline_text = f"{deadline} (met: financial application activated)"
        elif self.card.today > deadline:
            deadline_text = f"{deadline} (passed on {self.card.today}: locked at the next power-up if not yet)"
        else:
            deadline_text = f"{deadline} ({(deadline - self.card.today).days} days left)"
        return {
            "lifecycle": self.state.lifecycle,
            "lock": lock,
            "activation deadline": deadline_text,
            "card": self.store["card"].state,
            "algorithm": f"{self.algorithm.name} (flag {self.state.algorithm:02X})",
            "PIN tries left": f"{self.pin.tries} of {self.pin.limit}" + (" (blocked)" if self.pin.blocked else ""),
            "RK tries left": f"{rk.tries} of {rk.limit}" + (" (blocked)" if rk.blocked else ""),
            "medical visits": len(self.store["ssse.visits"].records),
            "pharmacy purchases": len(self.store["ssse.purchases"].records),
            "records": fields,
        }

    # -- PIN commands ---------------------------------------------------------------
    def verify(self, cmd):
        """VERIFY (00 20 00 00): the SSSE PIN. Without data: 9000 if verified, else 63Cx / 6983."""
        if cmd.p1:
            raise CardError(SW_WRONG_P1P2)
        if cmd.p2:
            raise CardError(SW_REFERENCED_DATA_NOT_FOUND)
        pin = self.pin
        data = cmd.data
        if not data:
            pin.status()
            return b"", SW_OK
        if not 2 <= len(data) <= 6:
            raise CardError(SW_WRONG_LENGTH)
        if not well_formed(data):
            raise CardError(SW_WRONG_DATA)
        pin.check(self.store, data)
        return b"", SW_OK

    def change_or_reload_pin(self, cmd):
        """80 5E: P1 01 CHANGE PIN (holder), P1 00 RELOAD PIN (issuer, MAC)."""
        if cmd.p2:
            raise CardError(SW_WRONG_P1P2)
        if cmd.p1 == 0x01:
            return self._change_pin(cmd)
        if cmd.p1 == 0x00:
            return self._reload_pin(cmd)
        raise CardError(SW_WRONG_P1P2)

    def _change_pin(self, cmd):
        """CHANGE PIN (80 5E 01 00 Lc <old> FF <new>): the old PIN is checked with anti-tearing.

        A new PIN other than the initial one activates the application.
        """
        data = cmd.data
        sep = data.find(0xFF)
        if sep < 0:
            raise CardError(SW_WRONG_DATA if data else SW_WRONG_LENGTH)
        old, new = data[:sep], data[sep + 1:]
        if not well_formed(old) or not well_formed(new):
            raise CardError(SW_WRONG_DATA)
        self.pin.check(self.store, old)
        self.pin.update(self.store, new)
        if not compare_digest(new, self.state.initial_pin):  # a secret: constant time, like every PIN compare
            lifecycle.fire(self.store, SSSE_LIFECYCLE, ACTIVATE)
        return b"", SW_OK

    def _reload_pin(self, cmd):
        """RELOAD PIN (80 5E 00 00 Lc <new PIN> <MAC4>): MAC under STK; sets the PIN and a full counter."""
        new = self._mac_checked(cmd, "stk")
        if not well_formed(new):
            raise CardError(SW_WRONG_DATA)
        self.pin.update(self.store, new)
        return b"", SW_OK

    def pin_unblock(self, cmd):
        """PIN UNBLOCK (84 24 00 00 04 <MAC4>): MAC under PUK; restores the counter only."""
        if cmd.p1 or cmd.p2:
            raise CardError(SW_WRONG_P1P2)
        if self._mac_checked(cmd, "puk"):
            raise CardError(SW_WRONG_LENGTH)
        self.pin.reset_and_unblock(self.store)
        return b"", SW_OK

    # -- authentication -----------------------------------------------------------------
    def get_challenge(self, cmd):
        """GET CHALLENGE (00 84 00 00 Le): 8 random bytes (Le 04 gives 4), single-use."""
        if cmd.p1 or cmd.p2:
            raise CardError(SW_WRONG_P1P2)
        if cmd.data or not cmd.le_present or cmd.ne not in (4, 8):
            raise CardError(SW_WRONG_LENGTH)
        return self.challenge.issue(self.card.random, cmd.ne), SW_OK

    def _iv(self, challenge: bytes) -> bytes:
        """The MAC's initial vector: the challenge, zero-padded to the cipher's block (SPEC §5.1)."""
        return challenge.ljust(self.algorithm.block, b"\x00")

    def external_authenticate(self, cmd):
        """EXTERNAL AUTHENTICATE (00 82 00 0A 10 <E_RK(challenge || 00*8)>), RK's own try counter."""
        if cmd.p1:
            raise CardError(SW_WRONG_P1P2)
        if cmd.p2 != RK_ID:
            raise CardError(SW_REFERENCED_DATA_NOT_FOUND)
        if len(cmd.data) != 16:
            raise CardError(SW_WRONG_LENGTH)
        rk = self.keys["rk"]
        if rk.blocked:
            raise CardError(SW_AUTHENTICATION_METHOD_BLOCKED)
        challenge = self.challenge.take()
        expected = self.algorithm.encrypt(rk.value, challenge.ljust(16, b"\x00"))
        self.authenticated = False
        rk.attempt(self.store, cmd.data, expected)
        self.authenticated = True
        return b"", SW_OK

    def internal_authenticate(self, cmd):
        """INTERNAL AUTHENTICATE (00 88 00 00 10 <factor 8><random 8>): E_IRK(random || factor)."""
        if cmd.p1 or cmd.p2:
            raise CardError(SW_WRONG_P1P2)
        data = cmd.data
        if len(data) != 16:
            raise CardError(SW_WRONG_LENGTH)
        return self.algorithm.encrypt(self.keys["irk"].value, data[8:] + data[:8]), SW_OK

    def _mac_checked(self, cmd, key: str) -> bytes:
        """Check the command's trailing MAC4 (SPEC §5.1) and return the data before it.

        MAC over CLA INS P1 P2 Lc || data, IV = the last challenge, which this consumes.
        """
        body, mac4 = split_mac(cmd.data)
        challenge = self.challenge.take()
        message = bytes((cmd.cla, cmd.ins, cmd.p1, cmd.p2, len(cmd.data))) + body
        check_mac4(self.algorithm, self.keys[key].value, self._iv(challenge), message, mac4)
        return body

    # -- lock, unlock, card block ---------------------------------------------------------
    def application_block(self, cmd):
        """APPLICATION BLOCK (84 1E 00 P2 04 <MAC4>): P2 00 loss lock (temporary), 01 permanent."""
        if cmd.p1 or cmd.p2 > 1:
            raise CardError(SW_WRONG_P1P2)
        if self._mac_checked(cmd, "stk"):
            raise CardError(SW_WRONG_LENGTH)
        lifecycle.fire(self.store, SSSE_LOCK, LOCK_PERMANENT if cmd.p2 else LOCK)
        self.store.write(self.state, "lock_reason", "permanent" if cmd.p2 else "holder")
        self._apply_lock()
        return b"", SW_OK

    def application_unblock(self, cmd):
        """APPLICATION UNBLOCK (84 18 00 00 04 <MAC4>): 9303 on a permanent block; a deadline lock
        needs the financial application activated first (6985)."""
        if cmd.p1 or cmd.p2:
            raise CardError(SW_WRONG_P1P2)
        if self._mac_checked(cmd, "stk"):
            raise CardError(SW_WRONG_LENGTH)
        if self.state.lock_reason == "deadline" and not self.card.financial_activated():
            raise CardError(SW_CONDITIONS_NOT_SATISFIED)
        lifecycle.fire(self.store, SSSE_LOCK, UNLOCK)
        if self.state.lock_reason:
            self.store.write(self.state, "lock_reason", "")
        self._apply_lock()
        return b"", SW_OK

    def card_block(self, cmd):
        """CARD BLOCK (84 16 00 00 04 <MAC4>): irreversible; from now on every SELECT gives 6A81."""
        if cmd.p1 or cmd.p2:
            raise CardError(SW_WRONG_P1P2)
        if self._mac_checked(cmd, "stk"):
            raise CardError(SW_WRONG_LENGTH)
        lifecycle.fire(self.store, CARD, CARD_BLOCK)
        return b"", SW_OK
