"""The social-security application (SSSE) of LD/T 32: files, PIN, security and lifecycle.

The DDF `sx1.sh.社会保障` holds EF05 (card data), EF06 (holder data), EF07
(fingerprint), EF08 (photo), a DIR file and the application DFs DF01-DF04 and
DF07 (V2 §5, table 2). Everything about the files is declared here as data
(`chip.apps.ssse_files`); the commands are the shared mechanisms of `chip.kernel.applet`
and `chip.kernel.pin` plus the SSSE's own commands of P5 §6:

- PIN: VERIFY, CHANGE PIN `80 5E 01 00`, PIN CHANGE/UNBLOCK `84 24 00 00|01`;
- security: GET CHALLENGE, EXTERNAL AUTHENTICATE with the key named by P2
  (per-key try counters), INTERNAL AUTHENTICATE (8-byte answer), MACs under the
  STK process key of the last challenge (P4 §8, §9; recipes in chip.kernel.crypto, the
  MAC input in chip.kernel.cryptograms);
- maintenance: APPLICATION BLOCK `84 1E 00 01` (permanent, `9303` after) and
  CARD BLOCK `84 16`, after external authentication with BK;
- updates: UPDATE RECORD / UPDATE BINARY, CLA `00` after external
  authentication with the file's update key, CLA `04` with a MAC as well;
- the medical offline purse of DF04 (`chip.apps.purse`).

The project's extensions (docs/card/lifecycle.md) use the same security
scheme: the temporary loss lock `84 1E 00 00` and its lift `84 18 00 00`,
activation (CHANGE PIN away from the initial PIN, or the first medical
business write or purchase), the activation deadline applied at power-up, and
GET DATA `80 CA DF 7E` / `DF 7D` for the activation state and lock reason.
"""

import datetime
from hmac import compare_digest

from chip.apps.keys import BY_CARD_ID, EXTERNAL_AUTH_TRIES, KEY_VERSION, KEYS, card_key
from chip.apps.purse import Purse
from chip.apps.ssse_files import (
    DDF,
    DDF_NAME,
    DF04,
    DF04_EF05,
    DF04_EF06,
    DF_TAGS,
    EF05_ITEMS,
    IDENTIFICATION,
    ITEMS,
    MEDICAL_ITEMS,
    RID,
    personalize_files,
)
from chip.iso.ber import ber_tlv
from chip.iso.ins import (
    APPLICATION_BLOCK,
    APPLICATION_UNBLOCK,
    CARD_BLOCK,
    CHANGE_PIN,
    EXTERNAL_AUTHENTICATE,
    GET_CHALLENGE,
    GET_DATA,
    INTERNAL_AUTHENTICATE,
    PIN_CHANGE_UNBLOCK,
    SM_UPDATE_BINARY,
    SM_UPDATE_RECORD,
    UPDATE_BINARY,
    UPDATE_RECORD,
    VERIFY,
    code,
)
from chip.iso.sw import (
    SW_APPLICATION_PERMANENTLY_BLOCKED,
    SW_AUTHENTICATION_METHOD_BLOCKED,
    SW_CONDITIONS_NOT_SATISFIED,
    SW_OK,
    SW_REFERENCED_DATA_NOT_FOUND,
    SW_SECURITY_STATUS_NOT_SATISFIED,
    SW_SM_INCORRECT,
    SW_WARNING_SELECTED_FILE_INVALIDATED,
    SW_WRONG_DATA,
    SW_WRONG_LENGTH,
    SW_WRONG_P1P2,
    CardError,
)
from chip.kernel import lifecycle
from chip.kernel.applet import Applet
from chip.kernel.crypto import BY_FLAG, NAMES, factors
from chip.kernel.cryptograms import command_mac_input
from chip.kernel.fs import PIN
from chip.kernel.pin import Key, Pin, pack, well_formed
from chip.kernel.records import Records
from chip.kernel.secure import Challenge, split_mac
from chip.kernel.store import Vars

__all__ = ["DDF", "DDF_NAME", "RID", "SsseApplet", "identification_code"]

# GET DATA objects of the project's extensions (readable lifecycle state) and their one-byte codes
ACTIVATION_TAG = 0xDF7E
ACTIVATION_CODES = {lifecycle.ISSUED: 0x00, lifecycle.ACTIVE: 0x01}
LOCK_REASON_TAG = 0xDF7D
LOCK_REASONS = {lifecycle.NO_REASON: 0x00, lifecycle.REPORTED: 0x01, lifecycle.DEADLINE: 0x02,
                lifecycle.PERMANENT: 0x00}  # a permanent block answers 9303 before any GET DATA

# What a loss-locked SSSE still answers; every other command gets 6985 (the extension's rule).
WHILE_LOCKED = frozenset((GET_CHALLENGE, EXTERNAL_AUTHENTICATE, GET_DATA, APPLICATION_UNBLOCK, CARD_BLOCK))

GENERATION_GRANTS = {"2.00": "gen2", "3.00": "gen3"}  # access alternatives that depend on the generation


def identification_code(profile) -> bytes:
    """EF05 item 01 of the profile's card (chip.apps.ssse_files.IDENTIFICATION)."""
    return IDENTIFICATION.build({"region": bytes.fromhex(profile.region_code), "rid": RID,
                                 "serial": profile.serial, "auth_code": profile.auth_code})


class SsseApplet(Applet):
    NAME = "ssse"
    ROOT = DDF
    RESELECT_RESTARTS = False  # security states hold while the current DF is unchanged (P5 §6.11.1)
    LE_00_ASKS_LENGTH = True  # P5 §6.10.4
    COMMANDS = {
        **Applet.COMMANDS,
        UPDATE_RECORD: "update_record",
        SM_UPDATE_RECORD: "update_record",
        UPDATE_BINARY: "update_binary",
        SM_UPDATE_BINARY: "update_binary",
        VERIFY: "verify",
        CHANGE_PIN: "change_pin",
        PIN_CHANGE_UNBLOCK: "pin_change_unblock",
        GET_CHALLENGE: "get_challenge",
        EXTERNAL_AUTHENTICATE: "external_authenticate",
        INTERNAL_AUTHENTICATE: "internal_authenticate",
        GET_DATA: "get_data",
        APPLICATION_BLOCK: "application_block",
        APPLICATION_UNBLOCK: "application_unblock",
        CARD_BLOCK: "card_block",
        **dict.fromkeys(Purse.COMMANDS, "medical"),
    }

    def __init__(self, card, store):
        super().__init__(card, store)
        self.pin: Pin = store["ssse.pin"]
        self.state: Vars = store["ssse.state"]
        self.ef05: Records = store["ssse.ef05"]
        self._deadline: tuple = ((), 0, None)  # (EF05's records, deadline days, the deadline they give)
        self.keys = {spec.name: store[spec.store_key] for spec in KEYS}
        self.algorithm = BY_FLAG[self.state.algorithm]
        self.generation = GENERATION_GRANTS.get(self.state.generation, "gen3")
        self.challenge = Challenge()
        self.authenticated: set[str] = set()  # keys externally authenticated in the current DF
        self.purse = Purse(self)
        self._proprietary = ber_tlv(0x88, b"\x1E") + ber_tlv(0x9F0C, bytes((0x86, 0x01, self.state.algorithm)))
        self._fci = super().fci(DDF)  # built once: its content (the algorithm flag) is set at personalisation

    @staticmethod
    def personalize(store, profile, today) -> None:
        """Create the SSSE's persistent objects: files, PIN, the card keys (diversified from the roots), state."""
        issue, expiry = profile.dates(today)
        head, tail = profile.name_fields()
        ef05 = {
            0x01: identification_code(profile), 0x02: profile.card_type, 0x03: profile.spec_version,
            0x04: profile.institution, 0x05: issue, 0x06: expiry, 0x07: profile.card_number,
        }
        ef06 = {
            0x08: profile.id_number, 0x09: head.decode("gbk"), 0x4E: tail.decode("gbk"), 0x0A: profile.gender,
            0x0B: f"{profile.ethnicity:02d}", 0x0C: profile.birthplace, 0x0D: profile.birth_date,
        }
        Purse.personalize(store, profile)
        personalize_files(store, profile, ef05, ef06)
        store.add("ssse.pin", Pin(pack(profile.initial_pin), profile.pin_tries))
        algorithm = BY_FLAG[profile.algorithm_flag]
        levels = factors(profile.region_code, profile.atr_historical)
        for spec in KEYS:
            limit = EXTERNAL_AUTH_TRIES if spec.card_id is not None and spec.external else 0
            store.add(spec.store_key, Key(card_key(algorithm, spec, profile.keys[spec.name], levels), limit))
        store.add("ssse.state", Vars(
            **lifecycle.initial("ssse.state"),
            algorithm=profile.algorithm_flag,
            generation=profile.spec_version,
            initial_pin=pack(profile.initial_pin),
            deadline_days=profile.activation_deadline_days,
        ))

    # -- the command table follows the lock state (never cached: an aborted command rolls it back too) --
    @classmethod
    def _make_tables(cls) -> None:
        super()._make_tables()
        open_commands = cls.commands
        locked = {key: (handler if key in WHILE_LOCKED else cls._refuse_locked) for key, handler in open_commands.items()}
        blocked = dict.fromkeys(open_commands, cls._refuse_blocked)
        tables = {lifecycle.NONE: open_commands, lifecycle.LOCKED: locked, lifecycle.BLOCKED: blocked}
        # the table is a property of the instance: mypy cannot see a class attribute become one
        cls.commands = property(lambda self: tables[self.state.lock])  # type: ignore[assignment]

    def refusal(self) -> int:
        return SW_APPLICATION_PERMANENTLY_BLOCKED if self.state.lock == lifecycle.BLOCKED else 0

    def _refuse_locked(self, cmd):
        raise CardError(SW_CONDITIONS_NOT_SATISFIED)

    def _refuse_blocked(self, cmd):
        raise CardError(SW_APPLICATION_PERMANENTLY_BLOCKED)

    def issue_date(self):
        return EF05_ITEMS[4].value(self.ef05.records[4])

    def deadline(self) -> datetime.date:
        """The activation deadline's last day (issue date + the deadline days), decoded again only when
        EF05's records or the days are other objects than last time: every write (an UPDATE RECORD of
        EF05, a rollback) puts a new tuple in place, so the date never outlives the record it came from."""
        records, days = self.ef05.records, self.state.deadline_days
        decoded_from, decoded_days, last_day = self._deadline
        if records is not decoded_from or days != decoded_days:
            last_day = lifecycle.deadline(self.issue_date(), days)
            self._deadline = (records, days, last_day)
        return last_day

    def power_up(self) -> None:
        """The activation-deadline rule, applied at power-up as terminals see it once pushed to the card."""
        if lifecycle.apply_deadline(self.store, self.card.today, self.deadline(), self.card.financial_activated):
            self.store.commit()

    def select(self, node) -> int:
        """9303 on a permanently blocked SSSE (P5 §6.1.1, P7 §13.2); FCI + 6283 while loss-locked (extension)."""
        lock = self.state.lock
        if lock == lifecycle.NONE:
            return SW_OK
        return SW_APPLICATION_PERMANENTLY_BLOCKED if lock == lifecycle.BLOCKED else SW_WARNING_SELECTED_FILE_INVALIDATED

    def reselect(self, node) -> int:
        """Moving inside the SSSE: the security states of the current DF hold until the DF changes (P5 §6.11.1)."""
        df = node if node.is_df else node.parent
        if df is not self.card.current_df:
            self._leave_df()
        return self.select(node)

    # -- session -------------------------------------------------------------
    def _leave_df(self) -> None:
        self.authenticated.clear()
        self.challenge.clear()
        self.purse.reset()

    def deselect(self) -> None:
        """Another application: the external authentications and the challenge go (P7 §6.6);
        a verified PIN holds until power-off (P7 §5.8)."""
        self._leave_df()

    def end_session(self) -> None:
        self._leave_df()
        self.pin.validated = False

    def satisfies(self, rule: tuple) -> bool:
        """Whether one alternative of `rule` holds: every condition in it (PIN, a key, the generation)."""
        granted = self.authenticated
        for alternative in rule:
            for condition in alternative:
                if condition is PIN:
                    if not self.pin_satisfied():
                        break
                elif condition not in granted and condition != self.generation:
                    break
            else:
                return True
        return False

    def pin_satisfied(self) -> bool:
        """The PIN condition: verified in this session, or no PIN stored (P5 §7.3.1 "if the holder set one")."""
        return self.pin.validated or not self.pin.value

    def card_key(self, name: str) -> bytes:
        return self.keys[name].value

    def _df_tag(self) -> str:
        return DF_TAGS.get(self.card.current_df, "")

    def check_write(self, ef) -> None:
        """The file's update condition; before activation a medical write without it is 6985 (extension)."""
        if ef.update and not self.satisfies(ef.update):
            medical = ef.parent is DF04
            issued = self.state.lifecycle == lifecycle.ISSUED
            raise CardError(SW_CONDITIONS_NOT_SATISFIED if medical and issued else SW_SECURITY_STATUS_NOT_SATISFIED)

    def after_write(self, ef) -> None:
        """The first business write of an authenticated medical terminal activates the SSSE (extension)."""
        if ef.parent is DF04:
            self.medical_activation()

    def medical_activation(self) -> None:
        lifecycle.fire(self.store, lifecycle.SSSE_LIFECYCLE, lifecycle.ACTIVATE)

    def fci_proprietary(self, node) -> bytes:
        """`A5` of the SSSE: DIR SFI `88 01 1E` and the algorithm `9F0C 03 86 01 xx` (P5 table 36, as real cards)."""
        return self._proprietary if node is DDF else b""

    def fci(self, node) -> bytes:
        """The DDF's FCI as built at start-up (every SELECT of the SSSE answers it); another DF's, built now."""
        return self._fci if node is DDF else super().fci(node)

    # -- inspection (host tools, not an APDU path) ------------------------------
    def _items(self, keys, items) -> dict:
        """The data items of the linear files `keys` (store keys), decoded by `items` (tag -> Item)."""
        fields = {}
        for key in keys:
            for record in self.store[key].records:
                item = items.get(record[0])
                if item is not None:
                    value = item.value(record)
                    fields[item.name] = value.hex().upper() if isinstance(value, bytes) else value
        return fields

    def describe(self) -> dict:
        """Decoded records (EF05/EF06, DF04's medical ones), PIN, keys and state, for `sscard info`."""
        fields = self._items(("ssse.ef05", "ssse.ef06"), ITEMS)
        reason = lifecycle.reason_of(self.store, lifecycle.SSSE_LOCK)
        lock = self.state.lock + (f" ({reason})" if reason else "")
        deadline = self.deadline()
        if self.card.financial_activated():
            deadline_text = f"{deadline} (met: financial application activated)"
        elif self.card.today > deadline:
            deadline_text = f"{deadline} (passed on {self.card.today}: locked at the next power-up if not yet)"
        else:
            deadline_text = f"{deadline} ({(deadline - self.card.today).days} days left)"
        keys = {}
        for spec in KEYS:
            key = self.keys[spec.name]
            if key.limit:
                keys[spec.label] = f"{key.tries} of {key.limit}" + (" (blocked)" if key.blocked else "")
        return {
            "lifecycle": self.state.lifecycle,
            "lock": lock,
            "activation deadline": deadline_text,
            "card": self.store["card"].state,
            "generation": self.state.generation,
            "algorithm": f"{NAMES[self.state.algorithm]} (flag {self.state.algorithm:02X})",
            "PIN tries left": f"{self.pin.tries} of {self.pin.limit}" + (" (blocked)" if self.pin.blocked else ""),
            "key tries left": keys,
            "medical purse": self.purse.describe(),
            "medical records": self._items((DF04_EF05.key, DF04_EF06.key), MEDICAL_ITEMS),  # V2 table 9, §8.5
            "records": fields,
        }

    # -- PIN commands (P5 §6.3, §6.8, §6.14) ---------------------------------------------------
    def verify(self, cmd):
        """VERIFY (00 20 00 00 Lc PIN): Lc 02-08 (4-16 cn digits).

        Without data: 9000 only when no PIN is stored, else 63Cx with the
        counter unchanged, 6983 when blocked (P5 §6.14.5, P7 §5.6).
        """
        if cmd.p1:
            raise CardError(SW_WRONG_P1P2)
        if cmd.p2:
            raise CardError(SW_REFERENCED_DATA_NOT_FOUND)
        pin = self.pin
        data = cmd.data
        if not data:
            if pin.blocked:
                raise CardError(SW_AUTHENTICATION_METHOD_BLOCKED)
            if pin.value:
                raise CardError(0x63C0 | pin.tries)
            return b"", SW_OK
        if not 2 <= len(data) <= 8:
            raise CardError(SW_WRONG_LENGTH)
        if not well_formed(data):
            raise CardError(SW_WRONG_DATA)
        pin.check(self.store, data)
        return b"", SW_OK

    def change_pin(self, cmd):
        """CHANGE PIN (80 5E 01 00 Lc <current> FF <new>), P5 §6.3: the current PIN is checked with
        anti-tearing. A new PIN other than the initial one activates the application (extension)."""
        if cmd.p1 != 0x01 or cmd.p2:
            raise CardError(SW_WRONG_P1P2)
        data = cmd.data
        if not 3 <= len(data) <= 0x11:
            raise CardError(SW_WRONG_LENGTH)
        sep = data.find(0xFF)
        if sep < 0:
            raise CardError(SW_WRONG_DATA)
        old, new = data[:sep], data[sep + 1:]
        if (old and not well_formed(old)) or (new and not well_formed(new)):
            raise CardError(SW_WRONG_DATA)
        self.pin.check(self.store, old)
        self.pin.update(self.store, new)
        if not compare_digest(new, self.state.initial_pin):  # a secret: constant time, like every PIN compare
            lifecycle.fire(self.store, lifecycle.SSSE_LIFECYCLE, lifecycle.ACTIVATE)
        return b"", SW_OK

    def pin_change_unblock(self, cmd):
        """PIN CHANGE/UNBLOCK (84 24 00 P2), P5 §6.8, after external authentication with PUK (P7 §13.3).

        P2 00: unblock, data = MAC4: the counter returns to its maximum.
        P2 01: reset, data = enciphered `LD || PIN (cn)` || MAC4, both under the
        STK process key of the last challenge; LD 0 empties the PIN.
        """
        if cmd.p1 or cmd.p2 > 1:
            raise CardError(SW_WRONG_P1P2)
        self._require("ssse_puk")
        body, process_key = self._mac_checked(cmd)
        if cmd.p2 == 0:
            if body:
                raise CardError(SW_WRONG_LENGTH)
            self.pin.reset_and_unblock(self.store)
            return b"", SW_OK
        new = self.algorithm.decipher(process_key, body) if body else b""  # no element: the PIN empties
        if new is None or (new and not well_formed(new)):
            raise CardError(SW_WRONG_DATA)
        self.pin.update(self.store, new)
        return b"", SW_OK

    # -- authentication (P4 §9, P5 §6.4, §6.5, §6.7) ---------------------------------------------
    def get_challenge(self, cmd):
        """GET CHALLENGE (00 84 00 00 Le): Le 04, 08 or 10 random bytes, single-use."""
        if cmd.p1 or cmd.p2:
            raise CardError(SW_WRONG_P1P2)
        if cmd.data or not cmd.le_present or cmd.ne not in (4, 8, 16):
            raise CardError(SW_WRONG_LENGTH)
        return self.challenge.issue(self.card.random, cmd.ne), SW_OK

    def _authentication_key(self, cmd, internal: bool):
        """The key an EXTERNAL (`internal` False) or INTERNAL AUTHENTICATE names, after what both
        check, in this order: P1 00 (6A86), 16 or 17 data bytes (6700), P2 a key of the current DF
        for that command (6A88: IRK, the one key EXTERNAL AUTHENTICATE may not name, serves INTERNAL
        AUTHENTICATE only, P5 §6.7), byte 17 the key version, absent 01 (6A88; P5 §6.4.3, §6.7.3)."""
        if cmd.p1:
            raise CardError(SW_WRONG_P1P2)
        data = cmd.data
        if len(data) not in (16, 17):
            raise CardError(SW_WRONG_LENGTH)
        spec = BY_CARD_ID.get((self._df_tag(), cmd.p2))
        if spec is None or spec.external == internal:
            raise CardError(SW_REFERENCED_DATA_NOT_FOUND)
        if len(data) == 17 and data[16] != KEY_VERSION:
            raise CardError(SW_REFERENCED_DATA_NOT_FOUND)
        return spec

    def external_authenticate(self, cmd):
        """EXTERNAL AUTHENTICATE (00 82 00 <key id> 10|11 <auth 8> <original 8> [version]), P7 §6.6.

        The key is found in the current DF; KS = process key of the card's last
        challenge; auth must equal the authentication data of the original.
        A counted key loses a try per failure (63Cx, 6983 at zero); BK never does.
        """
        spec = self._authentication_key(cmd, internal=False)
        data = cmd.data
        key = self.keys[spec.name]
        if key.blocked:
            raise CardError(SW_AUTHENTICATION_METHOD_BLOCKED)
        challenge = self.challenge.take()
        algorithm = self.algorithm
        expected = algorithm.auth_data(algorithm.process_key(key.value, challenge), data[8:16])
        self.authenticated.discard(spec.name)
        if spec.counted:
            key.attempt(self.store, data[:8], expected)
        elif not compare_digest(data[:8], expected):
            raise CardError(0x63C0 | key.tries)
        self.authenticated.add(spec.name)
        return b"", SW_OK

    def internal_authenticate(self, cmd):
        """INTERNAL AUTHENTICATE (00 88 00 00 10|11 <R1 8> <R2 8> [version]), P5 §6.7:
        8 bytes of authentication data of R2 under the IRK process key of R1."""
        spec = self._authentication_key(cmd, internal=True)
        data = cmd.data
        algorithm = self.algorithm
        return algorithm.auth_data(algorithm.process_key(self.keys[spec.name].value, data[:8]), data[8:16]), SW_OK

    def _require(self, key_name: str) -> None:
        """Maintenance needs a prior external authentication with its control key (P7 §13)."""
        if key_name not in self.authenticated:
            raise CardError(SW_SECURITY_STATUS_NOT_SATISFIED)

    def _mac_checked(self, cmd) -> tuple[bytes, bytes]:
        """Check the command's trailing MAC4 (P4 §8.2) and return (data before it, the process key).

        Key: the STK of the current DF, made a process key from the last
        challenge (which this consumes); input `CLA INS P1 P2 Lc || data`, Lc
        counting the MAC. A wrong MAC is 6988 and costs no key a try.
        """
        body, mac4 = split_mac(cmd.data)
        challenge = self.challenge.take()
        algorithm = self.algorithm
        process_key = algorithm.process_key(self.keys[f"{self._df_tag() or 'ssse'}_stk"].value, challenge)
        message = command_mac_input(cmd.cla, cmd.ins, cmd.p1, cmd.p2, body)
        if not compare_digest(algorithm.command_mac(process_key, message), mac4):
            raise CardError(SW_SM_INCORRECT)
        return body, process_key

    def secured_data(self, cmd) -> bytes:
        """UPDATE with CLA 04 carries a MAC4 under the STK process key (P10's STK row, P7 §7.4)."""
        if cmd.cla == 0x04:
            return self._mac_checked(cmd)[0]
        return cmd.data

    # -- the project's readable state (GET DATA) ---------------------------------------------------
    def get_data(self, cmd):
        """GET DATA (80 CA DF 7E | DF 7D): activation state and lock reason (extension)."""
        if cmd.data:
            raise CardError(SW_WRONG_LENGTH)
        tag = cmd.p1 << 8 | cmd.p2
        if tag == ACTIVATION_TAG:
            value = ACTIVATION_CODES[self.state.lifecycle]
        elif tag == LOCK_REASON_TAG:
            value = LOCK_REASONS[lifecycle.reason_of(self.store, lifecycle.SSSE_LOCK)]
        else:
            raise CardError(SW_REFERENCED_DATA_NOT_FOUND)
        return ber_tlv(tag, bytes((value,))), SW_OK

    # -- block, unblock, card block (P5 §6.1, §6.2; P7 §13) -----------------------------------------
    def _maintenance(self, cmd) -> None:
        """External authentication with BK, then a MAC with nothing else in the data."""
        self._require("ssse_bk")
        if self._mac_checked(cmd)[0]:
            raise CardError(SW_WRONG_LENGTH)

    def application_block(self, cmd):
        """APPLICATION BLOCK (84 1E 00 P2 04 <MAC4>): P2 01 permanent (P5 §6.1), 00 the loss lock (extension)."""
        if cmd.p1 or cmd.p2 > 1:
            raise CardError(SW_WRONG_P1P2)
        self._maintenance(cmd)
        if cmd.p2:
            lifecycle.fire(self.store, lifecycle.SSSE_LOCK, lifecycle.LOCK_PERMANENT, reason=lifecycle.PERMANENT)
        else:
            lifecycle.fire(self.store, lifecycle.SSSE_LOCK, lifecycle.LOCK, reason=lifecycle.REPORTED)
        return b"", SW_OK

    def application_unblock(self, cmd):
        """APPLICATION UNBLOCK (84 18 00 00 04 <MAC4>), extension: lifts the loss lock; a deadline lock
        needs the financial application activated first (6985)."""
        if cmd.p1 or cmd.p2:
            raise CardError(SW_WRONG_P1P2)
        self._maintenance(cmd)
        lifecycle.lift_loss_lock(self.store, self.card.financial_activated())
        return b"", SW_OK

    def card_block(self, cmd):
        """CARD BLOCK (84 16 00 00 04 <MAC4>), P5 §6.2: irreversible; every later command answers 6A81."""
        if cmd.p1 or cmd.p2:
            raise CardError(SW_WRONG_P1P2)
        self._maintenance(cmd)
        lifecycle.fire(self.store, lifecycle.CARD, lifecycle.CARD_BLOCK)
        return b"", SW_OK

    # -- the medical offline purse (P5 §7), in DF04 only ------------------------------------------------
    def medical(self, cmd):
        if self.card.current_df is not DF04:
            raise CardError(SW_CONDITIONS_NOT_SATISFIED)
        return getattr(self.purse, Purse.COMMANDS[code(cmd.cla, cmd.ins)])(cmd)
